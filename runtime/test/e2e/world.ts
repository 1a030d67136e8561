/**
 * The end-to-end world of flow.test.ts: the built bundle run as separate
 * processes, as systemd runs them on the hosts, next to the real peers
 * (slapd, dnsmasq, spamd, clamd) — all on loopback, free ports, temp dirs.
 * Every process is ended by its PID (`stopAll`); nothing is found by name.
 */
import { execFile, spawn } from "node:child_process";
import { chmod, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type Bundle, runBundle, type ServeProcess, spawnServe } from "../cli/bundle.js";
import { freePort } from "../filter/daemons.js";

const run = promisify(execFile);
const CLIENTS = fileURLToPath(new URL("./clients.py", import.meta.url));

/** How long a service gets to log "<svc> started" / to exit after SIGTERM. */
export const START_TIMEOUT_MS = 20_000;
export const STOP_TIMEOUT_MS = 5_000;

export interface Service {
  readonly name: string;
  readonly proc: ServeProcess;
  /** "host:port" as the service logged them at start. */
  readonly addresses: string[];
  port(i?: number): number;
  /** Last log lines, for failure messages. */
  tail(n?: number): string;
}

/** Tracks every `mailinfra serve` process started, so afterAll can end each by its PID. */
export class Processes {
  private readonly all = new Set<ServeProcess>();

  constructor(private readonly bundle: () => Bundle) {}

  /** `mailinfra serve <service> --config <file>`; resolves once it logged "<service> started". */
  async serve(service: string, configFile: string, label = service): Promise<Service> {
    const proc = spawnServe(this.bundle(), ["serve", service, "--config", configFile]);
    this.all.add(proc);
    void proc.exited.then(() => this.all.delete(proc));
    let started: Record<string, unknown>;
    try {
      started = await proc.waitFor((l) => l.msg === `${service} started`, START_TIMEOUT_MS);
    } catch (err) {
      await stop(proc, "SIGKILL");
      throw new Error(`${label} (mailinfra serve ${service}) did not start: ${(err as Error).message}`);
    }
    const addresses = (started.addresses as string[] | undefined) ?? [];
    return {
      name: label,
      proc,
      addresses,
      port(i = 0) {
        const a = addresses[i];
        if (!a) throw new Error(`${label} has no address #${i}: ${JSON.stringify(addresses)}`);
        return Number(a.slice(a.lastIndexOf(":") + 1));
      },
      tail: (n = 15) =>
        `${label} log tail:\n${proc.lines
          .slice(-n)
          .map((l) => JSON.stringify(l))
          .join("\n")}\nstderr: ${proc.stderr().slice(-2000)}`,
    };
  }

  /**
   * A service that must keep its port across restarts (the store VIP's LMTP,
   * an MX): a free port is chosen and written into its config by `write`;
   * if another test took the port in between (EADDRINUSE), another is tried.
   */
  async serveOnFreePort(
    service: string,
    label: string,
    write: (port: number) => Promise<string>,
  ): Promise<{ service: Service; port: number; file: string }> {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const file = await write(port);
      try {
        return { service: await this.serve(service, file, label), port, file };
      } catch (err) {
        if (attempt >= 3 || !String((err as Error).message).includes("EADDRINUSE")) throw err;
      }
    }
  }

  /** Ends every process still running: SIGTERM, then SIGKILL after STOP_TIMEOUT_MS. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.all].map((p) => stop(p, "SIGTERM")));
  }
}

/** Signals the process by its PID and waits for it to exit (SIGKILL if SIGTERM is not enough). */
export async function stop(
  proc: ServeProcess,
  signal: "SIGTERM" | "SIGKILL",
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const { child } = proc;
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
    process.kill(child.pid, signal);
    const timer = setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined)
        process.kill(child.pid, "SIGKILL");
    }, STOP_TIMEOUT_MS);
    const exit = await proc.exited;
    clearTimeout(timer);
    return exit;
  }
  return proc.exited;
}

