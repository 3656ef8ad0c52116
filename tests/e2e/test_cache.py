"""The local cache: layout, eviction with rm, remounts, revalidation, new origin versions."""

import os
import subprocess
import sys
import threading
import time

import pytest

from faulthelp import big_versions, install_all, versions  # noqa: F401

from util import (DATASETS, DATA_NAMES, GEN_SAMPLE_DATA, origin_gz, origin_tsv, read_bytes,
                  read_json, run, strip_etag, wait_for)

META_FIELDS = {"url", "etag", "last_modified", "size", "fetched_at"}


def full_process(m):
    m.command("full-process", "all")
    assert m.wait_job() == 0, m.control("full-process")


def test_cache_layout(origin, mount, sample_data):
    m = mount(origin.url())
    full_process(m)
    for d in DATASETS:
        gz = m.cache_dir / (d + ".tsv.gz")
        assert read_bytes(gz) == origin_gz(sample_data, d)
        meta = read_json(m.cache_dir / (d + ".tsv.gz.meta"))
        assert META_FIELDS <= set(meta), meta
        assert meta["url"] == origin.url() + d + ".tsv.gz"
        assert meta["size"] == os.path.getsize(gz)
        assert strip_etag(meta["etag"]) == strip_etag(origin.gets(d + ".tsv.gz")[0]["etag"])
        assert meta["last_modified"]
        assert read_bytes(m.cache_dir / (d + ".tsv")) == origin_tsv(sample_data, d)
        assert (m.cache_dir / (d + ".tsv.meta")).is_file()
        read_json(m.cache_dir / (d + ".tsv.meta"))
    data_names = {n for n in os.listdir(m.cache_dir) if not n.startswith(".")}
    assert data_names == set(DATA_NAMES) | {n + ".meta" for n in DATA_NAMES}
    partial = m.cache_dir / ".partial"
    assert not partial.exists() or os.listdir(partial) == [], os.listdir(partial)


@pytest.mark.timeout_s(90)
def test_download_in_progress_lives_under_partial(origin_factory, mount, big_data):
    origin = origin_factory(big_data.path)
    m = mount(origin.url("/slow/"))
    name = "title.principals.tsv.gz"
    reader = subprocess.Popen(["cat", str(m / name)], stdout=subprocess.PIPE)
    out = []
    t = threading.Thread(target=lambda: out.append(reader.stdout.read()))
    t.start()
    try:
        wait_for(lambda: (m.cache_dir / ".partial").is_dir() and os.listdir(m.cache_dir / ".partial"),
                 10, "a file under CACHE/.partial/ while downloading")
        assert reader.poll() is None, "download finished too soon for this test"
        assert not (m.cache_dir / name).exists(), "in-progress download under its final name"
        assert not (m.cache_dir / (name + ".meta")).exists()
    finally:
        t.join(60)
        reader.wait(10)
    assert reader.returncode == 0
    assert out[0] == origin_gz(big_data, "title.principals")
    wait_for(lambda: (m.cache_dir / name).exists(), 10, "the committed cache file")
    assert read_bytes(m.cache_dir / name) == out[0]


def test_rm_gz_evicts_and_refetches(origin, mount, sample_data):
    m = mount(origin.url())
    d = "title.ratings"
    assert read_bytes(m / (d + ".tsv")) == origin_tsv(sample_data, d)
    assert (m.cache_dir / (d + ".tsv.gz")).exists()
    os.unlink(m / (d + ".tsv.gz"))
    assert sorted(os.listdir(m.path)) == sorted(DATA_NAMES + [".control"])
    assert not (m.cache_dir / (d + ".tsv.gz")).exists()
    assert not (m.cache_dir / (d + ".tsv.gz.meta")).exists()
    assert not (m.cache_dir / (d + ".tsv")).exists(), "rm of .gz must evict the .tsv too"
    assert [f["name"] for f in m.control("files")["files"]] == []
    assert m.control("status")["datasets"][d]["state"] == "absent"
    mark = origin.mark()
    assert read_bytes(m / (d + ".tsv.gz")) == origin_gz(sample_data, d)
    assert len(origin.gets(d + ".tsv.gz", since=mark)) == 1


