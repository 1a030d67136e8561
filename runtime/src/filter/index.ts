/**
 * The filtering pipeline (DESIGN.md "mail flow"): smtp/ calls a transaction's
 * stage methods; each stage runs its checks, records their results, and
 * verdict.ts decides from all results so far and the policy.
 *
 *   connect  early-talker, rate, client-access, dnsbl
 *   helo     helo, helo-access
 *   mail     sender-access, spf
 *   rcpt     recipient-access (a refusal refuses that recipient only)
 *   data     mime-bomb, header-checks, mime-header-checks, body-checks (one MIME
 *            walk), then — unless those already refused — clamd, spamd and
 *            authenticate() (dkim, dmarc, arc) in parallel
 *
 * Trusted networks and authenticated users skip the checks aimed at
 * strangers (early-talker, rate, dnsbl, helo, client, helo and sender access
 * maps, spf, dkim/dmarc/arc, spamd); recipient and content maps, MIME limits
 * and the virus scan apply to every message.
 */
import { hostname as osHostname } from "node:os";
import {
  type AccessTable,
  CLIENT_CHECK,
  clientAccess,
  HELO_CHECK,
  heloAccess,
  loadAccessTable,
  recipientAccess,
  senderAccess,
} from "./access.js";
import { arc } from "./arc.js";
import { runAuth } from "./auth.js";
import { bodyChecks } from "./body-checks.js";
import { clamd } from "./clamd.js";
import {
  type FilterConfig,
  type FilterDeps,
  hostAddresses,
  isTrusted,
  result,
  type Session,
  type Shared,
} from "./context.js";
import { dkim } from "./dkim.js";
import { dmarc } from "./dmarc.js";
import { cachingResolver, createResolver } from "./dns.js";
import { dnsbl } from "./dnsbl.js";
import { earlyTalker } from "./early-talker.js";
import { headerChecks } from "./header-checks.js";
import { helo } from "./helo.js";
import { contentActionError } from "./map-action.js";
import { loadRegexpTable } from "./maps.js";
import { mimeBomb } from "./mime-bomb.js";
import { mimeHeaderChecks } from "./mime-header-checks.js";
import { walkMime } from "./mime-walk.js";
import { RateLimiter } from "./rate.js";
import type { RegexpTable } from "./regexp-table.js";
import { type SpamdResult, spamd } from "./spamd.js";
import { spf } from "./spf.js";
import type {
  CheckResult,
  CheckStage,
  ConnectionInfo,
  Envelope,
  FilterPipeline,
  FilterTransaction,
  Verdict,
} from "./types.js";
import { decide } from "./verdict.js";

export type { FilterConfig, FilterDeps } from "./context.js";
export type * from "./types.js";

/** A DNSBL answer is reused this long for the same client (onConnect replayed per mail transaction). */
export const DNSBL_CACHE_MS = 60_000;
const DNSBL_CACHE_MAX = 10_000;

export interface LoadedMaps {
  headerChecks?: RegexpTable;
  mimeHeaderChecks?: RegexpTable;
  nestedHeaderChecks?: RegexpTable;
  bodyChecks?: RegexpTable;
  senderAccess?: AccessTable;
  recipientAccess?: AccessTable;
  clientAccess?: AccessTable;
  heloAccess?: AccessTable;
}

/** Reads every configured map once; a bad map throws with file:line. */
export function loadMaps(config: FilterConfig): LoadedMaps {
  const maps: LoadedMaps = {};
  // Every rule's action is checked now: FILTER or a typo stops the start with file:line.
  const content = (spec: string) => loadRegexpTable(spec, contentActionError);
  if (config.headerChecks) maps.headerChecks = content(config.headerChecks);
  // Postfix defaults: mime_header_checks = nested_header_checks = $header_checks.
  const mime = config.mimeHeaderChecks ? content(config.mimeHeaderChecks) : maps.headerChecks;
  if (mime) maps.mimeHeaderChecks = mime;
  const nested = config.nestedHeaderChecks ? content(config.nestedHeaderChecks) : maps.headerChecks;
  if (nested) maps.nestedHeaderChecks = nested;
  if (config.bodyChecks) maps.bodyChecks = content(config.bodyChecks);
  if (config.senderAccess) maps.senderAccess = loadAccessTable(config.senderAccess);
  if (config.recipientAccess) maps.recipientAccess = loadAccessTable(config.recipientAccess);
  if (config.clientAccess) maps.clientAccess = loadAccessTable(config.clientAccess);
  if (config.heloAccess) maps.heloAccess = loadAccessTable(config.heloAccess);
  return maps;
}

