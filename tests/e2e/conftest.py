"""End-to-end tests for imdbfs: real FUSE mounts of the daemon against a local nginx origin.

Run: /usr/bin/python3 -m pytest tests/e2e   (as root or a user allowed to mount FUSE)

The daemon under test is $IMDBFS_BIN (default <repo>/build/imdbfs). The suite fails,
never skips, when /dev/fuse, fusermount3, nginx or the binary is missing.

Fixtures
  sample_data     (session) SampleData: the seven NAME.tsv.gz from scripts/gen-sample-data at
                  scale 1; title.akas (MULTI_MEMBER) is written as 3 gzip members. `.path` is
                  the dir, `.rows[dataset]` the rows written (without the header). Read-only:
                  tests that change origin files use `private_data`.
  big_data        (session) SampleData like sample_data (one member each) but with a
                  title.principals.tsv.gz of ~10 MB, for tests behind the rate-limited locations
                  (/slow/ sends it in ~4 s).
  private_data    a per-test copy of sample_data that the test may modify (new versions ...).
  origin_factory  origin_factory(data_dir) -> util.Origin: a fresh nginx on a free loopback
                  port serving data_dir at `/`, `/slow/` (2 MB/s), `/seg/` (512 KB/s),
                  `/slow200k/` (200 KB/s) and
                  `/missing/` (404 for all), with a JSON access log (util.Origin.requests()).
                  Stopped at teardown.
  origin          origin_factory(sample_data).
  mount           mount(origin_url, cache_dir=None, extra_opts=(), env=None, expected_errors=(),
                  expect_exit=0) -> util.Mount: runs `imdbfs -f -o origin=URL,cache_dir=DIR,
                  log_level=debug[,extra] MOUNTPOINT`, waits until mounted (failing fast with the
                  daemon's output if it dies). Each call gets a new mountpoint and, unless
                  given, a new cache dir. At teardown, always: fusermount3 -u -z, wait 10 s,
                  SIGKILL; then the test fails if the daemon's output has a sanitizer report or an
                  ERROR line not matched by expected_errors, or if it exited with another code
                  than expect_exit (None: any). Mount.unmount() may be called earlier (remounts).
  tmpfs           tmpfs(size) -> a fresh tmpfs of that size (e.g. '64m') as root, mode 0700;
                  unmounted at teardown, after the imdbfs mounts (request it before `mount`).
  azurite         (module) azurite.Azurite: an Azurite on a free loopback port; fails the test
                  when tests/azure/blob-probe is missing.
  postgres        (session) dbservers.Postgres: a PostgreSQL 15 on a free loopback port, database
                  `imdb`, `.url` postgresql://postgres@127.0.0.1:PORT/imdb, `.psql(sql)`. Stopped
                  at teardown. Tests share it: use tables of their own.
  mariadb         (session) dbservers.MariaDB: a MariaDB 10.11 likewise, `.url`
                  mysql://imdb:imdb@127.0.0.1:PORT/imdb (local_infile on), `.sql(sql)`.

Per-test timeout: 60 s, or @pytest.mark.timeout_s(N). SIGALRM fails the test; a test stuck in a
FUSE request (which only SIGKILL interrupts) is freed by a watchdog that kills its daemons and,
if a daemon cannot die (a thread stuck in the kernel), aborts their FUSE connections (fusectl).
"""

import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

import dbservers
from azurite import Azurite, AzuriteError, probe_bin
import util

DEFAULT_TIMEOUT_S = 60
MULTI_MEMBER = "title.akas"


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout_s(n): per-test time limit in seconds (default 60)")
    # A run ended with SIGTERM (CI timeouts, kill) still tears its mounts down, as after Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


# ----------------------------------------------------------------- environment

@pytest.fixture(scope="session", autouse=True)
def _requirements():
    """Fail every test, loudly, when the suite cannot really run here."""
    missing = []
    if not os.path.exists("/dev/fuse"):
        missing.append("/dev/fuse does not exist (FUSE kernel module not loaded?)")
    elif not os.access("/dev/fuse", os.R_OK | os.W_OK):
        missing.append("/dev/fuse is not readable and writable by this user")
    if not shutil.which("fusermount3"):
        missing.append("fusermount3 is not installed (Debian package fuse3)")
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        missing.append("nginx is not installed (Debian package nginx-light)")
    binary = util.imdbfs_bin()
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        missing.append("the daemon %s does not exist or is not executable (run make, or set "
                       "IMDBFS_BIN)" % binary)
    if missing:
        pytest.fail("e2e suite cannot run: " + "; ".join(missing), pytrace=False)


# ----------------------------------------------------------------- per-test timeout