def test_rm_with_shell(origin, mount, sample_data):
    m = mount(origin.url())
    read_bytes(m / "title.crew.tsv.gz")
    run(["rm", "-f", m / "title.crew.tsv.gz"], check=True)
    assert not (m.cache_dir / "title.crew.tsv.gz").exists()
    assert "title.crew.tsv.gz" in os.listdir(m.path)


def test_rm_tsv_evicts_only_the_decompressed_copy(origin, mount, sample_data):
    m = mount(origin.url())
    d = "title.episode"
    m.command("full-process", d)
    assert m.wait_job() == 0
    assert (m.cache_dir / (d + ".tsv")).exists()
    os.unlink(m / (d + ".tsv"))
    assert not (m.cache_dir / (d + ".tsv")).exists()
    assert read_bytes(m.cache_dir / (d + ".tsv.gz")) == origin_gz(sample_data, d)
    names = sorted(f["name"] for f in m.control("files")["files"])
    assert names == [d + ".tsv.gz"]
    assert m.control("status")["datasets"][d]["state"] == "cached"
    mark = origin.mark()
    assert read_bytes(m / (d + ".tsv")) == origin_tsv(sample_data, d)
    origin.settle(quiet=0.1)
    assert origin.requests(mark) == [], "the .gz was cached: no request needed"


def read_rest_after_rm(handle, victim, first=1000):
    """Read `first` bytes from handle, rm victim, read the rest; return all bytes read."""
    head = handle.read(first)
    os.unlink(victim)
    return head + handle.read()


@pytest.mark.parametrize("name", ["title.principals.tsv.gz", "title.principals.tsv"])
def test_open_handle_of_a_cached_file_keeps_reading_after_rm(origin, mount, sample_data, name):
    m = mount(origin.url())
    m.command("full-process", "title.principals")
    assert m.wait_job() == 0
    want = read_bytes(m / name)
    with open(m / name, "rb", buffering=0) as f:
        assert read_rest_after_rm(f, m / "title.principals.tsv.gz") == want
    assert not (m.cache_dir / "title.principals.tsv.gz").exists()


@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("name", ["title.principals.tsv.gz", "title.principals.tsv"])
def test_open_handle_keeps_reading_after_rm_during_the_download(origin_factory, mount, big_data, name):
    origin = origin_factory(big_data.path)
    # fast_stat: the handle is opened during the download (by default the open of a cold .tsv,
    # whose fstat waits for its size, would come after the .tsv.gz is verified).
    m = mount(origin.url("/slow/"), extra_opts=["fast_stat"])
    want = origin_gz(big_data, "title.principals")
    if name.endswith(".tsv"):
        want = origin_tsv(big_data, "title.principals")
    with open(m / name, "rb", buffering=0) as f:
        got = read_rest_after_rm(f, m / "title.principals.tsv.gz")
    assert len(got) == len(want) and got == want


def test_tsv_of_a_cached_gz_needs_no_request(origin, mount, sample_data):
    m = mount(origin.url())
    read_bytes(m / "title.crew.tsv.gz")
    origin.settle(quiet=0.1)
    mark = origin.mark()
    assert read_bytes(m / "title.crew.tsv") == origin_tsv(sample_data, "title.crew")
    assert origin.requests(mark) == []


def test_remount_serves_everything_without_requests(origin, mount, sample_data, tmp_path):
    cache = tmp_path / "shared-cache"
    m = mount(origin.url(), cache_dir=cache)
    full_process(m)
    m.unmount()
    origin.settle(quiet=0.1)
    mark = origin.mark()
    m2 = mount(origin.url(), cache_dir=cache)
    for d in DATASETS:
        assert read_bytes(m2 / (d + ".tsv.gz")) == origin_gz(sample_data, d), d
        assert read_bytes(m2 / (d + ".tsv")) == origin_tsv(sample_data, d), d
        st = m2.control("status")["datasets"][d]
        assert st["state"] == "extracted", (d, st)
    origin.settle(quiet=0.2)
    assert origin.requests(mark) == [], "a remount with a fresh cache must not touch the origin"
    assert len(m2.control("files")["files"]) == 14


