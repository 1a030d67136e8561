import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { accessKeys, loadAccessTable, lookupAccess } from "../../src/filter/access.js";
import { parseMapAction } from "../../src/filter/map-action.js";
import { loadRegexpTable, parseMapSpec, parseTextTable } from "../../src/filter/maps.js";
import { parseRegexpTable, posixToJs, RegexpTableError } from "../../src/filter/regexp-table.js";

const fixture = (name: string) => join(import.meta.dirname, "fixtures", name);

describe("regexp_table(5) parser", () => {
  it("is case-insensitive by default; the i flag makes it case-sensitive", () => {
    const t = parseRegexpTable("/^subject: hello/ REJECT a\n/^X-Tag: ABC/i WARN b\n");
    expect(t.lookup("Subject: HELLO there")?.result).toBe("REJECT a");
    expect(t.lookup("X-Tag: ABC")?.result).toBe("WARN b");
    expect(t.lookup("X-Tag: abc")).toBeUndefined();
  });

  it("first match wins, in file order, and reports the line", () => {
    const t = parseRegexpTable("# c\n\n/a/ OK\n/a/ REJECT\n");
    expect(t.lookup("a")).toEqual({ result: "OK", line: 3, source: "<inline>" });
  });

  it("negated patterns match when the pattern does not", () => {
    const t = parseRegexpTable("!/^From:/ WARN not a From\n");
    expect(t.lookup("To: x")?.result).toBe("WARN not a From");
    expect(t.lookup("From: x")).toBeUndefined();
  });

  it("substitutes $1, $${2}, $(1) and $$", () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Postfix's ${n} syntax, not a JS template
    const t = parseRegexpTable("/^X-Mailer: (\\S+) (\\S+)/ REJECT mailer $1 v${2} ($(1)) costs $$5\n");
    expect(t.lookup("X-Mailer: Bulk 2.1")?.result).toBe("REJECT mailer Bulk v2.1 (Bulk) costs $5");
  });

  it("if/endif blocks nest and gate their rules", () => {
    const t = parseRegexpTable(
      [
        "if /^Received:/",
        "if !/internal/",
        "/from evil/ REJECT evil relay",
        "endif",
        "endif",
        "/evil/ WARN",
      ].join("\n"),
    );
    expect(t.lookup("Received: from evil.test")?.result).toBe("REJECT evil relay");
    expect(t.lookup("Received: from evil.test internal")?.result).toBe("WARN");
    expect(t.lookup("X-Other: from evil")?.result).toBe("WARN");
  });

  it("joins continuation lines (a line starting with whitespace)", () => {
    const t = parseRegexpTable("/^Subject: x/\n   REJECT spread over\n   lines\n");
    expect(t.lookup("Subject: x")?.result).toBe("REJECT spread over lines");
  });

  it("without m, . spans the newline of a folded header; with m, ^ matches after it", () => {
    const folded = "Subject: cheap\n\tviagra here";
    expect(parseRegexpTable("/^Subject:.*viagra/ REJECT\n").lookup(folded)).toBeDefined();
    expect(parseRegexpTable("/^\\tviagra/ REJECT\n").lookup(folded)).toBeUndefined();
    expect(parseRegexpTable("/^\\tviagra/m REJECT\n").lookup(folded)).toBeDefined();
  });

  it("takes any non-alphanumeric delimiter and escaped delimiters inside", () => {
    const t = parseRegexpTable("%^Content-Type: text/html%  WARN html\n/a\\/b/ WARN slash\n");
    expect(t.lookup("Content-Type: text/html")?.result).toBe("WARN html");
    expect(t.lookup("path a/b")?.result).toBe("WARN slash");
  });

  it("translates POSIX classes and GNU word boundaries; x off selects basic syntax", () => {
    expect(posixToJs("[[:digit:]]+[[:space:]]", true)).toBe("[0-9]+[ \\t\\r\\n\\v\\f]");
    expect(posixToJs("\\<word\\>", true)).toBe("\\bword\\b");
    expect(posixToJs("\\(a\\)+b{2}", false)).toBe("(a)\\+b\\{2\\}");
    const t = parseRegexpTable("/^\\(ab\\)+$/x WARN bre\n");
    expect(t.lookup("ab+")?.result).toBe("WARN bre");
    expect(t.lookup("abab")).toBeUndefined();
  });

  it.each([
    ["/unclosed REJECT", /missing closing/],
    ["/a/q REJECT", /unknown flag "q"/],
    ["/a(/ REJECT", /bad regular expression/],
    ["/a/", /missing result/],
    ["if /a/\n/b/ OK", /if without endif/],
    ["endif", /endif without if/],
    ["!/(a)/ REJECT $1", /negated pattern/],
    ["/(a)/ REJECT $2", /has 1 group/],
    ["/a/ REJECT $x", /bad \$/],
    ["abc REJECT", /expected a delimited pattern/],
  ])("refuses %j with file:line", (text, msg) => {
    const err = (() => {
      try {
        parseRegexpTable(text, "/etc/postfix/t");
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(RegexpTableError);
    expect(err?.message).toMatch(/^\/etc\/postfix\/t:\d+: /);
    expect(err?.message).toMatch(msg);
  });
});

describe("map actions", () => {
  it.each([
    ["REJECT", { kind: "reject", text: "" }],
    ["reject Go away", { kind: "reject", text: "Go away" }],
    ["REJECT 5.7.9 Policy", { kind: "reject", enhanced: "5.7.9", text: "Policy" }],
    ["550 5.1.1 Gone", { kind: "reject", code: 550, enhanced: "5.1.1", text: "Gone" }],
    ["421 Busy", { kind: "defer", code: 421, text: "Busy" }],
    ["DEFER later", { kind: "defer", text: "later" }],
    ["OK", { kind: "ok" }],
    ["12345", { kind: "ok" }],
    ["DUNNO", { kind: "dunno" }],
    ["WARN note", { kind: "warn", text: "note" }],
    ["PREPEND X-A: b", { kind: "prepend", header: "X-A: b" }],
    ["HOLD why", { kind: "hold", text: "why" }],
    ["DISCARD", { kind: "discard", text: "" }],
    ["IGNORE", { kind: "ignore" }],
    ["REDIRECT a@b", { kind: "redirect", address: "a@b" }],
    ["BCC archive@example.org", { kind: "bcc", address: "archive@example.org" }],
    ["REPLACE X-A: b", { kind: "replace", text: "X-A: b" }],
    ["STRIP removed", { kind: "strip", text: "removed" }],
    [
      "FILTER smtp:[127.0.0.1]:10025",
      { kind: "unsupported", verb: "FILTER", text: "smtp:[127.0.0.1]:10025" },
    ],
  ])("%s", (text, expected) => {
    expect(parseMapAction(text)).toEqual(expected);
  });
});

describe("the sample maps in fixtures/ (real-world style)", () => {
  const hc = loadRegexpTable(`regexp:${fixture("header_checks")}`);
  const mhc = loadRegexpTable(fixture("mime_header_checks"));
  const bc = loadRegexpTable(fixture("body_checks"));

  it("header_checks", () => {
    expect(hc.lookup("Subject: Buy VIAGRA now")?.result).toBe("REJECT Spam subject (viagra)");
    expect(hc.lookup("Subject: Viagrafalls trip")).toBeUndefined();
    expect(hc.lookup("Subject: big Casino  Bonus")?.result).toBe("REJECT 5.7.0 Gambling spam not accepted");
    expect(hc.lookup("X-Mailer: Dark Mailer 3")?.result).toBe("REJECT Bulk mailer Dark Mailer not accepted");
    expect(hc.lookup("From: Dean <dean@campus.example.edu>")?.result).toBe(
      "PREPEND X-Forged-Campus: possibly",
    );
    expect(hc.lookup("Subject: URGENT NOTICE")?.result).toBe("DISCARD shouting notice");
    expect(hc.lookup("Subject: urgent notice")).toBeUndefined();
    expect(hc.lookup("Received: from a ([10.13.4.5]) by b")?.result).toBe("WARN internal relay 10.13.4.5");
    expect(hc.lookup("Received: from x by mx1.campus.example.edu")).toBeUndefined();
    expect(hc.lookup("Received: from x by elsewhere")?.result).toBe("DUNNO");
    expect(hc.lookup("Subject: hello")).toBeUndefined();
  });

  it("mime_header_checks", () => {
    expect(mhc.lookup('Content-Disposition: attachment; filename="invoice.pdf.exe"')?.result).toBe(
      "REJECT Attachment type .exe not accepted; please zip it",
    );
    expect(mhc.lookup("Content-Type: application/octet-stream;\n\tname=update.scr")?.result).toMatch(/\.scr/);
    expect(mhc.lookup('Content-Disposition: attachment; filename="report.pdf"')).toBeUndefined();
    expect(mhc.lookup("Content-Type: application/x-msdownload")?.result).toMatch(/Executable/);
  });

  it("body_checks", () => {
    expect(bc.lookup("<iframe src=3Dcid:abc height=3D0 width=3D0>")?.result).toBe(
      "REJECT IFRAME vulnerability exploit",
    );
    expect(bc.lookup("  Click here to claim your prize")?.result).toBe("REJECT 5.7.1 Prize spam");
    expect(bc.lookup("a wire transfer fee of $25 applies")?.result).toBe("WARN advance-fee wording");
    expect(bc.lookup("Hello, see you at lunch")).toBeUndefined();
  });
});

describe("access(5) maps", () => {
  it("tries address, domain, parent domains, .parent forms, then user@", () => {
    expect(accessKeys("John@Mail.Bulk.Test")).toEqual([
      "john@mail.bulk.test",
      "mail.bulk.test",
      "bulk.test",
      ".bulk.test",
      "test",
      ".test",
      "john@",
    ]);
    expect(accessKeys("")).toEqual(["<>"]);
  });

  const sender = loadAccessTable(`hash:${fixture("sender_access")}.db`);
  it.each([
    ["spammer@bulk.test", "reject", "spammer@bulk.test"],
    ["other@bulk.test", "reject", "bulk.test"],
    ["a@mail.bulk.test", "reject", "bulk.test"],
    ["a@x.junk.test", "reject", ".junk.test"],
    ["a@partner.test", "ok", "partner.test"],
    ["annoying@anywhere.test", "defer", "annoying@"],
    ["", "dunno", "<>"],
    ["x@hold.test", "hold", "hold.test"],
  ])("%j → %s via %s", (address, kind, key) => {
    const hit = lookupAccess(sender, address);
    expect(hit?.action.kind).toBe(kind);
    expect(hit?.key).toBe(key);
  });

  it("finds nothing for unlisted senders, and junk.test itself is not .junk.test", () => {
    expect(lookupAccess(sender, "friend@example.test")).toBeUndefined();
    expect(lookupAccess(sender, "a@junk.test")).toBeUndefined();
  });

  it("a text table keeps the first of duplicate keys and refuses a key without a value", () => {
    expect(parseTextTable("a OK\na REJECT\n").get("A")?.result).toBe("OK");
    expect(() => parseTextTable("lonely\n", "t")).toThrow(/t:1: expected "key value"/);
  });

  it("map specs", () => {
    expect(parseMapSpec("hash:/etc/postfix/access.db", "text")).toEqual({
      type: "text",
      path: "/etc/postfix/access",
    });
    expect(parseMapSpec("/x", "regexp")).toEqual({ type: "regexp", path: "/x" });
    expect(() => parseMapSpec("ldap:/etc/x.cf", "text")).toThrow(/not supported/);
  });

  it("the fixture files are what the tests read", () => {
    expect(readFileSync(fixture("recipient_access"), "utf8")).toMatch(/departed@/);
  });
});
