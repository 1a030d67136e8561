/**
 * `/etc/mailinfra/runtime.yaml` for one host. The params are the runtime's own
 * schema input (runtime/src/config/schema.ts): keys left out take the runtime's
 * defaults. The input is checked with `RuntimeConfigSchema` before rendering, so
 * a rendered file always parses at the runtime's start.
 */
import { stringify } from "yaml";
import type { z } from "zod";
import { RuntimeConfigSchema } from "../../runtime/src/config/schema.js";
import { RenderError, renderTemplate } from "./template.js";

/** The runtime config as written (defaults optional). */
export type RuntimeYamlParams = z.input<typeof RuntimeConfigSchema>;

/** Renders runtime.yaml; throws a RenderError naming the first bad key path. */
export function renderRuntimeYaml(params: RuntimeYamlParams): string {
  const result = RuntimeConfigSchema.safeParse(params);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const path = issue.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("");
    throw new RenderError("runtime", path.replace(/^\./, "") || "(root)", issue.message);
  }
  // Only what the caller gave is written (after the check): the runtime's defaults
  // stay in one place, its schema.
  const body = stringify(params, { lineWidth: 0, sortMapEntries: false });
  return renderTemplate("runtime/runtime.yaml.hbs", {
    host: result.data.host.name,
    roles: result.data.host.roles.join(", "),
    body: body.trimEnd(),
  });
}
