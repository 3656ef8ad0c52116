"""Hostile users and origins (issue 12, findings 2, 10 and 11).

- allow_other: another uid (nobody, through setpriv) may read the mount, but rm, truncate and
  writes to .control/ fail with EACCES and change nothing; root (here the mounting user) can.
- JSON stays valid UTF-8 with an ETag of raw bytes >= 0x80 (a Python origin of this file
  sends it), a refused command of invalid bytes, and a command text cut at 100 bytes in the
  middle of a character; the exact ETag bytes survive the .meta round trip (a remount
  revalidates with them and gets 304).
- A password in the origin URL reaches the origin (Authorization) but nothing the daemon
  writes: cache dir, log at debug, .control/ files, /proc/PID/cmdline.
- imdb-db passes a PostgreSQL password through PGPASSWORD, never psql's argv.
"""

import base64
import email.utils
import errno
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

import util
from conftest import mounts_in
from util import read_bytes, read_json, wait_for

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
FILE = "title.ratings.tsv.gz"
RAW_ETAG = '"\xff\xfe-v1"'  # sent as latin-1: the bytes 22 ff fe 2d 76 31 22
PASSWORD = "s3cret"


# ----------------------------------------------------------------- a Python origin

class RawOrigin:
    """Serves data_dir like nginx does (GET/HEAD, Range, If-Range, If-None-Match), with an
    ETag of the test's choosing sent as raw bytes, and records every request's headers."""

    def __init__(self, data_dir, etag):
        self.data_dir = Path(data_dir)
        self.etag = etag
        self.requests = []  # (method, path, {header: value})
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.serve(body=False)

            def do_GET(self):
                self.serve(body=True)

            def serve(self, body):
                origin.requests.append((self.command, self.path, dict(self.headers.items())))
                path = origin.data_dir / self.path.rsplit("/", 1)[-1]
                if not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                lm = email.utils.formatdate(path.stat().st_mtime, usegmt=True)
                if self.headers.get("If-None-Match") == origin.etag:
                    self.send_response(304)
                    self.send_header("ETag", origin.etag)
                    self.end_headers()
                    return
                start, end, status = 0, len(data) - 1, 200
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if rng and rng.startswith("bytes=") and if_range in (None, origin.etag, lm):
                    a, _, b = rng[6:].partition("-")
                    start = int(a)
                    end = min(int(b), len(data) - 1) if b else len(data) - 1
                    status = 206
                self.send_response(status)
                self.send_header("ETag", origin.etag)
                self.send_header("Last-Modified", lm)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(end - start + 1))
                if status == 206:
                    self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data[start:end + 1])

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, userinfo=""):
        return "http://%s127.0.0.1:%d/" % (userinfo + "@" if userinfo else "", self.port)

    def gets(self, name):
        return [r for r in self.requests if r[0] == "GET" and r[1].endswith("/" + name)]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def raw_origin(sample_data):
    started = []

    def start(etag='"v1"'):
        o = RawOrigin(sample_data.path, etag)
        started.append(o)
        return o

    yield start
    for o in started:
        o.stop()


# ----------------------------------------------------------------- a mount others can reach

@pytest.fixture
def public_mount(tmp_path):
    """Like conftest's mount, but the mountpoint is in a directory other users may traverse
    (pytest's own temporary directories are 0700)."""
    top = Path(tempfile.mkdtemp(prefix="imdbfs-public-"))
    os.chmod(top, 0o755)
    try:
        yield from mounts_in(tmp_path, top)
    finally:
        shutil.rmtree(top, ignore_errors=True)


AS_NOBODY = r"""
import errno, json, os, sys
mnt = sys.argv[1]
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = 0
    except OSError as e:
        out[name] = e.errno
def command(name, text):
    def write():
        fd = os.open(os.path.join(mnt, ".control", name), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, text)
        finally:
            os.close(fd)
    return write
def read(path):
    with open(os.path.join(mnt, path), "rb") as f:
        return f.read()
out["data"] = read("%(file)s").hex()
out["status"] = json.loads(read(".control/status"))["datasets"]["title.ratings"]["state"]
out["w_ok"] = os.access(os.path.join(mnt, ".control/download"), os.W_OK)
out["r_ok"] = os.access(os.path.join(mnt, "%(file)s"), os.R_OK)
attempt("rm", lambda: os.unlink(os.path.join(mnt, "%(file)s")))
attempt("rm_tsv", lambda: os.unlink(os.path.join(mnt, "title.basics.tsv")))
attempt("truncate", lambda: os.truncate(os.path.join(mnt, "%(file)s"), 0))
attempt("truncate_control", lambda: os.truncate(os.path.join(mnt, ".control/download"), 0))
attempt("delete_all", command("delete", b"all\n"))
attempt("download_all_force", command("download", b"all force\n"))
attempt("extract_all", command("extract", b"all\n"))
attempt("full_process", command("full-process", b"all\n"))
print(json.dumps(out))
""" % {"file": FILE}


