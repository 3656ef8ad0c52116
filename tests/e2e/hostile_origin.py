"""A hostile HTTP(S) origin for the end-to-end tests (issue 12): http.server on 127.0.0.1.

Each file name (the last part of the path) is answered by the behaviour set for it in
`HostileOrigin.files`; names without one get 404. Every request is recorded (method, path,
headers) in `HostileOrigin.log`, so that a test can tell whether a request reached it.

Behaviours (values of `files[name]`)
  ("bytes", data)         200 with Content-Length, ETag, Last-Modified and Accept-Ranges:
                          bytes; a Range request gets 206 with Content-Range. HEAD too.
  ("huge", length)        200 with Content-Length: length and Accept-Ranges: bytes (a Range
                          request: 206 with Content-Range .../length), then the first bytes
                          of a gzip stream, then nothing until the client hangs up.
  ("endless_error", code) `code` (e.g. 500) with no length, then an endless body sent as
                          fast as the client reads it.
  ("chunked_gzip", None)  200, chunked, no length, an ETag: an endless valid gzip stream of
                          random bytes.
  ("redirect", url)       302 with Location: url (the file name appended when url ends in /).
  ("endless_redirect", url) the same, with an endless chunked body on a kept-alive connection.

HostileOrigin(tls=(certfile, keyfile)) serves HTTPS instead. start() binds a free port and
serves on a thread; stop() ends it and any endless response.
"""

import email.utils
import http.server
import os
import socket
import ssl
import threading
import time
import zlib

GZIP_HEAD = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"


def gzip_stream_random(chunk=64 * 1024):
    """An endless gzip stream: the header, then deflate blocks of random bytes."""
    yield GZIP_HEAD
    z = zlib.compressobj(1, zlib.DEFLATED, -15)
    while True:
        out = z.compress(os.urandom(chunk)) + z.flush(zlib.Z_SYNC_FLUSH)
        if out:
            yield out


def gzip_bomb(inflated, block=1 << 20):
    """A small gzip file (one member, valid CRC and ISIZE) that inflates to `inflated` zeros."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(block)
    parts = [GZIP_HEAD]
    crc = 0
    left = inflated
    while left:
        n = min(block, left)
        parts.append(z.compress(zeros[:n]))
        crc = zlib.crc32(zeros[:n], crc)
        left -= n
    parts.append(z.flush())
    parts.append(crc.to_bytes(4, "little") + (inflated & 0xFFFFFFFF).to_bytes(4, "little"))
    return b"".join(parts)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the tests read origin.log instead
        pass

    def do_HEAD(self):
        self._answer(head=True)

    def do_GET(self):
        self._answer(head=False)

    def _answer(self, head):
        o = self.server.origin
        name = self.path.rsplit("/", 1)[-1]
        with o.lock:
            o.log.append({"method": self.command, "path": self.path,
                          "headers": dict(self.headers.items())})
        kind, arg = o.files.get(name, ("missing", None))
        try:
            getattr(self, "_" + kind)(arg, head, name)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
            self.close_connection = True

    def _missing(self, arg, head, name):
        body = b"not found\n"
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _validators(self):
        self.send_header("ETag", '"hostile-1"')
        self.send_header("Last-Modified", email.utils.formatdate(1700000000, usegmt=True))

    def _range(self, total):
        """(start, end) of a satisfiable `Range: bytes=a-[b]`, else None."""
        r = self.headers.get("Range", "")
        if not r.startswith("bytes="):
            return None
        a, _, b = r[6:].partition("-")
        start = int(a)
        end = int(b) if b else total - 1
        return (start, min(end, total - 1)) if start < total else None

    def _bytes(self, data, head, name):
        rng = self._range(len(data))
        if rng:
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (rng[0], rng[1], len(data)))
            body = data[rng[0]:rng[1] + 1]
        else:
            self.send_response(200)
            body = data
        self._validators()
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _huge(self, length, head, name):
        rng = self._range(length)
        if rng:
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (rng[0], rng[1], length))
            self.send_header("Content-Length", str(rng[1] - rng[0] + 1))
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(length))
        self._validators()
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if head:
            return
        self.wfile.write(GZIP_HEAD if not rng else b"\0" * 1024)
        self.wfile.flush()
        self.server.origin.hold(self.connection)

    def _endless_error(self, code, head, name):
        self.send_response(code)
        self.send_header("Content-Type", "text/html")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if head:
            return
        page = b"<p>the server is very sorry</p>\n" * 2048
        while not self.server.origin.stopping.is_set():
            self.wfile.write(page)

    def _chunked_gzip(self, arg, head, name):
        self.send_response(200)
        self._validators()
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if head:
            return
        for part in gzip_stream_random():
            if self.server.origin.stopping.is_set():
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.close_connection = True

    def _redirect(self, url, head, name):
        self.send_response(302)
        self.send_header("Location", url + name if url.endswith("/") else url)
        self.send_header("Content-Length", "0")
        self.end_headers()


    def _endless_redirect(self, url, head, name):
        self.send_response(302)
        self.send_header("Location", url + name if url.endswith("/") else url)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if head:
            return
        chunk = b"%x\r\n%s\r\n" % (65536, b"moved " * 10922 + b"mova")
        while not self.server.origin.stopping.is_set():
            self.wfile.write(chunk)
        self.close_connection = True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class HostileOrigin:
    def __init__(self, tls=None):
        self.files = {}
        self.log = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.tls = tls
        self.server = None
        self.thread = None

    def start(self):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.origin = self
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def url(self, prefix="/"):
        return "%s://127.0.0.1:%d%s" % ("https" if self.tls else "http", self.port, prefix)

    def hold(self, conn):
        """Keep a response open, sending nothing, until the client hangs up or we stop."""
        conn.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                if conn.recv(4096) == b"":
                    return
            except socket.timeout:
                continue
            except (OSError, ssl.SSLError):
                return

    def requests(self, name=None, method=None):
        """The requests logged (of file name, with that method: the mount's HEADs for sizes
        come besides the GETs of downloads), oldest first."""
        with self.lock:
            return [e for e in self.log if (name is None or e["path"].endswith("/" + name))
                    and (method is None or e["method"] == method)]

    def stop(self):
        self.stopping.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        time.sleep(0.05)
