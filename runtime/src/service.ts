/**
 * The shape every `mailinfra serve <service>` implementation has. cli/ builds
 * the context from runtime.yaml (logger, metrics, directory, store, TLS) and
 * calls the service's start function; SIGTERM calls drain().
 */
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { RuntimeConfig } from "./config/schema.js";
import type { Directory } from "./directory/types.js";
import type { MailStore } from "./store/types.js";

export const SERVICE_NAMES = [
  "smtp",
  "lmtp",
  "imap",
  "pop3",
  "managesieve",
  "webmail",
  "imap-cache",
  "stats",
] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export interface TlsMaterial {
  key: Buffer;
  cert: Buffer;
}

export interface ServiceContext {
  config: RuntimeConfig;
  logger: Logger;
  metrics: Registry;
  /** Present when runtime.yaml has an `ldap` section. */
  directory?: Directory;
  /** Present when runtime.yaml has a `store` section. */
  store?: MailStore;
  tls?: TlsMaterial;
}

export interface RunningService {
  readonly name: ServiceName;
  /** Bound addresses, "host:port". */
  addresses(): string[];
  /** Stop accepting, let sessions finish up to the deadline, then close them. */
  drain(timeoutMs: number): Promise<void>;
  /** For /healthz: false when the service cannot do its job (e.g. store not mounted). */
  healthy(): Promise<boolean>;
}

export type StartService = (ctx: ServiceContext) => Promise<RunningService>;
