/**
 * The runtime's configuration: `/etc/mailinfra/runtime.yaml`, rendered per host
 * by the deployer (templates/runtime/runtime.yaml.hbs) and parsed once at start.
 *
 * Each section belongs to the module named beside it; a module extends only its
 * own section. Defaults live here so the deployer can leave keys out.
 * Secrets are never inline: they are paths to files written with mode 0600.
 */
import { z } from "zod";
import { SERVICE_NAMES } from "../service.js";

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
  /** On SIGTERM, sessions get this long to finish before they are closed (systemd's TimeoutStopSec must be longer). */
  drainTimeoutSeconds: z.number().int().positive().default(30),
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
    /**
     * Per service, e.g. `{ lmtp: "127.0.0.1:9188", imap: "127.0.0.1:9189" }`: a host
     * running several services from one runtime.yaml (the store: lmtp, imap, pop3)
     * needs one address each. A service listed here uses its own; the others `listen`.
     */
    services: z.partialRecord(z.enum(SERVICE_NAMES), ListenAddress).optional(),
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
const LdapSection = z
  .object({
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
    /** PEM CA bundle for ldaps:// servers; absent → the system's CAs. Kept for older files: prefer `tls.ca`. */
    caFile: z.string().min(1).optional(),
    /**
     * TLS to every server (RFC 4513 §3): ldap:// URIs are upgraded with StartTLS
     * before anything else is sent, ldaps:// URIs speak TLS from the start. The
     * server's certificate must chain to `ca` (absent → the system's CAs) and name
     * the host of the URI. A server that fails this is an error naming it, never
     * a plaintext retry. Absent → plaintext ldap:// (tests, loopback only).
     */
    tls: z
      .object({
        /** PEM CA bundle the servers' certificates must chain to (the deployer installs it). */
        ca: z.string().min(1).optional(),
        /** StartTLS on ldap:// URIs (default true). false only makes sense with ldaps:// URIs. */
        startTls: z.boolean().default(true),
      })
      .optional(),
  })
  .refine((l) => l.tls === undefined || l.tls.startTls || l.uris.every((u) => u.startsWith("ldaps://")), {
    message: "tls.startTls is false but an ldap:// URI is listed: its binds would cross in clear",
    path: ["tls", "startTls"],
  });
export type LdapConfig = z.infer<typeof LdapSection>;

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
  /** Once an address has failed authenticationsBeforeDelay times, each further failure is answered this late. */
  authFailureDelayMs: z.number().int().nonnegative().default(2000),
  /**
   * Processes for `serve imap` (imap/service.ts, cluster/workers.ts): each
   * serves connections on the shared listening sockets (the kernel hands each
   * connection to one); the primary keeps limits.maxConnectionsPerIp,
   * maxConnectionsPerUser and the failed-login counts for the whole host.
   * Absent: one per CPU (os.availableParallelism()); 1: one process. Each
   * process holds at most `ulimit -n` descriptors, so N workers hold about N×
   * as many idle connections.
   */
  workers: z.number().int().positive().max(64).optional(),
  limits: ConnectionLimits,
});

