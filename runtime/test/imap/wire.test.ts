import { describe, expect, it } from "vitest";
import { compile, untagged } from "../../src/imap/wire/compiler.js";
import { CommandFramer, type FrameEvent } from "../../src/imap/wire/framer.js";
import { ParseError, parseCommand } from "../../src/imap/wire/parser.js";
import { formatSequenceSet, inSequenceSet, parseSequenceSet } from "../../src/imap/wire/sequence.js";
import { decodeMailboxName, encodeMailboxName, Utf7Error } from "../../src/imap/wire/utf7.js";

const text = (n: unknown): unknown =>
  JSON.parse(
    JSON.stringify(n, (_k, v) => (v && v.type === "Buffer" ? Buffer.from(v.data).toString("latin1") : v)),
  );

describe("parser (RFC 3501 §9)", () => {
  it("reads tag, verb and atoms", () => {
    expect(text(parseCommand("a1 login alice secret"))).toEqual({
      tag: "a1",
      command: "LOGIN",
      args: [
        { type: "atom", value: "alice" },
        { type: "atom", value: "secret" },
      ],
    });
  });

  it("reads quoted strings with escapes and literals inline", () => {
    const c = parseCommand(Buffer.from('A2 LOGIN "al\\"ice" {5}\r\npa ss'));
    expect(text(c.args)).toEqual([
      { type: "string", value: 'al"ice', literal: false },
      { type: "string", value: "pa ss", literal: true },
    ]);
  });

  it("reads LITERAL+ sizes", () => {
    const c = parseCommand(Buffer.from("A3 APPEND INBOX {3+}\r\nabc"));
    expect(text(c.args[1])).toEqual({ type: "string", value: "abc", literal: true });
  });

  it("reads nested lists and sections with partials", () => {
    const c = parseCommand("A4 FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.100> BODY[])");
    expect(c.args[0]).toEqual({ type: "atom", value: "1:*" });
    expect(c.args[1]).toEqual({
      type: "list",
      items: [
        { type: "atom", value: "FLAGS" },
        {
          type: "atom",
          value: "BODY.PEEK",
          section: [
            { type: "atom", value: "1.2.HEADER.FIELDS" },
            {
              type: "list",
              items: [
                { type: "atom", value: "From" },
                { type: "atom", value: "To" },
              ],
            },
          ],
          partial: { start: 0, length: 100 },
        },
        { type: "atom", value: "BODY", section: [] },
      ],
    });
  });

  it("keeps flags with backslashes and astrings with ]", () => {
    const c = parseCommand("A5 STORE 1 +FLAGS (\\Seen $Junk) ");
    expect(c.args[2]).toEqual({
      type: "list",
      items: [
        { type: "atom", value: "\\Seen" },
        { type: "atom", value: "$Junk" },
      ],
    });
    expect(parseCommand("A6 SELECT foo]bar").args).toEqual([{ type: "atom", value: "foo]bar" }]);
  });

  it.each([
    ["", "invalid tag"],
    ["A+ NOOP", "invalid tag"],
    ["A1", "missing command"],
    ["A1 NO*OP", "invalid command name"],
    ['A1 LOGIN "unterminated', "unterminated quoted string"],
    ["A1 FETCH 1 (FLAGS", "unterminated list"],
    ["A1 FETCH 1 FLAGS)", "expected a space between arguments"],
    ["A1 LOGIN {5}\r\nab", "literal shorter than announced"],
    ["A1 LOGIN {x}\r\nab", "invalid literal size"],
    ["A1 FETCH 1 BODY[]<0.0>", "partial length must be positive"],
    ["A1 LOGIN  a b", "unexpected character"],
  ])("rejects %j with %j", (input, message) => {
    expect(() => parseCommand(input)).toThrow(message);
  });

  it("reports the tag with errors after the tag", () => {
    try {
      parseCommand("T9 LOGIN (");
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ParseError);
      expect((err as ParseError).tag).toBe("T9");
    }
  });

  it("refuses deep nesting without blowing the stack", () => {
    expect(() => parseCommand(`A1 SEARCH ${"(".repeat(10_000)}ALL${")".repeat(10_000)}`)).toThrow(
      "too deeply nested",
    );
  });
});

