"""Sizes are right at the first stat (issue 13): what the mount knows of a file's size before a
byte of it is read.

A .tsv.gz's size and Last-Modified come from its cached copy, the container's blob metadata, or
the HEAD requests sent at mount for what is not cached (src/probe.c); a .tsv's from the byte
count the verifier of its .tsv.gz counted, kept in the metadata for good (never ISIZE). The
probe never delays the mount, and an origin that does not answer is no error: health says why.
"""

import json
import os
import socket
import time

import pytest

import util
from util import DATASETS, origin_gz, origin_tsv, read_bytes, wait_for

GZ_NAMES = [d + ".tsv.gz" for d in DATASETS]


def origin_sizes(data_dir):
    return {name: os.path.getsize(os.path.join(data_dir, name)) for name in GZ_NAMES}


def stat_sizes(m, names):
    return {name: os.stat(m / name).st_size for name in names}


def test_every_gz_has_its_origin_size_and_mtime_before_any_read(origin, mount, sample_data):
    """A fresh mount on an empty cache: the first stats give every .tsv.gz's exact size and
    Last-Modified (from the HEADs at mount), and no byte of any was fetched."""
    want = origin_sizes(sample_data.path)
    m = mount(origin.url())
    wait_for(lambda: stat_sizes(m, GZ_NAMES) == want, 5,
             "every .tsv.gz to stat with its origin size (got %s)" % stat_sizes(m, GZ_NAMES))
    for name in GZ_NAMES:
        assert os.stat(m / name).st_mtime == int(os.stat(sample_data.path / name).st_mtime), name
    assert origin.gets() == [], "a size was learnt by fetching the file"
    assert [f for f in os.listdir(m.cache_dir) if f.endswith(".tsv.gz")] == []
    health = m.control("health")
    assert health["status"] == "healthy", health
    assert health["sizes"] == {"probing": False, "unknown": [], "errors": []}, health
    # The sizes are right, and the reads give every byte.
    for d in DATASETS:
        assert read_bytes(m / (d + ".tsv.gz")) == origin_gz(sample_data, d), d


def test_tsv_size_is_the_verifier_count_and_survives_a_remount(origin, mount, sample_data,
                                                               tmp_path):
    """Once a .tsv.gz is verified, its .tsv stats as len(zcat) before it is read or extracted:
    the count of every inflated byte of every member (title.akas has 3 members, where ISIZE
    would give only the last one's), kept in the .meta for the next mount."""
    cache = tmp_path / "cache"
    d = sample_data.multi_member
    want = len(origin_tsv(sample_data, d))
    m = mount(origin.url(), cache_dir=cache)
    assert read_bytes(m / (d + ".tsv.gz")) == origin_gz(sample_data, d)
    wait_for(lambda: m.control("status")["datasets"][d]["state"] == "cached", 5, "the commit")
    assert os.stat(m / (d + ".tsv")).st_size == want
    assert not (cache / (d + ".tsv")).exists(), "the size came from an extraction"
    meta = json.loads((cache / (d + ".tsv.gz.meta")).read_text())
    assert meta["tsv_size"] == want, meta
    m.unmount()
    m2 = mount(origin.url(), cache_dir=cache)
    assert os.stat(m2 / (d + ".tsv")).st_size == want
    assert not (cache / (d + ".tsv")).exists()
    assert read_bytes(m2 / (d + ".tsv")) == origin_tsv(sample_data, d)
    assert os.stat(m2 / (d + ".tsv")).st_size == want


def test_a_new_version_seen_by_the_get_replaces_what_head_said(origin_factory, mount,
                                                                private_data):
    """The size follows the version actually served: after the HEAD at mount, the origin gets a
    new version of another length; while its download is still arriving, stat already says
    the new length, never the HEAD's (DESIGN.md invariants 5 and 13)."""
    d = "title.principals"
    name = d + ".tsv.gz"
    path = private_data.path / name
    origin = origin_factory(private_data.path)
    m = mount(origin.url("/slow/"))  # 2 MB/s: the new version takes over a second
    old = os.path.getsize(path)
    wait_for(lambda: os.stat(m / name).st_size == old, 5, "the HEAD's size")
    util.gen_sample_data(private_data.path, "--scale", "12", "--version", "2", "--only", d)
    new = read_bytes(path)
    assert len(new) > 1 << 20 and len(new) != old
    with open(m / name, "rb", buffering=0) as f:
        first = f.read(10)
        assert m.control("status")["datasets"][d]["state"] == "downloading"
        assert os.stat(m / name).st_size == len(new)
        rest = f.read()
    assert first + rest == new
    assert os.stat(m / name).st_size == len(new)
    assert os.stat(m / (d + ".tsv")).st_size == len(origin_tsv(private_data, d))


@pytest.mark.timeout_s(60)
def test_an_origin_that_never_answers_delays_nothing_and_health_says_why(mount):
    """An origin that accepts connections and never answers: the mount is ready at once, stat
    gives 0 for what is not known, the probe gives up within its bound (5 s), and health says
    why without calling the mount degraded."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # never accepted: connects succeed, requests get no answer
    try:
        started = time.monotonic()
        m = mount("http://127.0.0.1:%d/" % silent.getsockname()[1])
        health = m.control("health")
        assert time.monotonic() - started < 3, "the mount waited for the probe"
        assert health["sizes"]["probing"] is True, health
        assert sorted(os.listdir(m)) == sorted(util.DATA_NAMES + [".control"])
        assert os.stat(m / GZ_NAMES[0]).st_size == 0
        health = wait_for(lambda: (lambda h: h if not h["sizes"]["probing"] else None)(
            m.control("health")), 10, "the probe to give up")
        assert time.monotonic() - started < 10, "the probe is not bounded"
        assert health["status"] == "healthy", health
        assert sorted(health["sizes"]["unknown"]) == sorted(GZ_NAMES), health
        assert len(health["sizes"]["errors"]) == 7, health
        for line in health["sizes"]["errors"]:
            assert "HEAD" in line and ("stalled" in line or "timed out" in line), line
    finally:
        silent.close()


def test_a_refused_origin_is_said_in_health(mount):
    port = util.free_port()  # nothing listens there
    m = mount("http://127.0.0.1:%d/" % port)
    health = wait_for(lambda: (lambda h: h if not h["sizes"]["probing"] else None)(
        m.control("health")), 10, "the probe to end")
    assert health["status"] == "healthy", health
    assert sorted(health["sizes"]["unknown"]) == sorted(GZ_NAMES), health
    assert all("HEAD" in line for line in health["sizes"]["errors"]), health
    assert len(health["sizes"]["errors"]) == 7, health
