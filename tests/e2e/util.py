"""Helpers for the imdbfs end-to-end tests: the nginx origin, mounts, file checks.

Fixtures that use these live in conftest.py; tests import the plain helpers
(`from util import ...`).
"""

import errno
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GEN_SAMPLE_DATA = REPO / "scripts" / "gen-sample-data"
NGINX_CONF_IN = Path(__file__).resolve().parent / "nginx.conf.in"

DATASETS = [
    "name.basics", "title.akas", "title.basics", "title.crew",
    "title.episode", "title.principals", "title.ratings",
]
GZ_NAMES = [d + ".tsv.gz" for d in DATASETS]
TSV_NAMES = [d + ".tsv" for d in DATASETS]
DATA_NAMES = sorted(GZ_NAMES + TSV_NAMES)
CONTROL_FILES = [
    "health", "datasets", "files", "status", "config", "metrics",
    "download", "extract", "full-process", "delete",
]
STATES = {"absent", "queued", "downloading", "verifying", "cached",
          "extracting", "extracted", "failed"}
DENIED = {errno.EACCES, errno.EROFS, errno.EPERM}

# An error line logged by imdbfs: a timestamp, then " ERROR ".
ERROR_LINE = re.compile(r"^\S*\d\S*(?: \S*\d\S*)? ERROR\b")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                   "ERROR: ThreadSanitizer", "WARNING: ThreadSanitizer")


def imdbfs_bin():
    return os.environ.get("IMDBFS_BIN", str(REPO / "build" / "imdbfs"))


# ----------------------------------------------------------------- files

def zcat_bytes(path):
    """The decompression of a gzip file; every member, like zcat."""
    with gzip.open(path, "rb") as f:
        return f.read()


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def read_json(path):
    """Parse a control file: one JSON object, UTF-8, newline-terminated."""
    raw = read_bytes(path)
    assert raw.endswith(b"\n"), "%s does not end with a newline: %r" % (path, raw[-80:])
    try:
        doc = json.loads(raw.decode("utf-8"))
    except ValueError as e:
        raise AssertionError("%s is not valid JSON (%s): %r" % (path, e, raw[:500])) from None
    assert isinstance(doc, dict), "%s is not a JSON object: %r" % (path, doc)
    return doc


def write_control(path, text):
    """Write a command the way `echo text > path` does (O_TRUNC), one write().

    Raises OSError at the write or the close when the daemon refuses it.
    """
    data = text.encode() if isinstance(text, str) else text
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        n = os.write(fd, data)
        assert n == len(data), "short write to %s: %d of %d" % (path, n, len(data))
    finally:
        os.close(fd)


def wait_for(predicate, timeout, what, interval=0.05):
    """Poll predicate() until it returns a true value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def wait_uploads(m, timeout=30):
    """Until no upload to the container is queued or running on mount m.

    With storage=azure a transfer ends at its local commit and its upload runs afterwards,
    in the background (`upload` in .control/status): wait for it before looking at the
    container.
    """
    wait_for(lambda: not any(s.get("upload") in ("queued", "uploading")
                             for s in m.control("status")["datasets"].values()),
             timeout, "the uploads to the container to end")


def run(cmd, timeout=30, check=False, **kw):
    """subprocess.run with captured text output and a timeout."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    p = subprocess.run([str(c) for c in cmd], timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d: %s" % (cmd, p.returncode, p.stderr))
    return p


def gen_sample_data(outdir, *args):
    """Run scripts/gen-sample-data -v; return {dataset: rows written}."""
    p = run([sys.executable, GEN_SAMPLE_DATA, "-v", *args, outdir], timeout=300, check=True,
            universal_newlines=True)
    rows = {}
    for line in p.stdout.splitlines():
        m = re.match(r".*/([a-z.]+)\.tsv\.gz: (\d+) rows", line)
        assert m, "unexpected gen-sample-data output: %r" % line
        rows[m.group(1)] = int(m.group(2))
    return rows


