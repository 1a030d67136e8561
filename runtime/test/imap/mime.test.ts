/**
 * MIME layer, string in, structure out: addresses and groups, section
 * addressing, header decoding for SEARCH, the message cache, and time bounds
 * on inputs built to be expensive (deep nesting, many parts, long headers).
 */
import { describe, expect, it } from "vitest";
import { parseAddressList } from "../../src/imap/mime/address.js";
import { MessageCache } from "../../src/imap/mime/cache.js";
import { decodeHeaderValue, decodeTransfer } from "../../src/imap/mime/decode.js";
import { parseStructured } from "../../src/imap/mime/header.js";
import { applyPartial, resolvePart, sectionBytes } from "../../src/imap/mime/section.js";
import { MAX_MIME_DEPTH, parseMime } from "../../src/imap/mime/structure.js";
import { SearchParser } from "../../src/imap/search/keys.js";
import { parseCommand } from "../../src/imap/wire/parser.js";
import { fixture } from "./support.js";

describe("addresses (RFC 5322 §3.4 → RFC 3501 ENVELOPE)", () => {
  it("reads display names, quoted names, comments, groups and bare addresses", () => {
    expect(
      parseAddressList(
        '"Doe, John" <john@example.com>, jane@example.com (Jane), Team: a@x.org, b@y.org;, c@z',
      ),
    ).toEqual([
      { name: "Doe, John", adl: null, mailbox: "john", host: "example.com" },
      { name: null, adl: null, mailbox: "jane", host: "example.com" },
      { name: null, adl: null, mailbox: "Team", host: null },
      { name: null, adl: null, mailbox: "a", host: "x.org" },
      { name: null, adl: null, mailbox: "b", host: "y.org" },
      { name: null, adl: null, mailbox: null, host: null },
      { name: null, adl: null, mailbox: "c", host: "z" },
    ]);
    expect(parseAddressList("<@relay.example:user@host.example>")).toEqual([
      { name: null, adl: "@relay.example", mailbox: "user", host: "host.example" },
    ]);
    expect(parseAddressList("")).toEqual([]);
  });
});

describe("structured headers (RFC 2045, RFC 2231)", () => {
  it("joins continuations and keeps quoted semicolons", () => {
    expect(parseStructured('attachment; filename*0="a;b"; filename*1="c.pdf"; size=3')).toEqual({
      value: "attachment",
      params: [
        ["size", "3"],
        ["filename", "a;bc.pdf"],
      ],
    });
  });
});

describe("sections (RFC 3501 §6.4.5)", () => {
  it("addresses nested parts and encapsulated messages by number", async () => {
    const buf = await fixture("nested.eml");
    const root = parseMime(buf);
    expect(resolvePart(root, [1, 2])?.subtype).toBe("html");
    expect(resolvePart(root, [2])?.type).toBe("message");
    expect(resolvePart(root, [2, 2])?.subtype).toBe("pdf");
    expect(resolvePart(root, [4])).toBeUndefined();
    expect(resolvePart(root, [1, 1, 1])).toBeUndefined();
    const text = sectionBytes(buf, { path: [1, 1], specifier: "", fields: [] }, root).toString("latin1");
    expect(text).toBe("Hallo Alice,\r\nsch=F6ne Gr=FC=DFe aus M=FCnchen.\r\nZebrafinken z=E4hlen.");
    expect(
      sectionBytes(buf, { path: [2], specifier: "HEADER.FIELDS", fields: ["SUBJECT"] }, root).toString(),
    ).toBe("Subject: Quarterly numbers\r\n\r\n");
    expect(applyPartial(Buffer.from("abcdef"), { start: 2, length: 3 }).toString()).toBe("cde");
    expect(applyPartial(Buffer.from("abc"), { start: 9, length: 3 }).length).toBe(0);
  });
});

describe("decoding for SEARCH", () => {
  it("decodes encoded words in any charset iconv knows, and transfer encodings", () => {
    expect(decodeHeaderValue("=?ISO-8859-1?Q?Gr=FC=DFe?= =?UTF-8?B?w7xiZXI=?= x")).toBe("Grüßeüber x");
    expect(decodeHeaderValue("=?KOI8-R?B?8NLJ18XU?=")).toBe("Привет");
    expect(decodeTransfer(Buffer.from("a=3Db=\r\nc"), "quoted-printable").toString()).toBe("a=bc");
    expect(decodeTransfer(Buffer.from("aGVs\r\nbG8="), "base64").toString()).toBe("hello");
  });

  it("parses search keys with charset-decoded strings", () => {
    const args = parseCommand(
      Buffer.from("a SEARCH OR SUBJECT {6}\r\n\xf0\xd2\xc9\xd7\xc5\xd4 NOT 1:3", "latin1"),
    ).args.slice(0);
    expect(new SearchParser(args, "KOI8-R").parseAll()).toEqual({
      k: "or",
      a: { k: "header", field: "subject", value: "Привет" },
      b: { k: "not", key: { k: "seq", ranges: [[1, 3]] } },
    });
  });
});

describe("message cache", () => {
  it("keeps compiled ENVELOPE/BODYSTRUCTURE and evicts by size", async () => {
    const cache = new MessageCache(64 * 1024);
    const buf = await fixture("plain.eml");
    const e = cache.fill("g1", buf);
    expect(e.envelope.toString()).toMatch(/^\("Thu, 05 Jan 2023 08:00:00 -0500" "Lunch on Friday\?"/);
    expect(cache.get("g1")).toBe(e);
    for (let i = 0; i < 500; i++) cache.fill(`x${i}`, buf);
    expect(cache.get("g1")).toBeUndefined();
    expect(cache.size).toBeLessThan(500);
  });
});

describe("time bounds on hostile MIME", () => {
  it("deep nesting is cut off at MAX_MIME_DEPTH, quickly", () => {
    let msg = "";
    for (let i = 0; i < 2000; i++)
      msg += `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n`;
    const buf = Buffer.from(`${msg}\r\nleaf\r\n`);
    const t0 = Date.now();
    let part = parseMime(buf);
    let depth = 0;
    while (part.children[0]) {
      part = part.children[0];
      depth++;
    }
    expect(depth).toBeLessThanOrEqual(MAX_MIME_DEPTH);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it("100,000 parts and a 1 MB folded header parse in well under a second each", () => {
    const parts = Array.from({ length: 100_000 }, (_, i) => `--b\r\n\r\n${i}\r\n`).join("");
    const t0 = Date.now();
    const root = parseMime(Buffer.from(`Content-Type: multipart/mixed; boundary=b\r\n\r\n${parts}--b--\r\n`));
    expect(root.children.length).toBeGreaterThan(1000);
    expect(Date.now() - t0).toBeLessThan(1500);
    const t1 = Date.now();
    const header = `Subject: x${"\r\n y".repeat(300_000)}\r\n\r\nbody`;
    expect(parseMime(Buffer.from(header)).headers[0]?.key).toBe("subject");
    expect(Date.now() - t1).toBeLessThan(1500);
  });
});
