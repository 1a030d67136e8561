/**
 * The runtime's configuration: `/etc/mailinfra/runtime.yaml`, rendered per host
 * by the deployer (templates/runtime/runtime.yaml.hbs) and parsed once at start.
 *
 * Each section belongs to the module named beside it; a module extends only its
 * own section. Defaults live here so the deployer can leave keys out.
 * Secrets are never inline: they are paths to files written with mode 0600.
 */
import { z } from "zod";

/** "host:port", "[v6]:port" or ":port". */
export const ListenAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]*):\d{1,5}$/, "expected host:port, e.g. 0.0.0.0:143");
export type ListenAddress = z.infer<typeof ListenAddress>;

export const Roles = z.enum(["mx", "relay", "store", "ldap", "webmail", "test"]);
export type Role = z.infer<typeof Roles>;

/** Section `host` (cli). */
const HostSection = z.object({
  name: z.string().min(1),
  roles: z.array(Roles).min(1),
});

/** Section `log` (log/). */
const LogSection = z
  .object({
    level: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).default("info"),
  })
  .default({ level: "info" });

/** Section `metrics` (metrics/): Prometheus `/metrics` and `/healthz`. */
const MetricsSection = z
  .object({
    listen: ListenAddress.optional(),
  })
  .default({});

/** Section `tls`: one certificate for this host's services (PEM files). */
const TlsSection = z
  .object({
    certFile: z.string().min(1),
    keyFile: z.string().min(1),
  })
  .optional();