def run_as_nobody(m):
    p = util.run(NOBODY + ["/usr/bin/python3", "-c", AS_NOBODY, m.path], cwd="/",
                 universal_newlines=True)
    assert p.returncode == 0, "the script as nobody failed: %s" % p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("opts", [("allow_other",), ("allow_other", "default_permissions")])
def test_other_users_read_but_cannot_evict_or_command(public_mount, origin, sample_data, opts):
    m = public_mount(origin.url(), extra_opts=opts)
    want = read_bytes(sample_data / FILE)
    assert read_bytes(m / FILE) == want  # cached by root
    assert read_bytes(m / "title.basics.tsv") == util.zcat_bytes(sample_data / "title.basics.tsv.gz")
    jobs_before = len(m.control("status")["jobs"])
    gets_before = len(origin.gets())

    got = run_as_nobody(m)

    assert bytes.fromhex(got["data"]) == want
    assert got["status"] == "cached"
    # access(2) tells the truth with or without default_permissions (imdbfs answers it).
    assert got["w_ok"] is False
    assert got["r_ok"] is True
    assert os.access(m / ".control" / "download", os.W_OK)  # the mounting user may
    denied = {k: errno.errorcode.get(v, v) for k, v in got.items()
              if k not in ("data", "status", "w_ok", "r_ok")}
    assert denied == {k: "EACCES" for k in denied}, denied
    # Nothing was evicted, deleted or started.
    assert (m.cache_dir / FILE).is_file()
    assert (m.cache_dir / "title.basics.tsv").is_file()
    status = m.control("status")
    assert status["datasets"]["title.ratings"]["state"] == "cached"
    assert status["datasets"]["title.basics"]["extracted"] is True
    assert len(status["jobs"]) == jobs_before
    assert len(origin.gets()) == gets_before

    # The mounting user (root here) still may.
    os.unlink(m / FILE)
    assert not (m.cache_dir / FILE).exists()
    os.truncate(m / ".control" / "download", 0)
    m.command("delete", "all")
    assert m.wait_job() == 0
    assert not (m.cache_dir / "title.basics.tsv").exists()


def test_modes_say_who_may_change_what(public_mount, origin):
    m = public_mount(origin.url(), extra_opts=("allow_other",))
    root = os.stat(m.path)
    assert (root.st_mode & 0o777, root.st_uid) == (0o755, os.getuid())
    for name in util.CONTROL_FILES:
        st = os.stat(m / ".control" / name)
        command = name in ("download", "extract", "full-process", "delete")
        assert st.st_mode & 0o777 == (0o644 if command else 0o444), name
        assert st.st_uid == os.getuid()


# ----------------------------------------------------------------- JSON is valid UTF-8

def strict_json(raw, what):
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as e:
        raise AssertionError("%s is not valid UTF-8 JSON (%s): %r" % (what, e, raw[:300]))


