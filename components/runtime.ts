/**
 * `MailRuntime`: the runtime on one host: `/etc/mailinfra/runtime.yaml` for its
 * roles, the secret files it names (0600, owned by the services' user), filter
 * maps, one systemd unit per service, and the bundle from the staging area.
 *
 * The install step checks the staged runtime.yaml with the bundle's own
 * `config check`, installs only what differs, and restarts a service only when
 * something it uses changed (config, units, bundle, certificate); otherwise it
 * only starts services that are not running. Services Heartbeat owns (the
 * store's, with HA) are never enabled at boot nor started here: a change
 * restarts them only where they run (`try-restart`).
 */
import type { remote } from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { bundleInstallLines } from "./host.js";
import {
  type Connection,
  hostCommand,
  RESTART_MARKER,
  STAGE_DIR,
  script,
  sha256,
  shq,
  stageFile,
  TLS_RESTART_MARKER,
} from "./remote.js";
import { type RuntimeService, unitName } from "./render/index.js";
import { METRICS_PORTS, QUEUE_DIR, RUNTIME_CONFIG_PATH } from "./runtime-values.js";

export interface RuntimeUnit {
  service: RuntimeService;
  text: string;
  /** Started by Heartbeat on the active node, not here. */
  heartbeatManaged: boolean;
}

/** A file installed under /etc/mailinfra. */
export interface RuntimeFile {
  /** Name in the staging area. */
  stageName: string;
  path: string;
  mode: "0600" | "0640" | "0644";
  content: pulumi.Input<string>;
  /** The content is secret (owner = the services' user, mode 0600). */
  secret: boolean;
}

export interface MailRuntimeArgs {
  connection: Connection;
  runtimeYaml: string;
  files: readonly RuntimeFile[];
  units: readonly RuntimeUnit[];
  user: string;
  prefix: string;
  nodePath: string;
  /** Hash of the staged bundle, and the TLS fingerprint: a change re-runs the install. */
  bundleHash: string;
  tlsFingerprint: pulumi.Input<string>;
  dependsOn: pulumi.Input<pulumi.Resource>[];
}

/** Seconds a (re)started service has to answer 200 on its /healthz before the step fails. */
export const HEALTH_WAIT_SECONDS = 30;

/**
 * Run by the host's node: polls http://127.0.0.1:PORT/healthz every 250 ms
 * until it answers 200 (exit 0) or SECONDS pass (exit 1). Arguments: PORT SECONDS.
 */
export const HEALTH_WAIT_JS = [
  'const http = require("node:http");',
  "const port = Number(process.argv[1]);",
  "const end = Date.now() + Number(process.argv[2]) * 1000;",
  "function retry() { if (Date.now() > end) process.exit(1); setTimeout(probe, 250); }",
  "function probe() {",
  '  const req = http.get({ host: "127.0.0.1", port, path: "/healthz", timeout: 2000 }, (res) => {',
  "    res.resume();",
  "    if (res.statusCode === 200) process.exit(0);",
  "    retry();",
  "  });",
  '  req.on("timeout", () => req.destroy());',
  '  req.on("error", retry);',
  "}",
  "probe();",
].join("\n");

/**
 * The services that serve TLS (SMTP STARTTLS, submission, IMAPS/STARTTLS, POP3S,
 * ManageSieve STARTTLS): a new certificate restarts these, not LMTP, webmail or stats.
 */
export const TLS_SERVICES: readonly RuntimeService[] = ["smtp", "imap", "pop3", "managesieve"];

/** The shell test for "restart this unit": its config/bundle changed, or the certificate and it serves TLS. */
function restartTest(service: RuntimeService): string {
  return TLS_SERVICES.includes(service) ? '{ [ "$changed" = 1 ] || [ "$tls" = 1 ]; }' : '[ "$changed" = 1 ]';
}