export function createShared(config: FilterConfig, deps: FilterDeps): Shared {
  return {
    config,
    logger: deps.logger,
    hostname: deps.hostname ?? osHostname(),
    localDomains: new Set(deps.localDomains.map((d) => d.toLowerCase())),
    localAddresses: new Set((deps.localAddresses ?? hostAddresses()).map((a) => a.toLowerCase())),
    dns: createResolver({ servers: config.dnsServers, timeoutMs: config.dnsTimeoutMs }),
  };
}

export function createFilterPipeline(config: FilterConfig, deps: FilterDeps): FilterPipeline {
  const shared = createShared(config, deps);
  const maps = loadMaps(config);
  const rate = new RateLimiter(config.rate);
  const dnsblCache = new Map<string, { at: number; result: Promise<CheckResult> }>();
  deps.logger.info(
    {
      dnsbl: config.dnsbl.map((z) => z.zone),
      maps: {
        headerChecks: maps.headerChecks?.source,
        mimeHeaderChecks: maps.mimeHeaderChecks?.source,
        nestedHeaderChecks: maps.nestedHeaderChecks?.source,
        bodyChecks: maps.bodyChecks?.source,
        senderAccess: maps.senderAccess?.table.source,
        recipientAccess: maps.recipientAccess?.table.source,
        clientAccess: maps.clientAccess?.table.source,
        heloAccess: maps.heloAccess?.table.source,
      },
      spamd: config.spamd ? `${config.spamd.host}:${config.spamd.port}` : false,
      clamd: config.clamd ? `${config.clamd.host}:${config.clamd.port}` : false,
      onScannerFailure: config.onScannerFailure,
    },
    "filter pipeline ready",
  );

  const cachedDnsbl = (session: Session): Promise<CheckResult> => {
    const ip = session.conn?.remoteAddress ?? "";
    if (isTrusted(session) || session.conn?.submission) return dnsbl(shared, session);
    const now = Date.now();
    const hit = dnsblCache.get(ip);
    if (hit && now - hit.at < DNSBL_CACHE_MS) return hit.result;
    const p = dnsbl(shared, session);
    // Errors (timeouts) are not cached: the next connection asks again.
    p.then(
      (r) => {
        if (r.outcome === "error") dnsblCache.delete(ip);
      },
      () => dnsblCache.delete(ip),
    );
    if (dnsblCache.size >= DNSBL_CACHE_MAX) {
      for (const [k, v] of dnsblCache) if (now - v.at >= DNSBL_CACHE_MS) dnsblCache.delete(k);
      if (dnsblCache.size >= DNSBL_CACHE_MAX) dnsblCache.clear();
    }
    dnsblCache.set(ip, { at: now, result: p });
    return p;
  };

  return {
    transaction: () => new Transaction(shared, maps, rate, cachedDnsbl),
    close: async () => {
      dnsblCache.clear();
    },
  };
}

interface RejectedRecipient {
  address: string;
  code?: number;
  enhanced?: string;
  reason?: string;
  check: string;
}

class Transaction implements FilterTransaction {
  private readonly session: Session;
  /** Connect and HELO results: kept across reset(). */
  private connResults: CheckResult[] = [];
  private mailResults: CheckResult[] = [];
  private rejectedRecipients: RejectedRecipient[] = [];
  private last: Verdict | undefined;
  private stage: CheckStage | undefined;
  private slot = false;
  private closed = false;

  constructor(
    private readonly shared: Shared,
    private readonly maps: LoadedMaps,
    private readonly rate: RateLimiter,
    private readonly dnsblFor: (s: Session) => Promise<CheckResult>,
  ) {
    this.session = { recipients: [], dns: cachingResolver(shared.dns) };
  }

