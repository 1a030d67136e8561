#!/usr/bin/env python3
"""The lab's mail client: Python's own smtplib, imaplib and poplib (clients
nobody here wrote) against the deployed lab. Prints one JSON line.

  mail-client.py send HOST PORT FROM TO SUBJECT [--starttls] [--auth]
  mail-client.py imap HOST PORT [--ssl] [--starttls]   subjects in INBOX
  mail-client.py pop3 HOST PORT [--ssl]                subjects of all messages
  mail-client.py cert HOST PORT                         SHA-256 of the server's certificate (implicit TLS)

The login is MAIL_USER, the password MAIL_PASSWORD (environment: never on a
command line). Certificates are self-signed in the lab: not verified here,
the tests compare fingerprints instead.
"""
import email
import hashlib
import imaplib
import json
import os
import poplib
import smtplib
import ssl
import sys
from email.message import EmailMessage

TIMEOUT = 20


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def creds():
    return os.environ["MAIL_USER"], os.environ["MAIL_PASSWORD"]


def subject_of(raw: bytes) -> str:
    return str(email.message_from_bytes(raw).get("Subject", ""))


def send(host, port, sender, rcpt, subject, flags):
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = rcpt
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject}@client.lab.example>"
    msg.set_content(f"lab mail flow: {subject}\n")
    # A fully qualified HELO name: the MX rejects bare ones.
    with smtplib.SMTP(host, int(port), local_hostname="client.lab.example", timeout=TIMEOUT) as s:
        s.ehlo()
        if "--starttls" in flags:
            s.starttls(context=tls_context())
            s.ehlo()
        if "--auth" in flags:
            s.login(*creds())
        refused = s.send_message(msg, from_addr=sender, to_addrs=[rcpt])
    return {"sent": subject, "refused": {k: list(v) for k, v in refused.items()}}


def imap(host, port, flags):
    if "--ssl" in flags:
        m = imaplib.IMAP4_SSL(host, int(port), ssl_context=tls_context(), timeout=TIMEOUT)
    else:
        m = imaplib.IMAP4(host, int(port), timeout=TIMEOUT)
        if "--starttls" in flags:
            m.starttls(ssl_context=tls_context())
    try:
        m.login(*creds())
        typ, _ = m.select("INBOX", readonly=True)
        if typ != "OK":
            raise SystemExit(f"SELECT INBOX: {typ}")
        typ, data = m.search(None, "ALL")
        subjects = []
        for num in data[0].split():
            typ, parts = m.fetch(num, "(BODY.PEEK[])")
            raw = next(p[1] for p in parts if isinstance(p, tuple))
            subjects.append(subject_of(raw))
        return {"subjects": sorted(subjects)}
    finally:
        try:
            m.logout()
        except Exception:
            pass


def pop3(host, port, flags):
    if "--ssl" in flags:
        p = poplib.POP3_SSL(host, int(port), context=tls_context(), timeout=TIMEOUT)
    else:
        p = poplib.POP3(host, int(port), timeout=TIMEOUT)
    try:
        user, password = creds()
        p.user(user)
        p.pass_(password)
        count, _ = p.stat()
        subjects = []
        for i in range(1, count + 1):
            _, lines, _ = p.retr(i)
            subjects.append(subject_of(b"\r\n".join(lines)))
        return {"subjects": sorted(subjects)}
    finally:
        # QUIT without DELE: nothing is removed.
        p.quit()


def cert(host, port):
    import socket

    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as raw:
        with tls_context().wrap_socket(raw) as s:
            der = s.getpeercert(binary_form=True)
    return {"sha256": hashlib.sha256(der).hexdigest()}


def main(argv):
    cmd, *args = argv
    flags = [a for a in args if a.startswith("--")]
    pos = [a for a in args if not a.startswith("--")]
    if cmd == "send":
        out = send(*pos, flags)
    elif cmd == "imap":
        out = imap(*pos, flags)
    elif cmd == "pop3":
        out = pop3(*pos, flags)
    elif cmd == "cert":
        out = cert(*pos)
    else:
        raise SystemExit(__doc__)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
