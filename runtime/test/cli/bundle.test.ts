// The `mailinfra` command as the hosts run it: the esbuild bundle, alone in a
// temp dir without node_modules, started with node.

import { execFile } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { createServer, connect as netConnect, type Server } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SERVICES } from "../../src/cli/services.js";
import { SERVICE_NAMES } from "../../src/service.js";
import { type Slapd, startSlapd } from "../support/slapd.js";
import { type Bundle, buildBundle, curl, RUNTIME_DIR, runBundle, spawnServe } from "./bundle.js";

const run = promisify(execFile);
let bundle: Bundle;
beforeAll(async () => {
  bundle = await buildBundle();
});
afterAll(async () => {
  await bundle?.remove();
});

async function writeConfig(name: string, text: string): Promise<string> {
  const file = join(bundle.dir, name);
  await writeFile(file, text);
  return file;
}

describe("version", () => {
  it("prints the package version and the Node.js version", async () => {
    const pkg = JSON.parse(await readFile(join(RUNTIME_DIR, "package.json"), "utf8")) as { version: string };
    const r = await runBundle(bundle, ["version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(`^mailinfra ${pkg.version.replaceAll(".", "\\.")} .*node ${process.version}\\n$`),
    );
  });

  it("prints usage and exits 2 for an unknown command or option", async () => {
    const r = await runBundle(bundle, ["frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
    expect(r.stderr).toContain("mailinfra config check [FILE]");
    const o = await runBundle(bundle, ["version", "--frob"]);
    expect(o.code).toBe(2);
    expect(o.stderr).toContain("--frob");
  });
});

describe("Node.js version", () => {
  it("refuses a Node.js older than 18.20.4 before loading anything (an old 18.19 simulated)", async () => {
    const fake =
      'data:text/javascript,Object.defineProperty(process.versions,"node",{value:"18.19.0"});' +
      'Object.defineProperty(process,"version",{value:"v18.19.0"})';
    const r = await runBundle(bundle, ["--import", fake, "--", "version"], 20_000, true);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("mailinfra needs Node.js >= 18.20.4; this is v18.19.0\n");
    expect(r.stdout).toBe("");
  });
});

describe("config check", () => {
  it("accepts the example runtime.yaml (every section)", async () => {
    const r = await runBundle(bundle, ["config", "check", join(RUNTIME_DIR, "examples/runtime.yaml")]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("ok\n");
    expect(r.code).toBe(0);
  });

  it("accepts every per-role example in examples/ (mx, relay, store)", async () => {
    const examples = (await readdir(join(RUNTIME_DIR, "examples"))).filter((f) => f.endsWith(".yaml"));
    expect(examples).toEqual(expect.arrayContaining(["mx.yaml", "relay.yaml", "store.yaml"]));
    for (const f of examples) {
      const r = await runBundle(bundle, ["config", "check", join(RUNTIME_DIR, "examples", f)]);
      expect({ file: f, code: r.code, out: r.stdout, err: r.stderr }).toEqual({
        file: f,
        code: 0,
        out: "ok\n",
        err: "",
      });
    }
  });

  it("names the key path and line of each schema problem", async () => {
    const file = await writeConfig(
      "bad-schema.yaml",
      [
        "host:",
        "  name: store1",
        "  roles: [store, mailhub]",
        "imap:",
        '  listen: ["143"]',
        "  limits:",
        "    maxLineByte: 1000",
        "ldap:",
        "  uris: [http://ldap1]",
        "",
      ].join("\n"),
    );
    const r = await runBundle(bundle, ["config", "check", file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    const lines = r.stderr.trim().split("\n");
    expect(lines).toContain(`${file}: imap.listen[0]: expected host:port, e.g. 0.0.0.0:143 (line 5)`);
    expect(lines).toContain(`${file}: imap.limits.maxLineByte: unknown key (line 7)`);
    expect(lines).toContain(`${file}: ldap.uris[0]: expected an ldap:// or ldaps:// URI (line 9)`);
    expect(lines).toContain(`${file}: ldap.baseDn: required key is missing (line 9)`);
    expect(lines.find((l) => l.includes("host.roles[1]"))).toMatch(/Invalid option.*\(line 3\)$/);
  });

  it("reports YAML syntax errors with their line and column", async () => {
    const file = await writeConfig("bad-yaml.yaml", "host:\n  name: a\n  name: b\nlog: [1, 2\n");
    const r = await runBundle(bundle, ["config", "check", file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${file}: line 3, column 3: Map keys must be unique`);
    expect(r.stderr).toMatch(/line \d+, column \d+: Flow sequence/);
  });

  it("fails clearly on a missing file and takes --config as the file", async () => {
    const r = await runBundle(bundle, ["config", "check", join(bundle.dir, "nope.yaml")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`${join(bundle.dir, "nope.yaml")}: no such file\n`);
    const c = await runBundle(bundle, [
      "config",
      "check",
      "--config",
      join(RUNTIME_DIR, "examples/runtime.yaml"),
    ]);
    expect(c.stdout).toBe("ok\n");
  });
});

describe("queue (registered command)", () => {
  it("reaches queue/cli.ts with the config's queue.dir, and refuses a config without one", async () => {
    const file = await writeConfig(
      "queue.yaml",
      `host: { name: mx1, roles: [mx] }\nqueue: { dir: "${join(bundle.dir, "q")}", lmtp: { host: 127.0.0.1 } }\n`,
    );
    const r = await runBundle(bundle, ["queue", "frob", "--config", file]);
    expect(r.stderr).toMatch(/^usage: mailinfra queue list/);
    expect(r.code).toBe(2);
    const none = await writeConfig("noqueue.yaml", "host: { name: mx1, roles: [mx] }\n");
    const n = await runBundle(bundle, ["queue", "list", "-c", none]);
    expect(n.code).toBe(1);
    expect(n.stderr).toBe(`${none}: no \`queue\` section\n`);
  });
});

describe("serve", () => {
  let ldap: Slapd;
  beforeAll(async () => {
    ldap = await startSlapd();
  });
  afterAll(async () => {
    await ldap?.stop();
  });

  function smtpConfig(metricsListen: string, extra = ""): string {
    return [
      "host: { name: test1.example.org, roles: [mx], drainTimeoutSeconds: 1 }",
      "log: { level: debug }",
      `metrics: { listen: "${metricsListen}" }`,
      `ldap: { uris: ["${ldap.uri}"], baseDn: "${ldap.baseDn}", bindDn: "${ldap.bindDn}", bindPasswordFile: "${ldap.bindPasswordFile}" }`,
      'smtp: { domains: [example.org], mx: { listen: ["127.0.0.1:0"] }, reverseLookup: false }',
      `queue: { dir: "${join(bundle.dir, "queue")}", lmtp: { host: 127.0.0.1, port: 1 } }`,
      extra,
    ].join("\n");
  }

  it("serves smtp with /metrics and /healthz, drains on SIGTERM and exits 0", async () => {
    const file = await writeConfig("smtp.yaml", smtpConfig("127.0.0.1:0"));
    const serve = spawnServe(bundle, ["serve", "smtp", "--config", file]);
    try {
      const started = await serve.waitFor((l) => l.msg === "smtp started");
      expect(started).toMatchObject({ level: "info", service: "smtp", host: "test1.example.org" });
      const metricsAddress = String(started.metrics);
      const [smtpAddress] = started.addresses as string[];

      const health = await curl(`http://${metricsAddress}/healthz`);
      expect(health).toEqual({ status: 200, body: "ok\n" });
      const metrics = await curl(`http://${metricsAddress}/metrics`);
      expect(metrics.status).toBe(200);
      expect(metrics.body).toMatch(/^mailinfra_build_info\{version="[^"]+".*service="smtp".*\} 1$/m);
      expect(metrics.body).toMatch(/^mailinfra_process_resident_memory_bytes\{.*\} \d+/m);
      expect((await curl(`http://${metricsAddress}/nope`)).status).toBe(404);

      // A client still connected when SIGTERM arrives: the drain waits for it up to the deadline.
      const [host, port] = [
        smtpAddress!.slice(0, smtpAddress!.lastIndexOf(":")),
        smtpAddress!.split(":").pop(),
      ];
      const client = netConnect({ host, port: Number(port) });
      await once(client, "data");
      client.on("error", () => {});
      serve.child.kill("SIGTERM");
      const exit = await serve.exited;
      client.destroy();
      expect(exit).toEqual({ code: 0, signal: null });
      expect(serve.lines.some((l) => l.msg === "draining" && l.signal === "SIGTERM")).toBe(true);
      expect(serve.lines.at(-1)).toMatchObject({ msg: "smtp stopped" });
      // The bind password never reaches the log.
      expect(JSON.stringify(serve.lines)).not.toContain(ldap.bindPassword);
    } finally {
      serve.child.kill("SIGKILL");
    }
  });

  it("serves lmtp on the Maildir store: Python's smtplib.LMTP delivers, then SIGTERM → exit 0", async () => {
    const root = await mkdtemp(join(bundle.dir, "store-"));
    const file = await writeConfig(
      "lmtp.yaml",
      [
        "host: { name: store1.example.org, roles: [store], drainTimeoutSeconds: 2 }",
        'metrics: { listen: "127.0.0.1:0" }',
        `ldap: { uris: ["${ldap.uri}"], baseDn: "${ldap.baseDn}", bindDn: "${ldap.bindDn}", bindPasswordFile: "${ldap.bindPasswordFile}" }`,
        `store: { root: "${root}" }`,
        'lmtp: { listen: ["127.0.0.1:0"] }',
      ].join("\n"),
    );
    const serve = spawnServe(bundle, ["serve", "lmtp", "--config", file]);
    try {
      const started = await serve.waitFor((l) => l.msg === "lmtp started");
      const [lmtpAddress] = started.addresses as string[];
      const port = Number(lmtpAddress?.split(":").pop());
      const script = [
        "import smtplib, sys",
        "s = smtplib.LMTP('127.0.0.1', int(sys.argv[1]))",
        "refused = s.sendmail('sender@example.net', ['a.liddell@example.org', 'nobody@example.org'],",
        "  b'Subject: via serve\\r\\n\\r\\nhello\\r\\n')",
        "print(refused)",
        "s.quit()",
      ].join("\n");
      const { stdout } = await run("python3", ["-c", script, String(port)]);
      expect(stdout).toContain("'nobody@example.org': (550");
      const delivered = await readdir(join(root, "alice", "new"));
      expect(delivered).toHaveLength(1);
      expect(await readFile(join(root, "alice", "new", delivered[0]!), "utf8")).toContain(
        "Subject: via serve",
      );
      expect((await curl(`http://${String(started.metrics)}/healthz`)).status).toBe(200);
      serve.child.kill("SIGTERM");
      expect(await serve.exited).toEqual({ code: 0, signal: null });
    } finally {
      serve.child.kill("SIGKILL");
    }
  });

  it("services sharing one runtime.yaml each take their metrics address (metrics.services)", async () => {
    const root = await mkdtemp(join(bundle.dir, "shared-store-"));
    // The shared default address is taken by lmtp; imap has its own.
    const blocker: Server = createServer().listen(0, "127.0.0.1");
    await once(blocker, "listening");
    const address = blocker.address();
    const shared = typeof address === "object" && address ? address.port : 0;
    await new Promise<void>((r) => blocker.close(() => r()));
    const file = await writeConfig(
      "shared-store.yaml",
      [
        "host: { name: store1.example.org, roles: [store], drainTimeoutSeconds: 1 }",
        `metrics: { listen: "127.0.0.1:${shared}", services: { imap: "127.0.0.1:0" } }`,
        `ldap: { uris: ["${ldap.uri}"], baseDn: "${ldap.baseDn}", bindDn: "${ldap.bindDn}", bindPasswordFile: "${ldap.bindPasswordFile}" }`,
        `store: { root: "${root}" }`,
        'lmtp: { listen: ["127.0.0.1:0"] }',
        'imap: { listen: ["127.0.0.1:0"] }',
      ].join("\n"),
    );
    const lmtp = spawnServe(bundle, ["serve", "lmtp", "--config", file]);
    const imap = spawnServe(bundle, ["serve", "imap", "--config", file]);
    try {
      const l = await lmtp.waitFor((line) => line.msg === "lmtp started");
      const i = await imap.waitFor((line) => line.msg === "imap started");
      expect(l.metrics).toBe(`127.0.0.1:${shared}`);
      expect(i.metrics).not.toBe(l.metrics);
      for (const m of [l.metrics, i.metrics])
        expect((await curl(`http://${String(m)}/healthz`)).status).toBe(200);
      lmtp.child.kill("SIGTERM");
      imap.child.kill("SIGTERM");
      expect(await lmtp.exited).toEqual({ code: 0, signal: null });
      expect(await imap.exited).toEqual({ code: 0, signal: null });
    } finally {
      lmtp.child.kill("SIGKILL");
      imap.child.kill("SIGKILL");
    }
  });

  it.each(["imap", "pop3"])(
    "serves %s: curl logs in with the directory's password, not a wrong one",
    async (svc) => {
      const root = await mkdtemp(join(bundle.dir, `${svc}-store-`));
      const file = await writeConfig(
        `${svc}.yaml`,
        [
          "host: { name: store1.example.org, roles: [store], drainTimeoutSeconds: 2 }",
          'metrics: { listen: "127.0.0.1:0" }',
          `ldap: { uris: ["${ldap.uri}"], baseDn: "${ldap.baseDn}", bindDn: "${ldap.bindDn}", bindPasswordFile: "${ldap.bindPasswordFile}" }`,
          `store: { root: "${root}" }`,
          `${svc}: { listen: ["127.0.0.1:0"] }`,
        ].join("\n"),
      );
      const serve = spawnServe(bundle, ["serve", svc, "--config", file]);
      try {
        const started = await serve.waitFor((l) => l.msg === `${svc} started`);
        const [address] = started.addresses as string[];
        expect((await curl(`http://${String(started.metrics)}/healthz`)).status).toBe(200);
        const ok = await run("curl", [
          "-s",
          "-S",
          "--max-time",
          "10",
          `${svc}://${address}/`,
          "-u",
          "alice:alice-secret-1",
        ]);
        if (svc === "imap") expect(ok.stdout).toContain('"INBOX"');
        await expect(
          run("curl", ["-s", "-S", "--max-time", "10", `${svc}://${address}/`, "-u", "alice:wrong"]),
        ).rejects.toMatchObject({ code: 67 }); // curl: login denied
        serve.child.kill("SIGTERM");
        expect(await serve.exited).toEqual({ code: 0, signal: null });
      } finally {
        serve.child.kill("SIGKILL");
      }
    },
  );

  it("a second signal during a long drain exits at once (code 1)", async () => {
    const file = await writeConfig(
      "slow-drain.yaml",
      smtpConfig("127.0.0.1:0").replace("drainTimeoutSeconds: 1", "drainTimeoutSeconds: 60"),
    );
    const serve = spawnServe(bundle, ["serve", "smtp", "--config", file]);
    try {
      const started = await serve.waitFor((l) => l.msg === "smtp started");
      const smtpAddress = (started.addresses as string[])[0]!;
      const client = netConnect({ host: "127.0.0.1", port: Number(smtpAddress.split(":").pop()) });
      client.on("error", () => {});
      await once(client, "data");
      const t0 = Date.now();
      serve.child.kill("SIGINT");
      await serve.waitFor((l) => l.msg === "draining");
      serve.child.kill("SIGINT");
      expect(await serve.exited).toEqual({ code: 1, signal: null });
      expect(Date.now() - t0).toBeLessThan(5_000);
      expect(serve.lines.at(-1)).toMatchObject({
        msg: "second signal: exiting without waiting for the drain",
      });
      client.destroy();
    } finally {
      serve.child.kill("SIGKILL");
    }
  });

  it("exits 1 with the reason logged when the metrics port is taken", async () => {
    const blocker: Server = createServer().listen(0, "127.0.0.1");
    await once(blocker, "listening");
    try {
      const address = blocker.address();
      const port = typeof address === "object" && address ? address.port : 0;
      const file = await writeConfig("busy.yaml", smtpConfig(`127.0.0.1:${port}`));
      const serve = spawnServe(bundle, ["serve", "smtp", "--config", file]);
      const exit = await serve.exited;
      expect(exit.code).toBe(1);
      const fatal = serve.lines.find((l) => l.level === "fatal");
      expect(String(fatal?.msg)).toContain("EADDRINUSE");
    } finally {
      blocker.close();
    }
  });

  it("exits 1 naming the key when the config is bad, or the section that is missing", async () => {
    const bad = await writeConfig("bad-serve.yaml", smtpConfig("127.0.0.1:0", "lmtp: { listen: [nope] }"));
    const r = await runBundle(bundle, ["serve", "smtp", "--config", bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${bad}: lmtp.listen[0]: expected host:port`);

    const noQueue = await writeConfig(
      "no-queue.yaml",
      smtpConfig("127.0.0.1:0")
        .split("\n")
        .filter((l) => !l.startsWith("queue:"))
        .join("\n"),
    );
    const q = await runBundle(bundle, ["serve", "smtp", "--config", noQueue]);
    expect(q.code).toBe(1);
    expect(q.stderr).toContain("service smtp needs section(s): queue");
  });

  it("exits 1 with a clear log when a referenced file is missing", async () => {
    const file = await writeConfig(
      "no-cert.yaml",
      smtpConfig("127.0.0.1:0", `tls: { certFile: ${bundle.dir}/none.pem, keyFile: ${bundle.dir}/none.key }`),
    );
    const serve = spawnServe(bundle, ["serve", "smtp", "--config", file]);
    expect((await serve.exited).code).toBe(1);
    expect(String(serve.lines.find((l) => l.level === "fatal")?.msg)).toContain(
      `tls.certFile ${bundle.dir}/none.pem: ENOENT`,
    );
  });

  it("refuses unknown services (exit 2) and services not in this build (exit 1)", async () => {
    const file = join(RUNTIME_DIR, "examples/runtime.yaml");
    const unknown = await runBundle(bundle, ["serve", "gopher", "--config", file]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown service "gopher"');
    const missing = SERVICE_NAMES.find((s) => !SERVICES[s]);
    if (missing) {
      const r = await runBundle(bundle, ["serve", missing, "--config", file]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`service ${missing} is not part of this build\n`);
    }
  });
});
