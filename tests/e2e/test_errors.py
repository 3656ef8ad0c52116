"""Failures: missing origin files, refused writes, interrupted reads, bad options."""

import errno
import os
import signal
import subprocess

import pytest

from util import (DATA_NAMES, DENIED, GZ_NAMES, interrupt_after, mount_expecting_failure,
                  origin_gz, read_bytes, run)

# The ERROR lines a 404 may log: the download's, and the .tsv's that depended on it.
NOT_FOUND_ERRORS = [r"\.tsv(\.gz)?: .*(404|download failed)"]


def test_file_missing_at_origin_is_eio(origin, mount):
    m = mount(origin.url("/missing/"), expected_errors=NOT_FOUND_ERRORS)
    for name in ("title.ratings.tsv.gz", "title.ratings.tsv"):
        with pytest.raises(OSError) as e:
            read_bytes(m / name)
        assert e.value.errno == errno.EIO, (name, e.value)
    st = m.control("status")["datasets"]["title.ratings"]
    assert st["state"] == "failed", st
    assert st["error"] and "404" in str(st["error"]), st
    assert sorted(os.listdir(m.path)) == sorted(DATA_NAMES + [".control"])


def test_download_of_missing_files_reports_404(origin, mount):
    m = mount(origin.url("/missing/"), expected_errors=NOT_FOUND_ERRORS)
    m.command("download", "all")
    assert m.wait_job() == 1
    r = m.control("download")
    assert r["downloaded_files"] == []
    assert r["successful_downloads"] == 0
    assert r["total_files"] == 7
    assert sorted(f["file"] for f in r["failed_downloads"]) == sorted(GZ_NAMES)
    for f in r["failed_downloads"]:
        assert "404" in f["error"], f
    s = m.control("status")
    assert s["job"]["state"] == "failed"
    for d, st in s["datasets"].items():
        assert st["state"] == "failed", (d, st)
    assert m.control("files")["files"] == []
    # 404 is permanent: no retries.
    origin.settle(quiet=0.2)
    for name in GZ_NAMES:
        assert len(origin.gets(name)) == 1, (name, origin.gets(name))


def corrupt_trailer(path):
    """Change the gzip CRC of the last member: same length, wrong content."""
    data = bytearray(read_bytes(path))
    data[-8] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate_trailer(path):
    """Cut the last member's 8-byte trailer: the origin serves a consistent but short file."""
    path.write_bytes(read_bytes(path)[:-8])


@pytest.mark.parametrize("damage", [corrupt_trailer, truncate_trailer])
def test_file_failing_verification_is_eio_and_not_cached(origin_factory, mount, private_data, damage):
    d = "title.episode"
    damage(private_data / (d + ".tsv.gz"))
    origin = origin_factory(private_data.path)
    # Whether a bad download is retried is not the point here: keep retries short.
    m = mount(origin.url(), extra_opts=("retries=1", "retry_delay=0.05"),
              expected_errors=[r"title\.episode\.tsv(\.gz)?: .*(corrupt|failed)"])
    for name in (d + ".tsv.gz", d + ".tsv"):
        with pytest.raises(OSError) as e:
            read_bytes(m / name)
        assert e.value.errno == errno.EIO, (name, e.value)
    assert not (m.cache_dir / (d + ".tsv.gz")).exists(), "a file that failed verification was cached"
    assert not (m.cache_dir / (d + ".tsv")).exists()
    assert m.control("files")["files"] == []
    m.command("download", d)
    assert m.wait_job() == 1
    [failed] = m.control("download")["failed_downloads"]
    assert failed["file"] == d + ".tsv.gz" and failed["error"]


def test_missing_file_does_not_leave_cache_files(origin, mount):
    m = mount(origin.url("/missing/"), expected_errors=NOT_FOUND_ERRORS)
    with pytest.raises(OSError):
        read_bytes(m / "title.basics.tsv.gz")
    names = [n for n in os.listdir(m.cache_dir) if not n.startswith(".")]
    assert names == [], names


def assert_denied(fn, *args, also=()):
    with pytest.raises(OSError) as e:
        fn(*args)
    assert e.value.errno in DENIED | set(also), "%s%r: %s" % (fn.__name__, args, e.value)


