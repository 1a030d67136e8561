/**
 * `HeartbeatPair`: Heartbeat 3 (haresources mode) on the two store nodes:
 * ha.cf, authkeys (0600, from a secret), haresources and the `mailinfra`
 * resource script, identical on both nodes. Heartbeat is started on either node
 * only after BOTH are configured (each start step depends on both configure
 * steps), so neither takes the resources alone while the other is half set up.
 */
import type { remote } from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import {
  type Connection,
  hostCommand,
  PUT_FUNCTION,
  STAGE_DIR,
  script,
  sha256,
  stageFile,
} from "./remote.js";

export interface HeartbeatNode {
  name: string;
  connection: Connection;
  /** What must be in place on this node first (SAN entry, runtime units). */
  dependsOn: pulumi.Input<pulumi.Resource>[];
}

export interface HeartbeatPairArgs {
  nodes: readonly [HeartbeatNode, HeartbeatNode];
  haCf: string;
  haresources: string;
  resourceScript: string;
  /** Rendered authkeys: holds the secret. */
  authkeys: pulumi.Input<string>;
}

const CHANGED = `${STAGE_DIR}/heartbeat-changed`;

export const CONFIGURE_SCRIPT = script(
  PUT_FUNCTION,
  `put ${STAGE_DIR}/ha.cf /etc/ha.d/ha.cf 0644 root:root`,
  `put ${STAGE_DIR}/haresources /etc/ha.d/haresources 0644 root:root`,
  `put ${STAGE_DIR}/authkeys /etc/ha.d/authkeys 0600 root:root`,
  `put ${STAGE_DIR}/ha-resource-mailinfra /etc/ha.d/resource.d/mailinfra 0755 root:root`,
  `if [ "$changed" = 1 ]; then touch ${CHANGED}; echo "heartbeat configuration changed"; fi`,
);

/**
 * Starts Heartbeat when it is not running; when it runs and its files changed,
 * tells it to re-read them (`heartbeat -r`) rather than restarting it, which
 * would move the resources to the other node. -r re-reads ha.cf and authkeys;
 * a changed haresources takes effect at the node's next Heartbeat start.
 */
export const START_SCRIPT = script(
  "systemctl enable -q heartbeat",
  "if systemctl is-active -q heartbeat; then",
  `  if [ -e ${CHANGED} ]; then /usr/libexec/heartbeat/heartbeat -r; echo "heartbeat: configuration re-read"; fi`,
  "else",
  "  systemctl start heartbeat",
  "  systemctl is-active -q heartbeat || { journalctl -u heartbeat -n 30 --no-pager >&2; exit 1; }",
  '  echo "heartbeat started"',
  "fi",
  `rm -f ${CHANGED}`,
);

export class HeartbeatPair extends pulumi.ComponentResource {
  readonly configured: remote.Command[];
  readonly started: remote.Command[];

  constructor(name: string, args: HeartbeatPairArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailinfra:heartbeat:HeartbeatPair", name, {}, opts);
    if (args.nodes.length !== 2 || args.nodes[0].name === args.nodes[1].name)
      throw new pulumi.ResourceError("a Heartbeat pair needs two different nodes", this);
    const authkeys = pulumi.secret(args.authkeys);
    this.configured = args.nodes.map((node) => {
      const n = `${name}-${node.name}`;
      const o = { parent: this, dependsOn: node.dependsOn };
      const files = [
        stageFile(`${n}-ha-cf`, node.connection, { name: "ha.cf", content: args.haCf }, o),
        stageFile(`${n}-haresources`, node.connection, { name: "haresources", content: args.haresources }, o),
        stageFile(`${n}-authkeys`, node.connection, { name: "authkeys", content: authkeys }, o),
        stageFile(
          `${n}-resource-script`,
          node.connection,
          { name: "ha-resource-mailinfra", content: args.resourceScript },
          o,
        ),
      ];
      return hostCommand(
        `${n}-configure`,
        {
          connection: node.connection,
          create: CONFIGURE_SCRIPT,
          delete: script(
            "rm -f /etc/ha.d/ha.cf /etc/ha.d/haresources /etc/ha.d/authkeys /etc/ha.d/resource.d/mailinfra",
          ),
          triggers: files.map((f) => f.triggers),
        },
        { parent: this, dependsOn: files },
      );
    });
    this.started = args.nodes.map((node, i) =>
      hostCommand(
        `${name}-${node.name}-start`,
        {
          connection: node.connection,
          create: START_SCRIPT,
          delete: script("systemctl disable -q --now heartbeat || true"),
          triggers: [this.configured[i]!.triggers, sha256(START_SCRIPT)],
        },
        // Both nodes configured before either starts.
        { parent: this, dependsOn: this.configured },
      ),
    );
    this.registerOutputs({});
  }
}
