// What @pulumi/command v1.2.1 does on `create`, carried out over SSH with ssh2
// (NOTES-pulumi.md): one connection per resource, environment as SSH env requests
// that fail the resource when refused, stdin, one trailing newline trimmed from
// stdout/stderr, a non-zero exit fails with `Process exited with status N: running
// "<cmd>"` and the output; CopyToRemote over SFTP.
import { createReadStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { basename, join, posix } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import type { SFTPWrapper, Stats } from "ssh2";
import { connect, type Endpoint, exec, sftp } from "../ssh.js";

export class StepError extends Error {
  constructor(
    message: string,
    readonly output = "",
  ) {
    super(message);
  }
}

/** The connection input as the program passed it (secrets already unwrapped). */
export function endpointOf(connection: unknown): Endpoint {
  if (!connection || typeof connection !== "object") throw new StepError("connection: missing");
  const c = connection as Record<string, unknown>;
  if (typeof c.host !== "string" || !c.host) throw new StepError("connection.host: missing");
  if (c.proxy !== undefined) throw new StepError("connection.proxy: not supported by the lab's applier");
  const ep: Endpoint = { host: c.host };
  if (typeof c.port === "number") ep.port = c.port;
  if (typeof c.user === "string") ep.user = c.user;
  if (typeof c.password === "string") ep.password = c.password;
  if (typeof c.privateKey === "string") ep.privateKey = c.privateKey;
  if (typeof c.privateKeyPassword === "string") ep.privateKeyPassword = c.privateKeyPassword;
  if (typeof c.hostKey === "string") ep.hostKey = c.hostKey;
  if (typeof c.agentSocketPath === "string") ep.agentSocketPath = c.agentSocketPath;
  if (typeof c.dialErrorLimit === "number") ep.dialErrorLimit = c.dialErrorLimit;
  if (typeof c.perDialTimeout === "number") ep.perDialTimeout = c.perDialTimeout;
  return ep;
}

/**
 * The provider's default create timeout is Pulumi's (none shown to mocks: resource
 * options do not reach them), so the lab bounds each step itself. The deployer's
 * steps declare 15 min; MAILINFRA_LAB_STEP_TIMEOUT (seconds) overrides.
 */
const STEP_TIMEOUT_MS = Number(process.env.MAILINFRA_LAB_STEP_TIMEOUT ?? 900) * 1000;

const trimOne = (s: string) => (s.endsWith("\n") ? s.slice(0, -1) : s);

/** Go's %q for the command in error messages (close enough for what commands hold). */
const goQuote = (s: string) => JSON.stringify(s);

export interface CommandInputs {
  connection: unknown;
  create?: string;
  environment?: Record<string, string>;
  stdin?: string;
}

export async function runCommand(inputs: CommandInputs): Promise<{ stdout: string; stderr: string }> {
  const cmd = inputs.create;
  if (cmd === undefined || cmd === "") return { stdout: "", stderr: "" };
  const client = await connect(endpointOf(inputs.connection));
  try {
    const opts: { env?: Record<string, string>; stdin?: string } = {};
    if (inputs.environment && Object.keys(inputs.environment).length) opts.env = inputs.environment;
    if (inputs.stdin !== undefined) opts.stdin = inputs.stdin;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        client.end();
        reject(new StepError(`timed out after ${STEP_TIMEOUT_MS / 1000} s: running ${goQuote(cmd)}`));
      }, STEP_TIMEOUT_MS);
    });
    const r = await Promise.race([exec(client, cmd, opts), timeout]).finally(() => clearTimeout(timer));
    if (r.code !== 0) {
      const why =
        r.code === null
          ? `Process exited with signal ${r.signal ?? "unknown"}`
          : `Process exited with status ${r.code}`;
      throw new StepError(`${why}: running ${goQuote(cmd)}:\n${r.combined}`, r.combined);
    }
    return { stdout: trimOne(r.stdout), stderr: trimOne(r.stderr) };
  } finally {
    client.end();
  }
}

const sftpStat = (s: SFTPWrapper, p: string) =>
  new Promise<Stats | undefined>((resolve, reject) =>
    s.stat(p, (err, st) => {
      if (!err) return resolve(st);
      // SFTP status 2 = SSH_FX_NO_SUCH_FILE.
      if ((err as { code?: number }).code === 2) return resolve(undefined);
      reject(new StepError(`failed to stat remote path ${p}: ${err.message}`));
    }),
  );

/** mkdir that accepts a directory made meanwhile (two steps on one host may share a parent). */
const sftpMkdir = (s: SFTPWrapper, p: string) =>
  new Promise<void>((resolve, reject) =>
    s.mkdir(p, (err) => {
      if (!err) return resolve();
      sftpStat(s, p).then(
        (st) =>
          st?.isDirectory()
            ? resolve()
            : reject(new StepError(`failed to create remote directory ${p}: ${err.message}`)),
        reject,
      );
    }),
  );