def test_non_utf8_etag_and_commands_keep_json_valid(mount, raw_origin, sample_data):
    o = raw_origin(RAW_ETAG)
    m = mount(o.url())
    assert read_bytes(m / FILE) == read_bytes(sample_data / FILE)
    assert read_bytes(m / "title.ratings.tsv") == util.zcat_bytes(sample_data / FILE)
    for name in ("status", "files", "health", "download"):
        read_json(m / ".control" / name)
    status = read_json(m / ".control" / "status")["datasets"]["title.ratings"]
    assert status["etag"] == '"\ufffd\ufffd-v1"'
    metas = sorted(m.cache_dir.rglob("*.meta"))
    assert metas, "no .meta in %s" % m.cache_dir
    for p in metas:
        strict_json(p.read_bytes(), str(p))

    # A refused command of invalid bytes, and one whose text is cut mid-character.
    for text in (b"\xff\xfe title.basics\xc3\n", b"x" * 99 + "\u00e9".encode() + b" y\n",
                 b"\xed\xa0\x80 \xc0\xaf\n"):
        with pytest.raises(OSError) as e:
            util.write_control(m / ".control" / "download", text)
        assert e.value.errno == errno.EINVAL
        err = read_json(m / ".control" / "status")["command_error"]
        assert err["file"] == "download" and err["error"]
        read_json(m / ".control" / "download")
    assert err["input"] == "\ufffd\ufffd\ufffd \ufffd\ufffd"

    # The exact ETag bytes survive the .meta: a remount revalidates with them (304).
    m.unmount()
    o.requests.clear()
    m2 = mount(o.url(), cache_dir=m.cache_dir)
    m2.command("download", "title.ratings")
    assert m2.wait_job() == 0
    result = read_json(m2 / ".control" / "download")
    assert result["unchanged_files"] == [FILE], result
    conditional = [r[2] for r in o.gets(FILE)]
    assert conditional and conditional[-1].get("If-None-Match") == RAW_ETAG, conditional


# ----------------------------------------------------------------- credentials in the URL

def test_origin_password_is_used_but_never_written(mount, raw_origin, sample_data):
    o = raw_origin()
    m = mount(o.url("user:" + PASSWORD))
    assert read_bytes(m / FILE) == read_bytes(sample_data / FILE)
    assert read_bytes(m / "title.ratings.tsv") == util.zcat_bytes(sample_data / FILE)
    m.command("download", "title.crew")
    assert m.wait_job() == 0
    auth = {r[2].get("Authorization") for r in o.gets(FILE)}
    assert auth == {"Basic " + base64.b64encode(("user:" + PASSWORD).encode()).decode()}

    leaks = []
    texts = {".control/" + n: read_bytes(m / ".control" / n) for n in util.CONTROL_FILES}
    config = json.loads(texts[".control/config"])
    assert config["origin"] == o.url("user:***"), config["origin"]
    assert json.loads(texts[".control/health"])["origin"] == o.url("user:***")
    texts["/proc/PID/cmdline"] = read_bytes("/proc/%d/cmdline" % m.proc.pid)
    for p in m.cache_dir.rglob("*"):
        if p.is_file():
            texts[str(p)] = p.read_bytes()
    meta = json.loads((m.cache_dir / (FILE + ".meta")).read_bytes())
    assert meta["url"] == o.url("user:***") + FILE, meta["url"]
    m.unmount()
    texts["daemon output"] = m.log_path.read_bytes()
    assert b"GET " in texts["daemon output"]  # the debug log names the URLs it fetches
    leaks = [k for k, v in texts.items() if PASSWORD.encode() in v]
    assert leaks == [], "the password appears in %s" % leaks


# ----------------------------------------------------------------- imdb-db

def test_imdb_db_passes_the_postgresql_password_in_the_environment(tmp_path):
    """A psql on PATH that records its argv and PGPASSWORD, then fails to connect."""
    record = tmp_path / "psql.calls"
    fake = tmp_path / "bin" / "psql"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "%%s\\n" "argv: $*" "PGPASSWORD=${PGPASSWORD-}" >> %s\n'
                    'exit 2\n' % record)
    fake.chmod(0o755)
    env = dict(os.environ, PATH="%s:%s" % (fake.parent, os.environ["PATH"]))
    env.pop("PGPASSWORD", None)
    url = "postgresql://loader:%s%%40x@127.0.0.1:1/imdb?sslmode=disable" % PASSWORD
    p = util.run([util.REPO / "scripts" / "imdb-db", "test", url], env=env,
                 universal_newlines=True)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    calls = record.read_text().splitlines()
    argvs = [c for c in calls if c.startswith("argv: ")]
    assert argvs, calls
    for a in argvs:
        assert PASSWORD not in a, a
        assert "postgresql://loader@127.0.0.1:1/imdb?sslmode=disable" in a, a
    assert set(c for c in calls if c.startswith("PGPASSWORD=")) == {"PGPASSWORD=%s@x" % PASSWORD}
    assert PASSWORD not in p.stdout + p.stderr