/** Section `ldap` (directory/). */
const LdapSection = z.object({
  /** Tried in this order; the first that answers wins. */
  uris: z.array(z.string().regex(/^ldaps?:\/\//, "expected an ldap:// or ldaps:// URI")).min(1),
  baseDn: z.string().min(1),
  /** The service's read-only DN. */
  bindDn: z.string().min(1),
  /** File holding the bind password (mode 0600). */
  bindPasswordFile: z.string().min(1),
  timeoutMs: z.number().int().positive().default(3000),
  /** Lookups (never passwords) are cached this long. 0 disables the cache. */
  cacheTtlSeconds: z.number().int().nonnegative().default(60),
  /** LDAP attribute holding an account's quota in bytes; absent → store.defaultQuotaBytes. */
  quotaAttribute: z.string().default("mailQuotaBytes"),
});

/** Section `store` (store/): Maildir++ on the SAN mount. */
const StoreSection = z.object({
  root: z.string().min(1),
  fsync: z.boolean().default(true),
  defaultQuotaBytes: z
    .number()
    .int()
    .positive()
    .default(1024 ** 3),
});

/** Limits shared by the line-oriented servers; each has a test. */
const ConnectionLimits = z
  .object({
    maxLineBytes: z.number().int().positive().default(65_536),
    maxBadCommands: z.number().int().positive().default(20),
    idleTimeoutSeconds: z.number().int().positive().default(1800),
    maxConnectionsPerIp: z.number().int().positive().default(50),
    maxConnectionsPerUser: z.number().int().positive().default(20),
    authFailuresBeforeDelay: z.number().int().positive().default(3),
  })
  .default({
    maxLineBytes: 65_536,
    maxBadCommands: 20,
    idleTimeoutSeconds: 1800,
    maxConnectionsPerIp: 50,
    maxConnectionsPerUser: 20,
    authFailuresBeforeDelay: 3,
  });

/** Section `lmtp` (lmtp/). */
const LmtpSection = z.object({
  listen: z.array(ListenAddress).min(1),
  maxMessageBytes: z
    .number()
    .int()
    .positive()
    .default(50 * 1024 ** 2),
});

/** Section `imap` (imap/). */
const ImapSection = z.object({
  listen: z.array(ListenAddress).default([]),
  /** Implicit TLS (993). */
  tlsListen: z.array(ListenAddress).default([]),
  /** Advertise LOGINDISABLED and refuse LOGIN/AUTHENTICATE before STARTTLS. */
  loginDisabledWithoutTls: z.boolean().default(false),
  maxLiteralBytes: z
    .number()
    .int()
    .positive()
    .default(50 * 1024 ** 2),
  limits: ConnectionLimits,
});

/** Section `pop3` (pop3/). */
const Pop3Section = z.object({
  listen: z.array(ListenAddress).default([]),
  tlsListen: z.array(ListenAddress).default([]),
  loginDisabledWithoutTls: z.boolean().default(false),
  limits: ConnectionLimits,
});

/** Section `smtp` (smtp/). */
const SmtpSection = z.object({
  /** The mail domains this system receives for. */
  domains: z.array(z.string().min(1)).min(1),
  /** Role `mx`: port 25, no AUTH. */
  mx: z
    .object({
      listen: z.array(ListenAddress).min(1),
    })
    .optional(),
  /** Role `relay`: submission with STARTTLS + AUTH, and 25 for trusted networks. */
  relay: z
    .object({
      submissionListen: z.array(ListenAddress).default([]),
      listen: z.array(ListenAddress).default([]),
      trustedNetworks: z.array(z.string()).default(["127.0.0.0/8"]),
    })
    .optional(),
  maxMessageBytes: z
    .number()
    .int()
    .positive()
    .default(50 * 1024 ** 2),
  maxRecipients: z.number().int().positive().default(1000),
  maxConnections: z.number().int().positive().default(10_000),
});

/** Section `queue` (queue/). */
const QueueSection = z.object({
  dir: z.string().min(1),
  /** LMTP for local recipients: the store VIP, unless the account's mailHost says otherwise. */
  lmtp: z.object({ host: z.string().min(1), port: z.number().int().positive().default(24) }),
  maxAgeSeconds: z
    .number()
    .int()
    .positive()
    .default(5 * 24 * 3600),
  concurrencyPerDestination: z.number().int().positive().default(10),
});

/** Section `filter` (filter/). */
const FilterSection = z
  .object({
    dnsbl: z.array(z.object({ zone: z.string().min(1), weight: z.number().default(1) })).default([]),
    dnsblRejectScore: z.number().default(1),
    headerChecks: z.string().optional(),
    mimeHeaderChecks: z.string().optional(),
    bodyChecks: z.string().optional(),
    spamd: z
      .object({
        host: z.string(),
        port: z.number().int().default(783),
        timeoutMs: z.number().default(15_000),
      })
      .optional(),
    clamd: z
      .object({
        host: z.string(),
        port: z.number().int().default(3310),
        timeoutMs: z.number().default(30_000),
      })
      .optional(),
    /** Spam score at or above which the message is tagged / rejected. */
    spamTagScore: z.number().default(5),
    spamRejectScore: z.number().default(12),
    /** When spamd or clamd cannot be reached: accept (open) or tempfail (closed). */
    onScannerFailure: z.enum(["open", "closed"]).default("closed"),
    /** A DNS server to ask instead of the system's (tests, lab). */
    dnsServers: z.array(z.string()).optional(),
  })
  .default({
    dnsbl: [],
    dnsblRejectScore: 1,
    spamTagScore: 5,
    spamRejectScore: 12,
    onScannerFailure: "closed",
  });

/** Section `webmail` (webmail/). */
const WebmailSection = z.object({
  listen: z.array(ListenAddress).min(1),
  imapHost: z.string().min(1),
  imapPort: z.number().int().positive().default(143),
});

/** Section `stats` (stats/). */
const StatsSection = z.object({
  listen: z.array(ListenAddress).min(1),
  databaseUrlFile: z.string().min(1),
});

export const RuntimeConfigSchema = z.object({
  host: HostSection,
  log: LogSection,
  metrics: MetricsSection,
  tls: TlsSection,
  ldap: LdapSection.optional(),
  store: StoreSection.optional(),
  lmtp: LmtpSection.optional(),
  imap: ImapSection.optional(),
  pop3: Pop3Section.optional(),
  smtp: SmtpSection.optional(),
  queue: QueueSection.optional(),
  filter: FilterSection,
  webmail: WebmailSection.optional(),
  stats: StatsSection.optional(),
});

export type RuntimeConfig = z.infer<typeof RuntimeConfigSchema>;
