"""COMPRESS=DEFLATE (RFC 4978) with Python's imaplib and zlib: imaplib parses
every response; after the tagged OK to COMPRESS, its transport is wrapped in
raw DEFLATE both ways (zlib with wbits=-15, as the RFC requires), over
implicit TLS like a real client would. Reads IMAP_HOST, IMAP_TLS_PORT,
IMAP_USER, IMAP_PASSWORD, IMAP_CAFILE from the environment; prints JSON.
"""
import imaplib
import json
import os
import ssl
import sys
import zlib

# imaplib checks each command's allowed states in this table; COMPRESS is not in it
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


class CompressingIMAP4(imaplib.IMAP4_SSL):
    deflate = None
    inflate = None
    wire_in = 0
    plain_in = 0
    pending = b""

    def compress(self):
        typ, data = self._simple_command("COMPRESS", "DEFLATE")
        if typ == "OK":
            self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
            self.inflate = zlib.decompressobj(-15)
        return typ, data

    def send(self, data):
        if self.deflate is None:
            return super().send(data)
        self.sock.sendall(self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH))

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise imaplib.IMAP4.abort("connection closed")
        self.wire_in += len(chunk)
        plain = self.inflate.decompress(chunk)
        self.plain_in += len(plain)
        self.pending += plain

    def read(self, size):
        if self.inflate is None:
            return super().read(size)
        while len(self.pending) < size:
            self._fill()
        out, self.pending = self.pending[:size], self.pending[size:]
        return out

    def readline(self):
        if self.inflate is None:
            return super().readline()
        while b"\n" not in self.pending:
            self._fill()
        i = self.pending.index(b"\n") + 1
        out, self.pending = self.pending[:i], self.pending[i:]
        return out


ctx = ssl.create_default_context(cafile=os.environ["IMAP_CAFILE"])
ctx.check_hostname = False
m = CompressingIMAP4(os.environ["IMAP_HOST"], int(os.environ["IMAP_TLS_PORT"]), ssl_context=ctx)
out = {"capabilities": list(m.capabilities)}
m.login(os.environ["IMAP_USER"], os.environ["IMAP_PASSWORD"])
out["capabilities_after_login"] = list(m.capabilities) if m.capabilities else []
typ, data = m.capability()
out["capability"] = data[0].decode()
out["compress"] = m.compress()[0]
# a message that compresses well, sent and fetched back through DEFLATE
body = ("All work and no play makes Jack a dull boy.\r\n" * 2000).encode()
msg = b"From: jack@example.org\r\nSubject: compressed\r\n\r\n" + body
m.create("Zip")
out["append"] = m.append("Zip", None, None, msg)[0]
out["select"] = m.select("Zip")[0]
typ, data = m.fetch("1", "(RFC822)")
out["fetched_equal"] = data[0][1] == msg
out["search"] = m.search(None, "SUBJECT", "compressed")[1][0].decode()
typ, data = m._simple_command("COMPRESS", "DEFLATE")
out["again_compress"] = "%s %s" % (typ, data[0].decode())
out["wire_in"] = m.wire_in
out["plain_in"] = m.plain_in
out["logout"] = m.logout()[0]
json.dump(out, sys.stdout)
