import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  ConfigError,
  formatPath,
  loadConfig,
  MAX_CONFIG_BYTES,
  parseConfig,
  parseListenAddress,
} from "../../src/config/load.js";
import { RUNTIME_DIR } from "./bundle.js";

function problems(text: string): string[] {
  try {
    parseConfig(text);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe("parseConfig", () => {
  it("parses the example with defaults filled in", async () => {
    const config = parseConfig(await readFile(join(RUNTIME_DIR, "examples/runtime.yaml"), "utf8"));
    expect(config.host).toEqual({ name: "test1.example.org", roles: ["test"], drainTimeoutSeconds: 30 });
    expect(config.ldap?.uris).toHaveLength(2);
    expect(config.pop3?.limits.maxBadCommands).toBe(20);
  });

  it("applies defaults for a minimal config", () => {
    const config = parseConfig("host: { name: h, roles: [mx] }\n");
    expect(config.log.level).toBe("info");
    expect(config.host.drainTimeoutSeconds).toBe(30);
    expect(config.metrics.listen).toBeUndefined();
  });

  it("keeps a queued message 5 days (432000 s) unless queue.maxAgeSeconds says otherwise", () => {
    // RFC 5321 §4.5.4.1: give up after at least 4-5 days. The example sets the key, so a bare queue is parsed here.
    const config = parseConfig("host: { name: h, roles: [mx] }\nqueue: { dir: /q, lmtp: { host: s } }\n");
    expect(config.queue?.maxAgeSeconds).toBe(432_000);
    expect(config.queue?.lmtp.port).toBe(24);
    const set = parseConfig(
      "host: { name: h, roles: [mx] }\nqueue: { dir: /q, lmtp: { host: s }, maxAgeSeconds: 60 }\n",
    );
    expect(set.queue?.maxAgeSeconds).toBe(60);
  });

  it("names paths with indexes, missing keys, unknown keys and lines", () => {
    expect(
      problems(
        "host:\n  name: h\n  roles: [mx]\nmetrics:\n  listen: 9100\n  port: 1\nldap:\n  uris: [ldap://a]\n",
      ),
    ).toEqual([
      "metrics.listen: Invalid input: expected string, received number (line 5)",
      "ldap.baseDn: required key is missing (line 8)",
      "ldap.bindDn: required key is missing (line 8)",
      "ldap.bindPasswordFile: required key is missing (line 8)",
      "metrics.port: unknown key (line 6)",
    ]);
    expect(problems("nohost: 1\n")).toEqual([
      "host: required key is missing",
      "nohost: unknown key (line 1)",
    ]);
  });

  it("takes a metrics address per service, and names an unknown service", () => {
    const config = parseConfig(
      'host: { name: h, roles: [store] }\nmetrics: { listen: "127.0.0.1:9187", services: { imap: "127.0.0.1:9189" } }\n',
    );
    expect(config.metrics.services).toEqual({ imap: "127.0.0.1:9189" });
    const bad = problems(
      'host: { name: h, roles: [store] }\nmetrics:\n  services: { gopher: "127.0.0.1:1" }\n',
    );
    expect(bad).toHaveLength(1);
    expect(bad[0]).toMatch(/^metrics\.services(\.gopher)?: .*\(line 3\)$/);
  });

  it("reports YAML errors by line and column", () => {
    expect(problems("host: {name: h\n")[0]).toMatch(/^line 2, column 1: /);
  });

  it("formats paths", () => {
    expect(formatPath(["imap", "listen", 0])).toBe("imap.listen[0]");
    expect(formatPath([])).toBe("(root)");
  });
});

describe("parseListenAddress", () => {
  it("splits host:port, [v6]:port and :port", () => {
    expect(parseListenAddress("127.0.0.1:143")).toEqual({ host: "127.0.0.1", port: 143 });
    expect(parseListenAddress("[::1]:993")).toEqual({ host: "::1", port: 993 });
    expect(parseListenAddress(":25")).toEqual({ host: undefined, port: 25 });
  });
  it("refuses anything else", () => {
    for (const bad of ["143", "host:", "a:b:c", "host:70000", "[::1]143"]) {
      expect(() => parseListenAddress(bad), bad).toThrow(/expected host:port/);
    }
  });
});

describe("loadConfig", () => {
  it("refuses a file over MAX_CONFIG_BYTES unread, and reads one just under", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mailinfra-config-"));
    try {
      const head = "host: { name: h, roles: [mx] }\n";
      const ok = join(dir, "ok.yaml");
      await writeFile(ok, `${head}${"#".repeat(MAX_CONFIG_BYTES - head.length - 1)}\n`);
      expect((await loadConfig(ok)).host.name).toBe("h");
      const big = join(dir, "big.yaml");
      await writeFile(big, `${head}${"#".repeat(MAX_CONFIG_BYTES)}\n`);
      await expect(loadConfig(big)).rejects.toMatchObject({
        problems: [`file is larger than ${MAX_CONFIG_BYTES} bytes`],
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