# ----------------------------------------------------------------- origin

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Origin:
    """nginx serving data_dir on 127.0.0.1 (see nginx.conf.in for the locations).

    url(prefix)           base URL to give imdbfs: '/', '/slow/', '/seg/', '/slow200k/',
                          '/missing/' (rates per connection: see nginx.conf.in)
    requests(since=0)     parsed access-log entries (dicts), oldest first, from index `since`
    mark()                the current number of entries, to pass as `since` later
    gets(name, since=0)   entries for GETs of a file name (any location)
    clear_log()           forget all entries so far
    """

    def __init__(self, data_dir, workdir):
        self.data_dir = Path(data_dir)
        self.dir = Path(workdir)
        self.proc = None
        self.port = None
        self.log_path = self.dir / "access.log"
        self.error_log = self.dir / "error.log"

    def start(self, attempts=5):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        empty = self.dir / "empty"
        empty.mkdir(parents=True, exist_ok=True)
        last = ""
        for _ in range(attempts):
            self.port = free_port()
            conf = (NGINX_CONF_IN.read_text()
                    .replace("@DIR@", str(self.dir)).replace("@PORT@", str(self.port))
                    .replace("@DATA@", str(self.data_dir)).replace("@EMPTY@", str(empty)))
            conf_path = self.dir / "nginx.conf"
            conf_path.write_text(conf)
            self.proc = subprocess.Popen(
                [nginx, "-p", str(self.dir), "-e", str(self.error_log), "-c", str(conf_path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
                except OSError:
                    time.sleep(0.02)
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
            self.stop()
            last = err + (self.error_log.read_text(errors="replace") if self.error_log.exists() else "")
            if "Address already in use" not in last:
                break
        raise AssertionError("nginx did not start: %s" % last)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def url(self, prefix="/"):
        if not prefix.startswith("/"):
            prefix = "/" + prefix
        if not prefix.endswith("/"):
            prefix += "/"
        return "http://127.0.0.1:%d%s" % (self.port, prefix)

    def requests(self, since=0):
        if not self.log_path.exists():
            return []
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.strip():
                entries.append(json.loads(line))
        return entries[since:]

    def mark(self):
        return len(self.requests())

    def gets(self, name=None, since=0):
        return [e for e in self.requests(since)
                if e["method"] == "GET" and (name is None or e["uri"].rsplit("/", 1)[-1] == name)]

    def settle(self, quiet=0.3, timeout=10):
        """Wait until no new log entry appeared for `quiet` seconds (requests end late)."""
        n = -1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.mark()
            if m == n:
                return m
            n = m
            time.sleep(quiet)
        return n

    def clear_log(self):
        if self.log_path.exists():
            with open(self.log_path, "r+") as f:  # nginx appends (O_APPEND): truncating is safe
                f.truncate(0)


# ----------------------------------------------------------------- mounts

LIVE_MOUNTS = []  # mounts not yet unmounted, for the per-test watchdog


class Mount:
    """A running `imdbfs -f` and its mountpoint.

    path, cache_dir, proc, log_path    what you expect
    stderr_text()                      everything the daemon printed so far
    expected_errors                    regexes: ERROR lines matching one are allowed
    expect_exit                        the exit code check_clean() accepts (None: any)
    unmount()                          lazy unmount, wait for exit (SIGKILL after 10 s)
    check_clean()                      fail on sanitizer reports, unexpected ERROR lines, bad exit
    """

    def __init__(self, path, cache_dir, origin_url, log_path, extra_opts=(), env=None,
                 expected_errors=(), expect_exit=0, log_level="debug"):
        self.path = Path(path)
        self.cache_dir = Path(cache_dir)
        self.origin_url = origin_url
        self.log_path = Path(log_path)
        self.expected_errors = list(expected_errors)
        self.expect_exit = expect_exit
        self.returncode = None
        self.killed = False
        self.conn = None  # the FUSE connection's id in fusectl
        opts = ["origin=" + origin_url, "cache_dir=" + str(cache_dir)]
        if log_level:
            opts.append("log_level=" + log_level)
        opts.extend(extra_opts)
        self.cmd = [imdbfs_bin(), "-f", "-o", ",".join(opts), str(self.path)]
        self.env = daemon_env(env)
        self.path.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env)
        LIVE_MOUNTS.append(self)
        try:
            self._wait_mounted()
        except BaseException:
            self.unmount()
            raise

    def _wait_mounted(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("imdbfs exited with %d before mounting; its output:\n%s"
                                     % (self.proc.returncode, self.stderr_text()))
            if os.path.ismount(self.path):
                self.conn = str(os.minor(os.stat(self.path).st_dev))
                return
            time.sleep(0.05)
        raise AssertionError("%s not mounted after %d s; imdbfs output:\n%s"
                             % (self.path, timeout, self.stderr_text()))

    def __truediv__(self, name):
        return self.path / name

    def __fspath__(self):
        return str(self.path)

    def stderr_text(self):
        return self.log_path.read_text(errors="replace")

    def control(self, name):
        """Parse .control/NAME."""
        return read_json(self.path / ".control" / name)

    def command(self, name, text):
        """Write a command to .control/NAME (as `echo text > .control/NAME`)."""
        write_control(self.path / ".control" / name, text + "\n")

    def cli(self, *args, timeout=60):
        """Run `imdbfs ARGS... MOUNTPOINT`."""
        return run([imdbfs_bin(), *args, self.path], timeout=timeout, universal_newlines=True,
                   env=self.env)

    def wait_job(self, timeout=60):
        """`imdbfs wait MOUNTPOINT`: returns its exit code."""
        return self.cli("wait", timeout=timeout).returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()

    def abort(self):
        """Abort the FUSE connection: every pending and future request fails with ENOTCONN.

        The last resort for a daemon that SIGKILL cannot end (a thread stuck in the
        kernel, e.g. a deadlocked notification); the mount itself stays until unmounted.
        """
        if self.conn:
            abort_fuse_connection(self.conn)

    def unmount(self):
        """Lazy unmount, wait for the daemon (SIGKILL after 10 s). Idempotent."""
        if self.returncode is not None:
            return self.returncode
        try:
            # Also when the daemon died: its mount is then still in the table
            # (ENOTCONN), and os.path.ismount() says False.
            if in_mount_table(self.path) or self.proc.poll() is None:
                lazy_unmount(self.path)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.abort()  # unkillable: a thread stuck in the kernel on this mount
                    self.proc.wait(10)
        finally:
            self.returncode = self.proc.returncode
            if self in LIVE_MOUNTS:
                LIVE_MOUNTS.remove(self)
        return self.returncode

    def check_clean(self):
        """After unmount: the problems this mount's log or exit show, as a list of strings."""
        problems = []
        text = self.stderr_text()
        for mark in SANITIZER_MARKS:
            if mark in text:
                problems.append("sanitizer report (%r) in imdbfs output" % mark)
        unexpected = [line for line in text.splitlines() if ERROR_LINE.match(line)
                      and not any(re.search(p, line) for p in self.expected_errors)]
        if unexpected:
            problems.append("unexpected ERROR lines from imdbfs:\n  " + "\n  ".join(unexpected[:20]))
        if self.killed:
            problems.append("imdbfs did not exit within 10 s of fusermount3 -u -z (SIGKILLed)")
        elif self.expect_exit is not None and self.returncode != self.expect_exit:
            problems.append("imdbfs exited with %s (expected %s)" % (self.returncode, self.expect_exit))
        if problems:
            problems.append("imdbfs output (%s):\n%s" % (self.log_path, tail(text)))
        return problems


def in_mount_table(path):
    want = {str(path), os.path.realpath(path)}
    with open("/proc/self/mounts") as f:
        for line in f:
            mnt = line.split()[1].encode().decode("unicode_escape")  # octal escapes such as \040
            if mnt in want:
                return True
    return False


FUSECTL = "/sys/fs/fuse/connections"


def abort_fuse_connection(conn):
    """Write to fusectl's abort file of connection conn, mounting fusectl if needed."""
    try:
        if not os.listdir(FUSECTL):
            subprocess.run(["mount", "-t", "fusectl", "fusectl", FUSECTL], timeout=10,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(FUSECTL, conn, "abort"), "w") as f:
            f.write("1")
    except OSError:
        pass  # connection already gone, or no fusectl: nothing more to try


def lazy_unmount(path):
    subprocess.run(["fusermount3", "-u", "-z", str(path)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)


def tail(text, lines=60):
    return "\n".join(text.splitlines()[-lines:])


def daemon_env(extra=None):
    """The environment for imdbfs: ours without imdbfs settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("IMDBFS_", "AZURE_")) and k != "IMDBFS_BIN")
           and k not in ("LOG_LEVEL", "DOWNLOAD_DIR", "USE_AZURE_BLOB")}
    env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if os.environ.get("IMDBFS_TEST_DECODER"):  # make test-e2e DECODER=zlib
        env["IMDBFS_DECODER"] = os.environ["IMDBFS_TEST_DECODER"]
    env.update(extra or {})
    return env


def mount_expecting_failure(mountpoint, opts, env=None, timeout=10):
    """Run `imdbfs -f -o OPTS MOUNTPOINT` that must refuse to start.

    Returns (exit code, stderr text). Fails if it mounted or was still running
    after `timeout` seconds (then it is unmounted and killed).
    """
    mountpoint = Path(mountpoint)
    mountpoint.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([imdbfs_bin(), "-f", "-o", opts, str(mountpoint)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=daemon_env(env), universal_newlines=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        lazy_unmount(mountpoint)
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("imdbfs -o %s was still running after %d s (mounted: it should have "
                             "refused); output:\n%s%s" % (opts, timeout, out, err))
    mounted = in_mount_table(mountpoint)
    if mounted:
        lazy_unmount(mountpoint)
    assert not mounted, "imdbfs -o %s left %s mounted" % (opts, mountpoint)
    return proc.returncode, err


def interrupt_after(proc, delay, sig=signal.SIGINT):
    """Send sig to proc after delay seconds; return the time it took to exit after that."""
    time.sleep(delay)
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return float("inf")
    return time.monotonic() - t0


# ----------------------------------------------------------------- expectations

MIB = 1024 * 1024


def nginx_send_time(size, rate):
    """Least time nginx's limit_rate needs to send size bytes: it allows rate * (t + 1) by time t."""
    return max(0.0, size / rate - 1)


def origin_gz(data, dataset):
    """The bytes the origin serves for dataset (a name like title.basics)."""
    return read_bytes(Path(data) / (dataset + ".tsv.gz"))


def origin_tsv(data, dataset):
    """What the mount's NAME.tsv must hold: the decompression of the origin's file."""
    return zcat_bytes(Path(data) / (dataset + ".tsv.gz"))


def strip_etag(etag):
    """ETag without quotes or weak marker, to compare forms that may differ in quoting."""
    return etag[2:].strip('"') if etag.startswith("W/") else etag.strip('"')
