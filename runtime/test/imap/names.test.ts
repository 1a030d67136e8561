/**
 * Mailbox names over the wire (RFC 3501 §5.1, §5.1.3): modified UTF-7 decoded
 * to UTF-8 folders, and every name that could leave the user's tree, hide a
 * control character or abuse the encoding refused — with nothing created.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type TestServer, Transcript } from "./support.js";

let srv: TestServer;
let t: Transcript;
beforeAll(async () => {
  srv = await startServer();
  t = await Transcript.connect(srv.port);
  await t.cmd("l", "LOGIN alice alice-secret-1");
});
afterAll(async () => {
  t?.close();
  await srv?.stop();
});

const folders = async (): Promise<string[]> =>
  (await readdir(join(srv.root, "alice"))).filter((n) => n.startsWith(".")).sort();

describe("mailbox names", () => {
  it("decodes modified UTF-7 into UTF-8 folders and encodes it back in LIST", async () => {
    expect(await t.cmd("c1", 'CREATE "&ZeVnLIqe-"')).toMatch(/c1 OK/); // 日本語
    expect(await t.cmd("c2", 'CREATE "Entw&APw-rfe/a&-b"')).toMatch(/c2 OK/); // Entwürfe/a&b
    expect(await folders()).toEqual([".Entwürfe", ".Entwürfe.a&b", ".日本語"]);
    const list = await t.cmd("L", 'LIST "" "*"');
    expect(list).toContain('"&ZeVnLIqe-"');
    expect(list).toContain('"Entw&APw-rfe/a&-b"');
    expect(await t.cmd("s", 'SELECT "Entw&APw-rfe/a&-b"')).toMatch(/s OK/);
    await t.cmd("u", "UNSELECT");
  });

  it("refuses malformed modified UTF-7 with BAD", async () => {
    for (const name of ['"&Jjo"', '"&AGE-"', '"&Jjo!-"', '"café"']) {
      expect(await t.cmd("b", `CREATE ${name}`), name).toMatch(/b BAD /);
    }
  });

  it("refuses names that leave the tree or have empty, '.' or '..' components, creating nothing", async () => {
    const before = await folders();
    for (const name of ['".."', '"../bob"', '"a/../b"', '"a/./b"', '"/abs"', '"a//b"', '"x/../../etc"']) {
      expect(await t.cmd("n", `CREATE ${name}`), name).toMatch(/n NO \[CANNOT\]/);
    }
    expect(await t.cmd("r", 'RENAME "&ZeVnLIqe-" "../x"')).toMatch(/r NO \[CANNOT\]/);
    expect(await t.cmd("s", 'SELECT "../bob"')).toMatch(/s NO /);
    expect(await t.cmd("a", 'APPEND "../bob" {3+}\r\nx\r\n')).toMatch(/a NO /);
    expect(await folders()).toEqual(before);
    expect(await readdir(srv.root)).toEqual(["alice"]);
  });

  it("refuses control characters, also in a literal", async () => {
    t.send("c CREATE {3}\r\n");
    await t.until(/\+ [^\r]*\r\n/);
    t.send("a\x01b\r\n");
    expect(await t.until(/c (OK|NO|BAD)[^\r]*\r\n/)).toMatch(/c BAD .*control/);
    expect(await t.cmd("c2", 'CREATE "tab\there"')).toMatch(/c2 (BAD|NO)/);
    expect(await t.cmd("c3", "CREATE {5+}\r\nnew\r\n\r\n")).toMatch(/c3 (BAD|NO)/);
    expect(await t.cmd("ok", "NOOP")).toMatch(/ok OK/);
  });

  it("a '.' inside a name is a character, not a level (Maildir++ escaping)", async () => {
    expect(await t.cmd("d", 'CREATE "v1.2"')).toMatch(/d OK/);
    expect(await folders()).toContain(".v1%2E2");
    expect(await t.cmd("L", 'LIST "" "v1*"')).toContain('"/" "v1.2"');
  });
});
