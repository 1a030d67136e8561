/**
 * One systemd unit per runtime service: `mailinfra-<service>.service` running
 * `<node> <prefix>/mailinfra.mjs serve <service> --config <runtime.yaml>`.
 */
import { SERVICE_NAMES, type ServiceName } from "../../runtime/src/service.js";
import { assertNever, RenderError, renderTemplate } from "./template.js";

/** The runtime's services (`mailinfra serve <service>`): its own list, so the two cannot drift. */
export type RuntimeService = ServiceName;
/** In the runtime's order: the order services appear in units, runtime.yaml and haresources. */
export const RUNTIME_SERVICES: readonly RuntimeService[] = SERVICE_NAMES;

/** `mailinfra-<service>.service`. */
export function unitName(service: RuntimeService): string {
  return `mailinfra-${service}.service`;
}

/** "simple": started once exec'd. "notify": the runtime reports READY=1 (sd_notify). */
export type UnitType = "simple" | "notify";

export interface SystemdUnitParams {
  service: RuntimeService;
  /** Absolute path of the node binary. Defaults to /usr/bin/node. */
  nodePath?: string;
  /** Install prefix holding mailinfra.mjs. Defaults to /opt/mailinfra. */
  prefix?: string;
  /** Defaults to /etc/mailinfra/runtime.yaml. */
  configPath?: string;
  /** Unix user; anything but root gets CAP_NET_BIND_SERVICE for ports < 1024. Defaults to "mailinfra". */
  user?: string;
  /** Defaults to the user's name. */
  group?: string;
  /** Directories the service writes (queue, Maildir root). ProtectSystem=strict makes all else read-only. */
  readWritePaths?: readonly string[];
  /**
   * false for services Heartbeat runs on the active store node (lmtp, imap, pop3,
   * managesieve): the unit then has no [Install] section, so `systemctl enable`
   * cannot start it at boot on the passive node. Defaults to true.
   */
  enableAtBoot?: boolean;
  /**
   * Refuse to start unless this path is a mount point (the SAN volume): a unit
   * started by hand on the passive node fails instead of writing to the bare
   * mountpoint directory. Never RequiresMountsFor (systemd would mount the SAN itself).
   */
  requireMountPoint?: string;
  /** Drain time between SIGTERM and SIGKILL. Defaults to 60. */
  stopTimeoutSeconds?: number;
  /** Open files; 20k IMAP connections need more than 40k. Defaults to 65536. */
  limitNofile?: number;
  /** Defaults to "simple". */
  type?: UnitType;
  /** Extra environment, e.g. { NODE_OPTIONS: "--max-old-space-size=2048" }. */
  environment?: Readonly<Record<string, string>>;
}

const R = "systemd";

const DESCRIPTIONS: Record<RuntimeService, string> = {
  smtp: "SMTP (MX, submission and relay)",
  lmtp: "LMTP delivery to the mailstore",
  imap: "IMAP on the mailstore",
  pop3: "POP3 on the mailstore",
  managesieve: "ManageSieve on the mailstore",
  webmail: "webmail",
  "imap-cache": "IMAP connection cache for webmail",
  stats: "statistics of blocked mail",
};

function unitTypeLine(type: UnitType): string[] {
  switch (type) {
    case "simple":
      return ["Type=simple"];
    case "notify":
      return ["Type=notify", "NotifyAccess=main"];
    default:
      return assertNever(type, "unit type");
  }
}

function absPath(field: string, path: string): string {
  if (!/^\/[A-Za-z0-9_./@+-]*$/.test(path) || path.includes("/../") || path.endsWith("/.."))
    throw new RenderError(
      R,
      field,
      `expected an absolute path of plain characters, got ${JSON.stringify(path)}`,
    );
  return path;
}

/** Renders `/etc/systemd/system/mailinfra-<service>.service`. */
export function renderSystemdUnit(params: SystemdUnitParams): string {
  if (!RUNTIME_SERVICES.includes(params.service))
    throw new RenderError(R, "service", `unknown service ${JSON.stringify(params.service)}`);
  const nodePath = absPath("nodePath", params.nodePath ?? "/usr/bin/node");
  const prefix = absPath("prefix", (params.prefix ?? "/opt/mailinfra").replace(/(.)\/+$/, "$1"));
  const configPath = absPath("configPath", params.configPath ?? "/etc/mailinfra/runtime.yaml");
  const user = params.user ?? "mailinfra";
  const group = params.group ?? user;
  for (const [k, v] of [
    ["user", user],
    ["group", group],
  ] as const)
    if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(v)) throw new RenderError(R, k, `not a user/group name: ${v}`);
  const readWritePaths = (params.readWritePaths ?? []).map((p, i) => absPath(`readWritePaths[${i}]`, p));
  const stopTimeout = params.stopTimeoutSeconds ?? 60;
  if (!Number.isInteger(stopTimeout) || stopTimeout < 1 || stopTimeout > 3600)
    throw new RenderError(R, "stopTimeoutSeconds", `expected 1-3600, got ${stopTimeout}`);
  const limitNofile = params.limitNofile ?? 65536;
  if (!Number.isInteger(limitNofile) || limitNofile < 1024 || limitNofile > 1048576)
    throw new RenderError(R, "limitNofile", `expected 1024-1048576, got ${limitNofile}`);
  const environment = Object.entries(params.environment ?? {}).map(([k, v]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
      throw new RenderError(R, "environment", `invalid variable name ${k}`);
    if (/["\\\n%$]/.test(v))
      throw new RenderError(R, `environment.${k}`, "value must not contain quotes, \\, %, $ or newlines");
    return `"${k}=${v}"`;
  });
  const requireMountPoint =
    params.requireMountPoint === undefined ? null : absPath("requireMountPoint", params.requireMountPoint);
  return renderTemplate("systemd/mailinfra.service.hbs", {
    service: params.service,
    unit: unitName(params.service),
    description: DESCRIPTIONS[params.service],
    typeLines: unitTypeLine(params.type ?? "simple"),
    execStart: `${nodePath} ${prefix}/mailinfra.mjs serve ${params.service} --config ${configPath}`,
    user,
    group,
    nonRoot: user !== "root",
    readWritePaths: readWritePaths.length === 0 ? null : readWritePaths.map((p) => `-${p}`).join(" "),
    requireMountPoint,
    stopTimeout,
    limitNofile,
    environment: environment.length === 0 ? null : environment.join(" "),
    enableAtBoot: params.enableAtBoot ?? true,
  });
}
