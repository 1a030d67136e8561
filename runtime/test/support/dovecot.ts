/**
 * Debian's Dovecot on a free loopback port with a temp config, the reference
 * in comparison tests and benches. Maildir under a temp dir (`dir`/mail, owned
 * by the dovecot user: Dovecot refuses to run mail processes as root).
 *
 * - `protocol: "imap"` (dovecot-imapd): static passdb, every user with one
 *   password; mail at `dir`/mail/<user>. Used by runtime/test/imap,
 *   runtime/test/store and bench/imap.ts.
 * - `protocol: "lmtp"` (dovecot-lmtpd): any recipient accepted, mail at
 *   `dir`/mail/<local part>/Maildir. Used by bench/lmtp.ts.
 *
 * The master process is ended by its PID (`stop()`, or on exit of this process).
 */
import { spawn } from "node:child_process";
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, stopChild } from "./process.js";

export interface Dovecot {
  port: number;
  /** The master process; its descendants serve the connections. */
  pid: number;
  dir: string;
  stop(): Promise<void>;
}

export type DovecotOptions = {
  /** Dovecot's mail_fsync; "optimized" is its default (fsync saved mails, not every index write). */
  fsync?: "always" | "optimized" | "never";
} & ({ protocol?: "imap"; password: string; processes?: number } | { protocol: "lmtp" });

function dovecotUser(passwd: string): { uid: number; gid: number } {
  const line = passwd.split("\n").find((l) => l.startsWith("dovecot:"));
  if (!line) throw new Error("no dovecot user (install dovecot-core)");
  const f = line.split(":");
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/** The protocol's part of dovecot.conf and the first word of its greeting. */
function protocolConfig(
  options: DovecotOptions,
  dir: string,
  port: number,
  owner: { uid: number; gid: number },
): { conf: string; greeting: string } {
  if (options.protocol === "lmtp") {
    return {
      greeting: "220",
      conf: `
protocols = lmtp
mail_location = maildir:~/Maildir
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=${owner.uid} gid=${owner.gid} home=${dir}/mail/%n
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${port}
  }
  unix_listener lmtp {
    mode = 0600
  }
}
`,
    };
  }
  return {
    greeting: "* OK",
    conf: `
protocols = imap
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = static
  args = password=${options.password}
}
userdb {
  driver = static
  args = uid=${owner.uid} gid=${owner.gid} home=${dir}/mail/%u
}
mail_location = maildir:${dir}/mail/%u
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
`,
  };
}

/** Connects once: true when the server's first line starts with `greeting`. */
function greets(port: number, greeting: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: "127.0.0.1" }, () => {
      s.once("data", (d) => {
        s.destroy();
        resolve(d.toString().startsWith(greeting));
      });
    });
    s.on("error", () => resolve(false));
  });
}

export async function startDovecot(options: DovecotOptions): Promise<Dovecot> {
  const protocol = options.protocol ?? "imap";
  const dir = await mkdtemp(join(tmpdir(), "dovecot-"));
  await chmod(dir, 0o755);
  const port = await freePort();
  for (const d of ["run", "state", "mail"]) await mkdir(join(dir, d), { recursive: true });
  const owner = dovecotUser(await readFile("/etc/passwd", "utf8"));
  await chown(join(dir, "mail"), owner.uid, owner.gid);
  const { conf, greeting } = protocolConfig(options, dir, port, owner);
  const confFile = join(dir, "dovecot.conf");
  await writeFile(
    confFile,
    `
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
instance_name = dovecot-test-${protocol}-${port}
listen = 127.0.0.1
ssl = no
default_internal_user = dovecot
default_login_user = dovenull
default_internal_group = dovecot
first_valid_uid = 1
mail_privileged_group =
mail_fsync = ${options.fsync ?? "optimized"}
${conf}`,
  );
  const child = spawn("/usr/sbin/dovecot", ["-F", "-c", confFile], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const deadline = Date.now() + 15_000;
  while (!(await greets(port, greeting))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      const log = await readFile(join(dir, "dovecot.log"), "utf8").catch(() => "");
      child.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
      throw new Error(`dovecot did not start: ${stderr} ${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const stop = async (): Promise<void> => {
    await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  };
  process.once("exit", () => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  return { port, dir, pid: child.pid!, stop };
}
