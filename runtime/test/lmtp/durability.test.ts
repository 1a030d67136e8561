/**
 * RFC 2033 §4.2 with "nothing lost": an LMTP 250 goes out only after the
 * message file and the directory that names it are on disk. The LMTP server
 * runs in its own process under strace, which records in order the fsyncs
 * (with the paths of their descriptors, -y), the rename into new/, and the
 * socket write that carries the 250.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CHILD = join(import.meta.dirname, "..", "store", "lmtp-child.ts");
const CLIENT = join(import.meta.dirname, "lmtp-client.py");

let dir: string;
let trace: string;
let child: ChildProcess;
let port: number;
let serverPid = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lmtp-fsync-"));
  trace = join(dir, "strace.txt");
  child = spawn(
    "strace",
    [
      "-f",
      "--seccomp-bpf",
      "-y",
      "-s",
      "64",
      "-e",
      "trace=fsync,fdatasync,rename,renameat,renameat2,write,writev,sendmsg",
      "-o",
      trace,
      process.execPath,
      "--import",
      "tsx",
      CHILD,
      join(dir, "mail"),
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  port = await new Promise<number>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /port (\d+) pid (\d+)\n/.exec(out);
      if (m) {
        serverPid = Number(m[2]);
        resolve(Number(m[1]));
      }
    });
    child.on("exit", (code) => reject(new Error(`strace/lmtp child exited with ${code}`)));
  });
}, 30_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    await new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      // the traced server by its PID: strace ends with it
      if (serverPid) process.kill(serverPid, "SIGTERM");
      else child.kill("SIGKILL");
    });
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

function lmtp(rcpts: string[], message: string): Promise<{ data: Array<[number, string]> }> {
  return new Promise((resolve, reject) => {
    const c = execFile("python3", [CLIENT], { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as { data: Array<[number, string]> });
    });
    c.stdin?.end(JSON.stringify({ host: "127.0.0.1", port, from: "s@example.net", rcpts, message }));
  });
}

interface Done {
  /** Line number where the call returned. */
  at: number;
  text: string;
}

/** Syscalls by the line where they completed (strace -f splits calls that block into unfinished/resumed). */
function completed(lines: string[]): Done[] {
  const open = new Map<string, string>();
  const out: Done[] = [];
  lines.forEach((line, at) => {
    const pid = line.split(" ")[0] ?? "";
    if (line.includes("<unfinished ...>")) {
      open.set(pid, line);
      return;
    }
    const resumed = /<\.\.\. \w+ resumed>/.test(line);
    const text = resumed ? `${open.get(pid) ?? ""} ${line}` : line;
    if (resumed) open.delete(pid);
    if (/= 0$|= \d+$/.test(line.trim())) out.push({ at, text });
  });
  return out;
}

describe("LMTP 250 only after fsync", () => {
  it("fsyncs the message and the directory of new/ before the 250 goes out", async () => {
    const r = await lmtp(["alice@example.org"], "Subject: durable\r\n\r\nkeep me\r\n");
    expect(r.data).toEqual([[250, "2.0.0 Delivered"]]);
    const lines = (await readFile(trace, "utf8")).split("\n");
    const calls = completed(lines);
    const reply = calls.find((c) => /write|sendmsg/.test(c.text) && c.text.includes("250 2.0.0 Delivered"));
    expect(reply, "the 250 on the socket").toBeDefined();
    const before = calls.filter((c) => c.at < (reply as Done).at).map((c) => c.text);
    const file = before.find((t) => /f(data)?sync\(\d+<[^>]*\/alice\/(tmp|new)\/[^/>]+>/.test(t));
    const rename = before.find((t) => /rename\w*\(.*\/alice\/tmp\/.*\/alice\/new\//.test(t));
    const newDir = before.find((t) => /f(data)?sync\(\d+<[^>]*\/alice\/new>/.test(t));
    expect(file, "fsync of the message file").toBeDefined();
    expect(rename, "rename tmp/ → new/").toBeDefined();
    expect(newDir, "fsync of new/").toBeDefined();
    // and in that order: file, rename, directory
    const at = (t: string | undefined) => before.indexOf(t as string);
    expect(at(file)).toBeLessThan(at(rename));
    expect(at(rename)).toBeLessThan(at(newDir));
  });
});
