/**
 * Access maps with Postfix's access(5) semantics: check_client_access,
 * check_helo_access, check_sender_access, check_recipient_access.
 *
 * Keys tried for a mail address (sender, recipient):
 *   user@domain     the address
 *   domain.tld      the domain, then its parent domains (Postfix's default
 *                   parent_domain_matches_subdomains includes smtpd_access_maps),
 *   .domain.tld     or a parent written with a leading dot
 *   user@           the local part, any domain
 *   <>              the null sender (smtpd_null_access_lookup_key)
 * For a host name (the client's verified name, the HELO name): the name, then
 * its parent domains as above. For the client's address: a.b.c.d, a.b.c, a.b,
 * a (IPv6: the compressed form, truncated at its last ":" each time).
 * check_client_access tries the name first, then the address.
 *
 * The first key found decides: OK / DUNNO stop the lookup without a finding;
 * REJECT, DEFER, 4NN/5NN text answer the command; HOLD, DISCARD, PREPEND,
 * WARN are recorded for the verdict; REDIRECT user@domain sends the message
 * to that address instead of its recipients (the last REDIRECT wins, as in
 * Postfix), BCC user@domain adds that recipient. A client or HELO map's
 * REDIRECT/BCC holds for every message of the connection. A regexp: map is
 * asked with the whole address or name. A REDIRECT or BCC without a usable
 * address stops the start with the map's file and line. Default replies
 * follow Postfix (access_map_reject_code 554, access_map_defer_code 450).
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { clean, result } from "./context.js";
import { isMailAddress, type MapAction, parseMapAction, prependHeader, replyOf } from "./map-action.js";
import { parseMapSpec, parseTextTable, type TextTable } from "./maps.js";
import { parseRegexpTable, type RegexpTable } from "./regexp-table.js";
import type { CheckResult, CheckStage } from "./types.js";

export const CLIENT_CHECK = "client-access";
export const HELO_CHECK = "helo-access";
export const SENDER_CHECK = "sender-access";
export const RECIPIENT_CHECK = "recipient-access";

export type AccessTable = { kind: "text"; table: TextTable } | { kind: "regexp"; table: RegexpTable };

/**
 * Why an access map's result cannot be applied, or undefined. Checked for
 * every entry when the map is loaded: a REDIRECT or BCC needs user@domain (a
 * regexp map's `$n` is checked again after substitution, at lookup).
 */
export function accessActionError(text: string): string | undefined {
  const a = parseMapAction(text);
  if (a.kind !== "redirect" && a.kind !== "bcc") return undefined;
  const verb = a.kind.toUpperCase();
  if (a.address === "") return `${verb} needs an argument: user@domain (access(5))`;
  if (!a.address.includes("$") && !isMailAddress(a.address)) {
    return `${verb} needs user@domain (access(5)), got "${clean(a.address, 80)}"`;
  }
  return undefined;
}

export function loadAccessTable(spec: string): AccessTable {
  const s = parseMapSpec(spec, "text");
  const text = readFileSync(s.path, "utf8");
  return s.type === "text"
    ? { kind: "text", table: parseTextTable(text, s.path, accessActionError) }
    : {
        kind: "regexp",
        table: parseRegexpTable(text, s.path, { dialect: s.type, validate: accessActionError }),
      };
}

/** The keys access(5) tries for an address, in order. */
export function accessKeys(address: string): string[] {
  const a = address.replace(/^<|>$/g, "").toLowerCase();
  if (a === "") return ["<>"];
  const at = a.lastIndexOf("@");
  if (at < 0) return [a];
  const local = a.slice(0, at);
  return [a, ...domainKeys(a.slice(at + 1)), `${local}@`];
}

/** A host or mail domain name, then its parents (bare and with a leading dot). */
export function domainKeys(name: string): string[] {
  const labels = name.toLowerCase().replace(/\.$/, "").split(".");
  const keys: string[] = [];
  for (let i = 0; i < labels.length; i++) {
    const parent = labels.slice(i).join(".");
    if (parent === "") continue;
    keys.push(parent);
    if (i > 0) keys.push(`.${parent}`);
  }
  return keys;
}

/** An IP address, then its network prefixes (IPv4 octets, IPv6 ":" groups of the compressed form). */
export function addressKeys(ip: string): string[] {
  const sep = isIP(ip) === 6 ? ":" : ".";
  const keys: string[] = [];
  for (let k = ip.toLowerCase(); k !== ""; k = k.slice(0, Math.max(0, k.lastIndexOf(sep)))) {
    keys.push(k);
    if (!k.includes(sep)) break;
  }
  return keys;
}

/** check_client_access: the client's name (when known), then its address. */
export function clientKeys(ip: string, hostname?: string): string[] {
  return [...(hostname ? domainKeys(hostname) : []), ...addressKeys(ip)];
}

/** check_helo_access: the HELO name and its parents; an address literal as written, then as an address. */
export function heloKeys(helo: string): string[] {
  const name = helo.trim().toLowerCase();
  const literal = /^\[(?:ipv6:)?([0-9a-f:.]+)\]$/.exec(name);
  if (literal) return [name, ...(isIP(literal[1]!) ? addressKeys(literal[1]!) : [])];
  return domainKeys(name);
}