  private get results(): CheckResult[] {
    return [...this.connResults, ...this.mailResults];
  }

  private verdict(stage: CheckStage, extra: Partial<Parameters<typeof decide>[2]> = {}): Verdict {
    this.stage = stage;
    this.last = decide(this.shared.config, this.results, {
      stage,
      scored: !isTrusted(this.session),
      ...extra,
    });
    return this.last;
  }

  async onConnect(conn: ConnectionInfo): Promise<Verdict> {
    this.session.conn = { ...conn };
    if (conn.authenticatedUser) this.session.authenticatedUser = conn.authenticatedUser;
    this.connResults = [];
    const early = earlyTalker(this.shared, this.session);
    const admitted = this.rate.admit(this.session);
    this.slot = admitted.slot;
    this.connResults.push(early, admitted.result);
    const stranger = !isTrusted(this.session) && !conn.submission;
    const access =
      early.action || admitted.result.action
        ? result(CLIENT_CHECK, "connect", "skip", { detail: "connection already refused" })
        : stranger
          ? clientAccess(this.maps.clientAccess, conn.remoteAddress, conn.clientHostname)
          : result(CLIENT_CHECK, "connect", "skip", { detail: "trusted client" });
    this.connResults.push(access);
    if (early.action || admitted.result.action || access.action) {
      this.connResults.push(result("dnsbl", "connect", "skip", { detail: "connection already refused" }));
    } else {
      this.connResults.push(await this.dnsblFor(this.session));
    }
    return this.verdict("connect");
  }

  async onHelo(name: string): Promise<Verdict> {
    this.session.helo = name;
    this.connResults = this.connResults.filter((r) => r.stage !== "helo");
    this.connResults.push(helo(this.shared, this.session, name));
    this.connResults.push(
      isTrusted(this.session) || this.session.conn?.submission
        ? result(HELO_CHECK, "helo", "skip", { detail: "trusted client" })
        : heloAccess(this.maps.heloAccess, name),
    );
    return this.verdict("helo");
  }

  onAuth(user: string): void {
    this.session.authenticatedUser = user;
  }

  async onMailFrom(address: string): Promise<Verdict> {
    this.session.sender = address;
    const access = isTrusted(this.session)
      ? result("sender-access", "mail", "skip", { detail: "trusted client" })
      : senderAccess(this.maps.senderAccess, address);
    this.mailResults.push(access);
    this.mailResults.push(
      access.action
        ? result("spf", "mail", "skip", { detail: "sender already refused" })
        : await spf(this.shared, this.session, address),
    );
    return this.verdict("mail");
  }

  async onRcptTo(address: string): Promise<Verdict> {
    const r = recipientAccess(this.maps.recipientAccess, address);
    if (r.action) {
      // Refuses this recipient only; the message's verdict does not carry it.
      this.rejectedRecipients.push({
        address,
        check: r.check,
        ...(r.code !== undefined ? { code: r.code } : {}),
        ...(r.enhanced !== undefined ? { enhanced: r.enhanced } : {}),
        ...(r.reply !== undefined ? { reason: r.reply } : {}),
      });
      this.stage = "rcpt";
      this.last = decide(this.shared.config, [...this.results, r], { stage: "rcpt", scored: false });
      return this.last;
    }
    this.session.recipients.push(address);
    // Recorded when it says something (a map hit); plain passes and "no map" would repeat per recipient.
    if (r.outcome !== "skip" && (r.outcome !== "pass" || r.detail)) this.mailResults.push(r);
    return this.verdict("rcpt");
  }

