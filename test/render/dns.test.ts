import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type DnsZoneParams, renderDnsZone } from "../../components/render/index.js";
import { removeTempDirs, snapshotPath, tempDir } from "./fixtures.js";

afterAll(removeTempDirs);

const zone: DnsZoneParams = {
  zone: "example.org",
  mailDomains: ["example.org", "students.example.org"],
  mx: [
    { name: "mx1", address: "198.18.0.11" },
    { name: "mx2", address: "198.18.0.12" },
  ],
  relays: ["198.18.0.13", "198.18.0.14"],
  storeVip: "198.18.0.20",
  webmail: ["198.18.0.31", "198.18.0.32"],
  ttl: 300,
};

/** Records as [owner, type, data…] (RFC 1035 §5.1 master file lines). */
function records(text: string): string[][] {
  return text
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith(";") && !l.startsWith("$"))
    .map((l) => l.trim().split(/\s+/));
}

describe("DNS zone fragment", () => {
  it("matches the snapshot", async () => {
    await expect(renderDnsZone(zone)).toMatchFileSnapshot(snapshotPath("zone.example.org"));
  });

  it("has equal-preference MX for each domain and round-robin A records", () => {
    const text = renderDnsZone(zone);
    expect(text).toMatch(/^\$TTL 300$/m);
    const rr = records(text);
    expect(rr.every((r) => r[1] === "IN")).toBe(true);
    const mx = rr.filter((r) => r[2] === "MX");
    expect(mx.map((r) => r.join(" "))).toEqual([
      "example.org. IN MX 10 mx1.example.org.",
      "example.org. IN MX 10 mx2.example.org.",
      "students.example.org. IN MX 10 mx1.example.org.",
      "students.example.org. IN MX 10 mx2.example.org.",
    ]);
    const a = (name: string) => rr.filter((r) => r[2] === "A" && r[0] === name).map((r) => r[3]);
    expect(a("mx1.example.org.")).toEqual(["198.18.0.11"]);
    expect(a("mail.example.org.")).toEqual(["198.18.0.13", "198.18.0.14"]);
    expect(a("imap.example.org.")).toEqual(["198.18.0.20"]);
    expect(a("pop.example.org.")).toEqual(["198.18.0.20"]);
    expect(a("webmail.example.org.")).toEqual(["198.18.0.31", "198.18.0.32"]);
    // Every MX target has an A record (RFC 5321 §5.1: MX must not point at a CNAME or nothing).
    for (const r of mx) expect(a(r[4]!)).toHaveLength(1);
  });

  it("loads as a zone in BIND's named-checkzone (with an SOA and NS added, as the parent zone has)", () => {
    const dir = tempDir("zone");
    const file = join(dir, "example.org.zone");
    const head = [
      "@ IN SOA ns1.example.org. hostmaster.example.org. 1 3600 600 604800 300",
      "@ IN NS ns1.example.org.",
      "ns1 IN A 198.18.0.53",
    ].join("\n");
    writeFileSync(
      file,
      `$ORIGIN example.org.\n${renderDnsZone(zone).replace(/^(\$TTL \d+)$/m, `$1\n${head}`)}`,
    );
    const r = spawnSync(
      "named-checkzone",
      ["-k", "fail", "-m", "fail", "-M", "fail", "-n", "fail", "example.org", file],
      {
        encoding: "utf8",
      },
    );
    expect(r.stdout).toContain("OK");
    expect(r.status).toBe(0);
    // Same check, same zone, one broken record: named-checkzone refuses it (the check can fail).
    writeFileSync(file, readFileSync(file, "utf8").replace("IN A 198.18.0.11", "IN A 198.18.0.311"));
    expect(spawnSync("named-checkzone", ["example.org", file]).status).not.toBe(0);
  });

  it("honours absolute names and custom record names", () => {
    const rr = records(
      renderDnsZone({
        ...zone,
        mx: [{ name: "in.mail.example.net.", address: "198.18.0.11" }],
        names: { relay: "smtp" },
      }),
    );
    expect(rr).toContainEqual(["example.org.", "IN", "MX", "10", "in.mail.example.net."]);
    expect(rr).toContainEqual(["smtp.example.org.", "IN", "A", "198.18.0.13"]);
  });

  it.each([
    [{ zone: "localhost" }, "zone: not a domain name"],
    [{ mx: [] }, "mx: at least one MX host"],
    [{ mx: [{ name: "mx 1", address: "198.18.0.11" }] }, "mx[0].name: not a host name"],
    [{ relays: ["198.18.0.256"] }, "relays[0]: expected an IPv4 address"],
    [{ storeVip: "vip" }, "storeVip: expected an IPv4 address"],
    [{ webmail: ["198.18.0.31", "198.18.0.31"] }, "records: duplicate A record"],
    [{ ttl: -1 }, "ttl: out of range"],
    [{ mxPreference: 70000 }, "mxPreference: expected 0-65535"],
  ])("rejects %j", (patch, message) => {
    expect(() => renderDnsZone({ ...zone, ...patch } as DnsZoneParams)).toThrow(message);
  });
});
