"""A cache directory that someone else prepared (issue 12, findings 3, 4 and 13).

The cache dir is trusted only when it is the daemon's own: a symlinked `.partial`, a planted
symlink where a temporary will be written, a symlinked or FIFO entry, a directory owned by
another uid or writable by group or others, and a second daemon on the same directory are
each refused or ignored, and never let the daemon touch a file outside the cache. The last
tests trace the daemon's system calls (strace) to check that a download's commit and an
eviction are durable in the right order: fsync of the file, rename, fsync of the directory.
"""

import os
import re
import shutil
import stat
import subprocess
import time

import pytest

import util
from util import (imdbfs_bin, in_mount_table, lazy_unmount, mount_expecting_failure,
                  origin_gz, read_bytes, wait_for)

NAME = "title.ratings.tsv.gz"
NOBODY = 65534


def refusal(origin, cache, tmp_path):
    """Mount with cache_dir=cache, which must be refused: returns the one line on stderr."""
    opts = "origin=%s,cache_dir=%s" % (origin.url(), cache)
    code, err = mount_expecting_failure(tmp_path / "mnt-refused", opts, timeout=5)
    assert code != 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, "expected one clear line on stderr, got: %r" % err
    return lines[0]


def victim_dir(tmp_path):
    d = tmp_path / "victim"
    d.mkdir()
    for i in range(3):
        (d / ("precious%d" % i)).write_bytes(b"keep me %d\n" % i)
    return d


def assert_victims_intact(d):
    assert sorted(os.listdir(d)) == ["precious0", "precious1", "precious2"], os.listdir(d)
    for i in range(3):
        assert read_bytes(d / ("precious%d" % i)) == b"keep me %d\n" % i