async function mkdirParents(s: SFTPWrapper, dir: string): Promise<void> {
  if (dir === "/" || dir === "." || dir === "") return;
  const st = await sftpStat(s, dir);
  if (st) {
    if (!st.isDirectory()) throw new StepError(`remote path ${dir} exists but is not a directory`);
    return;
  }
  await mkdirParents(s, posix.dirname(dir));
  await sftpMkdir(s, dir);
}

/**
 * Opens like the provider's Go SFTP client: no permissions sent, so sftp-server
 * creates the file 0666 less its umask (0644), and an existing file keeps its mode.
 * (ssh2's createWriteStream would send 0666 and get a world-writable file.)
 */
const openForWrite = (s: SFTPWrapper, dest: string) =>
  new Promise<Buffer>((resolve, reject) =>
    s.open(dest, "w", (err, handle) =>
      err ? reject(new StepError(`failed to create remote file ${dest}: ${err.message}`)) : resolve(handle),
    ),
  );

async function writeRemote(
  s: SFTPWrapper,
  dest: string,
  body: { text: string } | { path: string },
): Promise<void> {
  const handle = await openForWrite(s, dest);
  return new Promise((resolve, reject) => {
    const out = s.createWriteStream(dest, { handle, autoClose: true });
    out.on("error", (err: Error) =>
      reject(new StepError(`failed to create remote file ${dest}: ${err.message}`)),
    );
    out.on("close", () => resolve());
    if ("text" in body) out.end(body.text);
    else {
      const src = createReadStream(body.path);
      src.on("error", (err) => reject(new StepError(`failed to read ${body.path}: ${err.message}`)));
      src.pipe(out);
    }
  });
}

async function copyDir(s: SFTPWrapper, src: string, dst: string): Promise<void> {
  for (const e of await readdir(src, { withFileTypes: true })) {
    const from = join(src, e.name);
    const to = posix.join(dst, e.name);
    if (e.isDirectory()) {
      const st = await sftpStat(s, to);
      if (!st) await sftpMkdir(s, to);
      else if (!st.isDirectory()) throw new StepError(`remote path ${to} exists but is not a directory`);
      await copyDir(s, from, to);
    } else {
      await writeRemote(s, to, { path: from });
    }
  }
}

/**
 * CopyToRemote: a StringAsset's text, a FileAsset's file, or a FileArchive's file
 * or directory, to remotePath. Parents are created; into an existing directory the
 * source keeps its name; a directory onto an existing file fails. Modes are not
 * kept (SFTP): programs chmod explicitly.
 */
export async function copyToRemote(inputs: { connection: unknown; source: unknown; remotePath?: string }) {
  const remotePath = inputs.remotePath;
  if (!remotePath) throw new StepError("remotePath: missing");
  const source = inputs.source;
  let body: { text: string } | { path: string };
  // The SDK deserializes assets into these classes; their fields are promises.
  const fields = source as { text?: Promise<string>; path?: Promise<string> };
  if (source instanceof pulumi.asset.StringAsset && fields.text) body = { text: String(await fields.text) };
  else if (source instanceof pulumi.asset.FileAsset && fields.path)
    body = { path: String(await fields.path) };
  else if (source instanceof pulumi.asset.FileArchive && fields.path)
    body = { path: String(await fields.path) };
  else throw new StepError("source: must be a FileAsset, StringAsset or FileArchive");

  const client = await connect(endpointOf(inputs.connection));
  try {
    const s = await sftp(client);
    try {
      await mkdirParents(s, posix.dirname(remotePath));
      const destStat = await sftpStat(s, remotePath);
      if ("text" in body) {
        if (destStat?.isDirectory()) {
          throw new StepError(`remote path ${remotePath} is a directory; a text asset needs a file path`);
        }
        await writeRemote(s, remotePath, body);
        return;
      }
      const srcStat = await stat(body.path);
      if (srcStat.isDirectory()) {
        if (destStat && !destStat.isDirectory()) {
          throw new StepError(`remote path ${remotePath} exists but is not a directory`);
        }
        if (!destStat) await sftpMkdir(s, remotePath);
        let dest = remotePath;
        if (!body.path.endsWith("/")) {
          dest = posix.join(remotePath, basename(body.path));
          const st = await sftpStat(s, dest);
          if (st && !st.isDirectory())
            throw new StepError(`remote path ${dest} exists but is not a directory`);
          if (!st) await sftpMkdir(s, dest);
        }
        await copyDir(s, body.path, dest);
      } else {
        const dest = destStat?.isDirectory() ? posix.join(remotePath, basename(body.path)) : remotePath;
        await writeRemote(s, dest, body);
      }
    } finally {
      s.end();
    }
  } finally {
    client.end();
  }
}
