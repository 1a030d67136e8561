/**
 * SMTP to remote domains through a real DNS server (Debian's dnsmasq): MX by
 * preference with fallback when the first exchanger is down, the implicit MX
 * (A record, RFC 5321 §5.1), opportunistic STARTTLS, forwarding through
 * mailRoutingAddress, and a DSN when the domain does not exist.
 */
import { mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Dnsmasq,
  freePort,
  makeConfig,
  type Running,
  type Sink,
  startDnsmasq,
  startService,
  startSink,
  startWorld,
  swaks,
  type World,
} from "../smtp/harness.js";

let world: World;
let dns: Dnsmasq;
let remote: Sink;
let smtp: Running;

beforeAll(async () => {
  world = await startWorld();
  // The remote MX on 127.0.0.3; 127.0.0.4 (preferred, MX 5) has nothing listening.
  const port = await freePort("127.0.0.3");
  remote = await startSink({ lmtp: false, host: "127.0.0.3", port, tls: world.tls });
  dns = await startDnsmasq([
    "--mx-host=remote.test,mx1.remote.test,5",
    "--mx-host=remote.test,mx2.remote.test,10",
    "--host-record=mx1.remote.test,127.0.0.4",
    "--host-record=mx2.remote.test,127.0.0.3",
    "--host-record=amx.test,127.0.0.3",
    // authoritative for these: NXDOMAIN / NODATA instead of REFUSED (no upstream)
    "--local=/nx.test/",
    "--local=/amx.test/",
  ]);
  const queueDir = await mkdtemp(join(world.dir, "queue-"));
  smtp = await startService(
    world,
    makeConfig({
      queueDir,
      lmtpPort: world.lmtp.port,
      queue: { dnsServers: [`127.0.0.1:${dns.port}`], remoteSmtpPort: port, connectTimeoutSeconds: 2 },
    }),
  );
});

afterAll(async () => {
  await smtp?.service.drain(1000);
  await remote?.close();
  await dns?.stop();
  await world?.stop();
});

async function waitFor<T>(find: () => T | undefined, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("remote delivery", () => {
  it("delivers a submission to the remote MX, falling back from a dead MX 5 to MX 10, over STARTTLS", async () => {
    const r = await swaks(
      [
        "--server",
        "127.0.0.1",
        "--port",
        String(smtp.submission),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--from",
        "alice@example.org",
        "--to",
        "friend@remote.test",
        "--header",
        "Subject: to-remote-1",
      ],
      "alice-pw-1",
    );
    expect(r.output).toMatch(/250 2\.0\.0 Ok: queued as/);
    const got = await waitFor(
      () => remote.messages.find((m) => m.data.toString().includes("Subject: to-remote-1")),
      "remote delivery",
    );
    expect(got.from).toBe("alice@example.org");
    expect(got.to).toEqual(["friend@remote.test"]);
    expect(got.secure).toBe(true);
    expect(got.data.toString()).toMatch(/with ESMTPSA id /);
  });

  it("uses the domain's own address when it has no MX (implicit MX)", async () => {
    const r = await swaks([
      "--server",
      "127.0.0.1",
      "--port",
      String(smtp.relay),
      "--local-interface",
      "127.0.0.2",
      "--from",
      "lists@example.org",
      "--to",
      "member@amx.test",
      "--header",
      "Subject: to-amx",
    ]);
    expect(r.output).toMatch(/250 2\.0\.0 Ok: queued as/);
    const got = await waitFor(
      () => remote.messages.find((m) => m.data.toString().includes("Subject: to-amx")),
      "implicit MX",
    );
    expect(got.to).toEqual(["member@amx.test"]);
  });

  it("forwards mail for an account with a remote mailRoutingAddress", async () => {
    const r = await swaks([
      "--server",
      "127.0.0.1",
      "--port",
      String(smtp.mx),
      "--to",
      "carol@example.org",
      "--header",
      "Subject: fwd-carol",
    ]);
    expect(r.output).toMatch(/250 2\.0\.0 Ok: queued as/);
    const got = await waitFor(
      () => remote.messages.find((m) => m.data.toString().includes("Subject: fwd-carol")),
      "forward",
    );
    expect(got.to).toEqual(["carol@remote.test"]);
  });

  it("bounces mail for a domain that does not exist back to the local sender", async () => {
    const r = await swaks(
      [
        "--server",
        "127.0.0.1",
        "--port",
        String(smtp.submission),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "bob",
        "--from",
        "bob@example.org",
        "--to",
        "someone@nx.test",
        "--header",
        "Subject: to-nx",
      ],
      "bob-pw-2",
    );
    const id = r.output.match(/queued as (\S+)/)?.[1];
    expect(id).toBeDefined();
    const dsn = await waitFor(
      () => world.lmtp.messages.find((m) => m.from === "" && m.data.toString().includes(id ?? "?")),
      "DSN for nx.test",
    );
    expect(dsn.to).toEqual(["bob@example.org"]);
    expect(dsn.data.toString()).toContain("Final-Recipient: rfc822; someone@nx.test");
    expect(dsn.data.toString()).toContain("Status: 5.1.2");
  });
});
