// Policies every stack's resource graph must satisfy, shared by the prod,
// staging and lab tests.
import { expect } from "vitest";
import { servicePassword } from "../../components/ldap.js";
import { isStep, type ProgramRun, plainStrings, type Recorded, unwrapped } from "./harness.js";

export const ACCOUNTS = ["mx", "relay", "store", "webmail", "test", "replicator"];

/** Secret values and everything derived from them that is just as secret. */
export function secretNeedles(run: ProgramRun, config: Record<string, string>): string[] {
  const needles = new Set<string>();
  for (const s of run.secrets) {
    needles.add(s);
    for (const line of s.split("\n")) if (line.trim().length >= 16) needles.add(line.trim());
  }
  const master = config["mailinfra:ldapServicePassword"];
  if (master) for (const a of ACCOUNTS) needles.add(servicePassword(master, a));
  return [...needles];
}

/** No secret appears in a command string or any input that is not marked secret. */
export function expectNoSecretInPlainInputs(run: ProgramRun, config: Record<string, string>): void {
  const needles = secretNeedles(run, config);
  expect(needles.length).toBeGreaterThan(5);
  for (const r of run.resources) {
    for (const text of plainStrings(r.inputs)) {
      for (const n of needles) {
        if (text.includes(n))
          throw new Error(`${r.type} ${r.name}: a secret value appears in a non-secret input`);
      }
    }
    if (r.type === "command:remote:Command") {
      // Commands themselves are plain strings: a secret may never be in them.
      const { create, delete: del } = r.inputs as { create?: unknown; delete?: unknown };
      for (const c of [create, del])
        if (c !== undefined) expect(typeof c, `${r.name} command is plain`).toBe("string");
      expect(
        (r.inputs as { environment?: unknown }).environment,
        `${r.name} uses no SSH env requests`,
      ).toBeUndefined();
    }
  }
}

/** The copies whose content is secret arrive as secrets. */
export function expectSecretSources(run: ProgramRun, suffixes: string[]): void {
  for (const suffix of suffixes) {
    const copies = run.resources.filter(
      (r) => r.type === "command:remote:CopyToRemote" && r.name.endsWith(suffix),
    );
    expect(copies.length, `copies named *${suffix}`).toBeGreaterThan(0);
    for (const c of copies) {
      const src = c.inputs.source as Record<string, unknown>;
      expect(plainStrings(src), `${c.name}: source is secret`).toEqual([]);
      expect(JSON.stringify(src)).toContain("4dabf18193072939515e22adb298388d");
    }
  }
}

export function step(run: ProgramRun, name: string): Recorded {
  const r = run.resources.find((x) => x.name === name);
  if (!r) throw new Error(`no resource named ${name}`);
  return r;
}

/** `a` was handed to the mocks only after `b` was created. */
export function expectAfter(run: ProgramRun, a: string, b: string): void {
  const ra = step(run, a);
  const rb = step(run, b);
  expect(ra.start, `${a} starts after ${b} is done`).toBeGreaterThan(rb.end);
}

export function commandOf(r: Recorded): string {
  return String((unwrapped(r.inputs) as { create?: string }).create ?? "");
}

export function steps(run: ProgramRun): Recorded[] {
  return run.resources.filter(isStep);
}

/** Every component type token is mailinfra:<module>:<Type>. */
export function expectTypeTokens(run: ProgramRun): void {
  for (const r of run.resources) {
    if (r.custom || r.type === "pulumi:pulumi:Stack") continue;
    expect(r.type).toMatch(/^mailinfra:[a-z]+:[A-Z][A-Za-z]+$/);
  }
}

/**
 * Every command re-runs its idempotent create on update (never a replace, whose
 * old delete would undo the new create) and sends no SSH environment.
 */
export function expectUpdateInPlace(run: ProgramRun): void {
  for (const r of run.resources.filter((x) => x.type === "command:remote:Command")) {
    expect(r.inputs.update, `${r.name} update`).toBe(r.inputs.create);
    expect(r.inputs.addPreviousOutputInEnv, `${r.name} addPreviousOutputInEnv`).toBe(false);
  }
}

/** Every command runs `set -eu` first. */
export function expectStrictShell(run: ProgramRun): void {
  for (const r of run.resources.filter((x) => x.type === "command:remote:Command")) {
    const i = unwrapped(r.inputs) as { create: string; delete?: string };
    expect(i.create.startsWith("set -eu\n"), `${r.name} create`).toBe(true);
    if (i.delete !== undefined) expect(i.delete.startsWith("set -eu\n"), `${r.name} delete`).toBe(true);
  }
}

/** Every create/delete script parses in Debian's /bin/sh (dash): `sh -n`. */
export async function expectShellSyntax(run: ProgramRun): Promise<void> {
  const { execa } = await import("execa");
  const scripts = new Map<string, string>();
  for (const r of run.resources.filter((x) => x.type === "command:remote:Command")) {
    const i = unwrapped(r.inputs) as { create: string; delete?: string };
    scripts.set(i.create, `${r.name} create`);
    if (i.delete !== undefined) scripts.set(i.delete, `${r.name} delete`);
  }
  for (const [text, what] of scripts) {
    const res = await execa("sh", ["-n"], { input: text, reject: false });
    expect(res.exitCode, `${what}: ${res.stderr}`).toBe(0);
  }
}
