"""A hostile origin (issue 12, findings 5 to 8), served by hostile_origin.py on loopback.

- A Content-Length of 2^50 with Accept-Ranges: the daemon's memory stays small, the download
  fails at once naming the size and max_size, the mount keeps answering.
- A 500 whose body never ends: the failure is reported within seconds, not held for ever.
- An https origin (a test CA made with openssl) that redirects to http://: refused, with a clear
  error, and no request reaches the http server; a redirect to another https server is followed.
- A gzip bomb into a 64 MB tmpfs cache: the extraction fails with a clear reason before the disk
  is full, and the .tsv.gz stays cached and served.
- An endless chunked body (no length) with a small max_size: it stops at max_size.
"""

import errno
import os
import threading
import time

import pytest

import util
from faulthelp import DATA_FILE_ERRORS, fast_opts, read_until_error, wait_idle
from hostile_origin import HostileOrigin, gzip_bomb
from util import read_bytes

D = "title.ratings"
GZ = D + ".tsv.gz"
TSV = D + ".tsv"
HUGE = 1 << 50
MIB = 1 << 20


@pytest.fixture
def hostile():
    """hostile(tls=None) -> a started HostileOrigin; stopped at teardown."""
    made = []

    def make(tls=None):
        o = HostileOrigin(tls=tls).start()
        made.append(o)
        return o

    yield make
    for o in made:
        o.stop()


def vm_rss(pid):
    """The resident set of a process, in bytes (VmRSS of /proc/PID/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def job_failure(m, key, name):
    """The error of name in the last job's result (key: failed_downloads, failed_extractions)."""
    res = m.control("download" if key == "failed_downloads" else "extract")
    failed = {f["file"]: f["error"] for f in res[key]}
    assert name in failed, res
    return failed[name]


def wait_job_within(m, seconds):
    """`imdbfs wait` that must end within seconds: (exit code, time taken)."""
    t0 = time.monotonic()
    p = m.cli("wait", "--timeout", str(seconds), timeout=seconds + 10)
    took = time.monotonic() - t0
    assert "still running" not in p.stderr, "the job was still running after %d s: %s" % (
        seconds, m.control("status")["datasets"][D])
    return p.returncode, took


# ----------------------------------------------------------------- 5: a huge Content-Length

RSS_LIMIT = 256 * MIB  # the daemon's own needs are a few tens of MB (more under ASan)


@pytest.mark.timeout_s(60)
def test_huge_content_length_is_refused_and_memory_stays_small(hostile, mount):
    o = hostile()
    o.files[GZ] = ("huge", HUGE)
    m = mount(o.url(), extra_opts=fast_opts(retries=0, timeout=5),
              expected_errors=DATA_FILE_ERRORS)
    pid = m.proc.pid
    m.command("download", D)
    most = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        most = max(most, vm_rss(pid))
        assert most < RSS_LIMIT, "the daemon's RSS reached %d MB" % (most >> 20)
        if not m.control("status").get("jobs_running"):
            break
        time.sleep(0.05)
    code, took = wait_job_within(m, 10)
    assert code == 1
    err = job_failure(m, "failed_downloads", GZ)
    assert str(HUGE) in err and "max_size" in err, err
    st = m.control("status")["datasets"][D]
    assert st["state"] == "failed" and str(HUGE) in (st["error"] or ""), st
    assert vm_rss(pid) < RSS_LIMIT
    # The mount stays responsive, and nothing of the refused file was kept.
    t0 = time.monotonic()
    m.control("health")
    os.stat(m / GZ)
    assert time.monotonic() - t0 < 1.0
    assert not (m.cache_dir / GZ).exists()
    partial = m.cache_dir / ".partial"
    assert not partial.exists() or os.listdir(partial) == [], os.listdir(partial)


# ----------------------------------------------------------------- 7: an endless error body

@pytest.mark.timeout_s(60)
def test_endless_error_body_is_reported_at_once(hostile, mount):
    o = hostile()
    o.files[GZ] = ("endless_error", 500)
    m = mount(o.url(), extra_opts=fast_opts(retries=2, retry_delay=0.2, timeout=30),
              expected_errors=DATA_FILE_ERRORS)
    m.command("download", D)
    # Each attempt ends promptly: the status shows the retry, with its reason, within seconds.
    st = util.wait_for(lambda: (lambda s: s if s["error"] else None)(
        m.control("status")["datasets"][D]), 5, "the 500 to show in status")
    assert "500" in st["error"], st
    code, took = wait_job_within(m, 10)
    assert code == 1 and took < 10, (code, took)
    err = job_failure(m, "failed_downloads", GZ)
    assert "HTTP 500" in err, err
    st = m.control("status")["datasets"][D]
    assert st["state"] == "failed" and "500" in st["error"], st
    # The first attempt and 2 retries (the mount's HEAD for the size besides).
    assert len(o.requests(GZ, "GET")) == 3, o.requests(GZ)