  async onData(message: Buffer, envelope: Envelope): Promise<Verdict> {
    const c = this.shared.config;
    if (this.session.helo === undefined && envelope.helo) this.session.helo = envelope.helo;
    if (this.session.sender === undefined) this.session.sender = envelope.mailFrom;
    if (this.session.recipients.length === 0) this.session.recipients = [...envelope.rcptTo];
    const trusted = isTrusted(this.session);

    const started = performance.now();
    const headers = headerChecks(this.maps.headerChecks, this.maps.nestedHeaderChecks);
    const mimeHeaders = mimeHeaderChecks(this.maps.mimeHeaderChecks);
    const body = bodyChecks(this.maps.bodyChecks, c.bodyChecksSizeLimit);
    const walk = walkMime(message, c.mimeBomb, [headers.visitor, mimeHeaders.visitor, body.visitor]);
    const walkMs = Math.round(performance.now() - started);
    const local = [
      mimeBomb(walk, walkMs),
      this.maps.headerChecks || this.maps.nestedHeaderChecks
        ? headers.findings.result()
        : result("header-checks", "data", "skip", { detail: "no map configured" }),
      this.maps.mimeHeaderChecks
        ? mimeHeaders.findings.result()
        : result("mime-header-checks", "data", "skip", { detail: "no map configured" }),
      this.maps.bodyChecks
        ? body.findings.result()
        : result("body-checks", "data", "skip", { detail: "no map configured" }),
    ];
    this.mailResults.push(...local);

    const refused = local.find((r) => r.action);
    if (refused) {
      for (const name of ["clamd", "spamd", "dkim", "dmarc", "arc"]) {
        this.mailResults.push(result(name, "data", "skip", { detail: `refused by ${refused.check}` }));
      }
      return this.verdict("data");
    }

    const skipTrusted = (name: string): CheckResult =>
      result(name, "data", "skip", { detail: "trusted client" });
    const wantAuth = !trusted && (c.dkim.enabled || c.dmarc.enabled || c.arc.enabled);
    const [virus, spam, auth] = await Promise.all([
      clamd(c.clamd, message),
      trusted ? Promise.resolve<SpamdResult>(skipTrusted("spamd")) : spamd(c.spamd, message),
      wantAuth
        ? runAuth(this.shared, this.session, message, this.session.sender ?? "")
        : Promise.resolve(undefined),
    ]);
    this.mailResults.push(virus, spam);
    if (auth) {
      this.mailResults.push(dkim(this.shared, auth), dmarc(this.shared, auth), arc(this.shared, auth));
    } else {
      this.mailResults.push(skipTrusted("dkim"), skipTrusted("dmarc"), skipTrusted("arc"));
    }
    return this.verdict("data", {
      authHeaders: auth?.headers ?? [],
      symbols: spam.symbols ?? [],
    });
  }

  reset(): void {
    this.mailResults = [];
    this.rejectedRecipients = [];
    this.session.recipients = [];
    delete this.session.sender;
    this.session.dns = cachingResolver(this.shared.dns);
    this.last = undefined;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.slot && this.session.conn)
      this.rate.release(this.session.conn.remoteAddress, this.session.conn.remotePort);
  }

  record(): Record<string, unknown> {
    const s = this.session;
    const v = this.last;
    return {
      client: {
        ip: s.conn?.remoteAddress,
        port: s.conn?.remotePort,
        ...(s.conn?.clientHostname ? { hostname: s.conn.clientHostname } : {}),
      },
      ...(s.authenticatedUser ? { user: s.authenticatedUser } : {}),
      trusted: isTrusted(s),
      helo: s.helo,
      sender: s.sender,
      recipients: s.recipients,
      ...(this.rejectedRecipients.length > 0 ? { rejectedRecipients: this.rejectedRecipients } : {}),
      stage: this.stage,
      action: v?.action,
      ...(v?.code !== undefined ? { code: v.code, enhanced: v.enhanced } : {}),
      ...(v?.disposition ? { disposition: v.disposition } : {}),
      score: v?.score ?? 0,
      decidedBy: v?.decidedBy,
      checks: this.results.map((r) => ({
        check: r.check,
        stage: r.stage,
        outcome: r.outcome,
        ...(r.score !== undefined ? { score: r.score } : {}),
        ...(r.detail ? { detail: r.detail } : {}),
        ...(r.action ? { action: r.action } : {}),
        ...(r.ms !== undefined ? { ms: r.ms } : {}),
      })),
    };
  }
}
