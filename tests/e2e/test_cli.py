"""The imdbfs command line: status, wait, --help, --version, FUSE's own options."""

import os
import subprocess
import threading
import time

import pytest

from util import (DATASETS, MIB, imdbfs_bin, nginx_send_time, origin_gz, origin_tsv, read_bytes,
                  run, wait_for)


def test_status_prints_one_line_per_dataset(origin, mount):
    m = mount(origin.url())
    read_bytes(m / "title.basics.tsv.gz")
    p = m.cli("status")
    assert p.returncode == 0, p.stderr
    lines = [line for line in p.stdout.splitlines() if line.strip()]
    assert len(lines) >= 7, p.stdout
    assert "\x1b[" not in p.stdout, "no terminal escapes when stdout is not a TTY"
    for d in DATASETS:
        mine = [line for line in lines if d in line]
        assert mine, "no status line for %s in:\n%s" % (d, p.stdout)
        want = "cached" if d == "title.basics" else "absent"
        assert any(want in line for line in mine), "%s should be %s:\n%s" % (d, want, p.stdout)


def test_status_of_a_path_that_is_not_a_mount(tmp_path):
    p = run([imdbfs_bin(), "status", tmp_path], timeout=10, universal_newlines=True)
    assert p.returncode != 0
    assert p.stderr.strip()


@pytest.mark.timeout_s(90)
def test_download_joins_a_running_fetch_and_wait_blocks_until_done(origin_factory, mount, big_data):
    origin = origin_factory(big_data.path)
    m = mount(origin.url("/slow/"))
    name = "title.principals.tsv.gz"
    size = os.path.getsize(big_data / name)
    full = nginx_send_time(size, 2 * MIB)
    t0 = time.monotonic()
    reader = subprocess.Popen(["cat", str(m / name)], stdout=subprocess.PIPE)
    out = []
    t = threading.Thread(target=lambda: out.append(reader.stdout.read()))
    t.start()
    try:
        st = wait_for(lambda: (lambda s: s if s["state"] == "downloading" and s["bytes_done"] > 0
                               else None)(m.control("status")["datasets"]["title.principals"]),
                      10, "title.principals to be downloading")
        assert st["bytes_total"] == size, st
        assert 0 < st["bytes_done"] < size, st
        m.command("download", "title.principals")
        code = m.wait_job(timeout=60)
        waited = time.monotonic() - t0
    finally:
        t.join(60)
        reader.wait(10)
    assert code == 0
    assert waited >= 0.8 * full, "wait returned after %.2f s, the download takes >= %.2f s" % (waited, full)
    assert m.control("status")["datasets"]["title.principals"]["state"] == "cached"
    r = m.control("download")
    assert r["successful_downloads"] == 1 and r["failed_downloads"] == []
    assert out[0] == origin_gz(big_data, "title.principals")
    origin.settle()
    assert len(origin.gets(name)) == 1, "the command must join the running download"


def test_wait_exit_code_follows_the_job(origin, mount):
    m = mount(origin.url())
    m.command("download", "title.ratings")
    assert m.wait_job() == 0
    assert m.wait_job() == 0, "wait after the job ended reports its result again"


def test_help_and_version(origin, mount):
    p = run([imdbfs_bin(), "--help"], timeout=10, universal_newlines=True)
    assert p.returncode == 0
    text = p.stdout + p.stderr
    for word in ("status", "wait", "origin", "cache_dir"):
        assert word in text, "--help does not mention %s" % word
    p = run([imdbfs_bin(), "--version"], timeout=10, universal_newlines=True)
    assert p.returncode == 0
    m = mount(origin.url())
    version = m.control("health")["version"]
    assert version in p.stdout + p.stderr


@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("opts", [("max_read=131072",), ("max_read=1048576", "clone_fd"), ()])
def test_fuse_read_options_are_honoured(origin, mount, sample_data, opts):
    """FUSE's own -o max_read (which libfuse makes init() repeat) and clone_fd mount and serve."""
    m = mount(origin.url(), extra_opts=opts)
    assert read_bytes(m / "title.basics.tsv") == origin_tsv(sample_data, "title.basics")
    assert read_bytes(m / "title.basics.tsv.gz") == origin_gz(sample_data, "title.basics")