def test_writes_are_refused_and_change_nothing(origin, mount, sample_data):
    m = mount(origin.url())
    cached = m / "title.basics.tsv.gz"
    read_bytes(cached)  # one cached, the others not
    cold = m / "title.crew.tsv"
    for path in (cached, cold, m / "title.basics.tsv"):
        assert_denied(os.open, path, os.O_WRONLY)
        assert_denied(os.open, path, os.O_RDWR)
        assert_denied(os.open, path, os.O_WRONLY | os.O_APPEND)
        assert_denied(os.truncate, path, 0)
        assert_denied(os.truncate, path, 10)
    for path in (m / "new.tsv", m / "title.basics.tsv.gz.tmp", m / ".control" / "new"):
        assert_denied(os.open, path, os.O_WRONLY | os.O_CREAT, 0o644)
        assert not os.path.exists(path)
    assert_denied(os.rename, cached, m / "renamed.tsv.gz")
    assert_denied(os.rename, cached, m / "title.ratings.tsv.gz")
    assert_denied(os.rename, m / ".control" / "health", m / ".control" / "health2")
    assert_denied(os.mkdir, m / "dir")
    assert_denied(os.mkdir, m / ".control" / "dir")
    # Operations a read-only tree may simply not implement.
    assert_denied(os.symlink, "title.basics.tsv.gz", m / "link", also={errno.ENOSYS})
    assert_denied(os.link, cached, m / "hardlink", also={errno.ENOSYS})
    assert_denied(os.rmdir, m / ".control", also={errno.ENOSYS, errno.EBUSY, errno.ENOTEMPTY})
    assert not os.path.lexists(m / "link") and not os.path.lexists(m / "hardlink")
    assert sorted(os.listdir(m.path)) == sorted(DATA_NAMES + [".control"])
    assert read_bytes(cached) == origin_gz(sample_data, "title.basics")
    assert os.stat(cached).st_size == len(origin_gz(sample_data, "title.basics"))


def test_shell_redirect_to_a_data_file_is_refused(origin, mount, sample_data):
    m = mount(origin.url())
    p = run(["sh", "-c", 'echo x > "$1"', "sh", m / "title.ratings.tsv.gz"])
    assert p.returncode != 0
    assert read_bytes(m / "title.ratings.tsv.gz") == origin_gz(sample_data, "title.ratings")


@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("name", ["title.principals.tsv.gz", "title.principals.tsv"])
def test_ctrl_c_ends_a_read_waiting_on_a_slow_download(origin_factory, mount, big_data, name):
    origin = origin_factory(big_data.path)
    m = mount(origin.url("/slow200k/"))
    cat = subprocess.Popen(["cat", str(m / name)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    took = interrupt_after(cat, 0.5, signal.SIGINT)
    assert took < 2, "cat took %.2f s to end after SIGINT" % took
    assert cat.returncode != 0
    # The mount still answers.
    assert m.control("health")["status"] in ("healthy", "degraded")
    assert "title.ratings.tsv.gz" in os.listdir(m.path)


@pytest.mark.parametrize("opt,key", [
    ("storage=floppy", "storage"),
    ("concurrency=0", "concurrency"),
    ("concurrency=lots", "concurrency"),
    ("origin=notaurl", "origin"),
    ("log_level=loud", "log_level"),
    ("max_age=soon", "max_age"),
])
def test_bad_option_fails_the_mount(origin, tmp_path, opt, key):
    opts = "origin=%s,cache_dir=%s,%s" % (origin.url(), tmp_path / "cache", opt)
    code, err = mount_expecting_failure(tmp_path / "mnt", opts)
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, "expected one clear line on stderr, got: %r" % err
    assert key in lines[0] or opt.split("=", 1)[1] in lines[0], lines[0]


def test_cache_dir_that_is_a_file_fails_the_mount(origin, tmp_path):
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    code, err = mount_expecting_failure(tmp_path / "mnt", "origin=%s,cache_dir=%s" % (origin.url(), f))
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, "expected one clear line on stderr, got: %r" % err
    assert str(f) in lines[0] or "cache_dir" in lines[0], lines[0]
    assert f.read_text() == "x"


def test_bad_environment_fails_the_mount(origin, tmp_path):
    code, err = mount_expecting_failure(tmp_path / "mnt", "cache_dir=%s" % (tmp_path / "cache"),
                                        env={"IMDBFS_ORIGIN": origin.url(), "IMDBFS_STORAGE": "floppy"})
    assert code != 0
    assert "storage" in err or "floppy" in err, err


def test_option_beats_environment(origin, mount):
    m = mount(origin.url(), env={"IMDBFS_CONCURRENCY": "5", "IMDBFS_MAX_AGE": "77"},
              extra_opts=("concurrency=2",))
    c = m.control("config")
    assert c["concurrency"] in (2, "2")
    assert c["max_age"] in (77, "77")
