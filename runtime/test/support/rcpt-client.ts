/**
 * Python's smtplib (SMTP or LMTP) as a client nobody here wrote, for RCPT-time
 * tests: MAIL FROM with the given parameters (e.g. SIZE=n, RFC 1870), each
 * RCPT's reply, then DATA when a message is given and a recipient was taken
 * (LMTP: one reply per accepted recipient, RFC 2033 §4.2), else RSET.
 */
import { execFile } from "node:child_process";

const SCRIPT = `
import json, smtplib, sys, time
a = json.load(sys.stdin)
cls = smtplib.LMTP if a["lmtp"] else smtplib.SMTP
c = cls(a["host"], a["port"], timeout=20)
c.ehlo("client.example")
out = {"mail": None, "rcpt": [], "rcptMs": [], "data": []}
code, msg = c.mail(a["from"], a.get("mailOptions", []))
out["mail"] = [code, msg.decode()]
accepted = 0
for r in a["rcpts"]:
    t = time.monotonic()
    code, msg = c.rcpt(r)
    out["rcptMs"].append((time.monotonic() - t) * 1000)
    out["rcpt"].append([code, msg.decode()])
    if code == 250:
        accepted += 1
if accepted and a.get("message"):
    code, msg = c.data(a["message"].encode())
    out["data"].append([code, msg.decode()])
    if a["lmtp"]:
        for _ in range(accepted - 1):
            code, msg = c.getreply()
            out["data"].append([code, msg.decode()])
else:
    c.rset()
c.quit()
print(json.dumps(out))
`;

export interface RcptSession {
  mail: [number, string];
  rcpt: Array<[number, string]>;
  /** Milliseconds per RCPT round trip, as the client saw it. */
  rcptMs: number[];
  data: Array<[number, string]>;
}

export function rcptSession(o: {
  port: number;
  lmtp: boolean;
  from: string;
  rcpts: string[];
  mailOptions?: string[];
  message?: string;
  host?: string;
}): Promise<RcptSession> {
  return new Promise((resolve, reject) => {
    const child = execFile("python3", ["-c", SCRIPT], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as RcptSession);
    });
    child.stdin?.end(JSON.stringify({ host: "127.0.0.1", ...o }));
  });
}
