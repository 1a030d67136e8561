/**
 * One mailauth authenticate() call per message verifies DKIM (RFC 6376), SPF
 * (RFC 7208, answered from the transaction's DNS cache after MAIL FROM),
 * ARC (RFC 8617) and DMARC (RFC 7489), with our resolver and authserv-id;
 * dkim.ts, dmarc.ts and arc.ts each read their part. Its
 * Authentication-Results (RFC 8601) and Received-SPF headers go on the
 * message so Sieve and the user can see them.
 */
import { type AuthenticateResult, authenticate } from "mailauth";
import type { Session, Shared } from "./context.js";

export interface AuthOutcome {
  result?: AuthenticateResult;
  /** The whole call failed (never expected: mailauth reports DNS trouble as temperror). */
  error?: string;
  headers: Array<[string, string]>;
  ms: number;
}

/** Splits "Name: value\r\n folded\r\nName2: …" into header pairs. */
export function splitHeaders(block: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const h of block.split(/\r?\n(?![ \t])/)) {
    const i = h.indexOf(":");
    if (i > 0) out.push([h.slice(0, i), h.slice(i + 1).replace(/^ /, "")]);
  }
  return out;
}

export async function runAuth(
  shared: Shared,
  session: Session,
  message: Buffer,
  sender: string,
): Promise<AuthOutcome> {
  const started = performance.now();
  const c = shared.config;
  try {
    const ip = session.conn?.remoteAddress;
    const result = await authenticate(message, {
      ...(ip ? { ip } : {}),
      ...(session.helo ? { helo: session.helo } : {}),
      sender,
      mta: c.authservId ?? shared.hostname,
      resolver: session.dns,
      disableArc: !c.arc.enabled,
      disableDmarc: !c.dmarc.enabled,
      disableBimi: true,
    });
    return {
      result,
      headers: splitHeaders(result.headers.trimEnd()),
      ms: Math.round(performance.now() - started),
    };
  } catch (err) {
    return { error: (err as Error).message, headers: [], ms: Math.round(performance.now() - started) };
  }
}
