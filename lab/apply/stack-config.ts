// The `lab` stack's configuration for a run under mocks: the values from
// stacks/Pulumi.lab.yaml as `mailinfra:<key>` (objects as JSON strings), and the
// secrets a real stack would hold encrypted (`secure:`), which the lab makes up
// and keeps in .lab-state/secrets.json (0600): its SSH key and generated passwords.
// Secrets the operator gives (`lab apply --secrets-file`, e.g. tlsCertificate and
// tlsPrivateKey) come on top, for that run only: never written to secrets.json.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, readFile, stat, writeFile } from "node:fs/promises";
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
 * Reads a secrets file: a JSON object of secret keys (`tlsCertificate` or
 * `mailinfra:tlsCertificate`) to string values. It must be readable by its owner only.
 */
export async function readSecretsFile(file: string): Promise<Record<string, string>> {
  const st = await stat(file);
  if ((st.mode & 0o077) !== 0)
    throw new Error(`${file}: a secrets file must be readable by its owner only (chmod 600)`);
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(file, "utf8"));
  } catch {
    throw new Error(`${file}: expected a JSON object of secret keys to strings`);
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc))
    throw new Error(`${file}: expected a JSON object of secret keys to strings`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(doc)) {
    if (typeof v !== "string" || v === "") throw new Error(`${file}: ${k}: expected a non-empty string`);
    out[k] = v;
  }
  return out;
}

/**
 * Builds the config. `requiredSecrets` names secret keys the program needs that
 * the stack file may not list (from the deployer's schema); every `secure:` entry
 * of the file is one too. `given` are secrets the operator supplies (keys with or
 * without the project prefix): they win over the lab's own and are not kept.
 */
export async function labStackConfig(
  stackFile: string,
  project: string,
  requiredSecrets: readonly string[] = [],
  given: Readonly<Record<string, string>> = {},
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
  for (const [raw, v] of Object.entries(given)) {
    const k = fullKey(raw);
    config[k] = v;
    if (!secretKeys.includes(k)) secretKeys.push(k);
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