interface Hit {
  action: MapAction;
  key: string;
  line: number;
}

/** The first entry found for `keys` (text maps), or for the whole `inputs` in turn (regexp maps). */
function lookup(table: AccessTable, keys: string[], inputs: string[]): Hit | undefined {
  if (table.kind === "regexp") {
    for (const input of inputs) {
      const hit = table.table.lookup(input);
      if (hit) return { action: parseMapAction(hit.result), key: input, line: hit.line };
    }
    return undefined;
  }
  for (const key of keys) {
    const hit = table.table.get(key);
    if (hit) return { action: parseMapAction(hit.result), key, line: hit.line };
  }
  return undefined;
}

export function lookupAccess(table: AccessTable, address: string): Hit | undefined {
  const a = address.replace(/^<|>$/g, "");
  return lookup(table, accessKeys(address), [a === "" ? "<>" : a]);
}

interface Subject {
  /** For the reply: "<what>: <label> rejected: text". */
  what: string;
  label: "Client host" | "Helo command" | "Sender address" | "Recipient address";
  keys: string[];
  inputs: string[];
}

function check(
  name: string,
  stage: CheckStage,
  table: AccessTable | undefined,
  subject: Subject,
): CheckResult {
  if (!table) return result(name, stage, "skip", { detail: "no map configured" });
  const hit = lookup(table, subject.keys, subject.inputs);
  if (!hit) return result(name, stage, "pass");
  const where = `${table.table.source}:${hit.line} ${hit.key}`;
  const a = hit.action;
  switch (a.kind) {
    case "ok":
    case "dunno":
      return result(name, stage, "pass", { detail: `${a.kind.toUpperCase()} (${where})` });
    case "reject":
    case "defer": {
      const r = replyOf(a, {
        ...(a.kind === "reject" ? { code: 554, enhanced: "5.7.1" } : { code: 450, enhanced: "4.7.1" }),
        text: "Access denied",
      });
      return result(name, stage, "fail", {
        detail: where,
        action: a.kind === "reject" ? "reject" : "tempfail",
        code: r.code,
        enhanced: r.enhanced,
        reply: `<${subject.what}>: ${subject.label} rejected: ${r.text}`,
      });
    }
    case "discard":
    case "hold":
      return result(name, stage, "fail", {
        detail: `${a.kind.toUpperCase()} ${a.text} (${where})`,
        disposition: a.kind,
      });
    case "prepend": {
      const h = prependHeader(a.header);
      return h
        ? result(name, stage, "pass", { detail: `PREPEND (${where})`, prepend: [h] })
        : result(name, stage, "error", { detail: `PREPEND without a header (${where})` });
    }
    case "warn":
    case "info":
      return result(name, stage, "pass", { detail: `${a.kind.toUpperCase()} ${a.text} (${where})` });
    case "ignore":
      return result(name, stage, "pass", { detail: `IGNORE (${where})` });
    case "redirect":
    case "bcc": {
      const verb = a.kind.toUpperCase();
      // A regexp map's $n may have made it something else: recorded, not used.
      if (!isMailAddress(a.address)) {
        return result(name, stage, "error", {
          detail: `${verb} to a non-address "${clean(a.address, 80)}" (${where})`,
        });
      }
      return result(name, stage, "pass", {
        detail: `${verb} ${a.address} (${where})`,
        ...(a.kind === "redirect" ? { redirect: a.address } : { bcc: [a.address.toLowerCase()] }),
      });
    }
    case "replace":
    case "strip":
      return result(name, stage, "error", {
        detail: `${a.kind.toUpperCase()} is not supported in access maps (${where})`,
      });
    case "unsupported":
      return result(name, stage, "error", { detail: `${a.verb} is not supported (${where})` });
  }
}

export function clientAccess(table: AccessTable | undefined, ip: string, hostname?: string): CheckResult {
  return check(CLIENT_CHECK, "connect", table, {
    what: `${hostname ?? "unknown"}[${ip}]`,
    label: "Client host",
    keys: clientKeys(ip, hostname),
    inputs: [...(hostname ? [hostname] : []), ip],
  });
}

export function heloAccess(table: AccessTable | undefined, helo: string): CheckResult {
  return check(HELO_CHECK, "helo", table, {
    what: clean(helo, 100),
    label: "Helo command",
    keys: heloKeys(helo),
    inputs: [helo],
  });
}

function addressSubject(address: string, label: "Sender address" | "Recipient address"): Subject {
  const a = address.replace(/^<|>$/g, "");
  return { what: address, label, keys: accessKeys(address), inputs: [a === "" ? "<>" : a] };
}

export function senderAccess(table: AccessTable | undefined, sender: string): CheckResult {
  return check(SENDER_CHECK, "mail", table, addressSubject(sender, "Sender address"));
}

export function recipientAccess(table: AccessTable | undefined, address: string): CheckResult {
  return check(RECIPIENT_CHECK, "rcpt", table, addressSubject(address, "Recipient address"));
}