/** runtime.yaml for one host. JSON is YAML (1.2), and what `config check` reads back is what we wrote. */
export async function writeConfig(dir: string, name: string, config: unknown): Promise<string> {
  const file = join(dir, `${name}.yaml`);
  await writeFile(file, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  return file;
}

/** A self-signed certificate for the relay's STARTTLS (openssl, as on the hosts). */
export async function makeCertificate(dir: string): Promise<{ certFile: string; keyFile: string }> {
  const certFile = join(dir, "tls-cert.pem");
  const keyFile = join(dir, "tls-key.pem");
  await run("openssl", [
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
    ...["-days", "2", "-subj", "/CN=relay1.example.org", "-keyout", keyFile, "-out", certFile],
  ]);
  await chmod(keyFile, 0o600);
  return { certFile, keyFile };
}

export type Reply = [number, string];

export interface SmtpRequest {
  host: string;
  port: number;
  /** Source address of the client's connection (a second loopback address for the DNSBL test). */
  source?: string;
  helo?: string;
  starttls?: boolean;
  auth?: { user: string; password: string };
  mail_from: string;
  rcpt_to: string[];
  /** The message, CRLF line ends; smtplib dot-stuffs it. */
  data: string;
}

export interface SmtpResult {
  connect?: Reply;
  ehlo?: Reply;
  features?: string[];
  starttls?: Reply;
  features_tls?: string[];
  auth?: Reply;
  mail?: Reply;
  rcpt?: Reply[];
  data?: Reply;
}

export interface ImapResult {
  login: string;
  messages: Array<{ uid: number; meta: string; raw: string }>;
}

export interface Pop3Result {
  login: string;
  uidl: string[];
  messages: string[];
}

/** Runs clients.py (Python's smtplib/imaplib/poplib); the request, passwords included, goes on stdin. */
export function python(mode: "smtp", req: SmtpRequest): Promise<SmtpResult>;
export function python(
  mode: "imap",
  req: { host: string; port: number; user: string; password: string },
): Promise<ImapResult>;
export function python(
  mode: "pop3",
  req: { host: string; port: number; user: string; password: string },
): Promise<Pop3Result>;
export function python(mode: string, req: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = spawn("python3", [CLIENTS, mode], { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => {
      out += c;
    });
    child.stderr.setEncoding("utf8").on("data", (c: string) => {
      err += c;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 40_000);
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`python3 clients.py ${mode} failed (${code ?? signal}): ${err.slice(-3000)}`));
        return;
      }
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`python3 clients.py ${mode}: not JSON: ${out.slice(0, 500)} ${err}`));
      }
    });
    child.stdin.end(JSON.stringify(req));
  });
}

/** Messages in a user's Maildir INBOX (new/ and cur/) whose text contains `token`. */
export async function mailboxFiles(storeRoot: string, uid: string, token: string): Promise<string[]> {
  const found: string[] = [];
  for (const sub of ["new", "cur"]) {
    const dir = join(storeRoot, uid, sub);
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const n of names) {
      const text = await readFile(join(dir, n), "latin1").catch(() => "");
      if (text.includes(token)) found.push(text);
    }
  }
  return found;
}

/** Polls until `check` returns a value (not undefined), or throws `explain()` after timeoutMs. */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  explain: () => string = () => "",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${explain()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `mailinfra queue list --config F` through the bundle: the queued ids, and the raw output. */
export async function queueList(
  bundle: Bundle,
  configFile: string,
): Promise<{ ids: string[]; text: string }> {
  const r = await runBundle(bundle, ["queue", "list", "--config", configFile]);
  if (r.code !== 0) throw new Error(`queue list exited ${r.code}: ${r.stderr}`);
  const ids = r.stdout
    .split("\n")
    .filter((l) => /^\S+ /.test(l) && !l.startsWith("--"))
    .map((l) => l.split(" ")[0] ?? "");
  return { ids, text: r.stdout };
}

/** The header section of a raw message, unfolded, as [name, value] in order. */
export function headerFields(raw: string): Array<[string, string]> {
  const end = raw.indexOf("\r\n\r\n");
  const head = (end < 0 ? raw : raw.slice(0, end)).replace(/\r\n[ \t]+/g, " ");
  return head.split("\r\n").map((line) => {
    const i = line.indexOf(":");
    return [line.slice(0, i).trim(), line.slice(i + 1).trim()] as [string, string];
  });
}
