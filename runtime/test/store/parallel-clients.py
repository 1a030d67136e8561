"""Many real clients at once against one account: imaplib APPENDs and
smtplib.LMTP deliveries, each on its own connection in its own thread, all
released together. Reads its job (and the password) as JSON on stdin; prints
one JSON object: every answer, and the bytes of every message sent.
"""
import imaplib
import json
import smtplib
import sys
import threading

job = json.load(sys.stdin)
results = {"imap": [], "lmtp": [], "errors": []}
lock = threading.Lock()
start = threading.Barrier(job["imap_clients"] + job["lmtp_clients"])


def message(kind, i, n):
    # sizes differ from message to message, so a total that is off shows
    body = ("%s %d-%d " % (kind, i, n)) * (3 + (i * 7 + n * 13) % 40)
    return ("From: t@example.net\r\nSubject: %s %d-%d\r\n\r\n%s\r\n" % (kind, i, n, body)).encode()


def imap_worker(i):
    try:
        m = imaplib.IMAP4(job["host"], job["imap_port"])
        start.wait(timeout=30)
        # logging in opens (and on a fresh account creates) the Maildir: racing the deliveries
        m.login(job["user"], job["password"])
        for n in range(job["per_client"]):
            typ, data = m.append("INBOX", None, None, message("imap", i, n))
            with lock:
                results["imap"].append([typ, data[0].decode("latin1")])
        m.logout()
    except Exception as e:  # noqa: BLE001 - reported to the test
        start.abort()
        with lock:
            results["errors"].append("imap %d: %r" % (i, e))


def lmtp_worker(i):
    try:
        ports = job["lmtp_ports"]
        c = smtplib.LMTP(job["host"], ports[i % len(ports)])
        c.ehlo("client.example")
        start.wait(timeout=30)
        for n in range(job["per_client"]):
            c.mail("t@example.net")
            c.rcpt(job["rcpt"])
            code, msg = c.data(message("lmtp", i, n))
            with lock:
                results["lmtp"].append([code, msg.decode()])
        c.quit()
    except Exception as e:  # noqa: BLE001
        start.abort()
        with lock:
            results["errors"].append("lmtp %d: %r" % (i, e))


threads = [threading.Thread(target=imap_worker, args=(i,)) for i in range(job["imap_clients"])]
threads += [threading.Thread(target=lmtp_worker, args=(i,)) for i in range(job["lmtp_clients"])]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results))