export function installScript(
  a: Omit<MailRuntimeArgs, "connection" | "dependsOn" | "bundleHash" | "tlsFingerprint">,
): string {
  const u = a.user;
  const own = (f: RuntimeFile) => (f.secret ? `${u}:${u}` : `root:${u}`);
  const named = a.units.map((x) => ({ ...x, unit: unitName(x.service) }));
  const boot = named.filter((x) => !x.heartbeatManaged);
  const managed = named.filter((x) => x.heartbeatManaged);
  const node = shq(a.nodePath);
  const bundle = shq(`${a.prefix}/mailinfra.mjs`);
  return script(
    bundleInstallLines(a.prefix),
    // The runtime's own check of runtime.yaml, before anything is installed.
    `${node} ${bundle} config check ${STAGE_DIR}/runtime.yaml >&2 || { echo "mailinfra: runtime.yaml rejected by the runtime" >&2; exit 1; }`,
    `install -d -m 0750 -o ${u} -g ${u} ${QUEUE_DIR}`,
    `put ${STAGE_DIR}/runtime.yaml ${RUNTIME_CONFIG_PATH} 0640 root:${u}`,
    ...a.files.map(
      (f) => `put ${STAGE_DIR}/${f.stageName} ${shq(f.path)} ${f.secret ? "0600" : f.mode} ${own(f)}`,
    ),
    ...a.units.map(
      (x) => `put ${STAGE_DIR}/unit-${x.service} /etc/systemd/system/${unitName(x.service)} 0644 root:root`,
    ),
    `[ -e ${RESTART_MARKER} ] && changed=1`,
    `tls=0; [ -e ${TLS_RESTART_MARKER} ] && tls=1`,
    "started=0",
    'if [ "$changed" = 1 ]; then systemctl daemon-reload; fi',
    ...boot.map(({ service, unit }) =>
      [
        `systemctl enable -q ${unit}`,
        `if ${restartTest(service)}; then systemctl restart ${unit}; started=1; echo "restarted ${unit}";`,
        `elif ! systemctl is-active -q ${unit}; then systemctl start ${unit}; started=1; echo "started ${unit}"; fi`,
      ].join("\n"),
    ),
    ...managed.map(
      ({ service, unit }) =>
        `if ${restartTest(service)} && systemctl is-active -q ${unit}; then systemctl restart ${unit}; echo "restarted ${unit} (active node)"; fi`,
    ),
    // Only a service (re)started here must prove it is up: its /healthz answers 200
    // (it listens and its peers answer), so the step is not done before mail can flow.
    // A no-op run does not wait.
    ...boot.map(
      ({ service, unit }) =>
        `if [ "$started" = 1 ] && ! ${node} -e ${shq(HEALTH_WAIT_JS)} ${METRICS_PORTS[service]} ${HEALTH_WAIT_SECONDS}; then echo "mailinfra: ${unit} did not answer 200 on 127.0.0.1:${METRICS_PORTS[service]}/healthz within ${HEALTH_WAIT_SECONDS} s:" >&2; journalctl -u ${unit} -n 30 --no-pager >&2; exit 1; fi`,
    ),
    ...boot.map(
      ({ unit }) =>
        `systemctl is-active -q ${unit} || { echo "mailinfra: ${unit} is not running:" >&2; journalctl -u ${unit} -n 30 --no-pager >&2; exit 1; }`,
    ),
    `rm -f ${RESTART_MARKER} ${TLS_RESTART_MARKER}`,
  );
}

export class MailRuntime extends pulumi.ComponentResource {
  readonly install: remote.Command;

  constructor(name: string, args: MailRuntimeArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailinfra:runtime:MailRuntime", name, {}, opts);
    if (args.units.length === 0)
      throw new pulumi.ResourceError("a MailRuntime needs at least one service", this);
    const o = { parent: this, dependsOn: args.dependsOn };
    const staged = [
      stageFile(`${name}-config`, args.connection, { name: "runtime.yaml", content: args.runtimeYaml }, o),
      ...args.files.map((f) =>
        stageFile(
          `${name}-${f.stageName}`,
          args.connection,
          { name: f.stageName, content: f.secret ? pulumi.secret(f.content) : f.content },
          o,
        ),
      ),
      ...args.units.map((x) =>
        stageFile(
          `${name}-unit-${x.service}`,
          args.connection,
          { name: `unit-${x.service}`, content: x.text },
          o,
        ),
      ),
    ];
    const create = installScript(args);
    const units = args.units.map((x) => unitName(x.service)).join(" ");
    this.install = hostCommand(
      `${name}-install`,
      {
        connection: args.connection,
        create,
        delete: script(
          `systemctl disable -q --now ${units} || true`,
          `rm -f ${args.units.map((x) => `/etc/systemd/system/${unitName(x.service)}`).join(" ")}`,
          "systemctl daemon-reload",
          `rm -f ${RUNTIME_CONFIG_PATH} ${args.files.map((f) => shq(f.path)).join(" ")}`,
        ),
        triggers: [...staged.map((s) => s.triggers), args.bundleHash, args.tlsFingerprint, sha256(create)],
      },
      { parent: this, dependsOn: [...staged, ...args.dependsOn] },
    );
    this.registerOutputs({});
  }
}
