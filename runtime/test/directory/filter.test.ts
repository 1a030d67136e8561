import { describe, expect, it } from "vitest";
import { addressFilter, escapeFilterValue, uidFilter } from "../../src/directory/filter.js";

describe("escapeFilterValue (RFC 4515 §3)", () => {
  it("escapes NUL, parentheses, asterisk and backslash as \\XX", () => {
    expect(escapeFilterValue("*)(uid=*")).toBe("\\2a\\29\\28uid=\\2a");
    expect(escapeFilterValue("a\\b\0c")).toBe("a\\5cb\\00c");
  });
  it("leaves ordinary and non-ASCII characters alone", () => {
    expect(escapeFilterValue("alice.o'hara+tag@example.org")).toBe("alice.o'hara+tag@example.org");
    expect(escapeFilterValue("jörg")).toBe("jörg");
  });
  it("builds account filters with the value escaped", () => {
    expect(uidFilter("a*")).toBe("(&(objectClass=inetOrgPerson)(uid=a\\2a))");
    expect(addressFilter("x)(y")).toBe(
      "(&(objectClass=inetOrgPerson)(|(mail=x\\29\\28y)(mailLocalAddress=x\\29\\28y)))",
    );
  });
});
