"""
Python's imaplib driven one command at a time (JSON lines on stdin, one JSON
answer line per command on stdout), so a test can look at the server between
steps (which worker holds which connection). Passwords come on stdin only.

  {"op": "open", "name": "a", "port": 143, "mode": "plain"|"starttls"|"tls"}
  {"op": "login", "name": "a", "user": "u", "password": "p"}
  {"op": "call", "name": "a", "method": "select"|"store"|"noop"|..., "args": [...]}
  {"op": "idle", "name": "a", "until": "EXISTS", "seconds": 10}
  {"op": "close", "name": "a"}
Every answer carries the untagged responses gathered since the last one.
"""
import imaplib
import json
import socket
import ssl
import sys
import time

CONNS = {}
METHODS = {"select", "store", "expunge", "append", "noop", "fetch", "search", "logout", "uid", "status", "capability"}


def text(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (list, tuple)):
        return [text(x) for x in v]
    return v if v is None or isinstance(v, (str, int, float)) else str(v)


def untagged(c):
    out = {k: text(v) for k, v in c.untagged_responses.items()}
    c.untagged_responses.clear()
    return out


def run(cmd):
    op = cmd["op"]
    name = cmd.get("name", "")
    if op == "open":
        ctx = ssl._create_unverified_context()
        try:
            if cmd.get("mode") == "tls":
                c = imaplib.IMAP4_SSL("127.0.0.1", cmd["port"], ssl_context=ctx, timeout=20)
            else:
                c = imaplib.IMAP4("127.0.0.1", cmd["port"], timeout=20)
                if cmd.get("mode") == "starttls":
                    c.starttls(ssl_context=ctx)
        except (imaplib.IMAP4.error, OSError) as e:
            return {"ok": False, "error": str(e)}
        CONNS[name] = c
        return {"ok": True, "port": c.sock.getsockname()[1], "welcome": text(c.welcome)}
    c = CONNS[name]
    if op == "login":
        t0 = time.monotonic()
        try:
            typ, data = c.login(cmd["user"], cmd["password"])
        except imaplib.IMAP4.error as e:
            return {"ok": False, "error": str(e), "seconds": time.monotonic() - t0}
        return {"ok": typ == "OK", "data": text(data), "seconds": time.monotonic() - t0}
    if op == "call":
        if cmd["method"] not in METHODS:
            return {"ok": False, "error": "method not allowed"}
        args = [a.encode() if cmd["method"] == "append" and i == 3 else a for i, a in enumerate(cmd.get("args", []))]
        try:
            typ, data = getattr(c, cmd["method"])(*args)
        except (imaplib.IMAP4.error, OSError) as e:
            return {"ok": False, "error": str(e), "untagged": untagged(c)}
        return {"ok": typ == "OK", "data": text(data), "untagged": untagged(c)}
    if op == "idle":
        # RFC 2177 by hand (imaplib has no IDLE before Python 3.14), on imaplib's own connection
        tag = c._new_tag()
        c.send(tag + b" IDLE\r\n")
        lines = [text(c.readline()).strip()]
        deadline = time.monotonic() + cmd.get("seconds", 10)
        while time.monotonic() < deadline and not any(cmd["until"] in l for l in lines[1:]):
            # a line waiting (buffered or on the socket) without blocking: imaplib's file is not
            # usable after a socket timeout, so peek with the socket non-blocking instead
            c.sock.setblocking(False)
            try:
                waiting = c.file.peek(1)
            except (BlockingIOError, ssl.SSLWantReadError):
                waiting = b""
            finally:
                c.sock.settimeout(20)
            if not waiting:
                time.sleep(0.05)
                continue
            line = c.readline()
            if not line:
                break
            lines.append(text(line).strip())
        c.send(b"DONE\r\n")
        while True:
            line = text(c.readline()).strip()
            lines.append(line)
            if line.startswith(tag.decode()) or not line:
                break
        return {"ok": lines[-1].startswith(tag.decode() + " OK"), "lines": lines}
    if op == "close":
        try:
            c.shutdown()
        except OSError:
            pass
        del CONNS[name]
        return {"ok": True}
    return {"ok": False, "error": "unknown op"}


for raw in sys.stdin:
    if not raw.strip():
        continue
    try:
        answer = run(json.loads(raw))
    except Exception as e:  # the test reads the error
        answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(answer), flush=True)