def test_remount_with_only_gz_cached(origin, mount, sample_data, tmp_path):
    cache = tmp_path / "shared-cache"
    m = mount(origin.url(), cache_dir=cache)
    m.command("download", "all")
    assert m.wait_job() == 0
    m.unmount()
    mark = origin.mark()
    m2 = mount(origin.url(), cache_dir=cache)
    for d in DATASETS:
        assert read_bytes(m2 / (d + ".tsv")) == origin_tsv(sample_data, d), d
    origin.settle(quiet=0.2)
    assert origin.requests(mark) == []


def test_stale_copy_is_revalidated_with_a_conditional_request(origin, mount, sample_data):
    m = mount(origin.url(), extra_opts=("max_age=0",))
    d = "title.ratings"
    assert read_bytes(m / (d + ".tsv.gz")) == origin_gz(sample_data, d)
    origin.settle(quiet=0.1)
    mark = origin.mark()
    time.sleep(1.1)
    assert read_bytes(m / (d + ".tsv.gz")) == origin_gz(sample_data, d)
    entries = wait_for(lambda: origin.requests(mark), 5, "a revalidation request")
    for e in entries:
        assert e["status"] == 304, e
        assert e["if_none_match"] or e["if_modified_since"], e


def new_origin_version(data_dir, dataset):
    """Replace dataset in data_dir with another version; returns its bytes."""
    path = data_dir / (dataset + ".tsv.gz")
    old = read_bytes(path)
    old_mtime = os.stat(path).st_mtime
    run([sys.executable, GEN_SAMPLE_DATA, "--version", "2", "--only", dataset, data_dir], check=True)
    os.utime(path, (old_mtime + 3600, old_mtime + 3600))
    new = read_bytes(path)
    assert new != old
    return new


def test_forced_download_gets_a_new_origin_version(origin_factory, mount, private_data):
    origin = origin_factory(private_data.path)
    m = mount(origin.url())
    d = "title.ratings"
    assert read_bytes(m / (d + ".tsv")) == origin_tsv(private_data, d)
    old = read_bytes(m / (d + ".tsv.gz"))
    with open(m / (d + ".tsv.gz"), "rb", buffering=0) as handle:
        first = handle.read(100)
        new = new_origin_version(private_data.path, d)
        m.command("download", d + " force")
        assert m.wait_job() == 0
        rest = handle.read()
    assert first + rest == old, "an open handle must keep reading the version it opened"
    r = m.control("download")
    assert r["downloaded_files"] == [d + ".tsv.gz"]
    assert read_bytes(m / (d + ".tsv.gz")) == new
    assert read_bytes(m / (d + ".tsv")) == origin_tsv(private_data, d)
    assert os.stat(m / (d + ".tsv.gz")).st_size == len(new)


def test_download_without_force_sees_a_new_version(origin_factory, mount, private_data):
    origin = origin_factory(private_data.path)
    m = mount(origin.url())
    m.command("download", "all")
    assert m.wait_job() == 0
    d = "title.crew"
    new = new_origin_version(private_data.path, d)
    m.command("download", "all")
    assert m.wait_job() == 0
    r = m.control("download")
    assert r["downloaded_files"] == [d + ".tsv.gz"]
    assert sorted(r["unchanged_files"]) == sorted(n + ".tsv.gz" for n in DATASETS if n != d)
    assert read_bytes(m / (d + ".tsv.gz")) == new
    assert read_bytes(m / (d + ".tsv")) == origin_tsv(private_data, d)


def test_cached_copy_is_served_while_the_origin_is_down(origin, mount, sample_data):
    m = mount(origin.url(), extra_opts=("max_age=0",),
              expected_errors=[r"title\.ratings\.tsv\.gz: .*(connect|failed)"])
    d = "title.ratings"
    assert read_bytes(m / (d + ".tsv.gz")) == origin_gz(sample_data, d)
    origin.stop()
    time.sleep(1.1)
    for _ in range(3):
        assert read_bytes(m / (d + ".tsv.gz")) == origin_gz(sample_data, d)
        assert read_bytes(m / (d + ".tsv")) == origin_tsv(sample_data, d)
    wait_for(lambda: m.control("health")["status"] == "degraded", 15,
             "health to say degraded while the origin is down")
    assert m.control("status")["datasets"][d]["cached"] is True