/** Section `pop3` (pop3/). */
const Pop3Section = z.object({
  listen: z.array(ListenAddress).default([]),
  tlsListen: z.array(ListenAddress).default([]),
  loginDisabledWithoutTls: z.boolean().default(false),
  /** Once an address has failed authFailuresBeforeDelay times, each further login reply waits this long. */
  authFailureDelayMs: z.number().int().nonnegative().default(2000),
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
  /**
   * Mail loops (RFC 5321 §6.3, queue/loop.ts): a message with more Received
   * fields than this is refused at DATA with 554 5.4.6, here and by LMTP on
   * the store (which uses the default when its host has no smtp section).
   * Postfix's hopcount_limit.
   */
  hopCountLimit: z.number().int().positive().default(50),
  /**
   * Simultaneous SMTP connections on this host, all listeners together; more
   * get 421 4.7.0. With several acceptors (workers) they are counted in the
   * primary (smtp/anvil.ts); should it not answer in time, each acceptor
   * falls back to its own count, so the limit is then at most workers × this.
   */
  maxConnections: z.number().int().positive().default(10_000),
  /**
   * Acceptor processes for `serve smtp` (smtp/cluster.ts): each accepts
   * connections on the shared listening sockets and writes the durable queue;
   * one process (the primary) runs the deliveries. Absent: one per CPU
   * (os.availableParallelism()); 1: one process doing both, as before.
   */
  workers: z.number().int().positive().max(64).optional(),
  /** Resolve the client's PTR name for Received headers (off in tests: no DNS). */
  reverseLookup: z.boolean().default(true),
  /** Idle time before a session is dropped (RFC 5321 §4.5.3.2.7 suggests 5 minutes). */
  idleTimeoutSeconds: z.number().int().positive().default(300),
  /** AUTH failures from one client IP before replies are delayed, and before AUTH is refused outright. */
  authFailuresBeforeDelay: z.number().int().positive().default(3),
  authFailuresBeforeBlock: z.number().int().positive().default(10),
  /** How long a client IP's AUTH failures are remembered. */
  authFailureWindowSeconds: z.number().int().positive().default(900),
  /**
   * The pause before the 220 greeting on port 25 (Postfix postscreen's pregreet
   * test, smtp/greeting.ts): a client that talks during it is recorded by the
   * filter's `early-talker` check and refused (554 5.5.1). Submission and the
   * relay's trusted networks are never paused.
   */
  greeting: z
    .object({
      /** postscreen_greet_wait (6 s; 0 turns the test off). */
      pauseMs: z.number().int().nonnegative().default(6000),
      /** postscreen_greet_banner: send "220-<host> ESMTP" before the pause, to tempt bad clients. */
      partialBanner: z.boolean().default(true),
      /** postscreen_greet_ttl: a client that passed is greeted at once for this long (1 day). */
      passTtlSeconds: z.number().int().nonnegative().default(86_400),
      /** postscreen_access_list = permit_mynetworks: these clients are greeted at once. */
      exemptNetworks: z.array(z.string()).default(["127.0.0.0/8", "::1/128"]),
    })
    .prefault({}),
  /**
   * Over-quota at RCPT (smtp/quota-check.ts, Dovecot's quota-status for
   * Postfix): a local recipient's store is asked over LMTP (MAIL FROM:<>
   * SIZE=, RCPT TO, RSET) and a full mailbox gets 552 5.2.2 at RCPT instead
   * of a bounce to a (mostly forged) sender. Fails open: timeout, store down
   * or any other answer → accepted as before.
   */
  quotaCheck: z
    .object({
      enabled: z.boolean().default(true),
      /** The whole probe (connect, LHLO, MAIL, RCPT); then the recipient is accepted. */
      timeoutMs: z.number().int().positive().default(2000),
      /** How long a "full" answer is reused; "ok" is never cached. 0: ask every time. */
      cacheSeconds: z.number().int().nonnegative().default(30),
    })
    .prefault({}),
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
  /** First retry after this long; doubles per attempt up to retryMaxSeconds (Postfix: 300 / 4000). */
  retryInitialSeconds: z.number().positive().default(300),
  retryMaxSeconds: z.number().positive().default(4000),
  /** How often the queue directory is rescanned for due messages and ops requests (flush). */
  scanIntervalSeconds: z.number().positive().default(10),
  /** Port of remote MX hosts; always 25 outside tests. */
  remoteSmtpPort: z.number().int().positive().default(25),
  /** DNS servers for MX/A lookups ("ip" or "ip:port"); absent → filter.dnsServers, then the system's. */
  dnsServers: z.array(z.string()).optional(),
  /** Connect / greeting / idle timeouts for outbound LMTP and SMTP. */
  connectTimeoutSeconds: z.number().positive().default(30),
  socketTimeoutSeconds: z.number().positive().default(300),
});

/**
 * Section `filter` (filter/). Each key is named after its check's module
 * (runtime/src/filter/<key>.ts) and test. Map paths take Postfix's
 * `type:path` form (`regexp:/etc/postfix/header_checks`, `hash:/etc/postfix/access`;
 * hash maps are read from their source file) or a bare path.
 */
