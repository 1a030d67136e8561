// Runs index.ts under the Pulumi SDK's mocks for a stack: config from
// stacks/Pulumi.<stack>.yaml (secure values replaced by test secrets), every
// registration recorded with its inputs, its parent and dependsOn, and the order
// in which the SDK handed resources to the mocks (a resource reaches the mocks
// only after its dependsOn resources were created).
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { execa } from "execa";
import { parse } from "yaml";

export const REPO = fileURLToPath(new URL("../../", import.meta.url));
export const BUNDLE = `${REPO}runtime/dist/mailinfra.mjs`;
const SIG = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

export interface Recorded {
  type: string;
  name: string;
  custom: boolean;
  /** Inputs as the mocks got them: secrets still wrapped. */
  inputs: Record<string, unknown>;
  /** Global sequence numbers: when the mock was called, and when it returned. */
  start: number;
  end: number;
  parent?: string;
  dependsOn: string[];
}

export interface ProgramRun {
  resources: Recorded[];
  outputs: Record<string, unknown>;
  /** Every secret value supplied through config. */
  secrets: string[];
  errors: string[];
}

export function isWrappedSecret(v: unknown): v is { value: unknown } {
  return typeof v === "object" && v !== null && (v as Record<string, unknown>)[SIG] === SECRET_SIG;
}

/** Every string in a value that is NOT inside a secret. */
export function plainStrings(v: unknown, out: string[] = []): string[] {
  if (isWrappedSecret(v)) return out;
  if (typeof v === "string") out.push(v);
  else if (Array.isArray(v)) for (const x of v) plainStrings(x, out);
  else if (v && typeof v === "object") for (const x of Object.values(v)) plainStrings(x, out);
  return out;
}

export function unwrapped(v: unknown): unknown {
  if (isWrappedSecret(v)) return unwrapped(v.value);
  if (Array.isArray(v)) return v.map(unwrapped);
  if (v && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype)
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapped(x)]));
  return v;
}

const FAKE_KEY = `-----BEGIN OPENSSH PRIVATE KEY-----\n${randomBytes(48).toString("base64")}\n-----END OPENSSH PRIVATE KEY-----\n`;
const FAKE_CERT = `-----BEGIN CERTIFICATE-----\n${randomBytes(48).toString("base64")}\n-----END CERTIFICATE-----\n`;

/** A distinct test value for a secret key. */
export function testSecret(key: string): string {
  if (/sshPrivateKey|privateKeySecret/i.test(key)) return FAKE_KEY;
  if (key === "tlsCertificate") return FAKE_CERT;
  if (key === "tlsPrivateKey")
    return `-----BEGIN PRIVATE KEY-----\n${randomBytes(48).toString("base64")}\n-----END PRIVATE KEY-----\n`;
  return `S3cret-${key}-${randomBytes(9).toString("base64url")}`;
}

/** The stack file as setAllConfig wants it: `mailinfra:<key>` → string, secure values replaced. */
export function stackConfig(stack: string): { config: Record<string, string>; secretKeys: string[] } {
  const doc = parse(readFileSync(`${REPO}stacks/Pulumi.${stack}.yaml`, "utf8")) as {
    config: Record<string, unknown>;
  };
  const config: Record<string, string> = {};
  const secretKeys: string[] = [];
  for (const [k, v] of Object.entries(doc.config)) {
    if (v && typeof v === "object" && !Array.isArray(v) && "secure" in v) {
      config[k] = testSecret(k.slice(k.indexOf(":") + 1));
      secretKeys.push(k);
    } else config[k] = typeof v === "string" ? v : JSON.stringify(v);
  }
  return { config, secretKeys };
}

/** Builds the runtime bundle when a test runs before `npm run build`. */
export async function ensureBundle(): Promise<void> {
  if (!existsSync(BUNDLE)) await execa("npm", ["run", "build"], { cwd: REPO });
}

let runs = 0;

