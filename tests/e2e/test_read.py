"""Reading data files: exact bytes, shell tools, streaming, shared downloads."""

import hashlib
import os
import subprocess
import threading
import time

import pytest

from util import (DATASETS, MIB, nginx_send_time, origin_gz, origin_tsv, read_bytes, read_json,
                  run, sha256_bytes, sha256_file)


@pytest.mark.parametrize("dataset", DATASETS)
def test_gz_is_the_origin_file_byte_for_byte(origin, mount, sample_data, dataset):
    m = mount(origin.url())
    assert read_bytes(m / (dataset + ".tsv.gz")) == origin_gz(sample_data, dataset)
    # A second read is served from the cache, still exact, with no new GET.
    n = len(origin.gets(dataset + ".tsv.gz"))
    assert read_bytes(m / (dataset + ".tsv.gz")) == origin_gz(sample_data, dataset)
    assert len(origin.gets(dataset + ".tsv.gz")) == n


@pytest.mark.parametrize("dataset", DATASETS)
def test_tsv_is_the_decompression(origin, mount, sample_data, dataset):
    m = mount(origin.url())
    want = origin_tsv(sample_data, dataset)
    got = read_bytes(m / (dataset + ".tsv"))
    assert len(got) == len(want)
    assert got == want


def test_multi_member_gz_decompresses_whole(origin, mount, sample_data):
    d = sample_data.multi_member
    gz = origin_gz(sample_data, d)
    assert gz.count(b"\x1f\x8b\x08") >= 3, "sample data should have 3 gzip members"
    m = mount(origin.url())
    got = read_bytes(m / (d + ".tsv"))
    assert got == origin_tsv(sample_data, d)
    assert got.count(b"\n") == sample_data.rows[d] + 1


def test_row_counts_with_wc(origin, mount, sample_data):
    m = mount(origin.url())
    for d in DATASETS:
        p = run(["wc", "-l", m / (d + ".tsv")], check=True, universal_newlines=True)
        assert int(p.stdout.split()[0]) - 1 == sample_data.rows[d], d


def test_shell_tools(origin, mount, sample_data, tmp_path):
    m = mount(origin.url())
    gz, tsv = m / "title.basics.tsv.gz", m / "title.basics.tsv"
    want_tsv = origin_tsv(sample_data, "title.basics")

    p = run(["head", "-n", "3", tsv], check=True)
    assert p.stdout == b"".join(want_tsv.splitlines(keepends=True)[:3])
    p = run(["cat", tsv], check=True)
    assert p.stdout == want_tsv
    run(["cmp", gz, sample_data / "title.basics.tsv.gz"], check=True)
    run(["cp", gz, tmp_path / "copy.tsv.gz"], check=True)
    assert sha256_file(tmp_path / "copy.tsv.gz") == sha256_file(sample_data / "title.basics.tsv.gz")
    p = run(["zcat", gz], check=True)
    assert p.stdout == want_tsv
    p = run(["sh", "-c", 'zcat "$1" | cmp - "$2"', "sh", gz, tsv])
    assert p.returncode == 0, p.stderr
    p = run(["tail", "-c", "100", tsv], check=True)
    assert p.stdout == want_tsv[-100:]


@pytest.mark.parametrize("name", ["title.akas.tsv", "title.akas.tsv.gz"])
def test_tools_on_a_cold_file(origin, mount, sample_data, tmp_path, name):
    """Before caching, st_size may be 0 (unknown): tools must still get every byte."""
    m = mount(origin.url())
    want = read_bytes(sample_data / "title.akas.tsv.gz")
    if name.endswith(".tsv"):
        want = origin_tsv(sample_data, "title.akas")
    run(["cp", m / name, tmp_path / "copy"], check=True)
    assert read_bytes(tmp_path / "copy") == want
    p = run(["wc", "-c", m / name], check=True, universal_newlines=True)
    assert int(p.stdout.split()[0]) == len(want)


