"""A fault-injecting HTTP/1.1 proxy for the imdbfs end-to-end tests (stdlib only).

    proxy = FaultProxy(origin.port, data_dir=private_data.path, seed=1234).start()
    m = mount(proxy.url())                    # imdbfs talks to the proxy, the proxy to nginx
    proxy.reset_at(5000, path="title.basics") # the next GET of title.basics is reset at 5000
    ...
    proxy.stop()

It listens on a free 127.0.0.1 port and runs in threads of the test process, so faults are
set with plain method calls. Every client connection is served in its own thread; requests
are forwarded to the upstream (nginx) over a new connection each, with the request headers
unchanged (Range, If-Range, If-None-Match, If-Modified-Since ...) except the hop-by-hop ones,
and the response goes back with the upstream's headers unchanged (ETag, Last-Modified,
Content-Length, Content-Range, Accept-Ranges ...). Client connections are kept alive between
requests (HTTP/1.1) unless a fault closes them.

Rules
-----
A queue of rules, in the order they were added. Each matches a substring of the request path
(`path=""` matches all), optionally only requests with (`ranged=True`) or without
(`ranged=False`) a Range header, or only those whose Range header is exactly `range`
(`range="bytes=100-199"`, given to the fault methods as a keyword), and applies `times` times
(`None`: forever), then is gone.

Faults (at most one per request: the first matching fault rule in the queue):
  status(code, retry_after=None, query="")
                                  answer with this status (a small body, Content-Length) without
                                  asking the upstream; `Retry-After: retry_after` if given; only
                                  requests whose query string contains `query`
  reset_at(byte=None)             send that many body bytes, then reset the connection (RST)
  short(n)                        send the upstream's headers (Content-Length unchanged) but only
                                  n body bytes, then close the connection (FIN)
  stall(seconds, at_byte=0)       send at_byte body bytes, pause `seconds`, then go on
  flip(at_byte=None, mask=0xFF)   xor the body byte at at_byte with mask
  switch_version(at_byte, new_file_path)
                                  send at_byte body bytes, atomically replace the requested file
                                  in data_dir by new_file_path (with a later mtime: a new ETag and
                                  Last-Modified), then close the connection
  drop()                          close the connection without any response
Modifiers (every matching one applies, besides the fault):
  no_ranges()                     forward without Range/If-Range (the upstream answers 200) and
                                  strip Accept-Ranges from the response
  hold(query="", timeout=30)      keep a matching request (any method; `query`: a substring its
                                  query string must contain) from the upstream until
                                  release(rule) or `timeout` s, then serve it as usual; `held`
                                  (an Event) is set once a request waits
Body positions are offsets in the body of that response (a 206's body starts at its range
start). A body fault needs a response with a body (200 or 206): a request that gets none (304,
an error page) leaves the rule in the queue. Positions past the body's end are clamped to its
last byte, and `None` picks one at random (from a generator each rule gets from `seed` when it
is added, so a replay is the same whatever the timing), so a body fault always fires once it
is taken. Other proxy-wide settings:
  throttle(bytes_per_s)           limit every response body to this rate (None: full speed)
  set_down(True/False)            close/reopen the listening socket: connections are refused
  clear()                         forget all rules; pending() lists those not yet used up

Log
---
`requests(since=0)` returns one dict per request, oldest first: logged when the request
arrives and updated as it is served (`done` once it ended). Fields: method, path, status (as
sent), range, if_range, if_none_match, if_modified_since, etag, content_length, content_range,
accept_ranges (as sent), body_bytes (body bytes sent so far), fault (a description of the
fault applied, or None), no_ranges (the modifier applied), upstream_status, error (what ended
the exchange early, or None), done, query (the query string), headers (the request's headers,
names lower-cased), held (a hold rule kept it). `mark()` gives the current count for a later `since`;
`gets(name)` the GETs of one file name; `settle()` waits until all requests ended.
"""

import http.client
import os
import random
import select
import shutil
import socket
import struct
import threading
import time
from pathlib import Path

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
              "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade"}
CHUNK = 64 * 1024
REASONS = {200: "OK", 206: "Partial Content", 304: "Not Modified", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
           410: "Gone", 416: "Range Not Satisfiable", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}
BODY_FAULTS = {"reset", "short", "stall", "flip", "switch"}


class _Closed(Exception):
    """The client went away (or the proxy is stopping)."""