const FilterSection = z
  .object({
    dnsbl: z
      .array(
        z.object({
          zone: z.string().min(1),
          weight: z.number().default(1),
          /** Only these 127.x answers count (e.g. ["127.0.0.2", "127.0.0.4"]); all 127/8 by default. */
          answers: z.array(z.string()).optional(),
        }),
      )
      .default([]),
    dnsblRejectScore: z.number().default(1),
    /** One DNS query's timeout (DNSBL, SPF, DKIM keys, DMARC); a timeout is an error, never a reject. */
    dnsTimeoutMs: z.number().int().positive().default(3000),
    /** Postfix header_checks: top-level non-MIME headers. */
    headerChecks: z.string().optional(),
    /** Postfix mime_header_checks: MIME headers of every part; Postfix's default is the headerChecks map. */
    mimeHeaderChecks: z.string().optional(),
    /** Postfix nested_header_checks: headers of attached messages; defaults to the headerChecks map. */
    nestedHeaderChecks: z.string().optional(),
    /** Postfix body_checks: body lines as received (not decoded). */
    bodyChecks: z.string().optional(),
    /** Postfix body_checks_size_limit: bytes of each body part given to bodyChecks. */
    bodyChecksSizeLimit: z.number().int().positive().default(51_200),
    /** Postfix check_sender_access / check_recipient_access maps (access(5)). */
    senderAccess: z.string().optional(),
    recipientAccess: z.string().optional(),
    /** Postfix check_client_access (client name, then address) and check_helo_access maps (access(5)). */
    clientAccess: z.string().optional(),
    heloAccess: z.string().optional(),
    rate: z
      .object({
        /** New connections per client IP in any 60 s; more → 421 4.7.0. 0 disables. */
        maxConnectionsPerMinute: z.number().int().nonnegative().default(120),
        /** Simultaneous connections per client IP; more → 421 4.7.0. 0 disables. */
        maxConcurrent: z.number().int().nonnegative().default(20),
      })
      .prefault({}),
    helo: z
      .object({
        enabled: z.boolean().default(true),
        /** Reject bad HELO names (Postfix reject_invalid/non_fqdn_helo_hostname); false → add `score`. */
        reject: z.boolean().default(true),
        score: z.number().default(1),
      })
      .prefault({}),
    /** Reject clients that talk before the greeting (RFC 5321 §4.3.1). */
    earlyTalker: z.object({ enabled: z.boolean().default(true) }).prefault({}),
    spf: z
      .object({
        enabled: z.boolean().default(true),
        /** Reject SPF "fail" at MAIL FROM (550 5.7.23, RFC 7372); otherwise it scores. */
        rejectFail: z.boolean().default(false),
        failScore: z.number().default(3),
        softfailScore: z.number().default(1),
      })
      .prefault({}),
    dkim: z.object({ enabled: z.boolean().default(true), failScore: z.number().default(1) }).prefault({}),
    dmarc: z
      .object({
        enabled: z.boolean().default(true),
        /** Honour p=reject with 550 5.7.1; p=quarantine adds quarantineScore. */
        enforce: z.boolean().default(true),
        quarantineScore: z.number().default(5),
        failScore: z.number().default(1),
      })
      .prefault({}),
    arc: z.object({ enabled: z.boolean().default(true), failScore: z.number().default(0.5) }).prefault({}),
    /** MIME structure limits (Postfix mime_nesting_limit is 100; real mail stays far below these). */
    mimeBomb: z
      .object({
        maxDepth: z.number().int().positive().default(30),
        maxParts: z.number().int().positive().default(1000),
      })
      .prefault({}),
    spamd: z
      .object({
        host: z.string(),
        port: z.number().int().default(783),
        timeoutMs: z.number().default(15_000),
        /** Larger messages are not sent to spamd (spamc's default -s 500 KB). */
        maxBytes: z.number().int().positive().default(512_000),
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
    /** A DNS server to ask instead of the system's (tests, lab): "ip" or "ip:port". */
    dnsServers: z.array(z.string()).optional(),
    /** authserv-id of Authentication-Results (RFC 8601 §2.5); the host name by default. */
    authservId: z.string().optional(),
  })
  .prefault({});

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
