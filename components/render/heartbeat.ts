/**
 * Heartbeat 3.0.6 in haresources mode (`crm off`) for the store pair: ha.cf,
 * authkeys, haresources and the `mailinfra` resource script. Every file is the
 * same on both nodes (Heartbeat ignores a `ucast` aimed at its own address, so
 * listing both peers' addresses keeps ha.cf identical).
 */
import { assertNever, isHostName, isIPv4, RenderError, renderTemplate } from "./template.js";

/** A `ucast` link: send heartbeats out of `interface` to `peer`. */
export interface HeartbeatUcast {
  /** Network interface, e.g. "eth1" or "host0" (lab). */
  interface: string;
  /** IPv4 address of a node on that link. List every node's address: the own one is ignored. */
  peer: string;
}

/** An optional serial heartbeat link (null-modem cable between the nodes). */
export interface HeartbeatSerial {
  /** e.g. "/dev/ttyS0". */
  device: string;
  /** Line speed. Defaults to 19200 (Heartbeat's default). */
  baud?: HeartbeatBaud;
}

export type HeartbeatBaud = 9600 | 19200 | 38400 | 57600 | 115200;
const BAUDS: readonly number[] = [9600, 19200, 38400, 57600, 115200];

/** `auto_failback`: "on" moves resources back to the preferred node when it returns. */
export type AutoFailback = "on" | "off" | "legacy";

export interface HaCfParams {
  /** The two nodes' names exactly as `uname -n` prints them. */
  nodes: readonly string[];
  /** At least one ucast link (or a serial link). */
  ucast: readonly HeartbeatUcast[];
  serial?: HeartbeatSerial;
  /** Seconds between heartbeats. Defaults to 1. */
  keepaliveSeconds?: number;
  /** Seconds of silence before a "late heartbeat" warning. Defaults to 3. */
  warntimeSeconds?: number;
  /** Seconds of silence before the peer is declared dead. Defaults to 5. */
  deadtimeSeconds?: number;
  /** Dead time right after start (at least twice deadtime). Defaults to 10. */
  initdeadSeconds?: number;
  /** Defaults to "off" (no second interruption when the failed node returns). */
  autoFailback?: AutoFailback;
  /** UDP port of the ucast links. Defaults to 694. */
  udpport?: number;
  /** syslog facility. Defaults to "local0". */
  logfacility?: string;
}

const R = "heartbeat";

function positiveInt(field: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0)
    throw new RenderError(R, field, `expected a positive integer, got ${value}`);
  return value;
}

function autoFailbackValue(value: AutoFailback): string {
  switch (value) {
    case "on":
    case "off":
    case "legacy":
      return value;
    default:
      return assertNever(value, "auto_failback value");
  }
}

function checkNodes(nodes: readonly string[]): void {
  if (nodes.length !== 2)
    throw new RenderError(R, "nodes", `haresources mode needs exactly 2 nodes, got ${nodes.length}`);
  nodes.forEach((n, i) => {
    if (!isHostName(n))
      throw new RenderError(R, `nodes[${i}]`, `not a valid node name: ${JSON.stringify(n)}`);
  });
  if (nodes[0] === nodes[1])
    throw new RenderError(R, "nodes", `the two nodes have the same name ${nodes[0]}`);
}

const IFACE = /^[A-Za-z0-9_.:-]{1,15}$/;