def test_symlinked_partial_is_refused_and_its_target_survives(origin, tmp_path):
    victims = victim_dir(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    os.symlink(victims, cache / ".partial")
    line = refusal(origin, cache, tmp_path)
    assert ".partial" in line and "symbolic link" in line, line
    assert_victims_intact(victims)


def test_planted_meta_temporary_symlink_never_overwrites_its_target(origin, mount, sample_data,
                                                                     tmp_path):
    victim = tmp_path / "victim-file"
    victim.write_bytes(b"the victim's bytes\n")
    m = mount(origin.url())
    # Planted after the start-up sweep, where the commit writes the metadata's temporary.
    partial = m.cache_dir / ".partial"
    partial.mkdir(exist_ok=True)
    os.symlink(victim, partial / (NAME + ".meta.tmp"))
    os.symlink(victim, partial / (NAME + ".state.tmp"))
    assert read_bytes(m / NAME) == origin_gz(sample_data, "title.ratings")
    wait_for(lambda: (m.cache_dir / (NAME + ".meta")).exists(), 10, "the commit")
    assert read_bytes(victim) == b"the victim's bytes\n"
    assert not os.path.islink(m.cache_dir / (NAME + ".meta"))


def cache_a_copy(origin, mount):
    """Mounts, caches NAME, unmounts: returns the cache dir."""
    m = mount(origin.url())
    read_bytes(m / NAME)
    wait_for(lambda: (m.cache_dir / (NAME + ".meta")).exists(), 10, "the commit")
    assert m.unmount() == 0
    return m.cache_dir


def test_symlinked_copy_with_matching_metadata_is_not_served(origin, mount, sample_data,
                                                            tmp_path):
    cache = cache_a_copy(origin, mount)
    good = read_bytes(cache / NAME)
    other = tmp_path / "other-file"
    other.write_bytes(bytes(b ^ 0x5A for b in good))  # same size, other bytes
    os.unlink(cache / NAME)
    os.symlink(other, cache / NAME)
    mark = origin.mark()
    m = mount(origin.url(), cache_dir=cache)
    assert read_bytes(m / NAME) == good
    assert origin.gets(NAME, since=mark), "the file should have come from the origin"
    assert read_bytes(other) == bytes(b ^ 0x5A for b in good), "the link's target was changed"


def test_fifo_as_metadata_does_not_hang_the_mount(origin, mount, sample_data):
    cache = cache_a_copy(origin, mount)
    os.unlink(cache / (NAME + ".meta"))
    os.mkfifo(cache / (NAME + ".meta"))
    t0 = time.monotonic()
    m = mount(origin.url(), cache_dir=cache)  # fails if not mounted within 10 s
    assert time.monotonic() - t0 < 5
    mark = origin.mark()
    assert read_bytes(m / NAME) == origin_gz(sample_data, "title.ratings")
    assert origin.gets(NAME, since=mark), "a copy without readable metadata was served"


@pytest.mark.parametrize("where", ["cache_dir", ".partial"])
@pytest.mark.parametrize("how", ["owner", "0777", "0770", "0722"])
def test_cache_dir_not_our_own_is_refused(origin, tmp_path, where, how):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    (cache / ".partial").mkdir(mode=0o700)
    target = cache if where == "cache_dir" else cache / ".partial"
    if how == "owner":
        os.chown(target, NOBODY, -1)
    else:
        os.chmod(target, int(how, 8))
    line = refusal(origin, cache, tmp_path)
    assert str(target) in line, line
    if how == "owner":
        assert "owned by" in line, line
    else:
        assert "writable by" in line, line


def test_cache_dir_that_is_a_symlink_is_refused(origin, tmp_path):
    real = tmp_path / "real-cache"
    real.mkdir(mode=0o700)
    os.symlink(real, tmp_path / "cache")
    line = refusal(origin, tmp_path / "cache", tmp_path)
    assert "symbolic link" in line, line
    assert os.listdir(real) == []


def test_second_daemon_on_the_same_cache_dir_is_refused(origin, mount, sample_data, tmp_path):
    m = mount(origin.url())
    line = refusal(origin, m.cache_dir, tmp_path)
    assert "in use" in line and str(m.cache_dir) in line, line
    assert read_bytes(m / NAME) == origin_gz(sample_data, "title.ratings")
    assert m.control("health")["status"] == "healthy"


def test_the_lock_survives_daemonizing(origin, sample_data, tmp_path):
    """Without -f the daemon forks: the child that serves must still hold the lock."""
    cache, mnt = tmp_path / "cache", tmp_path / "mnt-daemon"
    mnt.mkdir()
    p = util.run([imdbfs_bin(), "-o", "origin=%s,cache_dir=%s" % (origin.url(), cache), mnt],
                 env=util.daemon_env(), universal_newlines=True)
    try:
        assert p.returncode == 0, p.stderr
        assert in_mount_table(mnt)
        line = refusal(origin, cache, tmp_path)
        assert "in use" in line, line
        assert read_bytes(mnt / NAME) == origin_gz(sample_data, "title.ratings")
    finally:
        lazy_unmount(mnt)


# ----------------------------------------------------------------- durability (strace)

SYSCALL = re.compile(r"^(\d+) +(\w+)\((.*)\) += (-?\d+)")
UNFINISHED = re.compile(r"^(\d+) +(\w+)\((.*) <unfinished \.\.\.>$")
RESUMED = re.compile(r"^(\d+) +<\.\.\. (\w+) resumed>(.*)\) += (-?\d+)")


def traced_mount(mount, origin, tmp_path, monkeypatch):
    strace = shutil.which("strace")
    assert strace, "strace is not installed (Debian package strace; scripts/install-deps.sh)"
    real, log = imdbfs_bin(), tmp_path / "strace.log"
    wrapper = tmp_path / "traced-imdbfs"
    # LeakSanitizer cannot run under ptrace (the other sanitizers can).
    wrapper.write_text("#!/bin/sh\nASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\" "
                       "exec %s -f -qq -y -o %s -e trace=fsync,fdatasync,rename,"
                       "renameat,renameat2,unlink,unlinkat,linkat %s \"$@\"\n"
                       % (strace, log, real))
    wrapper.chmod(0o755)
    monkeypatch.setenv("IMDBFS_BIN", str(wrapper))
    m = mount(origin.url())
    monkeypatch.setenv("IMDBFS_BIN", real)  # `imdbfs wait` and the like: not traced
    return m, log


def calls(log):
    """[(name, args)] of the successful calls in strace's log, in the order they returned
    (a call interrupted by another thread's is logged in two halves)."""
    out, pending = [], {}
    for line in log.read_text().splitlines():
        mo = SYSCALL.match(line)
        if mo:
            if mo.group(4) == "0":
                out.append((mo.group(2), mo.group(3)))
            continue
        mo = UNFINISHED.match(line)
        if mo:
            pending[mo.group(1)] = (mo.group(2), mo.group(3))
            continue
        mo = RESUMED.match(line)
        if mo and mo.group(1) in pending:
            name, args = pending.pop(mo.group(1))
            if mo.group(4) == "0":
                out.append((name, args + mo.group(3)))
    return out


def quoted(args):
    return re.findall(r'"([^"]*)"', args)


def index(seq, pred, what, start=0):
    for i in range(start, len(seq)):
        if pred(*seq[i]):
            return i
    raise AssertionError("no %s after call %d in:\n%s" % (what, start, "\n".join(
        "%s(%s)" % c for c in seq)))


def test_commit_and_eviction_are_fsynced_in_order(origin, mount, sample_data, tmp_path,
                                                   monkeypatch):
    m, log = traced_mount(mount, origin, tmp_path, monkeypatch)
    cache = str(m.cache_dir)
    partial = cache + "/.partial"
    assert read_bytes(m / NAME) == origin_gz(sample_data, "title.ratings")
    wait_for(lambda: (m.cache_dir / (NAME + ".meta")).exists(), 10, "the commit")
    m.command("download", "title.ratings force")  # a commit over an old pair
    assert m.wait_job() == 0, m.control("download")
    os.unlink(m / NAME)
    assert m.unmount() == 0
    seq = calls(log)

    def fsync_of(path):
        return lambda name, args: name in ("fsync", "fdatasync") and args.endswith("<%s>" % path)

    def rename(src, dst):
        return lambda name, args: name.startswith("rename") and quoted(args) == [src, dst]

    def unlink_in_cache(entry):
        return lambda name, args: (name.startswith("unlink") and quoted(args) == [entry]
                                   and "<%s>," % cache in args)

    # The commit: the data and its metadata's temporary durable, the old metadata gone,
    # then each rename followed by an fsync of the cache directory.
    data_sync = index(seq, fsync_of(partial + "/" + NAME), "fsync of the temporary")
    meta_sync = index(seq, fsync_of(partial + "/" + NAME + ".meta.tmp"), "fsync of the .meta.tmp")
    part_sync = index(seq, fsync_of(partial), "fsync of .partial", max(data_sync, meta_sync))
    data_mv = index(seq, rename(NAME, NAME), "rename of the data", part_sync)
    dir_sync1 = index(seq, fsync_of(cache), "fsync of the cache dir", data_mv)
    meta_mv = index(seq, rename(NAME + ".meta.tmp", NAME + ".meta"), "rename of the .meta",
                    dir_sync1)
    index(seq, fsync_of(cache), "fsync of the cache dir", meta_mv)
    # The forced refresh: the old pair is linked aside (and that made durable) before its
    # .meta goes, and the directory is fsynced between the unlink and each rename.
    link_data = index(seq, lambda n, a: n == "linkat" and quoted(a) == [NAME, NAME + ".old"],
                      "link of the old copy aside", meta_mv)
    link_meta = index(seq, lambda n, a: n == "linkat" and quoted(a) == [NAME + ".meta",
                                                                        NAME + ".meta.old"],
                      "link of the old .meta aside", link_data)
    part_sync = index(seq, fsync_of(partial), "fsync of .partial", link_meta)
    unl_old = index(seq, unlink_in_cache(NAME + ".meta"), "unlink of the old .meta", part_sync)
    dir_sync0 = index(seq, fsync_of(cache), "fsync of the cache dir", unl_old)
    data_mv = index(seq, rename(NAME, NAME), "rename of the data", dir_sync0)
    dir_sync1 = index(seq, fsync_of(cache), "fsync of the cache dir", data_mv)
    meta_mv = index(seq, rename(NAME + ".meta.tmp", NAME + ".meta"), "rename of the .meta",
                    dir_sync1)
    index(seq, fsync_of(cache), "fsync of the cache dir", meta_mv)
    # The eviction: metadata first, then the data, then the directory made durable.
    unl_meta = index(seq, unlink_in_cache(NAME + ".meta"), "unlink of the .meta", meta_mv)
    unl_data = index(seq, unlink_in_cache(NAME), "unlink of the data", unl_meta)
    index(seq, fsync_of(cache), "fsync of the cache dir", unl_data)
