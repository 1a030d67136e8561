// The lab's hosts and their addresses. Addresses come from stacks/Pulumi.lab.yaml
// when it names them (the deployer owns that file); otherwise these defaults,
// which are the same plan. Everything lives in 198.18.0.0/24 (RFC 2544's
// benchmark range): the lab never uses other private or public ranges.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { REPO_ROOT } from "./paths.js";

export const HOST_NAMES = [
  "mx1",
  "mx2",
  "relay1",
  "relay2",
  "store1",
  "store2",
  "ldap1",
  "ldap2",
  "webmail1",
  "webmail2",
  "test1",
] as const;
export type HostName = (typeof HOST_NAMES)[number];

/** A non-root user with the lab's key and passwordless sudo on every host. */
export const LAB_ADMIN = "labadmin";

/** The hosts that see the shared SAN volume as /dev/sdb. */
export const SAN_HOSTS: readonly HostName[] = ["store1", "store2"];

export const BRIDGE = "mlab0";
export const SUBNET_PREFIX = "198.18.0.";
export const BRIDGE_ADDRESS = "198.18.0.1";
export const PREFIX_LENGTH = 24;
/** The SAN volume's size: sparse, so it costs nothing until written. */
export const SAN_BYTES = 2 * 1024 ** 3;
export const SAN_DEVICE = "/dev/sdb";

const DEFAULT_ADDRESSES: Record<HostName, string> = {
  mx1: "198.18.0.11",
  mx2: "198.18.0.12",
  relay1: "198.18.0.13",
  relay2: "198.18.0.14",
  store1: "198.18.0.21",
  store2: "198.18.0.22",
  ldap1: "198.18.0.31",
  ldap2: "198.18.0.32",
  webmail1: "198.18.0.41",
  webmail2: "198.18.0.42",
  test1: "198.18.0.51",
};
const DEFAULT_VIP = "198.18.0.20";

export interface Topology {
  addresses: Record<HostName, string>;
  vip: string;
  /** Where the addresses came from, for `lab status`. */
  source: string;
}

export const LAB_STACK_FILE = join(REPO_ROOT, "stacks", "Pulumi.lab.yaml");

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function inLabSubnet(ip: string): boolean {
  const m = IPV4.exec(ip);
  if (!m) return false;
  const last = Number(m[4]);
  return ip.startsWith(SUBNET_PREFIX) && last >= 2 && last <= 254;
}

function isHostName(s: string): s is HostName {
  return (HOST_NAMES as readonly string[]).includes(s);
}

/** An address-like string field of an object (address, ip, host …). */
function addressOf(v: unknown): string | undefined {
  if (typeof v === "string") return IPV4.test(v) ? v : undefined;
  if (v && typeof v === "object" && !Array.isArray(v)) {
    for (const k of ["address", "ip", "host", "addr"]) {
      const s = (v as Record<string, unknown>)[k];
      if (typeof s === "string" && IPV4.test(s)) return s;
    }
  }
  return undefined;
}

/**
 * Finds host addresses and the store VIP anywhere in a parsed stack file, so the
 * lab does not depend on the exact shape of the deployer's schema: a map keyed by
 * host name (`mx1: 198.18.0.11` or `mx1: {address: …}`), or a list of objects with
 * `name` and an address field; the VIP is any `vip`/`virtualIp` key holding an IPv4.
 */
export function topologyFromStack(doc: unknown, source: string): Topology {
  const addresses: Partial<Record<HostName, string>> = {};
  let vip: string | undefined;
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const item of node) {
        if (item && typeof item === "object" && !Array.isArray(item)) {
          const name = (item as Record<string, unknown>).name;
          const a = addressOf(item);
          if (typeof name === "string" && isHostName(name) && a) addresses[name] ??= a;
        }
        visit(item);
      }
      return;
    }
    if (!node || typeof node !== "object") return;
    for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
      const key = k.includes(":") ? k.slice(k.indexOf(":") + 1) : k;
      if (isHostName(key)) {
        const a = addressOf(v);
        if (a) addresses[key] ??= a;
      }
      if (/^(vip|virtualip|virtualaddress|storevip)$/i.test(key.replace(/[-_]/g, ""))) {
        const a = addressOf(v);
        if (a) vip ??= a;
      }
      visit(v);
    }
  };
  visit(doc);
  const merged: Record<HostName, string> = { ...DEFAULT_ADDRESSES };
  for (const h of HOST_NAMES) {
    const a = addresses[h];
    if (a) merged[h] = a;
  }
  const t: Topology = { addresses: merged, vip: vip ?? DEFAULT_VIP, source };
  validateTopology(t);
  return t;
}

export function validateTopology(t: Topology): void {
  const seen = new Map<string, string>();
  for (const [name, ip] of [...Object.entries(t.addresses), ["vip", t.vip] as const]) {
    if (!inLabSubnet(ip) || ip === BRIDGE_ADDRESS) {
      throw new Error(`${t.source}: ${name} address ${ip} is outside the lab's 198.18.0.2-254`);
    }
    const other = seen.get(ip);
    if (other) throw new Error(`${t.source}: ${name} and ${other} share the address ${ip}`);
    seen.set(ip, name);
  }
}

export function loadTopology(file = LAB_STACK_FILE): Topology {
  if (!existsSync(file)) {
    return { addresses: { ...DEFAULT_ADDRESSES }, vip: DEFAULT_VIP, source: "built-in defaults" };
  }
  return topologyFromStack(parse(readFileSync(file, "utf8")), file);
}
