"""Shared fixtures and helpers for the fault, crash, concurrency and ENOSPC tests (issue 3).

Import the fixtures into a test module (`from faulthelp import fault_proxy, versions`); pytest
registers fixtures found in a module's namespace.

Fixtures
  fault_proxy   fault_proxy(origin, data_dir=None, seed=0) -> faultproxy.FaultProxy in front of a
                util.Origin (data_dir: the origin's data dir, needed by switch_version; defaults
                to origin.data_dir). Stopped at teardown.
  versions      (session) Versions: versions 1, 2 and 3 of the seven files (scale 1, title.akas
                as 3 gzip members, like sample_data) in their own dirs, with their hashes.

Helpers
  STRESS            IMDBFS_STRESS=1 in the environment (make test-stress)
  seeded(name)      a seed for a randomized test: IMDBFS_SEED if set, else a fresh one; print it
  fast_opts(...)    mount options that make retries and stall detection fast
  install_all(...)  put one version of all seven files into an origin's data dir
  unsafe_offsets(versions, d) offsets in gzip headers, where a flipped byte cannot be detected
"""

import hashlib
import os
import random
import shutil
import sys
import zlib
from pathlib import Path

import pytest

import util
from faultproxy import FaultProxy, install_version
from util import DATASETS

STRESS = os.environ.get("IMDBFS_STRESS", "") not in ("", "0")
MULTI_MEMBER = "title.akas"

# Errors the daemon logs when a download or a decompression fails: a test that provokes
# failures declares these as expected (every ERROR line about a data file).
DATA_FILE_ERRORS = [r"\b(?:name|title)\.[a-z]+\.tsv(?:\.gz)?\b"]


def fast_opts(retries=4, retry_delay=0.05, timeout=2, extra=()):
    return ["retries=%d" % retries, "retry_delay=%g" % retry_delay, "timeout=%g" % timeout,
            *extra]


def seeded(name):
    """The seed of a randomized test: $IMDBFS_SEED replays a run; printed for failures."""
    env = os.environ.get("IMDBFS_SEED")
    seed = int(env) if env else random.SystemRandom().randrange(1 << 31)
    print("%s: seed %d (replay with IMDBFS_SEED=%d)" % (name, seed, seed), file=sys.stderr)
    return seed


def sha(data):
    return hashlib.sha256(data).hexdigest()


class Versions:
    """Origin versions of the seven files: dir(v), gz(v, d) bytes, tsv(v, d) bytes."""

    def __init__(self, root, numbers):
        self.root = Path(root)
        self.numbers = list(numbers)
        self._gz = {}
        self._tsv = {}
        for v in self.numbers:
            for d in DATASETS:
                self._gz[v, d] = util.read_bytes(self.path(v, d))
                self._tsv[v, d] = util.zcat_bytes(self.path(v, d))
        self.gz_hash = {k: sha(b) for k, b in self._gz.items()}
        self.tsv_hash = {k: sha(b) for k, b in self._tsv.items()}

    def dir(self, v):
        return self.root / ("v%s" % v)

    def path(self, v, d):
        return self.dir(v) / (d + ".tsv.gz")

    def gz(self, v, d):
        return self._gz[v, d]

    def tsv(self, v, d):
        return self._tsv[v, d]

    def which_gz(self, d, data):
        """The version whose .tsv.gz is exactly data, or None."""
        h = sha(data)
        for v in self.numbers:
            if self.gz_hash[v, d] == h:
                return v
        return None

    def which_tsv(self, d, data):
        h = sha(data)
        for v in self.numbers:
            if self.tsv_hash[v, d] == h:
                return v
        return None


@pytest.fixture(scope="session")
def versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("versions")
    numbers = [1, 2, 3]
    for v in numbers:
        d = root / ("v%d" % v)
        util.gen_sample_data(d, "--scale", "1", "--version", str(v))
        util.gen_sample_data(d, "--scale", "1", "--version", str(v), "--members", "3",
                             "--only", MULTI_MEMBER)
    vs = Versions(root, numbers)
    for d in DATASETS:
        assert len({vs.gz_hash[v, d] for v in numbers}) == len(numbers), \
            "gen-sample-data --version gave identical %s files" % d
    return vs


