/**
 * DNS blocklists (RFC 5782): the client's address, reversed, is looked up as
 * an A record under each configured zone. IPv4 is reversed by octet
 * (§2.1: 192.0.2.99 → 99.2.0.192.zone), IPv6 by nibble (§2.4: 32 hex digits,
 * least significant first). An answer in 127.0.0.0/8 is a listing (§2.3);
 * 127.255.255.0/24 is what large lists answer to refused or malformed queries
 * (Spamhaus' 127.255.255.252–255), so it counts as an error, not a listing.
 * NXDOMAIN means not listed; a timeout is an error result, never a reject.
 *
 * Each listing adds its zone's weight; when the sum reaches
 * `dnsblRejectScore` the client gets 554 5.7.1 naming the zone(s), as Postfix's
 * reject_rbl_client does. Lower sums go on into the message's score.
 */
import { isIPv4, isIPv6 } from "node:net";
import { clean, isTrusted, result, type Session, type Shared } from "./context.js";
import { isNotFound } from "./dns.js";
import type { CheckResult } from "./types.js";

export const CHECK = "dnsbl";

/** The query name's prefix for `ip` (no zone), or undefined for something that is not an address. */
export function reverseName(ip: string): string | undefined {
  if (isIPv4(ip)) return ip.split(".").reverse().join(".");
  if (!isIPv6(ip)) return undefined;
  const hex = expandIPv6(ip);
  // An IPv4-mapped address (::ffff:a.b.c.d, RFC 4291 §2.5.5.2) is the IPv4 client.
  if (hex.startsWith("00000000000000000000ffff")) {
    const v4 = [24, 26, 28, 30].map((i) => Number.parseInt(hex.slice(i, i + 2), 16));
    return v4.reverse().join(".");
  }
  return hex.split("").reverse().join(".");
}

/** 32 lower-case hex digits of an IPv6 address (RFC 4291 §2.2 forms, with an IPv4 tail too). */
export function expandIPv6(addr: string): string {
  let a = addr.toLowerCase().replace(/%.*$/, "");
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (v4) {
    const [b0, b1, b2, b3] = v4.slice(1).map(Number) as [number, number, number, number];
    a = `${a.slice(0, v4.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head = "", tail] = a.split("::");
  const h = head === "" ? [] : head.split(":");
  const t = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return groups.map((g) => g.padStart(4, "0")).join("");
}

type ZoneAnswer =
  | { zone: string; weight: number; listed: true; answers: string[]; txt?: string }
  | { zone: string; weight: number; listed: false }
  | { zone: string; weight: number; error: string };

async function queryZone(
  shared: Shared,
  name: string,
  zone: { zone: string; weight: number; answers?: string[] | undefined },
): Promise<ZoneAnswer> {
  const base = { zone: zone.zone, weight: zone.weight };
  const qname = `${name}.${zone.zone}`;
  let answers: string[];
  try {
    answers = (await shared.dns(qname, "A")) as string[];
  } catch (err) {
    if (isNotFound(err)) return { ...base, listed: false };
    return { ...base, error: `${(err as { code?: string }).code ?? "error"} ${zone.zone}` };
  }
  const refused = answers.filter((a) => a.startsWith("127.255.255."));
  if (refused.length > 0) return { ...base, error: `${zone.zone} refused the query (${refused.join(",")})` };
  let listings = answers.filter((a) => a.startsWith("127."));
  if (zone.answers) listings = listings.filter((a) => zone.answers!.includes(a));
  if (listings.length === 0) return { ...base, listed: false };
  let txt: string | undefined;
  try {
    const records = (await shared.dns(qname, "TXT")) as string[][];
    txt = records.map((r) => r.join("")).join(" ");
  } catch {
    // The reason text is optional (RFC 5782 §2.1).
  }
  return txt
    ? { ...base, listed: true, answers: listings, txt }
    : { ...base, listed: true, answers: listings };
}

export async function dnsbl(shared: Shared, session: Session): Promise<CheckResult> {
  const zones = shared.config.dnsbl;
  const ip = session.conn?.remoteAddress ?? "";
  if (zones.length === 0) return result(CHECK, "connect", "skip", { detail: "no zones configured" });
  if (isTrusted(session) || session.conn?.submission) {
    return result(CHECK, "connect", "skip", { detail: "trusted client" });
  }
  const name = reverseName(ip);
  if (name === undefined)
    return result(CHECK, "connect", "error", { detail: `not an IP address: ${clean(ip)}` });
  const started = performance.now();
  const answers = await Promise.all(zones.map((z) => queryZone(shared, name, z)));
  const ms = Math.round(performance.now() - started);
  const listed = answers.filter((a): a is Extract<ZoneAnswer, { listed: true }> => "listed" in a && a.listed);
  const errors = answers.filter((a): a is Extract<ZoneAnswer, { error: string }> => "error" in a);
  const errorText = errors.map((e) => e.error).join("; ");
  if (listed.length === 0) {
    return errors.length > 0
      ? result(CHECK, "connect", "error", { detail: errorText, ms })
      : result(CHECK, "connect", "pass", { ms });
  }
  const score = listed.reduce((s, l) => s + l.weight, 0);
  const detail =
    listed.map((l) => `listed in ${l.zone} (${l.answers.join(",")})`).join("; ") +
    (errors.length > 0 ? `; ${errorText}` : "");
  if (score < shared.config.dnsblRejectScore) return result(CHECK, "connect", "fail", { score, detail, ms });
  const first = listed[0]!;
  const why = first.txt ? `; ${clean(first.txt, 150)}` : "";
  return result(CHECK, "connect", "fail", {
    score,
    detail,
    ms,
    action: "reject",
    code: 554,
    enhanced: "5.7.1",
    reply: `Service unavailable; Client host [${ip}] blocked using ${listed.map((l) => l.zone).join(", ")}${why}`,
  });
}
