// Runs the Pulumi program under the SDK's mock monitor, with mocks that carry out
// each command resource over SSH (provider.ts). The SDK calls newResource in the
// program's real order (a resource only after its dependsOn), with Output inputs
// resolved; an error thrown there fails that resource, and its dependents never
// reach the mocks (they are reported as skipped).
import { pathToFileURL } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { copyToRemote, endpointOf, runCommand, StepError } from "./provider.js";
import { containsSecret, Redactor, unwrap, wrapSecret } from "./secrets.js";

export const COMMAND = "command:remote:Command";
export const COPY = "command:remote:CopyToRemote";

export interface StepRecord {
  type: string;
  name: string;
  host?: string;
  command?: string;
  startedAt?: number;
  ms?: number;
  state: "waiting" | "running" | "done" | "failed";
  error?: string;
}

export type ApplyEvent =
  | { kind: "start"; step: StepRecord }
  | { kind: "end"; step: StepRecord }
  | { kind: "declared"; step: StepRecord };

export interface ApplyOptions {
  /** The program's entry file (index.ts). */
  program: string;
  project: string;
  stack: string;
  /** Stack config: keys `<project>:<key>`, objects as JSON strings. */
  config: Record<string, string>;
  secretKeys: string[];
  /** Most SSH connections at once to one host (sshd's MaxStartups starts dropping at 10). */
  perHostConcurrency?: number;
  onEvent?: (e: ApplyEvent) => void;
}

export interface ApplyReport {
  ok: boolean;
  ms: number;
  total: number;
  done: number;
  failed: StepRecord[];
  skipped: StepRecord[];
  /** Errors not tied to one resource (the program threw, bad config …). */
  programErrors: string[];
  /** The stack's outputs once they resolved (secret values redacted); absent when they never did. */
  outputs?: Record<string, unknown>;
  steps: StepRecord[];
}

class Semaphore {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly max: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}

const key = (type: string, name: string) => `${type}::${name}`;

let runCounter = 0;
/** How long nothing may happen, with no step running, before the run counts as finished. */
const QUIET_MS = 1500;