/** Renders `/etc/ha.d/ha.cf`, identical on both nodes. */
export function renderHaCf(params: HaCfParams): string {
  checkNodes(params.nodes);
  const keepalive = positiveInt("keepaliveSeconds", params.keepaliveSeconds ?? 1);
  const warntime = positiveInt("warntimeSeconds", params.warntimeSeconds ?? 3);
  const deadtime = positiveInt("deadtimeSeconds", params.deadtimeSeconds ?? 5);
  const initdead = positiveInt("initdeadSeconds", params.initdeadSeconds ?? 10);
  if (warntime <= keepalive)
    throw new RenderError(R, "warntimeSeconds", `must exceed keepalive (${keepalive})`);
  if (deadtime <= warntime) throw new RenderError(R, "deadtimeSeconds", `must exceed warntime (${warntime})`);
  if (initdead < 2 * deadtime)
    throw new RenderError(R, "initdeadSeconds", `must be at least twice deadtime (${2 * deadtime})`);
  const udpport = params.udpport ?? 694;
  if (!Number.isInteger(udpport) || udpport < 1 || udpport > 65535)
    throw new RenderError(R, "udpport", `expected a port 1-65535, got ${udpport}`);
  if (params.ucast.length === 0 && params.serial === undefined)
    throw new RenderError(R, "ucast", "at least one ucast link or a serial link is needed");
  params.ucast.forEach((u, i) => {
    if (!IFACE.test(u.interface))
      throw new RenderError(
        R,
        `ucast[${i}].interface`,
        `not an interface name: ${JSON.stringify(u.interface)}`,
      );
    if (!isIPv4(u.peer))
      throw new RenderError(R, `ucast[${i}].peer`, `expected an IPv4 address, got ${u.peer}`);
  });
  let serial: { device: string; baud: number } | null = null;
  if (params.serial !== undefined) {
    const baud = params.serial.baud ?? 19200;
    if (!BAUDS.includes(baud)) throw new RenderError(R, "serial.baud", `unsupported baud rate ${baud}`);
    if (!/^\/dev\/[A-Za-z0-9/_.-]+$/.test(params.serial.device))
      throw new RenderError(R, "serial.device", `expected a /dev path, got ${params.serial.device}`);
    serial = { device: params.serial.device, baud };
  }
  const logfacility = params.logfacility ?? "local0";
  if (!/^(local[0-7]|daemon|user|none)$/.test(logfacility))
    throw new RenderError(R, "logfacility", `not a syslog facility: ${logfacility}`);
  return renderTemplate("heartbeat/ha.cf.hbs", {
    nodes: params.nodes,
    ucast: params.ucast,
    serial,
    keepalive,
    warntime,
    deadtime,
    initdead,
    udpport,
    logfacility,
    autoFailback: autoFailbackValue(params.autoFailback ?? "off"),
  });
}

/** How authkeys signs packets. Only sha1 is offered: crc is unauthenticated, md5 is weaker. */
export type AuthkeysMethod = "sha1";

export interface AuthkeysParams {
  /** Shared secret (printable ASCII, no spaces, 16+ characters). Write the file with mode 0600. */
  secret: string;
  /** Defaults to "sha1". */
  method?: AuthkeysMethod;
}

/** Renders `/etc/ha.d/authkeys`. Contains the secret: the component writes it with mode 0600. */
export function renderAuthkeys(params: AuthkeysParams): string {
  if (!/^[\x21-\x7e]{16,}$/.test(params.secret))
    throw new RenderError(R, "secret", "expected 16 or more printable ASCII characters without spaces");
  const method = params.method ?? "sha1";
  switch (method) {
    case "sha1":
      break;
    default:
      assertNever(method, "authkeys method");
  }
  return renderTemplate("heartbeat/authkeys.hbs", { method, secret: params.secret });
}

/** Runtime services Heartbeat may run on the active store node. */
export type HeartbeatService = "lmtp" | "imap" | "pop3" | "managesieve";
export const HEARTBEAT_SERVICES: readonly HeartbeatService[] = ["lmtp", "imap", "pop3", "managesieve"];

export interface HaresourcesParams {
  /** The two nodes (as in ha.cf). */
  nodes: readonly string[];
  /** The node that takes the resources when both start. One of `nodes`. */
  preferredNode: string;
  /** The store's virtual IPv4 address. */
  vip: string;
  /** Prefix length of the VIP's subnet (1-32). */
  prefix: number;
  /** Interface the VIP is added to. */
  interface: string;
  /** SAN block device (`/dev/sdb`, or `-Llabel` / `-Uuuid` per the Filesystem agent). */
  device: string;
  mountpoint: string;
  /** Mount options, e.g. "noatime" or "noatime,inode64". Defaults to "noatime". */
  mountOptions?: string;
  /** Started in this order after the mount, stopped in reverse. Defaults to all four. */
  services?: readonly HeartbeatService[];
}

