/**
 * The Directory over LDAP (ldapts). Servers from `ldap.uris` are tried in
 * order — provider first, or replica first where the role prefers — each with
 * a connect and an operation timeout; a server that fails is held down for a
 * few seconds so that lookups do not wait a timeout on it each time, and is
 * still tried as a last resort. Lookups share one bound service connection per
 * server; authentication binds as the user's DN on a connection of its own.
 * When no server answers, DirectoryUnavailableError: callers answer 4xx
 * (451 4.4.3, NO [UNAVAILABLE]), never "unknown user".
 *
 * With `ldap.tls`, every connection is TLS before the first bind (RFC 4513 §3:
 * StartTLS on ldap://, or ldaps://), the server's certificate checked against
 * `tls.ca` and the URI's host name (RFC 4513 §3.1.3). A failed check is an
 * LdapTlsError naming the server; nothing is ever retried in clear.
 */
import { readFileSync } from "node:fs";
import { isIP, Socket, connect as tcpConnect } from "node:net";
import type { ConnectionOptions } from "node:tls";
import { Client, InvalidCredentialsError, ResultCodeError, SizeLimitExceededError } from "ldapts";
import type { Logger } from "pino";
import type { Counter, Registry } from "prom-client";
import { Counter as PromCounter } from "prom-client";
import type { LdapConfig } from "../config/schema.js";
import { LookupCache } from "./cache.js";
import { addressFilter, uidFilter } from "./filter.js";
import { type Account, type Directory, DirectoryUnavailableError } from "./types.js";

/** A server that failed is skipped (but kept as a last resort) this long. */
export const SERVER_HOLD_DOWN_MS = 10_000;
/** Longest address looked up (RFC 5321 §4.5.3.1.3: a path is at most 256 octets). */
export const MAX_ADDRESS_LENGTH = 256;
/** Longest login looked up. */
export const MAX_LOGIN_LENGTH = 256;
/** Longest password sent in a bind. */
export const MAX_PASSWORD_LENGTH = 1024;

/** RFC 4511 §4.1.9 result codes that mean "this server cannot serve now": busy, unavailable, other. */
const SERVER_TROUBLE_CODES = new Set([51, 52, 80]);

const ATTRIBUTES = [
  "uid",
  "mail",
  "mailLocalAddress",
  "mailRoutingAddress",
  "mailHost",
  "displayName",
  "cn",
] as const;

export interface LdapDirectoryOptions {
  logger?: Logger;
  metrics?: Registry;
  /** Clock for the cache (tests). */
  now?: () => number;
  /** Defaults to SERVER_HOLD_DOWN_MS. */
  holdDownMs?: number;
}

/** Node's codes for a certificate that does not verify (tls.TLSSocket#authorizationError, checkServerIdentity). */
const CERTIFICATE_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ALTNAME|ISSUER|EXPIRED|NOT_YET_VALID/;

/** The server's certificate (or the TLS handshake) failed: the message names the server and the CA used. */
export class LdapTlsError extends Error {
  constructor(
    readonly server: string,
    caFile: string | undefined,
    cause: unknown,
  ) {
    const code = (cause as { code?: unknown })?.code;
    const what =
      typeof code === "string" && CERTIFICATE_ERROR.test(code)
        ? `certificate not verified against ${caFile ?? "the system's CAs"}`
        : cause instanceof ResultCodeError
          ? "StartTLS refused"
          : "TLS handshake failed";
    super(
      `LDAP server ${server}: ${what}: ${errorText(cause)}${typeof code === "string" ? ` (${code})` : ""}`,
      {
        cause,
      },
    );
    this.name = "LdapTlsError";
  }
}

interface ServerTls {
  startTls: boolean;
  ca: Buffer | undefined;
  caFile: string | undefined;
}

/** Bound service connection to one server, re-established after any error. */
class LdapServer {
  downUntil = 0;
  #bound: Promise<Client> | undefined;
  readonly #host: string;

  constructor(
    readonly uri: string,
    private readonly clientOptions: () => ConstructorParameters<typeof Client>[0],
    private readonly bindDn: string,
    private readonly bindPassword: string,
    private readonly tls: ServerTls | undefined,
  ) {
    this.#host = new URL(uri).hostname.replace(/^\[|\]$/g, "");
  }