class _Timeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    marker = item.get_closest_marker("timeout_s")
    seconds = int(marker.args[0]) if marker else DEFAULT_TIMEOUT_S
    done = threading.Event()
    message = ("test did not finish within %d s (per-test limit; @pytest.mark.timeout_s(N) "
               "changes it)" % seconds)

    def on_alarm(signum, frame):
        item._e2e_timeout = message
        raise _Timeout(message)

    def watchdog():
        # Non-fatal signals do not interrupt a process waiting on a FUSE reply:
        # if the alarm has not ended the test, kill the daemons so requests fail,
        # and if even that does not free it (a daemon thread stuck in the kernel),
        # abort the FUSE connections.
        if done.wait(seconds + 5):
            return
        item._e2e_timeout = message + "; its imdbfs daemons were killed"
        for m in list(util.LIVE_MOUNTS):
            m.kill()
        if done.wait(3):
            return
        item._e2e_timeout = message + "; its imdbfs daemons were killed and their FUSE connections aborted"
        for m in list(util.LIVE_MOUNTS):
            m.abort()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    dog = threading.Thread(target=watchdog, daemon=True)
    dog.start()
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        done.set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A timed-out test fails even if the alarm's exception got lost on the way up."""
    outcome = yield
    report = outcome.get_result()
    timeout = getattr(item, "_e2e_timeout", None)
    if call.when == "call" and timeout and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = timeout


# ----------------------------------------------------------------- data

class SampleData:
    def __init__(self, path, rows, multi_member=None):
        self.path = Path(path)
        self.rows = rows
        self.multi_member = multi_member

    def __fspath__(self):
        return str(self.path)

    def __truediv__(self, name):
        return self.path / name


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("origin-data")
    rows = util.gen_sample_data(d, "--scale", "1")
    rows.update(util.gen_sample_data(d, "--scale", "1", "--members", "3", "--only", MULTI_MEMBER))
    assert sorted(rows) == util.DATASETS
    return SampleData(d, rows, MULTI_MEMBER)


@pytest.fixture(scope="session")
def big_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("origin-big")
    rows = util.gen_sample_data(d, "--scale", "1")
    rows.update(util.gen_sample_data(d, "--scale", "75", "--only", "title.principals"))
    size = os.path.getsize(d / "title.principals.tsv.gz")
    assert size > 8 << 20, "big_data title.principals.tsv.gz is only %d bytes" % size
    return SampleData(d, rows)


@pytest.fixture
def private_data(sample_data, tmp_path):
    d = tmp_path / "origin-data"
    shutil.copytree(sample_data.path, d)
    return SampleData(d, dict(sample_data.rows), sample_data.multi_member)


# ----------------------------------------------------------------- origin

@pytest.fixture
def origin_factory(tmp_path):
    started = []

    def start(data_dir):
        workdir = tmp_path / ("nginx%d" % len(started))
        workdir.mkdir()
        o = util.Origin(data_dir, workdir)
        started.append(o)
        return o.start()

    yield start
    for o in started:
        o.stop()


@pytest.fixture
def origin(origin_factory, sample_data):
    return origin_factory(sample_data.path)


# ----------------------------------------------------------------- mounts

def mounts_in(tmp_path, mount_dir):
    """The `mount` factory with its mountpoints in mount_dir (a generator: the code after
    the yield unmounts and checks every mount it made)."""
    mounts = []

    def make(origin_url, cache_dir=None, extra_opts=(), env=None, expected_errors=(),
             expect_exit=0):
        n = len(mounts)
        if cache_dir is None:
            cache_dir = tmp_path / ("cache%d" % n)
        m = util.Mount(mount_dir / ("mnt%d" % n), cache_dir, origin_url,
                       tmp_path / ("imdbfs%d.log" % n), extra_opts=extra_opts, env=env,
                       expected_errors=expected_errors, expect_exit=expect_exit)
        mounts.append(m)
        return m

    yield make
    problems = []
    for m in mounts:
        try:
            m.unmount()
            problems += m.check_clean()
        except Exception as e:  # keep cleaning up the other mounts
            problems.append("cleanup of %s failed: %r" % (m.path, e))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def mount(tmp_path):
    yield from mounts_in(tmp_path, tmp_path)


# ----------------------------------------------------------------- database servers

@pytest.fixture
def tmpfs(tmp_path):
    """tmpfs(size) -> a fresh tmpfs (e.g. '64m'); unmounted at teardown, after the imdbfs
    mounts of the test (request it before `mount`)."""
    made = []

    def make(size):
        d = tmp_path / ("tmpfs%d" % len(made))
        d.mkdir()
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs",
                            str(d)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=10)
        assert p.returncode == 0, "cannot mount a tmpfs (root needed): %s" % p.stdout
        made.append(d)
        return d

    yield make
    for d in made:
        if subprocess.run(["umount", str(d)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=10).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], timeout=10)


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    """An Azurite for the test module (and tests/azure/blob-probe, which the Azure tests need)."""
    if not os.access(probe_bin(), os.X_OK):
        pytest.fail("%s is missing (make build/blob-probe)" % probe_bin(), pytrace=False)
    try:
        a = Azurite.start(tmp_path_factory.mktemp("azurite"))
    except AzuriteError as e:
        pytest.fail(str(e), pytrace=False)
    yield a
    a.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    server = dbservers.Postgres.start(tmp_path_factory.mktemp("postgres"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    server = dbservers.MariaDB.start(tmp_path_factory.mktemp("mariadb"))
    try:
        yield server
    finally:
        server.stop()
