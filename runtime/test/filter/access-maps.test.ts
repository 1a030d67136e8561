/**
 * access(5) REDIRECT and BCC in the client, HELO, sender and recipient access
 * maps, through the whole pipeline (the message's verdict carries them to
 * smtp/, which rewrites the queue envelope: runtime/test/smtp/access-redirect.test.ts),
 * the key order of check_client_access and check_helo_access, and the load-time
 * refusal of a REDIRECT/BCC without a usable address (file:line).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { addressKeys, clientKeys, heloKeys } from "../../src/filter/access.js";
import { createFilterPipeline } from "../../src/filter/index.js";
import type { ConnectionInfo, Verdict } from "../../src/filter/types.js";
import { filterConfig, message, silentLogger } from "./daemons.js";

const dir = mkdtempSync(join(tmpdir(), "mailinfra-access-"));
let n = 0;
function map(lines: string[]): string {
  const file = join(dir, `access-${n++}`);
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

function pipelineWith(section: Record<string, unknown>) {
  return createFilterPipeline(
    filterConfig({
      ...section,
      rate: { maxConnectionsPerMinute: 0, maxConcurrent: 0 },
      helo: { enabled: false },
      spf: { enabled: false },
      dkim: { enabled: false },
      dmarc: { enabled: false },
      arc: { enabled: false },
    }),
    { logger: silentLogger, localDomains: ["campus.example.edu"] },
  );
}

const maps = {
  clientAccess: `hash:${map([
    "# check_client_access",
    "bcc.client.test      BCC audit@campus.example.edu",
    "198.51.100           REDIRECT quarantine@campus.example.edu",
    "203.0.113.9          REJECT no mail from this host",
  ])}`,
  heloAccess: `hash:${map(["relay.helo.test    REDIRECT helo-trap@campus.example.edu"])}`,
  senderAccess: `regexp:${map([
    "/^(.+)@redirect\\.sender\\.test$/   REDIRECT $1@campus.example.edu",
    "/^bcc@sender\\.test$/               BCC Archive@Campus.Example.Edu",
    "/^odd@(sender\\.test)$/             BCC $1",
  ])}`,
  recipientAccess: `hash:${map(["legal@campus.example.edu   BCC legal-copy@campus.example.edu"])}`,
};
const pipeline = pipelineWith(maps);

interface Transaction {
  conn?: Partial<ConnectionInfo>;
  helo?: string;
  from?: string;
  to?: string[];
}

/** One whole transaction; the verdict of the first stage that refuses, else DATA's. */
async function run(t: Transaction = {}): Promise<Verdict> {
  const tx = pipeline.transaction();
  const conn: ConnectionInfo = { remoteAddress: "192.0.2.1", remotePort: 1000 + n++, ...t.conn };
  const steps: Array<() => Promise<Verdict>> = [
    () => tx.onConnect(conn),
    () => tx.onHelo(t.helo ?? "mx.sender.test"),
    () => tx.onMailFrom(t.from ?? "a@sender.test"),
    ...(t.to ?? ["u@campus.example.edu"]).map((r) => () => tx.onRcptTo(r)),
  ];
  for (const step of steps) {
    const v = await step();
    if (v.action === "reject" || v.action === "tempfail") return v;
  }
  return tx.onData(message(["Subject: hi"], "hello\n"), {
    helo: t.helo ?? "mx.sender.test",
    mailFrom: t.from ?? "a@sender.test",
    rcptTo: t.to ?? ["u@campus.example.edu"],
  });
}

