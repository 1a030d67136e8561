"""Python's imaplib (a client nobody here wrote) against the IMAP server.

Reads IMAP_HOST, IMAP_PORT, IMAP_TLS_PORT, IMAP_USER, IMAP_PASSWORD, IMAP_CAFILE
and FIXTURE from the environment (never the command line); prints one JSON
object with what the server answered.
"""
import imaplib
import json
import os
import ssl
import sys

host = os.environ["IMAP_HOST"]
port = int(os.environ["IMAP_PORT"])
tls_port = int(os.environ["IMAP_TLS_PORT"])
user = os.environ["IMAP_USER"]
password = os.environ["IMAP_PASSWORD"]
fixture = open(os.environ["FIXTURE"], "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
ctx = ssl.create_default_context(cafile=os.environ["IMAP_CAFILE"])
ctx.check_hostname = False
out = {}


def text(data):
    """imaplib answers as lists of bytes or (bytes, bytes) tuples."""
    parts = []
    for d in data:
        if isinstance(d, tuple):
            parts.append(d[0].decode("latin1") + "<<" + d[1].decode("latin1") + ">>")
        elif d is not None:
            parts.append(d.decode("latin1"))
    return "".join(parts)


m = imaplib.IMAP4(host, port)
out["welcome"] = m.welcome.decode()
m.starttls(ssl_context=ctx)
out["login"] = m.login(user, password)[0]
out["capabilities"] = list(m.capabilities)
m.create("Py")
typ, data = m.append("Py", r"(\Flagged)", imaplib.Time2Internaldate(1700000000), fixture)
out["append"] = [typ, text(data)]
m.append("Py", None, None, b"Subject: second\r\nFrom: x@example.org\r\n\r\nzweite Nachricht\r\n")
out["list"] = text(m.list()[1])
typ, data = m.select("Py")
out["select"] = [typ, text(data)]
out["fetch_structure"] = text(m.fetch("1", "(BODYSTRUCTURE ENVELOPE FLAGS)")[1])
out["fetch_partial"] = text(m.fetch("1", "(BODY.PEEK[1.1]<0.20>)")[1])
out["fetch_header_fields"] = text(m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1])
out["fetch_rfc822"] = len(m.fetch("1", "(RFC822)")[1][0][1])
out["flags_after_fetch"] = text(m.fetch("1", "(FLAGS)")[1])
m.literal = "zählen".encode("utf-8")
out["search_utf8"] = text(m.search("UTF-8", "BODY")[1])
out["search_ascii"] = text(m.search(None, "(FROM juergen)")[1])
out["uid_search"] = text(m.uid("SEARCH", None, "ALL")[1])
out["store"] = text(m.store("2", "+FLAGS", r"(\Deleted \Answered)")[1])
out["copy"] = m.copy("1", "INBOX")[0]
out["expunge"] = text(m.expunge()[1])
out["status"] = text(m.status("INBOX", "(MESSAGES UNSEEN)")[1])

# IDLE (RFC 2177): imaplib in Python 3.11 has no idle(); speak it by hand
other = imaplib.IMAP4_SSL(host, tls_port, ssl_context=ctx)
other.login(user, password)
tag = m._new_tag()
m.send(tag + b" IDLE\r\n")
out["idle_continuation"] = m.readline().decode().strip()
other.append("Py", None, None, b"Subject: pushed\r\n\r\nnew mail while idling\r\n")
out["idle_push"] = m.readline().decode().strip()
m.send(b"DONE\r\n")
while True:
    line = m.readline().decode().strip()
    if line.startswith(tag.decode()):
        out["idle_done"] = line
        break
other.logout()

m.close()
out["logout"] = m.logout()[0]

# implicit TLS
s = imaplib.IMAP4_SSL(host, tls_port, ssl_context=ctx)
out["ssl_login"] = s.login(user, password)[0]
out["ssl_select"] = s.select("INBOX", readonly=True)[0]
s.logout()

# a wrong password
try:
    b = imaplib.IMAP4(host, port)
    b.login(user, "not-the-password")
    out["bad_login"] = "accepted"
except imaplib.IMAP4.error as e:
    out["bad_login"] = str(e)

json.dump(out, sys.stdout)