@pytest.mark.timeout_s(60)
def test_endless_redirect_body_is_cut(hostile, mount, sample_data):
    """curl reads a followed redirect's body itself (to keep the connection): it is bounded too."""
    o = hostile()
    o.files[GZ] = ("endless_redirect", o.url("/elsewhere/moved.gz"))
    o.files["moved.gz"] = ("bytes", read_bytes(sample_data / GZ))
    m = mount(o.url(), extra_opts=fast_opts(retries=2, retry_delay=0.2, timeout=30),
              expected_errors=DATA_FILE_ERRORS)
    m.command("download", D)
    code, took = wait_job_within(m, 10)
    assert code == 1 and took < 10, (code, took)
    err = job_failure(m, "failed_downloads", GZ)
    assert "HTTP 302" in err, err
    assert o.requests("moved.gz", "GET") == [], "the redirect was followed after an endless body"


# ----------------------------------------------------------------- 8: https -> http

def make_tls(tmp_path):
    """A test CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    d = tmp_path / "tls"
    d.mkdir()
    ca, ca_key = d / "ca.pem", d / "ca.key"
    cert, key, csr, ext = d / "server.pem", d / "server.key", d / "server.csr", d / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    for cmd in (
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=imdbfs test CA", "-keyout", ca_key, "-out", ca],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", key, "-out", csr],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
         "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert],
    ):
        util.run(cmd, check=True)
    return ca, cert, key


@pytest.mark.timeout_s(60)
def test_https_origin_never_redirects_to_http(hostile, mount, sample_data, tmp_path):
    ca, cert, key = make_tls(tmp_path)
    plain = hostile()
    secure = hostile(tls=(str(cert), str(key)))
    other = hostile(tls=(str(cert), str(key)))
    good = {n: read_bytes(sample_data / n) for n in (GZ, "title.crew.tsv.gz")}
    plain.files[GZ] = ("bytes", good[GZ])
    secure.files[GZ] = ("redirect", plain.url("/"))
    # A redirect to another https server is followed.
    other.files["title.crew.tsv.gz"] = ("bytes", good["title.crew.tsv.gz"])
    secure.files["title.crew.tsv.gz"] = ("redirect", other.url("/elsewhere/"))
    m = mount(secure.url(), extra_opts=fast_opts(retries=2, extra=["cafile=%s" % ca]),
              expected_errors=DATA_FILE_ERRORS)
    assert read_bytes(m / "title.crew.tsv.gz") == good["title.crew.tsv.gz"]
    m.command("download", D)
    code, took = wait_job_within(m, 10)
    assert code == 1
    err = job_failure(m, "failed_downloads", GZ)
    assert "redirect" in err and "http" in err, err
    assert plain.requests() == [], "a request reached the http server: %s" % plain.requests()
    assert len(secure.requests(GZ, "GET")) == 1, "a refused redirect is permanent, not retried"
    with pytest.raises(OSError) as e:
        read_bytes(m / GZ)
    assert e.value.errno == errno.EIO
    assert plain.requests() == []


# ----------------------------------------------------------------- 6: the disk budget

@pytest.fixture(scope="module")
def bomb():
    """A gzip of ~0.5 MB that inflates to 512 MiB of zeros."""
    return gzip_bomb(512 * MIB)


class FreeWatch:
    """Samples the free space of a filesystem on a thread; .least is the smallest seen."""

    def __init__(self, path):
        self.path = path
        self.least = free_bytes(path)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            self.least = min(self.least, free_bytes(self.path))
            time.sleep(0.001)

    def end(self):
        self.stop.set()
        self.thread.join()
        return self.least


def assert_budget_error(err):
    """A refusal by the budget (the space it needs, the space free), not a write hitting ENOSPC."""
    assert "No space left on device" in err and "free" in err, err
    assert "cannot write" not in err, err


@pytest.mark.timeout_s(90)
def test_gzip_bomb_extraction_is_refused_before_the_disk_fills(tmpfs, hostile, mount, bomb):
    cache = tmpfs("64m")
    o = hostile()
    o.files[GZ] = ("bytes", bomb)
    m = mount(o.url(), cache_dir=cache, extra_opts=fast_opts(retries=0),
              expected_errors=DATA_FILE_ERRORS)
    m.command("download", D)
    assert m.wait_job() == 0, m.control("download")
    assert read_bytes(cache / GZ) == bomb
    watch = FreeWatch(cache)
    m.command("extract", D)
    code, took = wait_job_within(m, 30)
    least = watch.end()
    assert code == 1
    err = job_failure(m, "failed_extractions", TSV)
    assert_budget_error(err)
    assert str(512 * MIB) in err, err  # the size it would need, known from the verified .gz
    assert least > 32 * MIB, "free space fell to %d bytes" % least
    st = m.control("status")["datasets"][D]
    assert st["cached"] is True and "No space left" in (st["error"] or ""), st
    # Nothing good is lost: the .tsv.gz stays cached and served, byte for byte.
    assert read_bytes(m / GZ) == bomb
    assert read_bytes(cache / GZ) == bomb
    assert not (cache / TSV).exists()
    assert os.listdir(cache / ".partial") == []


@pytest.mark.timeout_s(90)
def test_gzip_bomb_streamed_stops_before_the_disk_fills(tmpfs, hostile, mount, bomb):
    """A .tsv read while its .tsv.gz downloads: the size is not known, the output is bounded."""
    cache = tmpfs("64m")
    o = hostile()
    o.files[GZ] = ("bytes", bomb)
    m = mount(o.url(), cache_dir=cache, extra_opts=fast_opts(retries=0),
              expected_errors=DATA_FILE_ERRORS)
    watch = FreeWatch(cache)
    got, err_no = read_until_error(m / TSV, chunk=1 << 20)
    wait_idle(m)
    least = watch.end()
    assert err_no == errno.EIO, (err_no, len(got))
    assert got == bytes(len(got)) and len(got) < 64 * MIB
    assert least > 1 * MIB, "free space fell to %d bytes" % least
    [line] = [l for l in m.stderr_text().splitlines()
              if util.ERROR_LINE.match(l) and TSV + ": decompression failed" in l]
    assert_budget_error(line)
    assert "decompression stopped after" in line, line
    assert m.control("status")["datasets"][D]["cached"] is True
    assert read_bytes(m / GZ) == bomb
    # Now that the .tsv.gz is verified, its .tsv's size is known: refused before a byte.
    m.command("extract", D)
    assert m.wait_job() == 1
    assert_budget_error(job_failure(m, "failed_extractions", TSV))
    assert not (cache / TSV).exists()
    assert os.listdir(cache / ".partial") == []


@pytest.mark.timeout_s(60)
def test_endless_chunked_body_stops_at_max_size(tmpfs, hostile, mount):
    cache = tmpfs("64m")  # the old code wrote until ENOSPC: keep that off the real disk
    o = hostile()
    o.files[GZ] = ("chunked_gzip", None)
    m = mount(o.url(), cache_dir=cache, extra_opts=fast_opts(retries=0, extra=["max_size=4M"]),
              expected_errors=DATA_FILE_ERRORS)
    m.command("download", D)
    code, took = wait_job_within(m, 15)
    assert code == 1
    err = job_failure(m, "failed_downloads", GZ)
    assert "max_size" in err and str(4 * MIB) in err, err
    assert free_bytes(cache) > 56 * MIB
    assert m.control("config")["max_size"] == 4 * MIB
    st = m.control("status")["datasets"][D]
    assert st["state"] == "failed" and "max_size" in st["error"], st
    assert not (cache / GZ).exists()
    assert os.listdir(cache / ".partial") == []


@pytest.mark.timeout_s(60)
def test_gzip_bomb_stops_at_max_size(hostile, mount, bomb):
    """Whatever the free space, a .tsv longer than max_size is never written: streamed, it
    stops there; once its size is known from the verified .tsv.gz, it is refused at once."""
    o = hostile()
    o.files[GZ] = ("bytes", bomb)
    m = mount(o.url(), extra_opts=fast_opts(retries=0, extra=["max_size=8M"]),
              expected_errors=DATA_FILE_ERRORS)
    got, err_no = read_until_error(m / TSV, chunk=1 << 20)
    wait_idle(m)
    assert err_no == errno.EIO and len(got) <= 8 * MIB and got == bytes(len(got)), (err_no,
                                                                                   len(got))
    assert any(TSV in l and "decompression stopped at max_size=%d" % (8 * MIB) in l
               for l in m.stderr_text().splitlines() if util.ERROR_LINE.match(l))
    assert read_bytes(m / GZ) == bomb
    m.command("extract", D)
    assert m.wait_job() == 1
    err = job_failure(m, "failed_extractions", TSV)
    assert "decompression refused: %d bytes, more than max_size=%d" % (512 * MIB, 8 * MIB) in err
    assert not (m.cache_dir / TSV).exists()