def install_all(versions, v, data_dir, names=DATASETS):
    """Make data_dir hold version v of the given datasets (atomic, new ETags)."""
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    for d in names:
        install_version(data_dir, d + ".tsv.gz", versions.path(v, d))


@pytest.fixture
def fault_proxy():
    started = []

    def start(origin, data_dir=None, seed=0):
        p = FaultProxy(origin.port, data_dir=data_dir or origin.data_dir, seed=seed).start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def gzip_members(data):
    """[(start, header_length)] of every gzip member in data."""
    members = []
    pos = 0
    while pos < len(data):
        members.append((pos, gzip_header_length(data, pos)))
        d = zlib.decompressobj(31)
        d.decompress(data[pos:])
        if not d.eof:
            raise ValueError("truncated gzip member at %d" % pos)
        pos = len(data) - len(d.unused_data)
    return members


def gzip_header_length(data, pos):
    if data[pos:pos + 2] != b"\x1f\x8b":
        raise ValueError("no gzip magic at %d" % pos)
    flags = data[pos + 3]
    n = pos + 10
    if flags & 4:  # FEXTRA
        n += 2 + int.from_bytes(data[n:n + 2], "little")
    for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        if flags & bit:
            n = data.index(b"\0", n) + 1
    if flags & 2:  # FHCRC
        n += 2
    return n - pos


def unsafe_offsets(versions, d):
    """Offsets inside a gzip member header of some version of d.

    A header's MTIME, XFL and OS bytes are covered by no check (unless FHCRC), so a byte
    flipped there gives a file that verifies but is not the origin's: no verifier can see it.
    Everything after a member's header (deflate data, CRC32, ISIZE) is checked, so flip faults
    go there.
    """
    bad = set()
    for v in versions.numbers:
        for start, hlen in gzip_members(versions.gz(v, d)):
            bad.update(range(start, start + hlen))
    return bad


def copy_versions_dir(versions, v, dest):
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for d in DATASETS:
        shutil.copyfile(versions.path(v, d), dest / (d + ".tsv.gz"))
    return dest


# ------------------------------------------------------------------ cache and status checks

ACTIVE = {"queued", "downloading", "verifying", "extracting"}


def file_id(path):
    """(inode, mtime_ns, size, sha256) of a file, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size, util.sha256_file(path))


def cache_ids(cache_dir, d):
    """What a committed .tsv.gz and its metadata are right now (to show they were not touched)."""
    base = Path(cache_dir) / (d + ".tsv.gz")
    return file_id(base), file_id(str(base) + ".meta")


def wait_idle(m, timeout=30):
    """Wait until no job runs and no dataset is downloading or extracting."""
    def idle():
        s = m.control("status")
        if s.get("jobs_running"):
            return None
        if any(st["state"] in ACTIVE for st in s["datasets"].values()):
            return None
        return s
    return util.wait_for(idle, timeout, "imdbfs to be idle", interval=0.05)


def read_until_error(path, chunk=1 << 16):
    """Read a file to its end: (bytes read, errno or None)."""
    out = []
    try:
        with open(path, "rb", buffering=0) as f:
            while True:
                b = f.read(chunk)
                if not b:
                    return b"".join(out), None
                out.append(b)
    except OSError as e:
        return b"".join(out), e.errno


def log_since(m, offset):
    """The daemon's output after `offset` characters."""
    return m.stderr_text()[offset:]


# ------------------------------------------------------------------ big versions

BIG = "title.principals"


@pytest.fixture(scope="session")
def big_versions(tmp_path_factory, versions):
    """Versions 1 and 2 of the seven files where title.principals is big (~20 MB of gzip at
    level 1 in quick mode, ~40 MB with IMDBFS_STRESS=1); the six others as in `versions`."""
    import subprocess
    root = tmp_path_factory.mktemp("big-versions")
    scale = "220" if STRESS else "110"
    procs = []
    for v in (1, 2):
        d = root / ("v%d" % v)
        copy_versions_dir(versions, v, d)
        procs.append(subprocess.Popen(
            [sys.executable, str(util.GEN_SAMPLE_DATA), "--scale", scale, "--level", "1",
             "--version", str(v), "--only", BIG, str(d)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    return Versions(root, [1, 2])
