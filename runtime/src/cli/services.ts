/**
 * `mailinfra serve <service>`: which module starts each service, and the
 * runtime.yaml sections it cannot run without (checked before anything starts,
 * so a missing section is one clear line, not a crash inside the service).
 *
 * Adding a service: its module exports `start: StartService` from
 * runtime/src/<module>/service.ts; add its entry here with a lazy import.
 * test/cli/services.test.ts fails while a service.ts exists that is not wired.
 */
import type { RuntimeConfig } from "../config/schema.js";
import type { ServiceName, StartService } from "../service.js";

export interface ServiceEntry {
  load(): Promise<StartService>;
  /** Sections of runtime.yaml the service needs. */
  needs: ReadonlyArray<keyof RuntimeConfig>;
}

export const SERVICES: Readonly<Partial<Record<ServiceName, ServiceEntry>>> = {
  lmtp: {
    load: () => import("../lmtp/service.js").then((m) => m.start),
    needs: ["lmtp", "store", "ldap"],
  },
  imap: {
    load: () => import("../imap/service.js").then((m) => m.start),
    needs: ["imap", "store", "ldap"],
  },
  pop3: {
    load: () => import("../pop3/service.js").then((m) => m.start),
    needs: ["pop3", "store", "ldap"],
  },
  smtp: {
    load: () => import("../smtp/service.js").then((m) => m.start),
    needs: ["smtp", "queue", "ldap"],
  },
};
