import { describe, expect, it } from "vitest";
import { containsSecret, Redactor, unwrap, wrapSecret } from "./secrets.js";

describe("secrets as the SDK hands them to mocks", () => {
  it("unwraps nested secrets and remembers their values", () => {
    const seen = new Set<string>();
    const inputs = {
      connection: wrapSecret({ host: "198.18.0.11", privateKey: "-----BEGIN KEY-----" }),
      environment: wrapSecret({ A: "alpha-value" }),
      create: "true",
    };
    expect(unwrap(inputs, seen)).toEqual({
      connection: { host: "198.18.0.11", privateKey: "-----BEGIN KEY-----" },
      environment: { A: "alpha-value" },
      create: "true",
    });
    expect(seen).toEqual(new Set(["198.18.0.11", "-----BEGIN KEY-----", "alpha-value"]));
    expect(containsSecret(inputs.environment)).toBe(true);
    expect(containsSecret({ create: "true" })).toBe(false);
  });

  it("scrubs every known secret, and each long line of a multi-line one, from text", () => {
    const r = new Redactor();
    r.add("hunter2-password");
    r.add("line-one-of-a-key-xxxxxxxx\nline-two-of-a-key-yyyyyyyy");
    expect(r.scrub("pw=hunter2-password; key line-two-of-a-key-yyyyyyyy")).toBe("pw=[secret]; key [secret]");
    r.add("root"); // too short to scrub safely
    expect(r.scrub("root")).toBe("root");
  });
});