export async function runProgram(
  stack: string,
  config: Record<string, string>,
  secretKeys: string[],
  opts: { preview?: boolean } = {},
): Promise<ProgramRun> {
  const resources: Recorded[] = [];
  const byName = new Map<string, Recorded>();
  const names = new WeakMap<object, string>();
  const pending = new Map<string, { parent?: string; dependsOn: string[] }>();
  let seq = 0;
  const errors: string[] = [];
  const onRejection = (e: unknown) => errors.push(e instanceof Error ? e.message : String(e));
  process.on("unhandledRejection", onRejection);

  await pulumi.runtime.setMocks(
    {
      newResource: async (args) => {
        const start = ++seq;
        lastActivity = Date.now();
        await new Promise((r) => setImmediate(r));
        const meta = pending.get(`${args.type}::${args.name}`) ?? { dependsOn: [] };
        const rec: Recorded = {
          type: args.type,
          name: args.name,
          custom: args.custom ?? false,
          inputs: args.inputs as Record<string, unknown>,
          start,
          end: ++seq,
          dependsOn: meta.dependsOn,
          ...(meta.parent ? { parent: meta.parent } : {}),
        };
        resources.push(rec);
        byName.set(args.name, rec);
        const state: Record<string, unknown> = { ...args.inputs };
        if (args.type === "command:remote:Command") {
          state.stdout = "sha256 Fingerprint=00:11";
          state.stderr = "";
        }
        return { id: `${args.name}-id`, state };
      },
      call: (args) => args.inputs,
    },
    "mailinfra",
    stack,
    opts.preview ?? false,
  );
  pulumi.runtime.setAllConfig(config, secretKeys);
  let outputs: Record<string, unknown> = {};
  // A rejected Output (e.g. a secret that fails its check) never settles the
  // resources that need it: under mocks the stack then waits forever, where the
  // real engine stops the program. Stop waiting once errors came in and
  // registrations went quiet.
  let lastActivity = Date.now();
  const timers: NodeJS.Timeout[] = [];
  const quietAfterError = () =>
    new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (errors.length > 0 && Date.now() - lastActivity > 1000) {
          clearInterval(timer);
          resolve();
        }
      }, 100);
      timers.push(timer);
    });
  try {
    const stack = pulumi.runtime.runInPulumiStack(async () => {
      pulumi.runtime.registerStackTransformation((a) => {
        names.set(a.resource, a.name);
        const parent = a.opts.parent ? names.get(a.opts.parent) : undefined;
        const deps = a.opts.dependsOn;
        const list = Array.isArray(deps) ? deps : deps ? [deps] : [];
        const dependsOn = list
          .map((d) => (d && typeof d === "object" ? names.get(d as object) : undefined))
          .filter((n): n is string => n !== undefined);
        pending.set(`${a.type}::${a.name}`, { dependsOn, ...(parent ? { parent } : {}) });
        return undefined;
      });
      const mod = (await import(`${pathToFileURL(`${REPO}index.ts`).href}?run=${++runs}-${stack}`)) as Record<
        string,
        unknown
      >;
      outputs = { ...mod };
      return outputs as Record<string, pulumi.Input<unknown>>;
    });
    await Promise.race([stack, quietAfterError()]);
  } catch (e) {
    errors.push(e instanceof Error ? e.message : String(e));
  }
  await Promise.race([pulumi.runtime.disconnect().catch(() => undefined), quietAfterError()]);
  for (const t of timers) clearInterval(t);
  await new Promise((r) => setTimeout(r, 20));
  process.off("unhandledRejection", onRejection);
  const secrets = secretKeys.map((k) => config[k]!).filter(Boolean);
  return { resources, outputs, secrets, errors };
}

/** Host address a command/copy resource connects to (from its connection input). */
export function hostOf(r: Recorded): string | undefined {
  const c = unwrapped(r.inputs.connection) as { host?: string } | undefined;
  return c?.host;
}

export const isStep = (r: Recorded) =>
  r.type === "command:remote:Command" || r.type === "command:remote:CopyToRemote";

/** A stack file's non-secret keys (bare names) and the set of secret keys it defines. */
export function stackSettings(stack: string): { raw: Record<string, unknown>; secrets: Set<string> } {
  const doc = parse(readFileSync(`${REPO}stacks/Pulumi.${stack}.yaml`, "utf8")) as {
    config: Record<string, unknown>;
  };
  const raw: Record<string, unknown> = {};
  const secrets = new Set<string>();
  for (const [k, v] of Object.entries(doc.config)) {
    const bare = k.slice(k.indexOf(":") + 1);
    if (v && typeof v === "object" && !Array.isArray(v) && "secure" in v) secrets.add(bare);
    else raw[bare] = v;
  }
  return { raw, secrets };
}
