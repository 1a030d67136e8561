/**
 * Content checks without daemons: the MIME walk, mime-bomb (with a time bound
 * on hostile input), header_checks / mime_header_checks / body_checks maps
 * applied to whole messages through the pipeline.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createFilterPipeline } from "../../src/filter/index.js";
import {
  type HeaderField,
  MAX_HEADER_CHARS,
  parseContentType,
  walkMime,
} from "../../src/filter/mime-walk.js";
import { filterConfig, message, silentLogger } from "./daemons.js";

const fixture = (name: string) => join(import.meta.dirname, "fixtures", name);
const LIMITS = { maxDepth: 30, maxParts: 1000 };

function multipart(boundary: string, parts: string[]): string {
  return `${parts.map((p) => `--${boundary}\r\n${p}\r\n`).join("")}--${boundary}--\r\n`;
}

describe("mime walk", () => {
  it("classifies headers as Postfix does and joins folded lines with \\n", () => {
    const msg = message(
      [
        "From: a@b.test",
        "Subject: one",
        "\ttwo",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b1"',
      ],
      multipart("b1", [
        "Content-Type: text/plain\r\nX-Part: p1\r\n\r\nhello",
        "Content-Type: message/rfc822\r\n\r\nFrom: inner@c.test\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\nbody",
      ]),
    );
    const seen: HeaderField[] = [];
    const lines: string[] = [];
    const r = walkMime(msg, LIMITS, [{ header: (f) => seen.push(f), bodyLine: (l) => lines.push(l) }]);
    const brief = seen.map((f) => `${f.class}:${f.depth}:${f.text}`);
    expect(brief).toEqual([
      "primary:0:From: a@b.test",
      "primary:0:Subject: one\n\ttwo",
      "mime:0:MIME-Version: 1.0",
      'mime:0:Content-Type: multipart/mixed; boundary="b1"',
      "mime:1:Content-Type: text/plain",
      "nested:1:X-Part: p1",
      "mime:1:Content-Type: message/rfc822",
      "nested:2:From: inner@c.test",
      "nested:2:Subject: inner",
      "mime:2:Content-Type: text/plain",
    ]);
    expect(lines).toContain("hello");
    expect(lines).toContain("body");
    expect(lines).toContain("--b1--");
    expect(r).toEqual({ parts: 4, depth: 2 });
  });

  it("parses Content-Type boundaries, quoted or not", () => {
    expect(parseContentType('Content-Type: Multipart/Mixed; charset=x; boundary="a b\\"c"')).toEqual({
      type: "multipart/mixed",
      boundary: 'a b"c',
    });
    expect(parseContentType("Content-Type: multipart/alternative;\n\tboundary=xyz")).toEqual({
      type: "multipart/alternative",
      boundary: "xyz",
    });
  });

  it("a header folded over 200,000 lines costs linear time and is truncated for the maps", () => {
    const msg = Buffer.from(`Subject: x\r\n${" y\r\n".repeat(200_000)}\r\nbody\r\n`);
    let longest = 0;
    const started = performance.now();
    walkMime(msg, LIMITS, [{ header: (f) => (longest = Math.max(longest, f.text.length)) }]);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(longest).toBeLessThan(MAX_HEADER_CHARS + 10);
  });

  it("stops at the depth limit", () => {
    let body = "leaf";
    for (let i = 40; i >= 1; i--) {
      body = `Content-Type: multipart/mixed; boundary="n${i}"\r\n\r\n--n${i}\r\n${body}\r\n--n${i}--`;
    }
    const r = walkMime(Buffer.from(`Subject: deep\r\n${body}\r\n`), LIMITS, []);
    expect(r.exceeded).toEqual({ limit: "depth", value: 31, max: 30 });
  });
});

describe("mime-bomb through the pipeline", () => {
  const pipeline = createFilterPipeline(
    filterConfig({
      dkim: { enabled: false },
      dmarc: { enabled: false },
      arc: { enabled: false },
      mimeBomb: { maxDepth: 30, maxParts: 1000 },
    }),
    { logger: silentLogger, localDomains: ["campus.example.edu"] },
  );
  const env = { helo: "mx.sender.test", mailFrom: "a@sender.test", rcptTo: ["u@campus.example.edu"] };

  it("accepts an ordinary multipart message", async () => {
    const msg = message(
      ["From: a@sender.test", 'Content-Type: multipart/mixed; boundary="x"'],
      multipart("x", ["Content-Type: text/plain\r\n\r\nhi", "Content-Type: text/html\r\n\r\n<p>hi</p>"]),
    );
    const v = await pipeline.transaction().onData(msg, env);
    expect(v.action).toBe("accept");
    expect(v.results.find((r) => r.check === "mime-bomb")?.detail).toBe("3 part(s), depth 1");
  });

  it("rejects 10,000 nested multiparts with 554 5.6.0, in linear time", async () => {
    const depth = 10_000;
    const open: string[] = [];
    const close: string[] = [];
    for (let i = 0; i < depth; i++) {
      open.push(`Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n`);
      close.push(`\r\n--b${depth - 1 - i}--`);
    }
    const msg = Buffer.from(`From: a@sender.test\r\n${open.join("")}x${close.join("")}\r\n`);
    const started = performance.now();
    const v = await pipeline.transaction().onData(msg, env);
    const ms = performance.now() - started;
    expect(v.action).toBe("reject");
    expect(v.code).toBe(554);
    expect(v.enhanced).toBe("5.6.0");
    expect(v.message).toMatch(/nested more than 30 deep/);
    expect(v.decidedBy).toBe("mime-bomb");
    expect(ms).toBeLessThan(500);
  });

  it("rejects 50,000 parts with 552 5.3.4, and the walk stays linear (4× parts ≈ 4× time)", async () => {
    const make = (n: number) =>
      Buffer.from(
        `From: a@sender.test\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n${"--p\r\nContent-Type: text/plain\r\n\r\nx\r\n".repeat(n)}--p--\r\n`,
      );
    const v = await pipeline.transaction().onData(make(50_000), env);
    expect(v.action).toBe("reject");
    expect(v.code).toBe(552);
    expect(v.enhanced).toBe("5.3.4");
    expect(v.message).toMatch(/more than 1000 MIME parts/);
    // Without a limit, the walk's cost grows linearly with the number of parts.
    // Small and large runs alternate and the fastest of each counts, so a busy
    // machine's stalls hit both sizes alike.
    const walk = (m: Buffer) => {
      const t = performance.now();
      walkMime(m, { maxDepth: 30, maxParts: 1e9 }, []);
      return performance.now() - t;
    };
    const smallMsg = make(20_000);
    const largeMsg = make(80_000);
    walk(smallMsg); // warm up
    let small = Number.POSITIVE_INFINITY;
    let large = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 7; i++) {
      small = Math.min(small, walk(smallMsg));
      large = Math.min(large, walk(largeMsg));
    }
    expect(large).toBeLessThan(small * 10); // 4× the parts; quadratic would be ~16×
    expect(large).toBeLessThan(2000);
  });
});

describe("header_checks, mime_header_checks, body_checks on whole messages", () => {
  const pipeline = createFilterPipeline(
    filterConfig({
      headerChecks: `regexp:${fixture("header_checks")}`,
      bodyChecks: `regexp:${fixture("body_checks")}`,
      mimeHeaderChecks: `regexp:${fixture("mime_header_checks")}`,
      dkim: { enabled: false },
      dmarc: { enabled: false },
      arc: { enabled: false },
    }),
    { logger: silentLogger, localDomains: ["campus.example.edu"] },
  );
  const env = { helo: "mx.sender.test", mailFrom: "a@sender.test", rcptTo: ["u@campus.example.edu"] };
  const data = (headers: string[], body = "hello\r\n") =>
    pipeline.transaction().onData(message(headers, body), env);

  it("a clean message is accepted with X-Spam headers", async () => {
    const v = await data(["From: a@sender.test", "Subject: lunch"]);
    expect(v.action).toBe("accept");
    expect(v.addHeaders).toContainEqual(["X-Spam-Score", "0.0"]);
    expect(v.removeHeaders).toContain("x-spam-flag");
    expect(v.results.filter((r) => r.outcome === "fail")).toEqual([]);
  });

  it("REJECT in header_checks: 550 5.7.1 with the map's text, folded headers matched whole", async () => {
    const v = await data(["From: a@sender.test", "Subject: great offer", "\ton VIAGRA today"]);
    expect(v).toMatchObject({
      action: "reject",
      code: 550,
      enhanced: "5.7.1",
      message: "Spam subject (viagra)",
    });
    expect(v.decidedBy).toBe("header-checks");
    expect(v.results.find((r) => r.check === "spamd")?.detail).toBe("refused by header-checks");
  });

  it("an enhanced status code in the map text is used", async () => {
    const v = await data(["Subject: casino bonus inside"]);
    expect(v).toMatchObject({
      action: "reject",
      code: 550,
      enhanced: "5.7.0",
      message: "Gambling spam not accepted",
    });
  });

  it("PREPEND, HOLD and DISCARD are carried in the verdict", async () => {
    const p = await data(["From: Dean <dean@campus.example.edu>", "Subject: hi"]);
    expect(p.action).toBe("accept");
    // header_checks(5): the PREPEND line goes immediately before the header that matched.
    expect(p.edits).toEqual([{ start: 0, end: 0, text: "X-Forged-Campus: possibly\r\n" }]);
    const h = await data(["X-List-Server: legacy-listserv", "Subject: hi"]);
    expect(h.disposition).toBe("hold");
    const d = await data(["Subject: URGENT NOTICE"]);
    expect(d.disposition).toBe("discard");
  });

  it("mime_header_checks sees part headers at any depth; header_checks does not", async () => {
    const msg = message(
      ["From: a@sender.test", 'Content-Type: multipart/mixed; boundary="o"'],
      multipart("o", [
        "Content-Type: text/plain\r\n\r\nsee attached",
        `Content-Type: multipart/mixed; boundary="i"\r\n\r\n${multipart("i", [
          'Content-Type: application/octet-stream; name="invoice.pdf.exe"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA',
        ])}`,
      ]),
    );
    const v = await pipeline.transaction().onData(msg, env);
    expect(v).toMatchObject({
      action: "reject",
      code: 550,
      enhanced: "5.7.1",
      decidedBy: "mime-header-checks",
    });
    expect(v.message).toBe("Attachment type .exe not accepted; please zip it");
  });

  it("without a mime_header_checks map, header_checks applies to MIME headers (Postfix's default)", async () => {
    const p = createFilterPipeline(
      filterConfig({
        headerChecks: fixture("mime_header_checks"),
        ...{ dkim: { enabled: false }, dmarc: { enabled: false }, arc: { enabled: false } },
      }),
      { logger: silentLogger, localDomains: [] },
    );
    const msg = message(
      ["From: a@sender.test", 'Content-Type: multipart/mixed; boundary="o"'],
      multipart("o", [
        'Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="x.scr"\r\n\r\nAAAA',
      ]),
    );
    const v = await p.transaction().onData(msg, env);
    expect(v).toMatchObject({ action: "reject", decidedBy: "mime-header-checks" });
  });

  it("body_checks sees raw body lines (not headers, not decoded)", async () => {
    const hit = await data(["Subject: hi"], "Dear friend\r\n  Click here to claim your prize\r\n");
    expect(hit).toMatchObject({ action: "reject", code: 550, enhanced: "5.7.1", message: "Prize spam" });
    // The same words base64-encoded are not seen, as in Postfix.
    const encoded = Buffer.from("Click here to claim your prize").toString("base64");
    const miss = await data(["Subject: hi", "Content-Transfer-Encoding: base64"], `${encoded}\r\n`);
    expect(miss.action).toBe("accept");
    // A header line is not a body line.
    const header = await data(["X-Note: Click here to claim your prize"]);
    expect(header.action).toBe("accept");
  });

  it("body_checks_size_limit: text past the limit is not inspected", async () => {
    const p = createFilterPipeline(
      filterConfig({
        bodyChecks: fixture("body_checks"),
        bodyChecksSizeLimit: 1000,
        dkim: { enabled: false },
        dmarc: { enabled: false },
        arc: { enabled: false },
      }),
      { logger: silentLogger, localDomains: [] },
    );
    const filler = `${"x".repeat(70)}\r\n`.repeat(20);
    const v = await p
      .transaction()
      .onData(message(["Subject: a"], `${filler}Click here to claim your prize\r\n`), env);
    expect(v.action).toBe("accept");
  });

  it("WARN hits are recorded, not acted on", async () => {
    const v = await data(["Subject: hi"], "a wire transfer fee of $40\r\n");
    expect(v.action).toBe("accept");
    expect(v.results.find((r) => r.check === "body-checks")?.detail).toMatch(/^WARN .*body_checks:5/);
  });

  it("a broken map stops the pipeline from starting, naming file and line", () => {
    expect(() =>
      createFilterPipeline(filterConfig({ headerChecks: fixture("sender_access") }), {
        logger: silentLogger,
        localDomains: [],
      }),
    ).toThrow(/sender_access:2: expected a delimited pattern/);
  });
});

describe("robustness", () => {
  it("random and truncated MIME never throws: every input gets a verdict", async () => {
    const p = createFilterPipeline(
      filterConfig({
        headerChecks: fixture("header_checks"),
        bodyChecks: fixture("body_checks"),
        dkim: { enabled: false },
        dmarc: { enabled: false },
        arc: { enabled: false },
        mimeBomb: { maxDepth: 5, maxParts: 50 },
      }),
      { logger: silentLogger, localDomains: [] },
    );
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const pieces = [
      "Content-Type: multipart/mixed; boundary=a\r\n",
      "Content-Type: message/rfc822\r\n",
      'Content-Type: multipart/digest; boundary="a"\r\n',
      "--a\r\n",
      "--a--\r\n",
      "\r\n",
      " folded\r\n",
      "Subject: viagra\r\n",
      "no colon line\r\n",
      "\0\xff\xfe",
      "\n",
      "\r",
      "x".repeat(5000),
    ];
    const actions = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const parts = Array.from({ length: 1 + rnd(40) }, () => pieces[rnd(pieces.length)]!);
      const buf = Buffer.from(parts.join(""), "latin1");
      const v = await p.transaction().onData(buf.subarray(0, rnd(buf.length + 1)), {
        helo: "h.test",
        mailFrom: "",
        rcptTo: ["u@x.test"],
      });
      actions.add(v.action);
    }
    expect([...actions].every((a) => ["accept", "tag", "reject"].includes(a))).toBe(true);
  });
});
