// SSH to the lab's hosts with ssh2: connect (with the command provider's dial
// retries), exec with environment variables whose acceptance is checked, SFTP.
import { readFileSync } from "node:fs";
import { Client, type ClientChannel, type ConnectConfig, type SFTPWrapper } from "ssh2";
import { sleep } from "./exec.js";
import { paths } from "./paths.js";

export interface Endpoint {
  host: string;
  port?: number;
  user?: string;
  password?: string;
  privateKey?: string;
  privateKeyPassword?: string;
  /** authorized_keys-style public key ("ssh-ed25519 AAAA…"); no check when absent. */
  hostKey?: string;
  agentSocketPath?: string;
  /** Dial errors allowed before giving up; -1 = unlimited. Defaults to 10. */
  dialErrorLimit?: number;
  /** Seconds per dial attempt; 0 = no limit. Defaults to 15. */
  perDialTimeout?: number;
}

function connectOnce(ep: Endpoint): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    const expected = ep.hostKey ? Buffer.from(ep.hostKey.trim().split(/\s+/)[1] ?? "", "base64") : undefined;
    const cfg: ConnectConfig = {
      host: ep.host,
      port: ep.port ?? 22,
      username: ep.user ?? "root",
      readyTimeout: (ep.perDialTimeout ?? 15) > 0 ? (ep.perDialTimeout ?? 15) * 1000 : 2 ** 31 - 1,
      keepaliveInterval: 5000,
      keepaliveCountMax: 6,
    };
    if (ep.privateKey) cfg.privateKey = ep.privateKey;
    if (ep.privateKeyPassword) cfg.passphrase = ep.privateKeyPassword;
    if (ep.password) {
      cfg.password = ep.password;
      cfg.tryKeyboard = true;
    }
    const agent = ep.agentSocketPath ?? process.env.SSH_AUTH_SOCK;
    if (agent) cfg.agent = agent;
    if (expected) cfg.hostVerifier = (key: Buffer) => key.equals(expected);
    if (ep.password) {
      client.on("keyboard-interactive", (_n, _i, _l, prompts, finish) =>
        finish(prompts.map(() => ep.password ?? "")),
      );
    }
    client.once("ready", () => resolve(client));
    // Kept for the connection's life: a host going down mid-step must fail the
    // step (exec sees the close), not crash the process with an unhandled error.
    client.on("error", (err) => {
      client.end();
      reject(err);
    });
    client.connect(cfg);
  });
}

/** Dials like the command provider: retries until `dialErrorLimit` dials have failed. */
export async function connect(ep: Endpoint): Promise<Client> {
  const limit = ep.dialErrorLimit ?? 10;
  for (let dials = 1; ; dials++) {
    try {
      return await connectOnce(ep);
    } catch (err) {
      if (limit > -1 && dials > limit) throw err;
      // Authentication failures do not get better by retrying quickly, but the
      // provider retries them too; back off up to 2 s.
      await sleep(Math.min(2000, 100 * 2 ** Math.min(dials, 5)));
    }
  }
}

interface Internals {
  _protocol: {
    env(chan: number, key: string, val: string, wantReply: boolean): void;
    exec(chan: number, cmd: string, wantReply: boolean): void;
  };
  _chanMgr: { get(id: number): { _callbacks: ((hadErr: unknown) => void)[]; close(): void } | undefined };
}

/**
 * ssh2's exec({env}) sends env requests without asking for a reply, so a variable
 * the server refuses (no AcceptEnv) is silently dropped. The command provider
 * fails instead. This wraps the connection's protocol object so each env request
 * wants a reply, and the exec request is only sent once every reply said yes;
 * otherwise exec's callback gets the error and the command never runs.
 * (ssh2 1.17.0 internals: env is sent before exec on the same channel, and
 * replies are matched to the channel's callback queue in order.)
 */