class Rule:
    def __init__(self, kind, path="", times=1, ranged=None, range=None, **params):
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        self.range = range
        self.kind = kind
        self.path = path
        self.times = times
        self.ranged = ranged
        self.params = params
        self.used = 0

    def matches(self, path, ranged, range_header=""):
        return (self.path in path and (self.ranged is None or self.ranged == ranged)
                and (self.range is None or self.range == range_header))

    def __repr__(self):
        args = ", ".join("%s=%r" % kv for kv in sorted(self.params.items()))
        return "Rule(%s%s%s, path=%r, times=%r, used=%d)" % (
            self.kind, ", " if args else "", args, self.path, self.times, self.used)


def install_version(data_dir, name, src, mtime=None):
    """Atomically make data_dir/name a copy of src with a later mtime than the file it replaces.

    nginx's ETag is mtime-size, so the new file always gets a new ETag and Last-Modified.
    Returns the new mtime.
    """
    dst = Path(data_dir) / name
    tmp = dst.with_name("." + name + ".switch%d.tmp" % threading.get_ident())
    shutil.copyfile(src, tmp)
    old = dst.stat().st_mtime if dst.exists() else 0
    if mtime is None:
        mtime = max(int(time.time()), int(old) + 1)
    os.utime(tmp, (mtime, mtime))
    os.rename(tmp, dst)
    return mtime


