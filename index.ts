/**
 * mailinfra: the composition root. Parses the stack config (a bad config throws
 * here, before any resource is registered), builds the system, exports what ops
 * and DNS need. Everything else lives in components/.
 */
import { fileURLToPath } from "node:url";
import { loadStackConfig } from "./components/config.js";
import { MailInfrastructure } from "./components/infrastructure.js";

const config = loadStackConfig();

const infra = new MailInfrastructure("mailinfra", {
  config,
  bundlePath: fileURLToPath(new URL("./runtime/dist/mailinfra.mjs", import.meta.url)),
});

/** MX, submission, IMAP/POP3 on the store VIP, webmail, LDAP URIs. */
export const endpoints = infra.endpoints;
/** Per host: the runtime services it runs, and its roles' services not in this runtime build yet. */
export const services = infra.services;
/** The DNS records to publish: MX of equal preference, round-robin A records. */
export const dnsZone = infra.dnsZone;
