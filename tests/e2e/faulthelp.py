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
  gzip_safe_positions(data)   byte offsets where a flipped byte must fail gzip verification
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


def gzip_safe_positions(data):
    """Ranges [(lo, hi)) of offsets where xor-ing a byte must make gzip verification fail.

    A gzip header's MTIME, XFL and OS bytes are covered by no check (unless FHCRC), so a flip
    there gives a file that verifies but is not the origin's: no verifier can see it. Everything
    after a member's header (deflate data, CRC32, ISIZE) is checked.
    """
    ranges = []
    members = gzip_members(data)
    for i, (start, hlen) in enumerate(members):
        end = members[i + 1][0] if i + 1 < len(members) else len(data)
        ranges.append((start + hlen, end))
    return ranges


def random_safe_position(rng, data):
    ranges = gzip_safe_positions(data)
    total = sum(hi - lo for lo, hi in ranges)
    k = rng.randrange(total)
    for lo, hi in ranges:
        if k < hi - lo:
            return lo + k
        k -= hi - lo
    raise AssertionError("unreachable")


def copy_versions_dir(versions, v, dest):
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for d in DATASETS:
        shutil.copyfile(versions.path(v, d), dest / (d + ".tsv.gz"))
    return dest