describe("framer (literals, limits)", () => {
  const run = (
    chunks: string[],
    limits = { maxLineBytes: 100, maxLiteralBytes: 50, maxCommandBytes: 200 },
  ) => {
    const events: FrameEvent[] = [];
    const f = new CommandFramer(limits, (e) => events.push(e));
    for (const c of chunks) f.push(Buffer.from(c, "latin1"));
    return events.map((e) =>
      e.type === "command" ? { type: "command", data: e.data.toString("latin1") } : e,
    );
  };

  it("splits pipelined commands across chunk boundaries", () => {
    expect(run(["a1 NOOP\r\na2 CAPA", "BILITY\r\n"])).toEqual([
      { type: "command", data: "a1 NOOP" },
      { type: "command", data: "a2 CAPABILITY" },
    ]);
  });

  it("asks for a synchronizing literal and keeps its bytes", () => {
    expect(run(["a1 LOGIN {3}\r\n", "a\r\nb {2+}\r\nxy\r\n"])).toEqual([
      { type: "continue" },
      { type: "command", data: "a1 LOGIN {3}\r\na\r\nb {2+}\r\nxy" },
    ]);
  });

  it("refuses an oversized synchronizing literal without a continuation", () => {
    expect(run(["a1 APPEND INBOX {51}\r\n", "a2 NOOP\r\n"])).toEqual([
      { type: "literal-too-large", tag: "a1", size: 51, sync: true },
      { type: "command", data: "a2 NOOP" },
    ]);
  });

  it("stops at an oversized non-synchronizing literal", () => {
    expect(run([`a1 APPEND INBOX {51+}\r\n${"x".repeat(51)}\r\na2 NOOP\r\n`])).toEqual([
      { type: "literal-too-large", tag: "a1", size: 51, sync: false },
    ]);
  });

  it("stops at an overlong line", () => {
    expect(run([`a1 ${"x".repeat(200)}`])).toEqual([{ type: "line-too-long" }]);
  });
});

describe("compiler", () => {
  it("quotes, escapes, and falls back to literals", () => {
    expect(compile(['a"b\\c', null, 42, { atom: "\\Seen" }, ["x", []]]).toString()).toBe(
      '"a\\"b\\\\c" NIL 42 \\Seen ("x" ())',
    );
    expect(compile(["zwei\r\nZeilen"]).toString()).toBe("{12}\r\nzwei\r\nZeilen");
    expect(compile(["Grüße"]).toString("utf8")).toBe("{7}\r\nGrüße");
    expect(untagged([{ atom: "OK" }]).toString()).toBe("* OK\r\n");
  });
});

describe("sequence sets", () => {
  it("parses, matches with *, and formats", () => {
    const r = parseSequenceSet("1:3,7,9:*");
    expect(inSequenceSet(r, 2, 20)).toBe(true);
    expect(inSequenceSet(r, 8, 20)).toBe(false);
    expect(inSequenceSet(r, 20, 20)).toBe(true);
    expect(inSequenceSet(parseSequenceSet("5:2"), 3, 9)).toBe(true);
    expect(formatSequenceSet([5, 1, 2, 3, 9, 10])).toBe("1:3,5,9:10");
    expect(() => parseSequenceSet("0")).toThrow();
    expect(() => parseSequenceSet("1,,2")).toThrow();
    expect(() => parseSequenceSet("a")).toThrow();
  });
});

describe("modified UTF-7 (RFC 3501 §5.1.3)", () => {
  it.each([
    ["Entwürfe", "Entw&APw-rfe"],
    ["A&B", "A&-B"],
    ["日本語", "&ZeVnLIqe-"],
    ["~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"],
  ])("%s ⇄ %s", (name, wire) => {
    expect(encodeMailboxName(name)).toBe(wire);
    expect(decodeMailboxName(wire)).toBe(name);
  });

  it.each(["&Jjo!", "&U,BTFw", "&AGE-", "Entw\u00fcrfe"])("rejects %j", (bad) => {
    expect(() => decodeMailboxName(bad)).toThrow(Utf7Error);
  });
});
