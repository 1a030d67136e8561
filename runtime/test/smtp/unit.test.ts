/** SMTP pieces on their own: address checks, message checks and headers, trusted networks, AUTH throttling. */
import { describe, expect, it } from "vitest";
import { LocalDomains, parseAddress } from "../../src/smtp/address.js";
import { AuthThrottle, MAX_AUTH_DELAY_MS } from "../../src/smtp/auth-throttle.js";
import { MAX_HEADER_FIELDS, MAX_LOCAL_PART_BYTES } from "../../src/smtp/limits.js";
import {
  applyEdits,
  assembleMessage,
  checkMessage,
  foldedHeaderLine,
  hasHeader,
  receivedHeader,
  removeHeaders,
  withProtocol,
} from "../../src/smtp/message.js";
import { Networks } from "../../src/smtp/networks.js";
import { parseListen } from "../../src/smtp/service.js";

describe("parseAddress", () => {
  it("normalises the domain and keeps the local part", () => {
    expect(parseAddress("Bob.Builder@Example.ORG.")).toEqual({
      local: "Bob.Builder",
      domain: "example.org",
      address: "Bob.Builder@example.org",
    });
    expect(parseAddress("jörg@bücher.example")).toMatchObject({ domain: "bücher.example" });
  });

  it("refuses the routing syntaxes behind open relays", () => {
    for (const a of [
      "u%other.example@example.org",
      "other!u@example.org",
      '"u@other"@example.org',
      "u\\@x@example.org",
    ]) {
      expect(parseAddress(a)).toBe("routing");
    }
  });

  it("refuses bad syntax and over-long parts", () => {
    expect(parseAddress("nodomain")).toBe("syntax");
    expect(parseAddress("u@-bad-.example")).toBe("syntax");
    expect(parseAddress(`${"a".repeat(MAX_LOCAL_PART_BYTES + 1)}@example.org`)).toBe("too-long");
    expect(parseAddress(`u@${"d".repeat(260)}.org`)).toBe("too-long");
  });

  it("matches local domains case-insensitively, with or without the trailing dot", () => {
    const d = new LocalDomains(["Example.org"]);
    expect(d.has("EXAMPLE.ORG.")).toBe(true);
    expect(d.has("example.org.evil.test")).toBe(false);
  });
});

describe("checkMessage", () => {
  const ok = Buffer.from("Subject: x\r\n\r\nbody\r\n");
  it("accepts a clean message", () => {
    expect(checkMessage(ok)).toBeNull();
  });
  it("names each defect with its code", () => {
    expect(checkMessage(Buffer.from("Subject: x\r\n\r\na\nb\r\n"))?.message).toMatch(/^5\.6\.0 Bare LF/);
    expect(checkMessage(Buffer.from("\nSubject: x\r\n"))?.message).toMatch(/^5\.6\.0 Bare LF/);
    expect(checkMessage(Buffer.from("Subject: x\r\n\r\na\rb\r\n"))?.message).toMatch(/^5\.6\.0 Bare CR/);
    expect(checkMessage(Buffer.from("Subject: x\r\n\r\na\u0000b\r\n"))?.responseCode).toBe(554);
    expect(checkMessage(Buffer.from(`Subject: x\r\n\r\n${"a".repeat(999)}\r\n`))?.message).toMatch(
      /Line longer/,
    );
    expect(checkMessage(Buffer.from(`Subject: x\r\n\r\n${"a".repeat(998)}\r\n`))).toBeNull();
    expect(checkMessage(Buffer.from(`Subject: x\r\n\r\n${"a".repeat(1001)}`))?.message).toMatch(
      /Line longer/,
    );
    const many = Array.from({ length: MAX_HEADER_FIELDS + 1 }, (_, i) => `X-${i}: y\r\n`).join("");
    expect(checkMessage(Buffer.from(`${many}\r\nbody\r\n`))?.message).toMatch(/^5\.3\.4 More than/);
  });
  it("runs in linear time on a large message", () => {
    const big = Buffer.from(`Subject: x\r\n\r\n${`${"a".repeat(70)}\r\n`.repeat(400_000)}`);
    const t = performance.now();
    expect(checkMessage(big)).toBeNull();
    expect(performance.now() - t).toBeLessThan(2000);
  });
});

describe("headers", () => {
  it("removes top-level fields with their folded lines, and only in the header", () => {
    const msg = Buffer.from(
      "X-Spam-Flag: YES\r\nSubject: s\r\nX-Spam-Status: Yes,\r\n\tscore=99\r\n\r\nX-Spam-Flag: in body\r\n",
    );
    const out = removeHeaders(msg, ["x-spam-flag", "X-Spam-Status"]).toString();
    expect(out).toBe("Subject: s\r\n\r\nX-Spam-Flag: in body\r\n");
    expect(hasHeader(Buffer.from(out), "subject")).toBe(true);
    expect(hasHeader(Buffer.from(out), "x-spam-flag")).toBe(false);
  });

  it("writes an RFC 5321 §4.4 Received line that client text cannot break", () => {
    const h = receivedHeader({
      helo: "evil\r\nX-Injected: 1",
      clientAddress: "::ffff:192.0.2.1",
      byHost: "mx.example.org",
      protocol: withProtocol({ esmtp: true, tls: true, auth: true, utf8: false }),
      queueId: "q1",
      forRecipient: "a@example.org",
      date: new Date(Date.UTC(2024, 0, 1)),
    });
    expect(h).toBe(
      "Received: from evil X-Injected: 1 ([192.0.2.1])\r\n\tby mx.example.org (mailinfra)\r\n\twith ESMTPSA id q1\r\n\tfor <a@example.org>;\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\n",
    );
    expect(withProtocol({ esmtp: false, tls: false, auth: false, utf8: false })).toBe("SMTP");
    expect(withProtocol({ esmtp: true, tls: true, auth: false, utf8: true })).toBe("UTF8ESMTPS");
  });
});