const NO_SEPARATOR = /^[^\s:]+(?::[^\s:]+)*$/; // no whitespace and no "::" (haresources' argument separator)

/**
 * Renders `/etc/ha.d/haresources`: one resource group, started left to right —
 * VIP, then the SAN mount, then each service through `resource.d/mailinfra`.
 */
export function renderHaresources(params: HaresourcesParams): string {
  checkNodes(params.nodes);
  if (!params.nodes.includes(params.preferredNode))
    throw new RenderError(
      R,
      "preferredNode",
      `${params.preferredNode} is not one of ${params.nodes.join(", ")}`,
    );
  if (!isIPv4(params.vip)) throw new RenderError(R, "vip", `expected an IPv4 address, got ${params.vip}`);
  if (!Number.isInteger(params.prefix) || params.prefix < 1 || params.prefix > 32)
    throw new RenderError(R, "prefix", `expected 1-32, got ${params.prefix}`);
  if (!IFACE.test(params.interface))
    throw new RenderError(R, "interface", `not an interface name: ${JSON.stringify(params.interface)}`);
  if (!NO_SEPARATOR.test(params.device) || !/^(\/dev\/|-L|-U)/.test(params.device))
    throw new RenderError(
      R,
      "device",
      `expected /dev/…, -L<label> or -U<uuid>, got ${JSON.stringify(params.device)}`,
    );
  if (!/^\/[^\s:]*$/.test(params.mountpoint) || params.mountpoint === "/")
    throw new RenderError(
      R,
      "mountpoint",
      `expected an absolute path other than /, got ${params.mountpoint}`,
    );
  const mountOptions = params.mountOptions ?? "noatime";
  if (!/^[A-Za-z0-9_=,.-]+$/.test(mountOptions))
    throw new RenderError(R, "mountOptions", `unexpected characters in ${JSON.stringify(mountOptions)}`);
  const services = params.services ?? HEARTBEAT_SERVICES;
  if (services.length === 0) throw new RenderError(R, "services", "at least one service is needed");
  services.forEach((s, i) => {
    if (!HEARTBEAT_SERVICES.includes(s))
      throw new RenderError(R, `services[${i}]`, `not a store service: ${s}`);
  });
  if (new Set(services).size !== services.length)
    throw new RenderError(R, "services", "a service is listed twice");
  const resources = [
    `IPaddr2::${params.vip}/${params.prefix}/${params.interface}`,
    `Filesystem::${params.device}::${params.mountpoint}::xfs::${mountOptions}`,
    ...services.map((s) => `mailinfra::${s}`),
  ];
  return renderTemplate("heartbeat/haresources.hbs", { preferredNode: params.preferredNode, resources });
}

export interface ResourceScriptParams {
  /** Services the script accepts. Defaults to all four store services. */
  services?: readonly HeartbeatService[];
  /** Unit name prefix. Defaults to "mailinfra-" (units `mailinfra-<service>.service`). */
  unitPrefix?: string;
}

/**
 * Renders `/etc/ha.d/resource.d/mailinfra` (mode 0755). Heartbeat's ResourceManager
 * runs `mailinfra <service> start|stop|status` and reads status output: a line
 * containing "running" means the node owns the resource, "stopped" that it does not.
 */
export function renderResourceScript(params: ResourceScriptParams = {}): string {
  const services = params.services ?? HEARTBEAT_SERVICES;
  services.forEach((s, i) => {
    if (!HEARTBEAT_SERVICES.includes(s))
      throw new RenderError(R, `services[${i}]`, `not a store service: ${s}`);
  });
  const unitPrefix = params.unitPrefix ?? "mailinfra-";
  if (!/^[A-Za-z0-9_-]+$/.test(unitPrefix)) throw new RenderError(R, "unitPrefix", `invalid: ${unitPrefix}`);
  return renderTemplate("heartbeat/mailinfra-resource.sh.hbs", { services: services.join("|"), unitPrefix });
}
