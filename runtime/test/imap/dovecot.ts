/**
 * Debian's Dovecot (dovecot-imapd) on a free loopback port with a temp
 * config: static passdb (every user, one password), Maildir++ under a temp
 * dir. Used as the reference in comparison tests and in bench/imap.ts.
 * The process is ended by its PID.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Dovecot {
  port: number;
  /** The master process; its descendants serve the connections. */
  pid: number;
  dir: string;
  /** Maildir of a user (INBOX). */
  maildir(user: string): string;
  stop(): Promise<void>;
}

function dovecotUser(passwd: string): { uid: number; gid: number } {
  const line = passwd.split("\n").find((l) => l.startsWith("dovecot:"));
  if (!line) throw new Error("no dovecot user (install dovecot-imapd)");
  const f = line.split(":");
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startDovecot(options: {
  password: string;
  /** Dovecot's mail_fsync; "optimized" is its default (fsync saved mails, not every index write). */
  fsync?: "always" | "optimized" | "never";
  processes?: number;
}): Promise<Dovecot> {
  const dir = await mkdtemp(join(tmpdir(), "dovecot-"));
  await chmod(dir, 0o755);
  const port = await freePort();
  for (const d of ["run", "state", "mail"]) await mkdir(join(dir, d), { recursive: true });
  // Dovecot refuses to run mail processes as root: they run as the dovecot user
  const { uid, gid } = dovecotUser(await readFile("/etc/passwd", "utf8"));
  await chown(join(dir, "mail"), uid, gid);
  const conf = `
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
instance_name = dovecot-test-${port}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
default_internal_group = dovecot
mail_fsync = ${options.fsync ?? "optimized"}
passdb {
  driver = static
  args = password=${options.password}
}
userdb {
  driver = static
  args = uid=${uid} gid=${gid} home=${dir}/mail/%u
}
first_valid_uid = 1
mail_location = maildir:${dir}/mail/%u
mail_privileged_group =
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener imaps {
    port = 0
  }
  process_min_avail = ${options.processes ?? 2}
  service_count = 0
  client_limit = 30000
  process_limit = 64
}
service imap {
  process_limit = 30000
  client_limit = 1
}
service anvil {
  client_limit = 60000
}
default_client_limit = 60000
default_vsz_limit = 0
mail_max_userip_connections = 100000
protocol imap {
  mail_max_userip_connections = 100000
}
`;
  const confFile = join(dir, "dovecot.conf");
  await writeFile(confFile, conf);
  const child: ChildProcess = spawn("/usr/sbin/dovecot", ["-F", "-c", confFile], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: "127.0.0.1" }, () => {
        s.once("data", (d) => {
          s.destroy();
          resolve(d.toString().startsWith("* OK"));
        });
      });
      s.on("error", () => resolve(false));
    });
    if (ok) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      const log = await readFile(join(dir, "dovecot.log"), "utf8").catch(() => "");
      child.kill("SIGKILL");
      throw new Error(`dovecot did not start: ${stderr} ${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.pid) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    await rm(dir, { recursive: true, force: true });
  };
  process.once("exit", () => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  return { port, dir, pid: child.pid!, maildir: (user) => join(dir, "mail", user, "Maildir"), stop };
}
