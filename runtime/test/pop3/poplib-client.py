# A real POP3 client for the tests: Python's poplib. Reads a JSON job on stdin
# (credentials never on the command line), runs its steps, prints the results.
import json
import poplib
import ssl
import sys

job = json.load(sys.stdin)
ctx = None
if job.get("cafile"):
    ctx = ssl.create_default_context(cafile=job["cafile"])
if job.get("mode") == "ssl":
    p = poplib.POP3_SSL(job["host"], job["port"], context=ctx, timeout=10)
else:
    p = poplib.POP3(job["host"], job["port"], timeout=10)
out = []


def text(b):
    return b.decode("latin1") if isinstance(b, bytes) else b


for step in job["steps"]:
    op, args = step[0], step[1:]
    try:
        if op == "stls":
            r = p.stls(context=ctx)
        elif op == "login":
            p.user(job["user"])
            r = p.pass_(job["password"])
        else:
            r = getattr(p, op)(*args)
        if isinstance(r, tuple):
            out.append([text(r[0]), [text(x) for x in r[1]] if isinstance(r[1], list) else r[1]])
        elif isinstance(r, dict):
            out.append({k: [text(x) for x in v] if isinstance(v, list) else v for k, v in r.items()})
        else:
            out.append(text(r))
    except poplib.error_proto as e:
        out.append({"error": text(e.args[0])})
        if op == "quit":
            break
print(json.dumps(out))