@pytest.mark.timeout_s(120)
def test_tsv_follows_the_gz_at_once_after_a_refresh(big_versions, origin_factory, mount,
                                                    tmp_path):
    """Right after a refresh commits a new .tsv.gz, the .tsv is the new version's (streamed from
    its re-extraction), never the old version's while that runs; a handle opened before keeps
    reading the old version. (DESIGN.md invariant 4)"""
    d = "title.principals"
    data = tmp_path / "origin-data"
    install_all(big_versions, 1, data)
    m = mount(origin_factory(data).url())
    assert read_bytes(m / (d + ".tsv")) == big_versions.tsv(1, d)
    with open(m / (d + ".tsv"), "rb", buffering=0) as old_handle:
        first = old_handle.read(1000)
        install_all(big_versions, 2, data, [d])
        m.command("download", d + " force")
        assert m.wait_job() == 0
        assert read_bytes(m / (d + ".tsv.gz")) == big_versions.gz(2, d)
        assert read_bytes(m / (d + ".tsv")) == big_versions.tsv(2, d)
        rest = old_handle.read()
    assert first + rest == big_versions.tsv(1, d)
    assert m.control("status")["datasets"][d]["state"] == "extracted"


@pytest.mark.timeout_s(60)
def test_handle_opened_while_arriving_keeps_its_size_after_a_refresh(versions, origin_factory,
                                                                    mount, tmp_path):
    """A handle opened while its file was still downloading reads that version to its end,
    whatever size later versions have: its inode's attributes never take the current size.
    (DESIGN.md invariant 5)"""
    d = "title.principals"
    data = tmp_path / "origin-data"
    install_all(versions, 1, data)
    v1, v2 = versions.gz(1, d), versions.gz(2, d)
    assert len(v1) != len(v2)
    m = mount(origin_factory(data).url("/slow200k/"))
    with open(m / (d + ".tsv.gz"), "rb", buffering=0) as handle:
        first = handle.read(1000)
        wait_for(lambda: m.control("status")["datasets"][d]["cached"], 30, "the download")
        install_all(versions, 2, data, [d])
        m.command("download", d + " force")
        assert m.wait_job(timeout=30) == 0
        assert read_bytes(m / (d + ".tsv.gz")) == v2
        time.sleep(1.5)  # past the attribute timeout: the kernel asks again
        assert os.fstat(handle.fileno()).st_size == len(v1)
        rest = handle.read()
    assert first + rest == v1


def _deleted_copies(m):
    """The removed files of m's cache its daemon still holds open."""
    fds, held = "/proc/%d/fd" % m.proc.pid, []
    for fd in os.listdir(fds):
        try:
            target = os.readlink(os.path.join(fds, fd))
        except FileNotFoundError:
            continue
        if target.startswith(str(m.cache_dir)) and target.endswith(" (deleted)"):
            held.append(target)
    return held


@pytest.mark.timeout_s(60)
def test_a_replaced_version_nobody_holds_is_closed(versions, origin_factory, mount, tmp_path):
    """Inodes hold their versions only while the kernel holds them: once a refresh replaced a
    copy that no handle reads, the name's old inode is dropped and the daemon closes the old
    copy, so its disk space comes back. (DESIGN.md invariant 5)"""
    d = "title.principals"
    data = tmp_path / "origin-data"
    install_all(versions, 1, data)
    m = mount(origin_factory(data).url())
    path = m / (d + ".tsv.gz")
    assert read_bytes(path) == versions.gz(1, d)
    assert os.stat(path).st_size == len(versions.gz(1, d))  # the committed copy's inode
    install_all(versions, 2, data, [d])
    m.command("download", d + " force")
    assert m.wait_job(timeout=30) == 0
    assert read_bytes(path) == versions.gz(2, d)
    wait_for(lambda: not _deleted_copies(m), 10, "the replaced copy closed")