class FaultProxy:
    def __init__(self, upstream_port, data_dir=None, seed=0, upstream_host="127.0.0.1",
                 idle_timeout=60):
        self.upstream = (upstream_host, upstream_port)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.seed = seed
        self.rng = random.Random(seed)
        self.idle_timeout = idle_timeout
        self.port = None
        self._lock = threading.Lock()
        self._rules = []
        self._log = []
        self._rate = None
        self._stopping = threading.Event()
        self._listener = None
        self._accept_thread = None
        self._clients = set()
        self._threads = set()
        self._down = False

    # ------------------------------------------------------------ lifecycle

    def start(self):
        self._listen(0)
        return self

    def _listen(self, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(128)
        self.port = s.getsockname()[1]
        self._listener = s
        t = threading.Thread(target=self._accept_loop, args=(s,), daemon=True,
                             name="faultproxy-accept")
        self._accept_thread = t
        t.start()

    def _close_listener(self):
        s, self._listener = self._listener, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None

    def stop(self):
        """Close the listener and every client connection; wait for the threads."""
        self._stopping.set()
        self._close_listener()
        with self._lock:
            clients = list(self._clients)
            threads = list(self._threads)
        for c in clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(5)

    def set_down(self, down):
        """True: close the listening socket (connections are refused); False: listen again on
        the same port. Connections already open are not touched."""
        with self._lock:
            if down == self._down:
                return
            self._down = down
        if down:
            self._close_listener()
        else:
            deadline = time.monotonic() + 5
            while True:
                try:
                    self._listen(self.port)
                    return
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def url(self, prefix="/"):
        if not prefix.startswith("/"):
            prefix = "/" + prefix
        if not prefix.endswith("/"):
            prefix += "/"
        return "http://127.0.0.1:%d%s" % (self.port, prefix)

    # ------------------------------------------------------------ rules

    def add(self, rule):
        with self._lock:
            # Each rule draws its random positions from its own generator, seeded in the order
            # rules are added: a replay gets the same positions whatever the request timing.
            rule.rng = random.Random(self.rng.randrange(1 << 32))
            self._rules.append(rule)
        return rule

    def reset_at(self, byte=None, path="", times=1, ranged=None, range=None):
        return self.add(Rule("reset", path, times, ranged, range, at_byte=byte))

    def status(self, code, retry_after=None, path="", times=1, ranged=None, query=""):
        return self.add(Rule("status", path, times, ranged, code=code, retry_after=retry_after,
                             query=query))

    def short(self, n, path="", times=1, ranged=None):
        return self.add(Rule("short", path, times, ranged, at_byte=n))

    def stall(self, seconds, at_byte=0, path="", times=1, ranged=None):
        return self.add(Rule("stall", path, times, ranged, seconds=seconds, at_byte=at_byte))

    def flip(self, at_byte=None, mask=0xFF, path="", times=1, ranged=None):
        if not 1 <= mask <= 255:
            raise ValueError("mask must be 1..255")
        return self.add(Rule("flip", path, times, ranged, at_byte=at_byte, mask=mask))

    def switch_version(self, at_byte, new_file_path, path="", times=1, ranged=None, range=None):
        if self.data_dir is None:
            raise ValueError("switch_version needs the proxy's data_dir (nginx's root)")
        return self.add(Rule("switch", path, times, ranged, range, at_byte=at_byte,
                             new_file=str(new_file_path)))

    def drop(self, path="", times=1, ranged=None):
        return self.add(Rule("drop", path, times, ranged))

    def no_ranges(self, path="", times=None):
        return self.add(Rule("no_ranges", path, times, None))

    def hold(self, path="", query="", times=1, timeout=30):
        return self.add(Rule("hold", path, times, None, query=query, timeout=timeout,
                             gate=threading.Event(), held=threading.Event()))

    def release(self, rule):
        rule.params["gate"].set()

    def throttle(self, bytes_per_s):
        with self._lock:
            self._rate = bytes_per_s

    def clear(self):
        with self._lock:
            self._rules = []

    def pending(self):
        with self._lock:
            return list(self._rules)

    def _take(self, path, ranged, kinds, range_header="", query=""):
        """The first matching fault rule if its kind is in kinds: used once (under the lock)."""
        with self._lock:
            for r in self._rules:
                if r.kind in ("no_ranges", "hold") or not r.matches(path, ranged, range_header):
                    continue
                if r.params.get("query", "") not in query:
                    continue
                if r.kind not in kinds:
                    return None
                self._use(r)
                return r
        return None

    def _use(self, r):
        r.used += 1
        if r.times is not None and r.used >= r.times:
            self._rules.remove(r)

    def _hold(self, path, query, entry):
        """Waits while a matching hold rule keeps this request back."""
        with self._lock:
            found = next((r for r in self._rules if r.kind == "hold" and r.matches(path, False)
                          and r.params["query"] in query), None)
            if found is not None:
                self._use(found)
        if found is not None:
            entry["held"] = True
            found.params["held"].set()
            found.params["gate"].wait(found.params["timeout"])

    def _modifiers(self, path):
        with self._lock:
            found = [r for r in self._rules if r.kind == "no_ranges" and r.matches(path, False)]
            for r in found:
                self._use(r)
            return found

    # ------------------------------------------------------------ log

    def requests(self, since=0):
        """Snapshots of the log entries from index `since` (requests still running included)."""
        with self._lock:
            return [dict(e) for e in self._log[since:]]

    def mark(self):
        with self._lock:
            return len(self._log)

    def gets(self, name=None, since=0):
        return [e for e in self.requests(since) if e["method"] == "GET" and
                (name is None or e["path"].rsplit("/", 1)[-1] == name)]

    def body_bytes(self, name=None, since=0):
        return sum(e["body_bytes"] for e in self.gets(name, since))

    def settle(self, quiet=0.3, timeout=10):
        """Wait until every logged request ended and none came for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        n = -1
        while time.monotonic() < deadline:
            with self._lock:
                m = len(self._log)
                busy = any(not e["done"] for e in self._log)
            if m == n and not busy:
                return m
            n = m
            time.sleep(quiet)
        return n

    def _record(self, entry):
        with self._lock:
            self._log.append(entry)

    # ------------------------------------------------------------ serving

    def _accept_loop(self, listener):
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                 name="faultproxy-conn")
            with self._lock:
                self._clients.add(conn)
                self._threads.add(t)
            t.start()

    def _serve(self, conn):
        me = threading.current_thread()
        rfile = conn.makefile("rb")
        how = "close"
        try:
            conn.settimeout(self.idle_timeout)
            while not self._stopping.is_set():
                req = _read_request(rfile)
                if req is None:
                    break
                how = self._handle(conn, rfile, req)
                if how != "keep":
                    break
        except (OSError, _Closed, ValueError):
            pass
        finally:
            rfile.close()
            if how == "reset":
                try:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            else:
                try:
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            conn.close()
            with self._lock:
                self._clients.discard(conn)
                self._threads.discard(me)

    def _handle(self, conn, rfile, req):
        """Serve one request; returns 'keep', 'close' or 'reset' for the connection."""
        method, target, version, headers, body = req
        path, _, query = target.partition("?")
        hmap = {k.lower(): v for k, v in headers}
        ranged = "range" in hmap
        entry = {"time": time.time(), "method": method, "path": path, "status": None,
                 "range": hmap.get("range", ""), "if_range": hmap.get("if-range", ""),
                 "if_none_match": hmap.get("if-none-match", ""),
                 "if_modified_since": hmap.get("if-modified-since", ""),
                 "etag": "", "content_length": None, "content_range": "", "accept_ranges": "",
                 "body_bytes": 0, "fault": None, "no_ranges": False, "upstream_status": None,
                 "error": None, "done": False, "query": query, "held": False,
                 "headers": hmap}
        self._record(entry)
        keep = version == "HTTP/1.1" and "close" not in hmap.get("connection", "").lower()
        try:
            self._hold(path, query, entry)
            rule = self._take(path, ranged, {"status", "drop"}, hmap.get("range", ""), query)
            if rule is not None and rule.kind == "drop":
                entry["fault"] = "drop"
                return "close"
            if rule is not None:
                return self._send_status(conn, entry, rule, keep, method)
            strip_ranges = bool(self._modifiers(path))
            entry["no_ranges"] = strip_ranges
            return self._forward(conn, method, target, headers, body, entry, path, ranged,
                                 strip_ranges, keep, hmap.get("range", ""))
        except (OSError, _Closed) as e:
            entry["error"] = entry["error"] or repr(e)
            return "close"
        finally:
            entry["done"] = True

    def _send_status(self, conn, entry, rule, keep, method):
        code = rule.params["code"]
        body = ("injected %d\n" % code).encode()
        lines = ["HTTP/1.1 %d %s" % (code, REASONS.get(code, "Injected")),
                 "Content-Type: text/plain", "Content-Length: %d" % len(body)]
        if rule.params.get("retry_after") is not None:
            lines.append("Retry-After: %s" % rule.params["retry_after"])
        if not keep:
            lines.append("Connection: close")
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") +
                     (body if method != "HEAD" else b""))
        entry["status"] = code
        entry["content_length"] = len(body)
        entry["body_bytes"] = len(body) if method != "HEAD" else 0
        entry["fault"] = "status %d" % code + (
            " retry_after=%s" % rule.params["retry_after"]
            if rule.params.get("retry_after") is not None else "")
        return "keep" if keep else "close"

    def _forward(self, conn, method, target, headers, body, entry, path, ranged, strip_ranges,
                 keep, range_header=""):
        up = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            up.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for k, v in headers:
                lk = k.lower()
                if lk in HOP_BY_HOP or (strip_ranges and lk in ("range", "if-range")):
                    continue
                up.putheader(k, v)
            up.putheader("Connection", "close")
            up.endheaders(body or None)
            resp = up.getresponse()
            entry["upstream_status"] = resp.status
            out_headers = []
            length = None
            for k, v in resp.getheaders():
                lk = k.lower()
                if lk in HOP_BY_HOP:
                    continue
                if strip_ranges and lk == "accept-ranges":
                    continue
                if lk == "content-length":
                    length = int(v)
                out_headers.append((k, v))
            no_body = method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
            payload = None
            if not no_body and length is None:
                payload = resp.read()  # not framed by Content-Length: buffer it and frame it
                length = len(payload)
                out_headers.append(("Content-Length", str(length)))
            for k, v in out_headers:
                lk = k.lower()
                if lk == "etag":
                    entry["etag"] = v
                elif lk == "content-range":
                    entry["content_range"] = v
                elif lk == "accept-ranges":
                    entry["accept_ranges"] = v
            entry["content_length"] = length
            entry["status"] = resp.status
            fault = None
            if not no_body and resp.status in (200, 206) and length:
                fault = self._take(path, ranged, BODY_FAULTS, range_header)
            plan = self._plan(fault, length) if fault else None
            if plan:
                entry["fault"] = plan["desc"]
            lines = ["HTTP/1.1 %d %s" % (resp.status, resp.reason or REASONS.get(resp.status, ""))]
            lines += ["%s: %s" % kv for kv in out_headers]
            if not keep:
                lines.append("Connection: close")
            conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            if no_body:
                return "keep" if keep else "close"
            return self._send_body(conn, resp, payload, length, plan, entry, keep)
        finally:
            up.close()

    def _plan(self, rule, length):
        p = rule.params
        at = p.get("at_byte")
        if at is None:
            at = rule.rng.randrange(length)
        at = max(0, min(int(at), length - 1))
        plan = {"kind": rule.kind, "at": at}
        if rule.kind == "reset":
            plan["desc"] = "reset@%d" % at
        elif rule.kind == "short":
            plan["desc"] = "short@%d" % at
        elif rule.kind == "stall":
            plan["seconds"] = p["seconds"]
            plan["desc"] = "stall %gs@%d" % (p["seconds"], at)
        elif rule.kind == "flip":
            plan["mask"] = p["mask"]
            plan["desc"] = "flip@%d^0x%02x" % (at, p["mask"])
        elif rule.kind == "switch":
            plan["new_file"] = p["new_file"]
            plan["desc"] = "switch@%d->%s" % (at, "/".join(Path(p["new_file"]).parts[-2:]))
        return plan

    def _send_body(self, conn, resp, payload, length, plan, entry, keep):
        sent = 0
        pos_in_payload = 0
        t0 = time.monotonic()
        stop_at = plan["at"] if plan and plan["kind"] in ("reset", "short", "switch") else None
        pause_at = plan["at"] if plan and plan["kind"] == "stall" else None
        flip_at = plan["at"] if plan and plan["kind"] == "flip" else None
        while sent < length:
            with self._lock:
                rate = self._rate
            want = CHUNK if not rate else max(1024, min(CHUNK, int(rate // 20) or 1024))
            if stop_at is not None:
                want = min(want, stop_at - sent)
            if pause_at is not None and sent < pause_at:
                want = min(want, pause_at - sent)
            if stop_at is not None and want <= 0:
                break
            if pause_at is not None and sent == pause_at:
                pause_at = None
                if self._stopping.wait(plan["seconds"]):
                    raise _Closed("proxy stopping")
                if _peer_closed(conn):
                    entry["error"] = "the client went away during the stall"
                    return "close"
                continue
            if payload is not None:
                data = payload[pos_in_payload:pos_in_payload + want]
                pos_in_payload += len(data)
            else:
                data = resp.read(want)
            if not data:
                entry["error"] = "upstream ended after %d of %d bytes" % (sent, length)
                return "close"
            if flip_at is not None and sent <= flip_at < sent + len(data):
                b = bytearray(data)
                b[flip_at - sent] ^= plan["mask"]
                data = bytes(b)
            if rate:
                ahead = (sent + len(data)) / rate - (time.monotonic() - t0)
                if ahead > 0 and self._stopping.wait(ahead):
                    raise _Closed("proxy stopping")
            try:
                conn.sendall(data)
            except OSError as e:
                entry["error"] = "client: %r after %d bytes" % (e, sent)
                return "close"
            sent += len(data)
            entry["body_bytes"] = sent
        if stop_at is not None and sent >= stop_at and sent < length:
            if plan["kind"] == "reset":
                _drain(conn)
                return "reset"
            if plan["kind"] == "switch":
                name = entry["path"].rsplit("/", 1)[-1]
                install_version(self.data_dir, name, plan["new_file"])
            return "close"
        return "keep" if keep else "close"


def _peer_closed(conn):
    """Has the client closed or reset its end? (Without consuming anything it sent.)"""
    r, _, _ = select.select([conn], [], [], 0)
    if not r:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _drain(conn, timeout=1.0):
    """Wait until the kernel has sent what we wrote (so an RST does not discard it)."""
    SIOCOUTQ = 0x5411
    import fcntl
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            buf = fcntl.ioctl(conn.fileno(), SIOCOUTQ, b"\0\0\0\0")
        except OSError:
            return
        if struct.unpack("i", buf)[0] == 0:
            return
        time.sleep(0.005)


def _read_request(rfile):
    """(method, target, version, [(name, value)], body) or None at the connection's end."""
    line = rfile.readline(65537)
    while line in (b"\r\n", b"\n"):  # tolerate stray blank lines between requests
        line = rfile.readline(65537)
    if not line:
        return None
    parts = line.decode("latin-1").strip().split()
    if len(parts) != 3:
        raise ValueError("bad request line %r" % line)
    method, target, version = parts
    headers = []
    while True:
        h = rfile.readline(65537)
        if not h:
            raise _Closed("connection closed inside the headers")
        if h in (b"\r\n", b"\n"):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    body = b""
    for k, v in headers:
        if k.lower() == "content-length" and int(v) > 0:
            body = rfile.read(int(v))
    return method, target, version, headers, body