describe("assembling the queued message", () => {
  const trace = "Received: from a ([192.0.2.1])\r\n\tby mx; Mon, 1 Jan 2024 00:00:00 +0000\r\n";
  const scanned = Buffer.from(`${trace}Subject: s\r\nX-Spam-Flag: YES\r\nX-Old: 1\r\n\r\nbody\r\n`);

  it("keeps a filter header's folds (CRLF + WSP) and flattens any other line break", () => {
    expect(foldedHeaderLine("X-Spam-Status", "No, score=0.1 tests=A,\r\n\tB,\r\n\tC")).toBe(
      "X-Spam-Status: No, score=0.1 tests=A,\r\n\tB,\r\n\tC\r\n",
    );
    expect(foldedHeaderLine("X-A", "one\r\nX-Injected: 1\nthree\r\n two")).toBe(
      "X-A: one X-Injected: 1 three\r\n two\r\n",
    );
  });

  it("puts the verdict's headers right below our Received, after edits and removals", () => {
    const at = scanned.indexOf("X-Old");
    const out = assembleMessage(trace, scanned, {
      addHeaders: [
        ["X-Spam-Status", "No, score=0.1 tests=A,\r\n\tB"],
        ["Authentication-Results", "mx;\r\n dkim=none"],
      ],
      removeHeaders: ["x-spam-flag"],
      edits: [{ start: at, end: at + "X-Old: 1\r\n".length, text: "X-New: 2\r\n" }],
    }).toString();
    expect(out).toBe(
      `${trace}X-Spam-Status: No, score=0.1 tests=A,\r\n\tB\r\nAuthentication-Results: mx;\r\n dkim=none\r\nSubject: s\r\nX-New: 2\r\n\r\nbody\r\n`,
    );
  });

  it("applies edits in order and drops one that overlaps an earlier one", () => {
    const m = Buffer.from("abcdef");
    const out = applyEdits(m, [
      { start: 4, end: 5, text: "E" },
      { start: 0, end: 2, text: "" },
      { start: 1, end: 3, text: "X" },
      { start: 6, end: 6, text: "!" },
    ]);
    expect(out.toString()).toBe("cdEf!");
  });
});

describe("trusted networks", () => {
  it("matches IPv4, IPv4-mapped and IPv6 clients by CIDR", () => {
    const n = new Networks(["192.0.2.0/24", "2001:db8::/32", "127.0.0.2"]);
    expect(n.contains("192.0.2.77")).toBe(true);
    expect(n.contains("::ffff:192.0.2.77")).toBe(true);
    expect(n.contains("192.0.3.1")).toBe(false);
    expect(n.contains("2001:db8::1")).toBe(true);
    expect(n.contains("127.0.0.2")).toBe(true);
    expect(n.contains("127.0.0.1")).toBe(false);
    expect(n.contains("not-an-ip")).toBe(false);
  });
  it("refuses a bad CIDR at start", () => {
    expect(() => new Networks(["10.0.0.0/33"])).toThrow(/bad prefix/);
    expect(() => new Networks(["example.org"])).toThrow(/not an IP/);
  });
});

describe("AuthThrottle", () => {
  it("delays after the threshold, doubling up to the cap, blocks later, forgets after the window", () => {
    let now = 0;
    const t = new AuthThrottle(2, 8, 60_000, () => now);
    expect(t.fail("192.0.2.1")).toBe(0);
    expect(t.fail("192.0.2.1")).toBe(1000);
    expect(t.fail("192.0.2.1")).toBe(2000);
    for (let i = 0; i < 4; i++) t.fail("192.0.2.1");
    expect(t.blocked("192.0.2.1")).toBe(false);
    expect(t.fail("192.0.2.1")).toBe(MAX_AUTH_DELAY_MS);
    expect(t.blocked("192.0.2.1")).toBe(true);
    expect(t.blocked("192.0.2.2")).toBe(false);
    now = 61_000;
    expect(t.blocked("192.0.2.1")).toBe(false);
  });
});

describe("parseListen", () => {
  it("parses host:port, [v6]:port and :port", () => {
    expect(parseListen("127.0.0.1:25")).toEqual({ host: "127.0.0.1", port: 25 });
    expect(parseListen("[::1]:587")).toEqual({ host: "::1", port: 587 });
    expect(parseListen(":25")).toEqual({ host: "0.0.0.0", port: 25 });
    expect(() => parseListen("nope")).toThrow();
  });
});
