/**
 * Sender and recipient access maps with Postfix's access(5) semantics
 * (check_sender_access, check_recipient_access):
 *
 *   user@domain     the address
 *   domain.tld      the domain, then its parent domains (Postfix's default
 *                   parent_domain_matches_subdomains includes smtpd_access_maps),
 *   .domain.tld     or a parent written with a leading dot
 *   user@           the local part, any domain
 *   <>              the null sender (smtpd_null_access_lookup_key)
 *
 * The first key found decides: OK / DUNNO stop the lookup without a finding;
 * REJECT, DEFER, 4NN/5NN text answer the command; HOLD, DISCARD, PREPEND,
 * WARN are recorded for the verdict. A regexp: map is asked with the whole
 * address. Default replies follow Postfix (access_map_reject_code 554,
 * access_map_defer_code 450).
 */
import { readFileSync } from "node:fs";
import { result } from "./context.js";
import { type MapAction, parseMapAction, prependHeader, replyOf } from "./map-action.js";
import { parseMapSpec, parseTextTable, type TextTable } from "./maps.js";
import { parseRegexpTable, type RegexpTable } from "./regexp-table.js";
import type { CheckResult, CheckStage } from "./types.js";

export const SENDER_CHECK = "sender-access";
export const RECIPIENT_CHECK = "recipient-access";

export type AccessTable = { kind: "text"; table: TextTable } | { kind: "regexp"; table: RegexpTable };

export function loadAccessTable(spec: string): AccessTable {
  const s = parseMapSpec(spec, "text");
  const text = readFileSync(s.path, "utf8");
  return s.type === "regexp"
    ? { kind: "regexp", table: parseRegexpTable(text, s.path) }
    : { kind: "text", table: parseTextTable(text, s.path) };
}

/** The keys access(5) tries for an address, in order. */
export function accessKeys(address: string): string[] {
  const a = address.replace(/^<|>$/g, "").toLowerCase();
  if (a === "") return ["<>"];
  const at = a.lastIndexOf("@");
  if (at < 0) return [a];
  const local = a.slice(0, at);
  const domain = a.slice(at + 1);
  const keys = [a];
  const labels = domain.split(".");
  for (let i = 0; i < labels.length; i++) {
    const parent = labels.slice(i).join(".");
    keys.push(parent);
    if (i > 0) keys.push(`.${parent}`);
  }
  keys.push(`${local}@`);
  return keys;
}

export function lookupAccess(
  table: AccessTable,
  address: string,
): { action: MapAction; key: string; line: number } | undefined {
  if (table.kind === "regexp") {
    const a = address.replace(/^<|>$/g, "");
    const hit = table.table.lookup(a === "" ? "<>" : a);
    return hit ? { action: parseMapAction(hit.result), key: a, line: hit.line } : undefined;
  }
  for (const key of accessKeys(address)) {
    const hit = table.table.get(key);
    if (hit) return { action: parseMapAction(hit.result), key, line: hit.line };
  }
  return undefined;
}

function check(
  name: string,
  stage: CheckStage,
  what: "Sender" | "Recipient",
  table: AccessTable | undefined,
  address: string,
): CheckResult {
  if (!table) return result(name, stage, "skip", { detail: "no map configured" });
  const hit = lookupAccess(table, address);
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
        reply: `<${address}>: ${what} address rejected: ${r.text}`,
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
    case "replace":
    case "strip":
    case "redirect":
    case "bcc":
      return result(name, stage, "error", {
        detail: `${a.kind.toUpperCase()} is not supported in access maps (${where})`,
      });
    case "unsupported":
      return result(name, stage, "error", { detail: `${a.verb} is not supported (${where})` });
  }
}

export function senderAccess(table: AccessTable | undefined, sender: string): CheckResult {
  return check(SENDER_CHECK, "mail", "Sender", table, sender);
}

export function recipientAccess(table: AccessTable | undefined, address: string): CheckResult {
  return check(RECIPIENT_CHECK, "rcpt", "Recipient", table, address);
}
