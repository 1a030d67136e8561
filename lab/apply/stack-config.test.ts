import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseApplyArgs } from "./cli.js";
import { readSecretsFile } from "./stack-config.js";

const dir = mkdtempSync(join(tmpdir(), "mailinfra-secrets-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string, mode: number): string {
  const p = join(dir, name);
  writeFileSync(p, text, { mode });
  return p;
}

describe("lab apply --secrets-file", () => {
  it("is parsed as a path (the values never reach a command line)", () => {
    expect(parseApplyArgs(["--secrets-file", "/x/s.json", "--no-build"])).toMatchObject({
      secretsFile: "/x/s.json",
      noBuild: true,
    });
    expect(() => parseApplyArgs(["--secrets"])).toThrow(/--secrets-file FILE/);
  });

  it("reads a 0600 JSON object of secret keys to strings", async () => {
    const p = file("ok.json", JSON.stringify({ tlsCertificate: "C", "mailinfra:tlsPrivateKey": "K" }), 0o600);
    expect(await readSecretsFile(p)).toEqual({ tlsCertificate: "C", "mailinfra:tlsPrivateKey": "K" });
  });

  it("refuses a file others may read, and anything but strings", async () => {
    await expect(readSecretsFile(file("open.json", "{}", 0o644))).rejects.toThrow(/owner only \(chmod 600\)/);
    await expect(readSecretsFile(file("list.json", "[]", 0o600))).rejects.toThrow(/expected a JSON object/);
    await expect(readSecretsFile(file("bad.json", "{", 0o600))).rejects.toThrow(/expected a JSON object/);
    await expect(readSecretsFile(file("num.json", '{"k": 1}', 0o600))).rejects.toThrow(
      /k: expected a non-empty string/,
    );
  });
});