function checkEnvReplies(client: Client): void {
  const internals = client as unknown as Internals;
  const proto = internals._protocol;
  const origEnv = proto.env.bind(proto);
  const origExec = proto.exec.bind(proto);
  const pending = new Map<number, { waiting: number; refused: string[]; ready?: () => void }>();
  proto.env = (chanId, key, val) => {
    const chan = internals._chanMgr.get(chanId);
    if (!chan) throw new Error(`ssh: no channel ${chanId}`);
    const p = pending.get(chanId) ?? { waiting: 0, refused: [] };
    pending.set(chanId, p);
    p.waiting++;
    chan._callbacks.push((hadErr) => {
      if (hadErr) p.refused.push(key);
      p.waiting--;
      if (p.waiting === 0) p.ready?.();
    });
    origEnv(chanId, key, val, true);
  };
  proto.exec = (chanId, cmd, wantReply) => {
    const p = pending.get(chanId);
    if (!p) return origExec(chanId, cmd, wantReply);
    const go = () => {
      pending.delete(chanId);
      if (p.refused.length === 0) return origExec(chanId, cmd, wantReply);
      const chan = internals._chanMgr.get(chanId);
      const execCb = chan?._callbacks.shift();
      chan?.close();
      execCb?.(
        new Error(
          `ssh: setenv failed: the server refused ${p.refused.map((k) => `'${k}'`).join(", ")} (does its sshd_config AcceptEnv it?)`,
        ),
      );
    };
    if (p.waiting === 0) go();
    else p.ready = go;
  };
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** stdout and stderr interleaved as they arrived. */
  combined: string;
  code: number | null;
  signal: string | undefined;
}

export function exec(
  client: Client,
  command: string,
  opts: { env?: Record<string, string>; stdin?: string } = {},
): Promise<ExecResult> {
  if (
    opts.env &&
    Object.keys(opts.env).length &&
    !(client as unknown as { _envChecked?: boolean })._envChecked
  ) {
    checkEnvReplies(client);
    (client as unknown as { _envChecked?: boolean })._envChecked = true;
  }
  return new Promise((resolve, reject) => {
    const execOpts = opts.env && Object.keys(opts.env).length ? { env: opts.env } : {};
    const lost = () => reject(new Error(`ssh: connection lost while running ${JSON.stringify(command)}`));
    client.once("close", lost);
    client.exec(command, execOpts, (err: Error | undefined, stream: ClientChannel) => {
      if (err) {
        client.off("close", lost);
        return reject(err);
      }
      let stdout = "";
      let stderr = "";
      let combined = "";
      let code: number | null = null;
      let signal: string | undefined;
      stream.setEncoding("utf8");
      stream.stderr.setEncoding("utf8");
      stream.on("data", (d: string) => {
        stdout += d;
        combined += d;
      });
      stream.stderr.on("data", (d: string) => {
        stderr += d;
        combined += d;
      });
      stream.on("exit", (c: number | null, s?: string) => {
        code = c;
        signal = s ?? undefined;
      });
      stream.on("close", () => {
        client.off("close", lost);
        resolve({ stdout, stderr, combined, code, signal });
      });
      if (opts.stdin !== undefined && opts.stdin.length > 0) stream.end(opts.stdin);
      else stream.end();
    });
  });
}

export function sftp(client: Client): Promise<SFTPWrapper> {
  return new Promise((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
}

/** The lab's own key, for the lab's tools (status, tests). */
export function labEndpoint(address: string, dialErrorLimit = 10): Endpoint {
  return { host: address, user: "root", privateKey: readFileSync(paths.key, "utf8"), dialErrorLimit };
}

/** Runs one command on a lab host over a fresh connection. */
export async function labExec(
  address: string,
  command: string,
  opts: { stdin?: string } = {},
): Promise<ExecResult> {
  const client = await connect(labEndpoint(address));
  try {
    return await exec(client, command, opts);
  } finally {
    client.end();
  }
}
