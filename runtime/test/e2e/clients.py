#!/usr/bin/env python3
"""Clients nobody here wrote, for runtime/test/e2e/flow.test.ts: Python's
smtplib, imaplib and poplib. One request as JSON on stdin (passwords travel
there, never on the command line), one JSON answer on stdout. Message bytes
are carried as latin-1 strings so they arrive byte for byte.

  smtp  {host, port, source?, helo, starttls?, auth?: {user, password},
         mail_from, rcpt_to: [...], data}
        -> {connect: [code, text]} when the greeting refuses, else
           {ehlo, ehlo_tls?, starttls?, auth?, mail, rcpt: [[code, text]...], data?}
  imap  {host, port, user, password, mailbox?}
        -> {login, messages: [{uid, flags, raw}]}
  pop3  {host, port, user, password}
        -> {login, uidl: [...], messages: [raw...]}
"""
import imaplib
import json
import poplib
import smtplib
import ssl
import sys


def text(b):
    return b.decode("latin-1") if isinstance(b, bytes) else str(b)


def smtp(req):
    out = {}
    source = (req["source"], 0) if req.get("source") else None
    try:
        s = smtplib.SMTP(
            req["host"],
            req["port"],
            local_hostname=req.get("helo", "client.remote.test"),
            source_address=source,
            timeout=30,
        )
    except smtplib.SMTPConnectError as e:
        out["connect"] = [e.smtp_code, text(e.smtp_error)]
        return out
    except smtplib.SMTPServerDisconnected as e:
        out["connect"] = [0, str(e)]
        return out
    code, msg = s.ehlo()
    out["ehlo"] = [code, text(msg)]
    out["features"] = sorted(s.esmtp_features.keys())
    if req.get("starttls"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
        code, msg = s.starttls(context=ctx)
        out["starttls"] = [code, text(msg)]
        code, msg = s.ehlo()
        out["ehlo_tls"] = [code, text(msg)]
        out["features_tls"] = sorted(s.esmtp_features.keys())
    if req.get("auth"):
        try:
            code, msg = s.login(req["auth"]["user"], req["auth"]["password"])
        except smtplib.SMTPAuthenticationError as e:
            code, msg = e.smtp_code, e.smtp_error
        out["auth"] = [code, text(msg)]
    code, msg = s.mail(req["mail_from"])
    out["mail"] = [code, text(msg)]
    out["rcpt"] = []
    for rcpt in req["rcpt_to"]:
        code, msg = s.rcpt(rcpt)
        out["rcpt"].append([code, text(msg)])
    if out["mail"][0] == 250 and any(r[0] in (250, 251) for r in out["rcpt"]):
        try:
            code, msg = s.data(req["data"].encode("latin-1"))
        except smtplib.SMTPDataError as e:
            code, msg = e.smtp_code, e.smtp_error
        out["data"] = [code, text(msg)]
    try:
        s.quit()
    except smtplib.SMTPServerDisconnected:
        pass
    return out


def imap(req):
    m = imaplib.IMAP4(req["host"], req["port"], timeout=30)
    typ, data = m.login(req["user"], req["password"])
    out = {"login": typ, "messages": []}
    typ, data = m.select(req.get("mailbox", "INBOX"), readonly=True)
    if typ != "OK":
        raise RuntimeError("SELECT failed: %r" % data)
    typ, data = m.uid("SEARCH", None, "ALL")
    for uid in data[0].split():
        typ, parts = m.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
        raw = b""
        meta = b""
        for p in parts:
            if isinstance(p, tuple):
                meta, raw = p[0], p[1]
        out["messages"].append({"uid": int(uid), "meta": text(meta), "raw": text(raw)})
    m.logout()
    return out


def pop3(req):
    p = poplib.POP3(req["host"], req["port"], timeout=30)
    p.user(req["user"])
    out = {"login": text(p.pass_(req["password"]))}
    resp, lines, _ = p.uidl()
    out["uidl"] = [text(line) for line in lines]
    count, _size = p.stat()
    out["messages"] = []
    for i in range(1, count + 1):
        resp, lines, _ = p.retr(i)
        out["messages"].append("\r\n".join(text(line) for line in lines) + "\r\n")
    p.quit()
    return out


def main():
    req = json.load(sys.stdin)
    fn = {"smtp": smtp, "imap": imap, "pop3": pop3}[sys.argv[1]]
    json.dump(fn(req), sys.stdout)


if __name__ == "__main__":
    main()