  /**
   * A connected client, TLS already up when `ldap.tls` is set. A StartTLS
   * client may open ONE socket: ldapts reconnects a dropped connection by
   * itself, and that new socket would carry the next request in clear, so it is
   * refused instead (the caller opens a new client, StartTLS first).
   */
  async newClient(): Promise<Client> {
    const options = this.clientOptions();
    const upgrade = this.tls?.startTls === true && this.uri.startsWith("ldap://");
    let opened = false;
    const client = new Client(
      upgrade
        ? {
            ...options,
            // ldapts calls it as net.connect(port, host).
            createConnection: ((port: number, host: string) => {
              if (!opened) {
                opened = true;
                return tcpConnect(port, host);
              }
              // Destroyed now (not "open" to ldapts), the error reaches its listener on the next tick.
              const refused = new Socket();
              refused.destroy(new Error(`${this.uri}: connection lost; not reconnecting without StartTLS`));
              return refused;
            }) as typeof tcpConnect,
          }
        : options,
    );
    if (upgrade)
      try {
        await client.startTLS(this.#tlsOptions());
        // ldapts (8.2) watches only the pre-StartTLS socket for "close": without this a
        // connection the server closed would still count as connected (isConnected), and
        // requests on it would wait for the timeout instead of failing over at once.
        const internal = client as unknown as {
          socket?: NodeJS.EventEmitter;
          _destroySocket?: (socket: unknown) => void;
        };
        const secure = internal.socket;
        secure?.once("close", () => internal._destroySocket?.(secure));
      } catch (err) {
        await client.unbind().catch(() => {});
        throw new LdapTlsError(this.uri, this.tls?.caFile, err);
      }
    return client;
  }

  #tlsOptions(): ConnectionOptions {
    return {
      // The name checked against the certificate (RFC 4513 §3.1.3); SNI only for DNS names (RFC 6066 §3).
      host: this.#host,
      ...(isIP(this.#host) === 0 ? { servername: this.#host } : {}),
      ...(this.tls?.ca ? { ca: this.tls.ca } : {}),
      rejectUnauthorized: true,
    };
  }

  /** For ldaps:// URIs: the options ldapts passes to tls.connect. */
  secureOptions(): ConnectionOptions | undefined {
    return this.tls ? this.#tlsOptions() : undefined;
  }

  /** The shared service connection, bound; concurrent callers share one connect+bind. */
  async service(): Promise<Client> {
    const current = this.#bound;
    if (current) {
      const client = await current;
      if (client.isConnected && client.isBound) return client;
      // Another caller may already have replaced the dead connection: use theirs.
      if (this.#bound !== current) return this.service();
      this.reset();
    }
    const bound = this.newClient().then(async (client) => {
      try {
        await client.bind(this.bindDn, this.bindPassword);
        return client;
      } catch (err) {
        void client.unbind().catch(() => {});
        throw err;
      }
    });
    bound.catch(() => {
      if (this.#bound === bound) this.#bound = undefined;
    });
    this.#bound = bound;
    return bound;
  }

  /** Drop the service connection; the next lookup opens a new one. */
  reset(): void {
    const bound = this.#bound;
    this.#bound = undefined;
    bound?.then(
      (c) => c.unbind().catch(() => {}),
      () => {},
    );
  }
}

function first(value: unknown): string | undefined {
  if (Array.isArray(value)) return value.length > 0 ? String(value[0]) : undefined;
  if (value === undefined || value === null) return undefined;
  return String(value);
}

function all(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String);
  if (value === undefined || value === null) return [];
  return [String(value)];
}

/** Attribute names come back as the schema spells them; match case-insensitively. */
function attr(entry: Record<string, unknown>, name: string): unknown {
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(entry)) if (k.toLowerCase() === lower) return v;
  return undefined;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message.split("\n")[0]! : String(err);
}

export class LdapDirectory implements Directory {
  readonly #servers: LdapServer[];
  readonly #config: LdapConfig;
  readonly #cache: LookupCache<Account>;
  readonly #inflight = new Map<string, Promise<Account | null>>();
  readonly #logger: Logger | undefined;
  readonly #holdDownMs: number;
  readonly #tlsCaFile: string | undefined;
  readonly #requests: Counter<"op" | "result"> | undefined;
  readonly #serverFailures: Counter<"server"> | undefined;
  #closed = false;

  constructor(config: LdapConfig, options: LdapDirectoryOptions = {}) {
    this.#config = config;
    this.#logger = options.logger?.child({ component: "directory" });
    this.#holdDownMs = options.holdDownMs ?? SERVER_HOLD_DOWN_MS;
    this.#cache = new LookupCache<Account>({
      ttlMs: config.cacheTtlSeconds * 1000,
      ...(options.now ? { now: options.now } : {}),
    });
    const bindPassword = readFileSync(config.bindPasswordFile, "utf8").replace(/\r?\n$/, "");
    const caFile = config.tls?.ca ?? config.caFile;
    const ca = caFile ? readFileSync(caFile) : undefined;
    const tls: ServerTls | undefined = config.tls ? { startTls: config.tls.startTls, ca, caFile } : undefined;
    this.#tlsCaFile = caFile;
    this.#servers = config.uris.map((uri) => {
      const server: LdapServer = new LdapServer(
        uri,
        () => {
          const secure = server.secureOptions();
          return {
            url: uri,
            connectTimeout: config.timeoutMs,
            timeout: config.timeoutMs,
            // After a transparent reconnect, replay the service bind: an anonymous
            // connection would see no entries and turn every lookup into "unknown user".
            // (ldapts never replays a bind made after StartTLS; newClient refuses the reconnect.)
            autoRebind: true,
            // Only for ldaps://: ldapts given tlsOptions on an ldap:// URI breaks a later StartTLS.
            ...(uri.startsWith("ldaps://") ? { tlsOptions: secure ?? (ca ? { ca } : {}) } : {}),
          };
        },
        config.bindDn,
        bindPassword,
        tls,
      );
      return server;
    });
    if (options.metrics) {
      const registry = options.metrics;
      // A second directory on one registry (tests, tools) shares the counters.
      this.#requests =
        (registry.getSingleMetric("mailinfra_directory_requests_total") as Counter<"op" | "result">) ??
        new PromCounter({
          name: "mailinfra_directory_requests_total",
          help: "Directory lookups and authentications by result",
          labelNames: ["op", "result"] as const,
          registers: [registry],
        });
      this.#serverFailures =
        (registry.getSingleMetric("mailinfra_directory_server_failures_total") as Counter<"server">) ??
        new PromCounter({
          name: "mailinfra_directory_server_failures_total",
          help: "LDAP servers that failed or timed out, by URI",
          labelNames: ["server"] as const,
          registers: [registry],
        });
    }
  }

  async findByAddress(address: string): Promise<Account | null> {
    const key = address.trim().toLowerCase();
    if (!key || key.length > MAX_ADDRESS_LENGTH || /[\0-\x1f\x7f]/.test(key)) return null;
    return this.#cachedLookup("address", `address:${key}`, addressFilter(key));
  }

  async findByLogin(login: string): Promise<Account | null> {
    const key = login.trim().toLowerCase();
    if (key.includes("@")) return this.findByAddress(key);
    if (!key || key.length > MAX_LOGIN_LENGTH || /[\0-\x1f\x7f]/.test(key)) return null;
    return this.#cachedLookup("uid", `uid:${key}`, uidFilter(key));
  }

  async authenticate(login: string, password: string): Promise<Account | null> {
    // RFC 4513 §5.1.2: a simple bind with a DN and an empty password is an
    // "unauthenticated" bind that servers may accept: never send one.
    if (password.length === 0 || password.length > MAX_PASSWORD_LENGTH) {
      this.#requests?.inc({ op: "auth", result: "rejected" });
      return null;
    }
    const account = await this.findByLogin(login);
    if (!account) {
      this.#requests?.inc({ op: "auth", result: "rejected" });
      return null;
    }
    const ok = await this.#onServers("auth", async (server) => {
      const client = await server.newClient();
      try {
        await client.bind(account.dn, password);
        return true;
      } catch (err) {
        if (err instanceof InvalidCredentialsError) return false;
        // The server answered (e.g. 53 for a disabled account): a refusal for this
        // user, not a reason to hold the server down for everyone.
        if (err instanceof ResultCodeError && !SERVER_TROUBLE_CODES.has(err.code)) {
          this.#logger?.warn(
            { dn: account.dn, code: err.code, err: errorText(err) },
            "directory: bind refused",
          );
          return false;
        }
        throw err;
      } finally {
        await client.unbind().catch(() => {});
      }
    });
    this.#requests?.inc({ op: "auth", result: ok ? "ok" : "rejected" });
    return ok ? account : null;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const s of this.#servers) s.reset();
    this.#cache.clear();
  }

  async #cachedLookup(op: string, key: string, filter: string): Promise<Account | null> {
    const cached = this.#cache.get(key);
    if (cached !== undefined) {
      this.#requests?.inc({ op, result: "cache" });
      return cached;
    }
    // Concurrent lookups of one key (a message to many aliases, a login storm) share one search.
    const pending = this.#inflight.get(key);
    if (pending) return pending;
    const lookup = this.#search(op, filter).then(
      (account) => {
        this.#inflight.delete(key);
        this.#cache.set(key, account);
        this.#requests?.inc({ op, result: account ? "found" : "none" });
        return account;
      },
      (err: unknown) => {
        this.#inflight.delete(key);
        this.#requests?.inc({ op, result: "unavailable" });
        throw err;
      },
    );
    this.#inflight.set(key, lookup);
    return lookup;
  }

  async #search(op: string, filter: string): Promise<Account | null> {
    const entries = await this.#onServers(op, async (server) => {
      const client = await server.service();
      try {
        const { searchEntries } = await client.search(this.#config.baseDn, {
          scope: "sub",
          filter,
          attributes: [...ATTRIBUTES, this.#config.quotaAttribute],
          sizeLimit: 2,
        });
        return searchEntries;
      } catch (err) {
        if (err instanceof SizeLimitExceededError) return null;
        throw err;
      }
    });
    if (entries === null || entries.length > 1) {
      // Two accounts claim one address: a directory error an admin must fix. Answer
      // "try later" so mail waits in the queue rather than going to the wrong person.
      this.#logger?.error({ filter }, "directory: more than one account matches");
      throw new DirectoryUnavailableError("more than one account matches");
    }
    const entry = entries[0];
    return entry ? this.#toAccount(entry) : null;
  }

  #toAccount(entry: { dn: string } & Record<string, unknown>): Account | null {
    const uid = first(attr(entry, "uid"));
    const mail = first(attr(entry, "mail"));
    if (!uid || !mail) {
      this.#logger?.warn({ dn: entry.dn }, "directory: entry without uid or mail ignored");
      return null;
    }
    const addresses = [
      ...new Set([mail, ...all(attr(entry, "mailLocalAddress"))].map((a) => a.toLowerCase())),
    ];
    const account: Account = { uid, dn: entry.dn, mail, addresses };
    const routing = first(attr(entry, "mailRoutingAddress"));
    if (routing) account.routingAddress = routing;
    const mailHost = first(attr(entry, "mailHost"));
    if (mailHost) account.mailHost = mailHost;
    const quota = first(attr(entry, this.#config.quotaAttribute));
    if (quota !== undefined && /^\d+$/.test(quota)) account.quotaBytes = Number(quota);
    const displayName = first(attr(entry, "displayName")) ?? first(attr(entry, "cn"));
    if (displayName) account.displayName = displayName;
    return account;
  }

  /**
   * Run `fn` on the first server that answers: servers not held down first, in
   * configured order, then the held-down ones as a last resort.
   */
  async #onServers<T>(op: string, fn: (server: LdapServer) => Promise<T>): Promise<T> {
    if (this.#closed) throw new DirectoryUnavailableError("directory closed");
    const now = Date.now();
    const up = this.#servers.filter((s) => s.downUntil <= now);
    const down = this.#servers.filter((s) => s.downUntil > now);
    const failures: string[] = [];
    let lastError: unknown;
    for (const server of [...up, ...down]) {
      try {
        const result = await fn(server);
        server.downUntil = 0;
        return result;
      } catch (caught) {
        // ldaps:// fails in ldapts' own connect: name the server and the CA there too.
        const code = (caught as { code?: unknown })?.code;
        const err =
          !(caught instanceof LdapTlsError) &&
          server.uri.startsWith("ldaps://") &&
          typeof code === "string" &&
          CERTIFICATE_ERROR.test(code)
            ? new LdapTlsError(server.uri, this.#tlsCaFile, caught)
            : caught;
        lastError = err;
        if (err instanceof LdapTlsError)
          this.#logger?.error({ server: server.uri, op, err: err.message }, err.message);
        failures.push(err instanceof LdapTlsError ? err.message : `${server.uri}: ${errorText(err)}`);
        server.reset();
        server.downUntil = Date.now() + this.#holdDownMs;
        this.#serverFailures?.inc({ server: server.uri });
        this.#logger?.warn({ server: server.uri, op, err: errorText(err) }, "directory: LDAP server failed");
      }
    }
    throw new DirectoryUnavailableError(`no LDAP server answered (${failures.join("; ")})`, {
      cause: lastError,
    });
  }
}