@pytest.mark.timeout_s(60)
def test_an_open_through_an_old_inode_shares_the_feed_its_handle_reads(versions, origin_factory,
                                                                       mount, tmp_path):
    """A handle opened while its file was still arriving holds that version's feed. Once the
    download has committed, the file is removed and the origin has a new version, an open
    through that handle's inode (/proc/self/fd) reads the same version to its end, and the
    inode keeps that version's size. (DESIGN.md invariant 5)"""
    d = "title.principals"
    data = tmp_path / "origin-data"
    install_all(versions, 1, data)
    v1, v2 = versions.gz(1, d), versions.gz(2, d)
    assert len(v1) != len(v2)
    m = mount(origin_factory(data).url("/slow200k/"))
    path = m / (d + ".tsv.gz")
    with open(path, "rb", buffering=0) as handle:
        first = handle.read(1000)
        assert not m.control("status")["datasets"][d]["cached"], "downloaded too soon"
        wait_for(lambda: m.control("status")["datasets"][d]["cached"], 30, "the download")
        os.unlink(path)
        install_all(versions, 2, data, [d])
        through = "/proc/self/fd/%d" % handle.fileno()
        assert read_bytes(through) == v1
        assert os.stat(through).st_size == len(v1)
        time.sleep(1.5)  # past the attribute timeout: the kernel asks again
        assert os.stat(through).st_size == len(v1)
        rest = handle.read()
    assert first + rest == v1


@pytest.mark.timeout_s(60)
def test_an_inode_looked_up_while_arriving_reads_the_copy_a_handle_holds(versions, origin_factory,
                                                                          mount, tmp_path):
    """An inode the kernel looked up while its file was arriving (here held by O_PATH), a
    handle opened by name once the copy is committed (another inode, the same bytes), then rm
    and a new origin version: an open through the first inode reads those bytes while the
    handle holds them, and the current version once it is closed. (DESIGN.md invariant 5)"""
    d = "title.principals"
    data = tmp_path / "origin-data"
    install_all(versions, 1, data)
    v1, v2 = versions.gz(1, d), versions.gz(2, d)
    m = mount(origin_factory(data).url("/slow200k/"))
    path = m / (d + ".tsv.gz")
    inode = os.open(path, os.O_PATH)
    try:
        with open("/proc/self/fd/%d" % inode, "rb", buffering=0) as early:
            assert early.read(1000) == v1[:1000]  # starts the download, read on its feed
        assert not m.control("status")["datasets"][d]["cached"], "downloaded too soon"
        wait_for(lambda: m.control("status")["datasets"][d]["cached"], 30, "the download")
        time.sleep(1.5)  # past the entry timeout: the name gives the committed copy's inode
        with open(path, "rb", buffering=0) as handle:
            assert os.fstat(handle.fileno()).st_ino != os.fstat(inode).st_ino
            os.unlink(path)
            install_all(versions, 2, data, [d])
            assert read_bytes("/proc/self/fd/%d" % inode) == v1
            assert handle.read() == v1
        assert read_bytes("/proc/self/fd/%d" % inode) == v2
    finally:
        os.close(inode)


@pytest.mark.timeout_s(60)
def test_an_open_through_an_old_inode_never_changes_its_size(versions, origin_factory, mount,
                                                            tmp_path):
    """After rm and a new origin version, an open through the removed version's inode (here
    /proc/self/fd; in life a name the kernel has not looked up again yet) reads that version
    while a handle holds it, else the current one, each to its own end (a removed version
    nobody reads is gone, as a name looked up again within the kernel's entry timeout must not
    bring back what rm removed); the inode keeps its version's size throughout, and the name
    gives the new version. (DESIGN.md invariant 5)"""
    d = "title.principals"
    data = tmp_path / "origin-data"
    install_all(versions, 1, data)
    v1, v2 = versions.gz(1, d), versions.gz(2, d)
    assert len(v1) > len(v2)  # a cut at v2's size would show
    m = mount(origin_factory(data).url())
    path = m / (d + ".tsv.gz")
    assert read_bytes(path) == v1
    inode = os.open(path, os.O_PATH)  # holds the inode, opens nothing
    try:
        with open(path, "rb", buffering=0) as handle:
            first = handle.read(1000)
            os.unlink(path)
            install_all(versions, 2, data, [d])
            assert read_bytes("/proc/self/fd/%d" % handle.fileno()) == v1
            time.sleep(1.5)  # past the attribute timeout: the kernel asks again
            assert os.stat("/proc/self/fd/%d" % inode).st_size == len(v1)
            rest = handle.read()
        assert first + rest == v1
        assert read_bytes("/proc/self/fd/%d" % inode) == v2
        assert os.stat("/proc/self/fd/%d" % inode).st_size == len(v1)
    finally:
        os.close(inode)
    assert read_bytes(path) == v2
    assert os.path.getsize(path) == len(v2)
