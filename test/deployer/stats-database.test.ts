// The statistics database SQL, run for real against a throwaway PostgreSQL
// cluster: creates the role and database once, sets the password, and is
// idempotent on a re-run.
import { chmod, chown, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { statsDatabaseSql, statsDatabaseUrl } from "../../components/stats.js";

const versions = await execa("ls", ["/usr/lib/postgresql"], { reject: false });
const bin = `/usr/lib/postgresql/${versions.stdout.split("\n").sort().pop()}/bin`;
const canRun = process.getuid?.() === 0 && versions.exitCode === 0;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe.skipIf(!canRun)("statistics database SQL (real PostgreSQL)", () => {
  let dir: string;
  let port: number;
  const asPostgres = (cmd: string, args: string[], input?: string) =>
    execa("runuser", ["-u", "postgres", "--", cmd, ...args], input === undefined ? {} : { input });
  const psql = (sql: string) =>
    asPostgres(
      `${bin}/psql`,
      ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", dir, "-p", String(port), "-d", "postgres"],
      sql,
    );

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mailinfra-pg-"));
    const { stdout: uid } = await execa("id", ["-u", "postgres"]);
    await chown(dir, Number(uid), Number(uid));
    await chmod(dir, 0o700);
    port = await freePort();
    await asPostgres(`${bin}/initdb`, [
      "-D",
      `${dir}/data`,
      "-U",
      "postgres",
      "--auth-local=trust",
      "--auth-host=scram-sha-256",
    ]);
    await asPostgres(`${bin}/pg_ctl`, [
      "-D",
      `${dir}/data`,
      "-w",
      "-l",
      `${dir}/log`,
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`,
      "start",
    ]);
  }, 60_000);

  afterAll(async () => {
    if (dir) {
      await asPostgres(`${bin}/pg_ctl`, ["-D", `${dir}/data`, "-m", "fast", "-w", "stop"]).catch(
        () => undefined,
      );
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("creates the role and database, and a re-run changes nothing but the password", async () => {
    const pw = "it's a s3cret; with quotes";
    await psql(statsDatabaseSql("mailstats", "mailstats", pw));
    await psql(statsDatabaseSql("mailstats", "mailstats", pw));
    const { stdout } = await psql(
      "\\pset format unaligned\n\\pset tuples_only on\nSELECT datname || ' ' || pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'mailstats';",
    );
    expect(stdout.trim()).toBe("mailstats mailstats");
    // The password works over TCP (the URL the runtime gets).
    const url = statsDatabaseUrl("127.0.0.1", port, "mailstats", "mailstats", pw);
    const u = new URL(url);
    expect(decodeURIComponent(u.password)).toBe(pw);
    // The password goes in the environment (never argv), as libpq reads it from the URL's file on the host.
    const login = await execa(
      `${bin}/psql`,
      [
        "-X",
        "-At",
        "-h",
        u.hostname,
        "-p",
        u.port,
        "-U",
        decodeURIComponent(u.username),
        "-d",
        u.pathname.slice(1),
        "-c",
        "SELECT current_user",
      ],
      { reject: false, env: { PGPASSWORD: decodeURIComponent(u.password) } },
    );
    expect(login.stdout.trim(), login.stderr).toBe("mailstats");
  }, 60_000);
});