def test_random_access_reads(origin, mount, sample_data):
    """pread at any offset of a cold file returns the right bytes (no sequential-only reads)."""
    m = mount(origin.url())
    want = origin_tsv(sample_data, "title.principals")
    fd = os.open(m / "title.principals.tsv", os.O_RDONLY)
    try:
        for off in (len(want) - 10, 12345, 0, len(want) // 2, len(want) - 4096):
            assert os.pread(fd, 4096, off) == want[off:off + 4096], off
        assert os.pread(fd, 4096, len(want)) == b"", "read at EOF must return 0 bytes"
    finally:
        os.close(fd)


def test_small_reads_match(origin, mount, sample_data):
    m = mount(origin.url())
    want = origin_gz(sample_data, "title.crew")
    chunks = []
    with open(m / "title.crew.tsv.gz", "rb", buffering=0) as f:
        while True:
            b = f.read(1000)
            if not b:
                break
            chunks.append(b)
    assert b"".join(chunks) == want


@pytest.mark.timeout_s(90)
def test_head_returns_long_before_the_download_ends(origin_factory, mount, big_data):
    origin = origin_factory(big_data.path)
    size = os.path.getsize(big_data / "title.principals.tsv.gz")
    full = nginx_send_time(size, 2 * MIB)
    assert full >= 3, "big_data too small for a streaming test (%.1f s)" % full
    m = mount(origin.url("/slow/"))

    t0 = time.monotonic()
    p = run(["head", "-n", "1", m / "title.principals.tsv"], timeout=30, check=True)
    first = time.monotonic() - t0
    assert p.stdout == b"tconst\tordering\tnconst\tcategory\tjob\tcharacters\n"
    assert first < 0.25 * full, "head -1 took %.2f s; the whole download takes >= %.2f s" % (first, full)

    # The download goes on (or restarts) and the whole file arrives intact.
    p = run(["cat", m / "title.principals.tsv.gz"], timeout=60, check=True)
    total = time.monotonic() - t0
    assert sha256_bytes(p.stdout) == sha256_file(big_data / "title.principals.tsv.gz")
    assert total >= 0.8 * full, "download was not rate limited (%.2f s): the test proves nothing" % total


@pytest.mark.timeout_s(90)
def test_concurrent_readers_share_one_download(origin_factory, mount, big_data):
    origin = origin_factory(big_data.path)
    m = mount(origin.url("/slow/"))
    name = "title.principals.tsv.gz"
    want = sha256_file(big_data / name)
    results = [None] * 4

    def reader(i):
        p = subprocess.run(["cat", str(m / name)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
        results[i] = (p.returncode, hashlib.sha256(p.stdout).hexdigest(), p.stderr)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(70)
    for r in results:
        assert r is not None and r[0] == 0, r
        assert r[1] == want
    origin.settle()
    gets = origin.gets(name)
    assert len(gets) == 1, "expected one GET for %s, got %d: %s" % (name, len(gets), gets)


def test_gz_and_tsv_readers_share_one_download(origin, mount, sample_data):
    m = mount(origin.url())
    results = {}

    def reader(name):
        results[name] = read_bytes(m / name)

    names = ["title.akas.tsv", "title.akas.tsv.gz", "title.akas.tsv", "title.akas.tsv.gz"]
    threads = [threading.Thread(target=reader, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results["title.akas.tsv.gz"] == origin_gz(sample_data, "title.akas")
    assert results["title.akas.tsv"] == origin_tsv(sample_data, "title.akas")
    origin.settle()
    assert len(origin.gets("title.akas.tsv.gz")) == 1


@pytest.mark.timeout_s(60)
def test_both_decoders_give_the_same_tsv(origin, mount, sample_data):
    """decoder=zlib and decoder=isal (when built with ISA-L) produce zcat's bytes."""
    default = read_json(mount(origin.url()) / ".control" / "config")["decoder"]
    for decoder in ["zlib"] + (["isal"] if default == "isal" else []):
        m = mount(origin.url(), extra_opts=("decoder=" + decoder,))
        assert read_json(m / ".control" / "config")["decoder"] == decoder
        for ds in ("title.basics", "title.principals"):
            assert read_bytes(m / (ds + ".tsv")) == origin_tsv(sample_data, ds), (decoder, ds)
        m.unmount()