describe("REDIRECT and BCC in access maps", () => {
  it("nothing matched: no redirect, no BCC", async () => {
    const v = await run();
    expect(v.action).toBe("accept");
    expect(v.redirect).toBeUndefined();
    expect(v.bcc).toBeUndefined();
  });

  it("sender map: REDIRECT with $1 substituted; BCC lower-cased", async () => {
    expect((await run({ from: "Joe@redirect.sender.test" })).redirect).toBe("Joe@campus.example.edu");
    const v = await run({ from: "bcc@sender.test" });
    expect(v.bcc).toEqual(["archive@campus.example.edu"]);
    expect(v.redirect).toBeUndefined();
    const detail = v.results.find((r) => r.check === "sender-access")?.detail ?? "";
    expect(detail).toMatch(/^BCC Archive@Campus\.Example\.Edu \(.*access-\d+:2 bcc@sender\.test\)$/);
  });

  it("recipient map: BCC for that recipient's message", async () => {
    const v = await run({ to: ["u@campus.example.edu", "Legal@campus.example.edu"] });
    expect(v.bcc).toEqual(["legal-copy@campus.example.edu"]);
  });

  it("client map: by the client's verified name (parent domain) and by address prefix", async () => {
    const byName = await run({
      conn: { remoteAddress: "192.0.2.50", clientHostname: "mx1.bcc.client.test" },
    });
    expect(byName.bcc).toEqual(["audit@campus.example.edu"]);
    const byNet = await run({ conn: { remoteAddress: "198.51.100.77" } });
    expect(byNet.redirect).toBe("quarantine@campus.example.edu");
    expect(byNet.results.find((r) => r.check === "client-access")?.stage).toBe("connect");
  });

  it("client map: REJECT refuses the connection with Postfix's reply", async () => {
    const v = await run({ conn: { remoteAddress: "203.0.113.9" } });
    expect(v.action).toBe("reject");
    expect(`${v.code} ${v.enhanced} ${v.message}`).toBe(
      "554 5.7.1 <unknown[203.0.113.9]>: Client host rejected: no mail from this host",
    );
    expect(v.results.find((r) => r.check === "dnsbl")?.outcome).toBe("skip");
  });

  it("HELO map; the last REDIRECT wins (the sender's after the HELO's), BCCs add up", async () => {
    expect((await run({ helo: "relay.helo.test" })).redirect).toBe("helo-trap@campus.example.edu");
    const v = await run({
      conn: { remoteAddress: "192.0.2.60", clientHostname: "bcc.client.test" },
      helo: "relay.helo.test",
      from: "x@redirect.sender.test",
      to: ["legal@campus.example.edu"],
    });
    expect(v.redirect).toBe("x@campus.example.edu");
    expect(v.bcc).toEqual(["audit@campus.example.edu", "legal-copy@campus.example.edu"]);
  });

  it("a client or HELO redirect holds for the next message on the connection, a sender's does not", async () => {
    const tx = pipeline.transaction();
    await tx.onConnect({ remoteAddress: "198.51.100.1", remotePort: 4242 });
    await tx.onHelo("relay.helo.test");
    await tx.onMailFrom("y@redirect.sender.test");
    await tx.onRcptTo("u@campus.example.edu");
    const env = { helo: "relay.helo.test", mailFrom: "a@sender.test", rcptTo: ["u@campus.example.edu"] };
    expect((await tx.onData(message(["Subject: 1"], "x\n"), env)).redirect).toBe("y@campus.example.edu");
    tx.reset?.();
    await tx.onMailFrom("a@sender.test");
    await tx.onRcptTo("u@campus.example.edu");
    // The HELO map's REDIRECT came after the client map's: it is the last one.
    expect((await tx.onData(message(["Subject: 2"], "x\n"), env)).redirect).toBe(
      "helo-trap@campus.example.edu",
    );
    tx.close?.();
  });

  it("a $n that makes no address is recorded as an error and not used", async () => {
    const v = await run({ from: "odd@sender.test" });
    expect(v.bcc).toBeUndefined();
    const r = v.results.find((x) => x.check === "sender-access");
    expect(r?.outcome).toBe("error");
    expect(r?.detail).toMatch(/BCC to a non-address "sender\.test"/);
  });

  it("trusted clients skip the client and HELO maps", async () => {
    const v = await run({
      conn: { remoteAddress: "198.51.100.5", trustedNetwork: true },
      helo: "relay.helo.test",
    });
    expect(v.redirect).toBeUndefined();
    expect(v.results.find((r) => r.check === "client-access")?.detail).toBe("trusted client");
  });
});

describe("lookup keys", () => {
  it("client: name and parents, then the address and its prefixes", () => {
    expect(clientKeys("192.0.2.7", "mx.Example.COM")).toEqual([
      "mx.example.com",
      "example.com",
      ".example.com",
      "com",
      ".com",
      "192.0.2.7",
      "192.0.2",
      "192.0",
      "192",
    ]);
    expect(addressKeys("2001:db8::1")).toEqual(["2001:db8::1", "2001:db8:", "2001:db8", "2001"]);
  });

  it("HELO: the name and parents; a literal as written, then as an address", () => {
    expect(heloKeys("Mail.Example.org.")).toEqual([
      "mail.example.org",
      "example.org",
      ".example.org",
      "org",
      ".org",
    ]);
    expect(heloKeys("[192.0.2.1]")).toEqual(["[192.0.2.1]", "192.0.2.1", "192.0.2", "192.0", "192"]);
  });
});

describe("a REDIRECT or BCC without a usable address stops the load, naming file and line", () => {
  it("text map: not an address", () => {
    const file = map(["ok@sender.test OK", "# comment", "spam@sender.test REDIRECT spam-trap"]);
    expect(() => pipelineWith({ senderAccess: `hash:${file}` })).toThrow(
      `${file}:3: REDIRECT needs user@domain (access(5)), got "spam-trap"`,
    );
  });

  it("text map: BCC with no argument (client map)", () => {
    const file = map(["192.0.2.1 BCC"]);
    expect(() => pipelineWith({ clientAccess: file })).toThrow(`${file}:1: BCC needs an argument`);
  });

  it("text map: the address on a continuation line is checked with its entry", () => {
    const file = map(["a.test REDIRECT", "  not@an@address", "b.test OK"]);
    expect(() => pipelineWith({ heloAccess: `texthash:${file}` })).toThrow(
      `${file}:1: REDIRECT needs user@domain`,
    );
  });

  it("regexp map", () => {
    const file = map(["/^x@/ OK", "/^y@/ BCC <archive@campus.example.edu>"]);
    expect(() => pipelineWith({ recipientAccess: `regexp:${file}` })).toThrow(
      `${file}:2: BCC needs user@domain`,
    );
  });
});
