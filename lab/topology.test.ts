import { describe, expect, it } from "vitest";
import { topologyFromStack } from "./topology.js";

describe("lab topology from the stack file", () => {
  it("reads host addresses from a hosts list and the VIP from any `vip` key", () => {
    const t = topologyFromStack(
      {
        config: {
          "mailinfra:hosts": [
            { name: "mx1", address: "198.18.0.111", roles: ["mx"] },
            { name: "store2", address: "198.18.0.122" },
          ],
          "mailinfra:ha": { vip: "198.18.0.120" },
        },
      },
      "test",
    );
    expect(t.addresses.mx1).toBe("198.18.0.111");
    expect(t.addresses.store2).toBe("198.18.0.122");
    expect(t.addresses.ldap1).toBe("198.18.0.31"); // the default plan for hosts not named
    expect(t.vip).toBe("198.18.0.120");
  });

  it("refuses addresses outside 198.18.0.0/24, the bridge's own, and duplicates", () => {
    const hosts = (address: string) => ({ config: { "mailinfra:hosts": [{ name: "mx1", address }] } });
    expect(() => topologyFromStack(hosts("10.0.0.5"), "f")).toThrow("f: mx1 address 10.0.0.5 is outside");
    expect(() => topologyFromStack(hosts("198.18.0.1"), "f")).toThrow("outside the lab's 198.18.0.2-254");
    expect(() => topologyFromStack(hosts("198.18.0.12"), "f")).toThrow("share the address 198.18.0.12");
  });
});
