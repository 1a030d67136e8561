/**
 * Every header_checks(5) action, applied with Postfix's semantics to whole
 * messages through the pipeline, and the queued bytes they lead to
 * (smtp/message.ts assembleMessage): REJECT, DISCARD, WARN, HOLD, IGNORE,
 * STRIP, PREPEND, REPLACE, REDIRECT, BCC, DUNNO, OK, INFO; `if … endif` and
 * `!/re/`; pcre: maps. FILTER and unknown actions stop the load with the map's
 * file and line.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createFilterPipeline } from "../../src/filter/index.js";
import type { Verdict } from "../../src/filter/types.js";
import { assembleMessage } from "../../src/smtp/message.js";
import { filterConfig, message, silentLogger } from "./daemons.js";

const dir = mkdtempSync(join(tmpdir(), "mailinfra-maps-"));
let n = 0;
function map(lines: string[]): string {
  const file = join(dir, `map-${n++}`);
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

const env = { helo: "mx.sender.test", mailFrom: "a@sender.test", rcptTo: ["u@campus.example.edu"] };

function pipelineWith(section: Record<string, unknown>) {
  return createFilterPipeline(
    filterConfig({
      ...section,
      spf: { enabled: false },
      dkim: { enabled: false },
      dmarc: { enabled: false },
      arc: { enabled: false },
    }),
    { logger: silentLogger, localDomains: ["campus.example.edu"] },
  );
}

const HEADER_MAP = [
  "/^Subject:.*reject-me/          REJECT 5.7.1 No thanks",
  "/^Subject:.*discard-me/         DISCARD",
  "/^Subject:.*hold-me/            HOLD held for review",
  "/^X-Mailer: (.*)/               WARN mailer $1",
  "/^X-Info:/                      INFO just so you know",
  "/^X-Originating-IP:/            IGNORE",
  "/^X-Secret:/                    STRIP secret header removed",
  "/^Subject: (.*) \\[ext\\]$/       REPLACE Subject: [EXTERNAL] $1",
  "/^From:.*@campus\\.example\\.edu/ PREPEND X-Campus-From: yes",
  "/^To:.*redirect-me/             REDIRECT quarantine@campus.example.edu",
  "/^Cc:.*copy-me/                 BCC archive@campus.example.edu",
  "/^X-Skip:/                      DUNNO",
  "/^X-Skip-Too:/                  OK",
  "/^X-Skip/                       REJECT never reached for X-Skip and X-Skip-Too",
  "if /^Received:/",
  "!/by mx\\.campus\\.example\\.edu/  WARN foreign Received",
  "endif",
];

const BODY_MAP = [
  "/^tracking pixel/               IGNORE",
  "/^password: (.*)$/              REPLACE password: [removed]",
  "/^unsubscribe here/             PREPEND -- the list footer follows --",
];

const pipeline = pipelineWith({
  headerChecks: `regexp:${map(HEADER_MAP)}`,
  bodyChecks: `regexp:${map(BODY_MAP)}`,
});

async function run(headers: string[], body = "hello\r\n"): Promise<{ v: Verdict; out: string }> {
  const msg = message(headers, body);
  const v = await pipeline.transaction().onData(msg, env);
  // The edits alone: the X-Spam-* headers every scored message gets are left out.
  return { v, out: assembleMessage("", msg, { ...v, addHeaders: [], removeHeaders: [] }).toString() };
}

const detail = (v: Verdict, check = "header-checks") =>
  v.results.find((r) => r.check === check)?.detail ?? "";

describe("header_checks(5) actions", () => {
  it("REJECT refuses the whole message with the map's text", async () => {
    const { v } = await run(["Subject: please reject-me"]);
    expect(v).toMatchObject({ action: "reject", code: 550, enhanced: "5.7.1", message: "No thanks" });
    expect(v.decidedBy).toBe("header-checks");
  });

  it("DISCARD and HOLD set the disposition (the client still gets 250)", async () => {
    expect((await run(["Subject: discard-me"])).v).toMatchObject({
      action: "accept",
      disposition: "discard",
    });
    expect((await run(["Subject: hold-me"])).v).toMatchObject({ action: "accept", disposition: "hold" });
  });

  it("WARN and INFO only log (with $n substituted), the message is unchanged", async () => {
    const { v, out } = await run(["X-Mailer: Bulk 1.0", "X-Info: x", "Subject: s"]);
    expect(detail(v)).toMatch(/WARN .*map-0:4: X-Mailer: Bulk 1\.0 \(mailer Bulk 1\.0\)/);
    expect(detail(v)).toMatch(/INFO .*map-0:5/);
    expect(out).toBe("X-Mailer: Bulk 1.0\r\nX-Info: x\r\nSubject: s\r\n\r\nhello\r\n");
  });

  it("IGNORE and STRIP delete the header, folded lines included", async () => {
    const { v, out } = await run(["X-Originating-IP: [192.0.2.1]", "X-Secret: a", "\tfolded", "Subject: s"]);
    expect(out).toBe("Subject: s\r\n\r\nhello\r\n");
    expect(detail(v)).toMatch(/STRIP .*\(secret header removed\)/);
  });

  it("REPLACE swaps the header for the substituted text", async () => {
    const { out } = await run(["Subject: Quarterly numbers [ext]", "X-A: 1"]);
    expect(out).toBe("Subject: [EXTERNAL] Quarterly numbers\r\nX-A: 1\r\n\r\nhello\r\n");
  });

  it("PREPEND inserts its line immediately before the header that matched", async () => {
    const { out } = await run(["Subject: s", "From: Dean <dean@campus.example.edu>"]);
    expect(out).toBe(
      "Subject: s\r\nX-Campus-From: yes\r\nFrom: Dean <dean@campus.example.edu>\r\n\r\nhello\r\n",
    );
  });

  it("REDIRECT replaces the recipients, BCC adds one; the message is unchanged", async () => {
    const { v, out } = await run(["To: redirect-me@campus.example.edu", "Cc: copy-me@x.test", "Subject: s"]);
    expect(v.redirect).toBe("quarantine@campus.example.edu");
    expect(v.bcc).toEqual(["archive@campus.example.edu"]);
    expect(out).toBe(
      "To: redirect-me@campus.example.edu\r\nCc: copy-me@x.test\r\nSubject: s\r\n\r\nhello\r\n",
    );
  });

  it("DUNNO and OK end the lookup for that header as if nothing matched", async () => {
    const { v } = await run(["X-Skip: 1", "X-Skip-Too: 2", "Subject: s"]);
    expect(v.action).toBe("accept");
  });

  it("if /…/ … endif with !/…/ inside applies only to the headers the if matched", async () => {
    const foreign = await run(["Received: from a by relay.elsewhere.test", "Subject: s"]);
    expect(detail(foreign.v)).toMatch(/WARN .*map-0:16/);
    const ours = await run(["Received: from a by mx.campus.example.edu", "Subject: s"]);
    expect(detail(ours.v)).toBe("");
  });
});

describe("body_checks actions", () => {
  it("IGNORE deletes, REPLACE swaps and PREPEND inserts body lines", async () => {
    const { out } = await run(
      ["Subject: s"],
      "dear all\r\ntracking pixel 1x1\r\npassword: hunter2\r\nunsubscribe here\r\n",
    );
    expect(out).toBe(
      "Subject: s\r\n\r\ndear all\r\npassword: [removed]\r\n-- the list footer follows --\r\nunsubscribe here\r\n",
    );
  });
});

describe("pcre: maps", () => {
  it("take PCRE syntax (\\d, lazy quantifiers, lookahead) with pcre_table(5)'s default flags", async () => {
    const p = pipelineWith({
      headerChecks: `pcre:${map(["/^Subject:.*?\\border-\\d{4}(?!-ok)\\b/ REJECT order spam", "/^X-A: a. b/ WARN dotall"])}`,
    });
    const reject = await p.transaction().onData(message(["SUBJECT: your ORDER-1234 is here"], "x\r\n"), env);
    expect(reject).toMatchObject({ action: "reject", message: "order spam" });
    const ok = await p.transaction().onData(message(["Subject: order-1234-ok"], "x\r\n"), env);
    expect(ok.action).toBe("accept");
    // s is on by default: "." matches the newline of a folded header.
    const folded = await p.transaction().onData(message(["X-A: a", " b"], "x\r\n"), env);
    expect(detail(folded)).toMatch(/WARN/);
  });
});

describe("refused when the map is loaded, naming file and line", () => {
  const load =
    (lines: string[], type = "regexp") =>
    () =>
      pipelineWith({ headerChecks: `${type}:${map(lines)}` });

  it("FILTER (no content_filter transports here)", () => {
    expect(load(["/^Subject: a/ WARN a", "/^X-Scan:/ FILTER smtp:[127.0.0.1]:10025"])).toThrow(
      /map-\d+:2: FILTER transport:destination is not supported/,
    );
  });

  it("an unknown action, and a REDIRECT without an address", () => {
    expect(load(["/^Subject: a/ REJCT typo"])).toThrow(/map-\d+:1: unknown action "REJCT"/);
    expect(load(["/^Subject: a/ REDIRECT nobody"])).toThrow(/map-\d+:1: REDIRECT needs user@domain/);
  });

  it("a PCRE flag JavaScript cannot honour", () => {
    expect(load(["/^Subject: a/U WARN x"], "pcre")).toThrow(/map-\d+:1: unknown flag "U"/);
  });
});
