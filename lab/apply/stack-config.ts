// The `lab` stack's configuration for a run under mocks: the values from
// stacks/Pulumi.lab.yaml as `mailinfra:<key>` (objects as JSON strings), and the
// secrets a real stack would hold encrypted (`secure:`), which the lab makes up
// and keeps in .lab-state/secrets.json (0600): its SSH key and generated passwords.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { parse } from "yaml";
import { paths } from "../paths.js";

export interface StackConfig {
  config: Record<string, string>;
  secretKeys: string[];
  /** Config keys the lab filled in (for the summary, without values). */
  generated: string[];
}

/** Secret keys that hold the SSH private key the deployer connects with. */
const SSH_KEY = /(ssh.*private.*key|private.*key|ssh.*key)$/i;
/** Non-secret keys that hold the matching public key. */
const SSH_PUBLIC_KEY = /(ssh.*public.*key|authorized.*key)s?$/i;

const isSecure = (v: unknown) =>
  typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 1 && "secure" in v;

function generatePassword(): string {
  return randomBytes(18).toString("base64url");
}

async function loadSecrets(): Promise<Record<string, string>> {
  if (!existsSync(paths.secrets)) return {};
  await chmod(paths.secrets, 0o600);
  return JSON.parse(await readFile(paths.secrets, "utf8")) as Record<string, string>;
}

/**
 * Builds the config. `requiredSecrets` names secret keys the program needs that
 * the stack file may not list (from the deployer's schema); every `secure:` entry
 * of the file is one too.
 */
export async function labStackConfig(
  stackFile: string,
  project: string,
  requiredSecrets: readonly string[] = [],
): Promise<StackConfig> {
  const doc = existsSync(stackFile)
    ? (parse(readFileSync(stackFile, "utf8")) as { config?: Record<string, unknown> })
    : {};
  const config: Record<string, string> = {};
  const secretKeys: string[] = [];
  const generated: string[] = [];
  const secrets = await loadSecrets();
  let changed = false;
  const privateKey = readFileSync(paths.key, "utf8");
  const publicKey = readFileSync(`${paths.key}.pub`, "utf8").trim();

  const fullKey = (k: string) => (k.includes(":") ? k : `${project}:${k}`);
  const secretValue = (k: string): string => {
    const bare = k.slice(k.indexOf(":") + 1).replace(/\[\d+\]/g, "");
    if (SSH_KEY.test(bare)) return privateKey;
    let v = secrets[k];
    if (v === undefined) {
      v = generatePassword();
      secrets[k] = v;
      changed = true;
    }
    return v;
  };

  // `secure:` values may sit at the top (`mailinfra:ldapAdminPassword`) or inside
  // an object (`mailinfra:hosts[2].privateKey`); the whole key is then secret.
  const fill = (value: unknown, path: string): { value: unknown; secret: boolean } => {
    if (isSecure(value)) {
      generated.push(path);
      return { value: secretValue(path), secret: true };
    }
    if (Array.isArray(value)) {
      const parts = value.map((v, i) => fill(v, `${path}[${i}]`));
      return { value: parts.map((p) => p.value), secret: parts.some((p) => p.secret) };
    }
    if (value && typeof value === "object") {
      const out: Record<string, unknown> = {};
      let secret = false;
      for (const [k, v] of Object.entries(value)) {
        const p = fill(v, `${path}.${k}`);
        out[k] = p.value;
        secret ||= p.secret;
      }
      return { value: out, secret };
    }
    return { value, secret: false };
  };
  for (const [rawKey, raw] of Object.entries(doc.config ?? {})) {
    const k = fullKey(rawKey);
    const { value, secret } = fill(raw, k);
    config[k] = typeof value === "string" ? value : JSON.stringify(value);
    if (secret) secretKeys.push(k);
  }
  for (const raw of requiredSecrets) {
    const k = fullKey(raw);
    if (secretKeys.includes(k)) continue;
    config[k] = secretValue(k);
    secretKeys.push(k);
    generated.push(k);
  }
  // A public-key key left empty in the file gets the lab's key.
  for (const [k, v] of Object.entries(config)) {
    if (SSH_PUBLIC_KEY.test(k.slice(k.indexOf(":") + 1)) && (v === "" || v === "null")) {
      config[k] = publicKey;
      generated.push(k);
    }
  }
  if (changed) await writeFile(paths.secrets, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  await chmod(paths.secrets, 0o600).catch(() => undefined);
  return { config, secretKeys, generated };
}
