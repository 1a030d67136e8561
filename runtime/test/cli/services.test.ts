// Every runtime/src/<service>/service.ts must be wired into cli/services.ts,
// or `mailinfra serve <service>` would say "not part of this build".
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SERVICES } from "../../src/cli/services.js";
import { SERVICE_NAMES } from "../../src/service.js";
import { RUNTIME_DIR } from "./bundle.js";

describe("service table", () => {
  it("wires every service module present in the tree", () => {
    const present = SERVICE_NAMES.filter((s) => existsSync(join(RUNTIME_DIR, "src", s, "service.ts")));
    const unwired = present.filter((s) => !SERVICES[s]);
    expect(unwired, "add these to runtime/src/cli/services.ts").toEqual([]);
  });

  it("loads a start function for each wired service", async () => {
    for (const [name, entry] of Object.entries(SERVICES)) {
      expect(typeof (await entry.load()), name).toBe("function");
    }
  });
});
