# A real LMTP client for the tests: Python's smtplib.LMTP. After DATA, RFC 2033
# §4.2 sends one reply per accepted recipient; smtplib reads the first, the
# rest are read with getreply().
import json
import smtplib
import sys

a = json.load(sys.stdin)
c = smtplib.LMTP(a["host"], a["port"])
c.ehlo("client.example")
out = {"rcpt": [], "data": []}
c.mail(a["from"])
accepted = 0
for r in a["rcpts"]:
    code, msg = c.rcpt(r)
    out["rcpt"].append([code, msg.decode()])
    if code == 250:
        accepted += 1
if accepted:
    code, msg = c.data(a["message"].encode())
    out["data"].append([code, msg.decode()])
    for _ in range(accepted - 1):
        code, msg = c.getreply()
        out["data"].append([code, msg.decode()])
c.quit()
print(json.dumps(out))