export async function apply(opts: ApplyOptions): Promise<ApplyReport> {
  const t0 = Date.now();
  const redactor = new Redactor();
  for (const k of opts.secretKeys) {
    const v = opts.config[k];
    if (v) redactor.add(v);
  }
  const steps = new Map<string, StepRecord>();
  /** Outputs each resource asks the engine to keep secret (its additionalSecretOutputs option). */
  const secretOutputs = new Map<string, string[]>();
  const thrown = new Set<unknown>();
  const programErrors: string[] = [];
  const hostLimits = new Map<string, Semaphore>();
  const limit = (host: string) => {
    const s = hostLimits.get(host) ?? new Semaphore(opts.perHostConcurrency ?? 6);
    hostLimits.set(host, s);
    return s;
  };
  let lastActivity = Date.now();
  const touch = () => {
    lastActivity = Date.now();
  };
  const emit = (e: ApplyEvent) => {
    touch();
    opts.onEvent?.(e);
  };

  const stepFor = (type: string, name: string): StepRecord => {
    let s = steps.get(key(type, name));
    if (!s) {
      s = { type, name, state: "waiting" };
      steps.set(key(type, name), s);
    }
    return s;
  };

  const mocks: pulumi.runtime.Mocks = {
    newResource: async (args) => {
      const id = `${args.name}-lab`;
      if (args.type !== COMMAND && args.type !== COPY) {
        return { id, state: args.inputs };
      }
      const step = stepFor(args.type, args.name);
      const seen = new Set<string>();
      const { connection: rawConnection, ...rest } = args.inputs as Record<string, unknown>;
      const inputs: Record<string, unknown> = {
        ...(unwrap(rest, seen) as Record<string, unknown>),
        connection: unwrap(rawConnection),
      };
      // @pulumi/command always makes the connection secret: only its credentials are.
      const conn = (inputs.connection ?? {}) as Record<string, unknown>;
      for (const f of ["password", "privateKey", "privateKeyPassword"]) {
        if (typeof conn[f] === "string") seen.add(conn[f] as string);
      }
      redactor.addAll(seen);
      let host = "?";
      try {
        host = endpointOf(inputs.connection).host;
      } catch {
        // reported when the step runs
      }
      step.host = host;
      if (args.type === COMMAND && typeof inputs.create === "string")
        step.command = redactor.scrub(inputs.create);
      if (args.type === COPY) step.command = `copy to ${String(inputs.remotePath)}`;
      return limit(host).run(async () => {
        step.state = "running";
        step.startedAt = Date.now();
        emit({ kind: "start", step });
        try {
          if (args.type === COMMAND) {
            const out = await runCommand(inputs as never);
            // The provider makes stdout/stderr secret when an input that feeds the command is.
            // So does the engine for the outputs a resource names in additionalSecretOutputs.
            const secret = containsSecret(args.inputs.environment) || containsSecret(args.inputs.stdin);
            const marked = secretOutputs.get(key(args.type, args.name)) ?? [];
            const wrap = (field: string, s: string) => (secret || marked.includes(field) ? wrapSecret(s) : s);
            step.state = "done";
            return {
              id,
              state: {
                ...args.inputs,
                stdout: wrap("stdout", out.stdout),
                stderr: wrap("stderr", out.stderr),
              },
            };
          }
          await copyToRemote(inputs as never);
          step.state = "done";
          return { id, state: args.inputs };
        } catch (err) {
          step.state = "failed";
          step.error = redactor.scrub(err instanceof Error ? err.message : String(err));
          const e = err instanceof StepError ? err : new StepError(step.error);
          thrown.add(e);
          throw e;
        } finally {
          step.ms = Date.now() - (step.startedAt ?? Date.now());
          emit({ kind: "end", step });
        }
      });
    },
    call: (args) => args.inputs,
  };

  const failedMessages = () => new Set([...steps.values()].filter((s) => s.error).map((s) => s.error));
  const onRejection = (reason: unknown) => {
    if (thrown.has(reason)) return;
    const msg = redactor.scrub(reason instanceof Error ? reason.message : String(reason));
    // Dependents of a failed step reject with the same error: not a new problem.
    for (const m of failedMessages()) if (m && msg.includes(m.split("\n")[0] ?? m)) return;
    if (!programErrors.includes(msg)) programErrors.push(msg);
  };
  process.on("unhandledRejection", onRejection);

  // The SDK never settles a failed step's dependents (nor the stack's outputs if
  // they depend on one), so "finished" is: the program has run, no step is
  // running, and nothing new happened for QUIET_MS. Without failures the SDK
  // drains first (disconnect).
  let programRan = false;
  let outputs: Record<string, unknown> | undefined;
  const quiet = new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const running = [...steps.values()].some((s) => s.state === "running");
      if (programRan && !running && Date.now() - lastActivity > QUIET_MS) {
        clearInterval(timer);
        resolve();
      }
    }, 50);
  });
  try {
    await pulumi.runtime.setMocks(mocks, opts.project, opts.stack, false);
    pulumi.runtime.setAllConfig(opts.config, opts.secretKeys);
    const url = `${pathToFileURL(opts.program).href}?lab-run=${++runCounter}-${Date.now()}`;
    const drained = pulumi.runtime
      .runInPulumiStack(async () => {
        pulumi.runtime.registerStackTransformation((a) => {
          if (a.type === COMMAND || a.type === COPY) {
            const step = stepFor(a.type, a.name);
            const marked = (a.opts as pulumi.CustomResourceOptions).additionalSecretOutputs;
            if (marked?.length) secretOutputs.set(key(a.type, a.name), [...marked]);
            emit({ kind: "declared", step });
            // The host, for steps that never run: the connection usually resolves from config.
            pulumi.output(a.props.connection as pulumi.Input<{ host: string }>).apply((c) => {
              const h = unwrap(c) as { host?: string } | undefined;
              if (h?.host && !step.host) step.host = h.host;
            });
          }
          return undefined;
        });
        try {
          const mod = (await import(url)) as Record<string, unknown>;
          // `export = async () => {...}` programs return their outputs; ES modules export them.
          const exported =
            typeof mod.default === "function" ? await (mod.default as () => unknown)() : { ...mod };
          for (const [name, value] of Object.entries(exported as Record<string, unknown>)) {
            const o = pulumi.output(value as pulumi.Input<string>) as pulumi.Output<unknown>;
            o.apply(async (v) => {
              outputs ??= {};
              outputs[name] = (await pulumi.isSecret(o))
                ? "[secret]"
                : JSON.parse(redactor.scrub(JSON.stringify(v ?? null)));
            });
          }
          return exported as Record<string, unknown>;
        } finally {
          programRan = true;
          touch();
        }
      })
      .catch((err: unknown) => {
        programRan = true;
        onRejection(err);
      })
      .then(() => pulumi.runtime.disconnect());
    await Promise.race([drained, quiet]);
    // Let rejections queued by the last failures be delivered before reading them.
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    process.off("unhandledRejection", onRejection);
  }

  const all = [...steps.values()];
  const failed = all.filter((s) => s.state === "failed");
  const skipped = all.filter((s) => s.state === "waiting");
  const done = all.filter((s) => s.state === "done").length;
  const report: ApplyReport = {
    ok: failed.length === 0 && skipped.length === 0 && programErrors.length === 0,
    ms: Date.now() - t0,
    total: all.length,
    done,
    failed,
    skipped,
    programErrors,
    ...(outputs === undefined ? {} : { outputs }),
    steps: all,
  };
  return report;
}
