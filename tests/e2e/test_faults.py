"""Faults between imdbfs and the origin (issue 3): the fault proxy, then the daemon under it.

Part 1 checks the proxy itself (faultproxy.py) with curl: through it, clients get exactly
what nginx sends, and each fault does what it says.

Part 2 puts imdbfs behind the proxy: conditional refresh (304s), retries and their limits,
resume with Range + If-Range, a new version mid-download, corrupt data, EIO for readers of a
failed download, health/status/job reporting, and the randomized fault runs.

Randomized runs (test_randomized_fault_runs): 100 runs in the default `make test`
(IMDBFS_STRESS unset: quick mode, ~1-2 min) and 400 with IMDBFS_STRESS=1
(`make test-stress`). Each run draws its faults from a seed printed at the start of the test
and in its failure message; IMDBFS_SEED=N replays it.
"""

import errno
import os
import random
import subprocess
import threading
import time

import pytest

import util
from faulthelp import (DATA_FILE_ERRORS, STRESS, cache_ids, fast_opts, fault_proxy,  # noqa: F401
                       install_all, log_since, read_until_error, seeded, unsafe_offsets,
                       versions, wait_idle)
from util import DATASETS, GZ_NAMES, read_bytes


# ====================================================================== part 1: the proxy

def curl(url, *args, out=None, timeout=30):
    """Run curl; returns (exit code, headers text of the last response, body bytes)."""
    cmd = ["curl", "-s", "-S", "-D", "-", "--max-time", str(timeout), *args, url]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 5)
    raw = p.stdout
    # -D - puts the headers of each response before its body on stdout.
    head, sep, body = raw.partition(b"\r\n\r\n")
    while sep and body.startswith(b"HTTP/"):
        head, sep, body = body.partition(b"\r\n\r\n")
    return p.returncode, head.decode("latin-1"), body


def headers_of(text):
    lines = text.split("\r\n")
    status = int(lines[0].split()[1])
    h = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        h[k.strip().lower()] = v.strip()
    return status, h


PASSED_THROUGH = ("etag", "last-modified", "content-length", "content-range", "accept-ranges",
                  "content-type")


def same_response(a, b):
    ca, ha, ba = a
    cb, hb, bb = b
    assert ca == cb == 0, (ca, cb)
    sa, ha = headers_of(ha)
    sb, hb = headers_of(hb)
    assert sa == sb, (sa, sb)
    for k in PASSED_THROUGH:
        assert ha.get(k) == hb.get(k), (k, ha.get(k), hb.get(k))
    assert ba == bb
    return sa, ha, ba


NAME = "title.principals.tsv.gz"


@pytest.fixture
def proxied(origin_factory, private_data, fault_proxy):
    origin = origin_factory(private_data.path)
    proxy = fault_proxy(origin, seed=7)
    return origin, proxy, private_data


def test_proxy_passes_requests_and_responses_unchanged(proxied):
    origin, proxy, data = proxied
    want = read_bytes(data / NAME)
    status, h, body = same_response(curl(proxy.url() + NAME), curl(origin.url() + NAME))
    assert status == 200 and body == want and h["accept-ranges"] == "bytes"
    etag, lm = h["etag"], h["last-modified"]
    cases = [
        (["-H", "Range: bytes=1000-"], 206, want[1000:]),
        (["-H", "Range: bytes=10-19"], 206, want[10:20]),
        (["-H", "Range: bytes=1000-", "-H", "If-Range: " + etag], 206, want[1000:]),
        (["-H", "Range: bytes=1000-", "-H", 'If-Range: "other"'], 200, want),
        (["-H", "If-None-Match: " + etag], 304, b""),
        (["-H", "If-Modified-Since: " + lm], 304, b""),
        (["-H", 'If-None-Match: "other"'], 200, want),
    ]
    for args, want_status, want_body in cases:
        status, h2, body = same_response(curl(proxy.url() + NAME, *args),
                                         curl(origin.url() + NAME, *args))
        assert (status, body) == (want_status, want_body), args
    # 404 pages and HEAD go through too.
    same_response(curl(proxy.url() + "nothing.tsv.gz"), curl(origin.url() + "nothing.tsv.gz"))
    same_response(curl(proxy.url() + NAME, "-I"), curl(origin.url() + NAME, "-I"))
    # The proxy's log has what was asked and answered.
    log = proxy.gets(NAME)
    assert [e["status"] for e in log[:1]] == [200] and log[0]["body_bytes"] == len(want)
    assert log[3]["range"] == "bytes=1000-" and log[3]["if_range"] == etag
    assert log[5]["if_none_match"] == etag and log[5]["status"] == 304
    assert log[6]["if_modified_since"] == lm and log[6]["body_bytes"] == 0
    assert all(e["fault"] is None for e in log)


def test_proxy_keeps_connections_alive(proxied):
    origin, proxy, data = proxied
    url = proxy.url() + NAME
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-o", "/dev/null", "-w",
                        "%{num_connects}\n", url, url], stdout=subprocess.PIPE, timeout=30)
    assert p.returncode == 0
    assert p.stdout.split() == [b"1", b"0"], "the second request should reuse the connection"
    assert [e["status"] for e in proxy.gets(NAME)] == [200, 200]


def test_proxy_reset_short_drop_status(proxied):
    origin, proxy, data = proxied
    want = read_bytes(data / NAME)
    url = proxy.url() + NAME
    proxy.reset_at(5000, path=NAME)
    code, h, body = curl(url)
    assert code == 56 and body == want[:5000], (code, len(body))  # CURLE_RECV_ERROR (reset)
    proxy.short(7000, path=NAME)
    code, h, body = curl(url)
    assert code == 18 and body == want[:7000], (code, len(body))  # CURLE_PARTIAL_FILE
    assert headers_of(h)[1]["content-length"] == str(len(want))
    proxy.drop(path=NAME)
    code, h, body = curl(url)
    assert code == 52, code  # CURLE_GOT_NOTHING
    proxy.status(503, retry_after=3, path=NAME, times=2)
    for _ in range(2):
        code, h, body = curl(url)
        status, hh = headers_of(h)
        assert code == 0 and status == 503 and hh["retry-after"] == "3"
    code, h, body = curl(url)
    assert code == 0 and body == want, "a rule applies `times` times, then is gone"
    log = proxy.gets(NAME)
    assert [e["fault"] for e in log] == ["reset@5000", "short@7000", "drop",
                                        "status 503 retry_after=3", "status 503 retry_after=3",
                                        None]
    assert [e["body_bytes"] for e in log[:2]] == [5000, 7000]
    assert proxy.pending() == []


def test_proxy_random_reset_is_within_the_body_and_seeded(proxied):
    origin, proxy, data = proxied
    want = read_bytes(data / NAME)
    proxy.reset_at(None, path=NAME, times=3)
    cuts = []
    for _ in range(3):
        code, h, body = curl(proxy.url() + NAME)
        assert code == 56 and want.startswith(body) and len(body) < len(want)
        cuts.append(len(body))
    rng = random.Random(7)  # the proxy's seed gives the rule its generator
    rule_rng = random.Random(rng.randrange(1 << 32))
    assert cuts == [rule_rng.randrange(len(want)) for _ in range(3)]


def test_proxy_flip_stall_throttle(proxied):
    origin, proxy, data = proxied
    want = read_bytes(data / NAME)
    url = proxy.url() + NAME
    proxy.flip(1234, path=NAME)
    code, h, body = curl(url)
    assert code == 0 and len(body) == len(want)
    assert [i for i in range(len(want)) if body[i] != want[i]] == [1234]
    assert body[1234] == want[1234] ^ 0xFF
    proxy.stall(1.0, at_byte=100, path=NAME)
    t0 = time.monotonic()
    code, h, body = curl(url)
    assert code == 0 and body == want and time.monotonic() - t0 >= 0.95
    # A stall longer than the client's patience: curl's own low-speed limit gives up.
    proxy.stall(5, at_byte=100, path=NAME)
    code, h, body = curl(url, "--speed-limit", "1000", "--speed-time", "1")
    assert code == 28 and body == want[:100], (code, len(body))  # CURLE_OPERATION_TIMEDOUT
    proxy.throttle(len(want) * 2)  # the whole file in ~0.5 s
    t0 = time.monotonic()
    code, h, body = curl(url)
    assert code == 0 and body == want and time.monotonic() - t0 >= 0.4
    proxy.throttle(None)


def test_proxy_no_ranges(proxied):
    origin, proxy, data = proxied
    want = read_bytes(data / NAME)
    proxy.no_ranges(path=NAME, times=1)
    code, h, body = curl(proxy.url() + NAME, "-H", "Range: bytes=100-")
    status, hh = headers_of(h)
    assert code == 0 and status == 200 and body == want and "accept-ranges" not in hh
    entry = proxy.gets(NAME)[-1]
    assert entry["range"] == "bytes=100-" and entry["status"] == 200 and entry["no_ranges"]
    code, h, body = curl(proxy.url() + NAME, "-H", "Range: bytes=100-")
    assert headers_of(h)[0] == 206 and body == want[100:]


def test_proxy_switch_version(proxied, versions):
    origin, proxy, data = proxied
    old = read_bytes(data / NAME)
    new_path = versions.path(2, "title.principals")
    new = read_bytes(new_path)
    code, h, _ = curl(proxy.url() + NAME)
    old_etag = headers_of(h)[1]["etag"]
    proxy.switch_version(3000, new_path, path=NAME)
    code, h, body = curl(proxy.url() + NAME)
    assert code == 18 and body == old[:3000], (code, len(body))
    assert read_bytes(data / NAME) == new
    # A resume tied to the old version gets the whole new one (nginx honours If-Range).
    code, h, body = curl(proxy.url() + NAME, "-H", "Range: bytes=3000-", "-H", "If-Range: " + old_etag)
    status, hh = headers_of(h)
    assert code == 0 and status == 200 and body == new and hh["etag"] != old_etag
    assert hh["etag"] == headers_of(curl(origin.url() + NAME)[1])[1]["etag"]


def test_proxy_body_rule_waits_for_a_body(proxied):
    """A body fault is not used up by a response without a body (304, 404)."""
    origin, proxy, data = proxied
    want = read_bytes(data / NAME)
    code, h, _ = curl(proxy.url() + NAME)
    etag = headers_of(h)[1]["etag"]
    proxy.reset_at(10, path=NAME)
    code, h, body = curl(proxy.url() + NAME, "-H", "If-None-Match: " + etag)
    assert code == 0 and headers_of(h)[0] == 304
    assert len(proxy.pending()) == 1
    code, h, body = curl(proxy.url() + NAME)
    assert code == 56 and body == want[:10]
    # ranged=True rules only take ranged requests; a path rule only its path.
    proxy.reset_at(10, path=NAME, ranged=True)
    proxy.reset_at(10, path="title.crew")
    assert curl(proxy.url() + NAME)[2] == want
    code, h, body = curl(proxy.url() + NAME, "-H", "Range: bytes=5-")
    assert code == 56 and body == want[5:15]
    assert [r.path for r in proxy.pending()] == ["title.crew"]
    proxy.clear()
    assert proxy.pending() == []


def test_proxy_down_refuses_connections(proxied):
    origin, proxy, data = proxied
    proxy.set_down(True)
    code, h, body = curl(proxy.url() + NAME)
    assert code == 7, code  # CURLE_COULDNT_CONNECT
    proxy.set_down(False)
    code, h, body = curl(proxy.url() + NAME)
    assert code == 0 and body == read_bytes(data / NAME)


# ====================================================================== part 2: imdbfs behind it

EXPECTED = DATA_FILE_ERRORS
D = "title.basics"          # the dataset most targeted tests fault
DGZ = D + ".tsv.gz"
RETRIES = 3


class Env:
    """v1 of the seven files at an nginx origin, the proxy in front, imdbfs mounted on it."""

    def __init__(self, versions, origin, proxy, data, m):
        self.versions, self.origin, self.proxy, self.data, self.m = versions, origin, proxy, data, m

    def install(self, v, names=DATASETS):
        install_all(self.versions, v, self.data, names)

    def download(self, what="all"):
        """Run a download command to its end: (imdbfs wait's exit code, the job's result)."""
        self.m.command("download", what)
        rc = self.m.wait_job(timeout=60)
        return rc, self.m.control("download")

    def cached_version(self, d):
        p = self.m.cache_dir / (d + ".tsv.gz")
        return self.versions.which_gz(d, read_bytes(p)) if p.exists() else None


def make_env(versions, origin_factory, fault_proxy, mount, tmp_path, opts=None, cache=True):
    data = tmp_path / "origin-data"
    install_all(versions, 1, data)
    origin = origin_factory(data)
    proxy = fault_proxy(origin, seed=11)
    m = mount(proxy.url(), extra_opts=opts or fast_opts(retries=RETRIES),
              expected_errors=EXPECTED)
    env = Env(versions, origin, proxy, data, m)
    if cache:
        rc, res = env.download("all")
        assert rc == 0, res
        assert sorted(res["downloaded_files"]) == sorted(GZ_NAMES)
        for d in DATASETS:
            assert env.cached_version(d) == 1
    return env


@pytest.fixture
def env(versions, origin_factory, fault_proxy, mount, tmp_path):
    return make_env(versions, origin_factory, fault_proxy, mount, tmp_path)


def assert_old_copy_intact(env, d, before, v_old):
    """The committed copy is the same file as before (inode, mtime, bytes) and reads the same."""
    assert cache_ids(env.m.cache_dir, d) == before, "%s: the previous copy was touched" % d
    assert read_bytes(env.m / (d + ".tsv.gz")) == env.versions.gz(v_old, d)
    assert read_bytes(env.m / (d + ".tsv")) == env.versions.tsv(v_old, d)


def assert_failure_reported(env, d, needle, log_offset):
    """A failed download shows in the job result, status, health and the log."""
    res = env.m.control("download")
    failed = {f["file"]: f["error"] for f in res["failed_downloads"]}
    assert d + ".tsv.gz" in failed and needle in failed[d + ".tsv.gz"], res
    st = env.m.control("status")["datasets"][d]
    assert st["state"] == "failed" and st["cached"] is True, st
    assert st["error"] and needle in st["error"], st
    h = env.m.control("health")
    assert h["status"] == "degraded", h
    assert any(d in p and needle in p for p in h["problems"]), h
    errors = [line for line in log_since(env.m, log_offset).splitlines()
              if util.ERROR_LINE.match(line) and d in line]
    assert errors, "no ERROR line about %s in the daemon's log" % d


def test_refresh_without_change_transfers_no_body(env):
    mark = env.proxy.mark()
    before = {d: cache_ids(env.m.cache_dir, d) for d in DATASETS}
    rc, res = env.download("all")
    assert rc == 0, res
    assert sorted(res["unchanged_files"]) == sorted(GZ_NAMES), res
    assert res["downloaded_files"] == [] and res["failed_downloads"] == []
    for d in DATASETS:
        [e] = env.proxy.gets(d + ".tsv.gz", since=mark)
        assert e["status"] == 304 and e["body_bytes"] == 0, e
        assert e["if_none_match"] == e["etag"] and e["if_modified_since"], e
        assert e["range"] == "", e
    assert {d: cache_ids(env.m.cache_dir, d) for d in DATASETS} == before
    # nginx itself answered 304 to all of them, with no body.
    env.origin.settle(quiet=0.1)
    tail = env.origin.gets()[-7:]
    assert [e["status"] for e in tail] == [304] * 7 and sum(e["body_bytes_sent"] for e in tail) == 0
    # force refetches everything, unconditionally.
    mark = env.proxy.mark()
    rc, res = env.download("all force")
    assert rc == 0 and sorted(res["downloaded_files"]) == sorted(GZ_NAMES), res
    for d in DATASETS:
        [e] = env.proxy.gets(d + ".tsv.gz", since=mark)
        assert e["status"] == 200 and e["if_none_match"] == "" and e["body_bytes"] > 0, e


def test_changed_file_is_refetched_others_revalidated(env):
    env.install(2, [D])
    mark = env.proxy.mark()
    rc, res = env.download("all")
    assert rc == 0 and res["downloaded_files"] == [DGZ], res
    assert sorted(res["unchanged_files"]) == sorted(set(GZ_NAMES) - {DGZ})
    [e] = env.proxy.gets(DGZ, since=mark)
    assert e["status"] == 200 and e["if_none_match"] and e["if_none_match"] != e["etag"]
    assert env.cached_version(D) == 2
    assert read_bytes(env.m / DGZ) == env.versions.gz(2, D)
    wait_idle(env.m)
    assert read_bytes(env.m / (D + ".tsv")) == env.versions.tsv(2, D)


RESUMABLE = {
    "reset": lambda p, n: p.reset_at(n, path=DGZ),
    "short": lambda p, n: p.short(n, path=DGZ),
    "stall": lambda p, n: p.stall(12, at_byte=n, path=DGZ),
}
FROM_SCRATCH_OR_NO_BODY = {
    "500": lambda p, n: p.status(500, path=DGZ),
    "502": lambda p, n: p.status(502, path=DGZ),
    "503": lambda p, n: p.status(503, path=DGZ),
    "504": lambda p, n: p.status(504, path=DGZ),
    "408": lambda p, n: p.status(408, path=DGZ),
    "429": lambda p, n: p.status(429, retry_after=1, path=DGZ),
    "drop": lambda p, n: p.drop(path=DGZ),
    "flip": lambda p, n: p.flip(n, path=DGZ),
}


@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("fault", sorted(RESUMABLE) + sorted(FROM_SCRATCH_OR_NO_BODY))
def test_transient_fault_is_retried(env, fault):
    env.install(2, [D])
    new = env.versions.gz(2, D)
    cut = len(new) // 2
    (RESUMABLE.get(fault) or FROM_SCRATCH_OR_NO_BODY[fault])(env.proxy, cut)
    mark = env.proxy.mark()
    t0 = time.monotonic()
    rc, res = env.download(D)
    took = time.monotonic() - t0
    assert rc == 0 and res["downloaded_files"] == [DGZ], res
    assert env.cached_version(D) == 2
    assert read_bytes(env.m / DGZ) == new
    log = env.proxy.gets(DGZ, since=mark)
    assert len(log) == 2, log
    first, second = log
    assert first["fault"] and second["fault"] is None, log
    assert second["status"] in (200, 206)
    if fault in RESUMABLE:
        # Resumed where the first attempt stopped, tied to its version.
        assert second["range"] == "bytes=%d-" % cut, second
        assert second["if_range"] == first["etag"], second
        assert second["status"] == 206 and second["body_bytes"] == len(new) - cut
        assert first["body_bytes"] + second["body_bytes"] == len(new)
    elif fault == "flip":
        # Corrupt data: from scratch.
        assert second["range"] == "" and second["status"] == 200, second
    else:
        assert second["range"] == "" and second["if_none_match"] == first["if_none_match"]
    if fault == "429":
        assert took >= 0.9, "Retry-After: 1 was not honoured (%.2f s)" % took
    if fault == "stall":
        assert took < 4, "the stall was not cut short by timeout=2 (%.1f s)" % took
    st = env.m.control("status")["datasets"][D]
    assert st["state"] != "failed" and not st["retrying"], st
    assert env.m.control("health")["status"] == "healthy"
    wait_idle(env.m)
    assert read_bytes(env.m / (D + ".tsv")) == env.versions.tsv(2, D)


@pytest.mark.parametrize("code", [404, 410, 403, 401])
def test_permanent_fault_fails_at_once(env, code):
    env.install(2, [D])
    before = cache_ids(env.m.cache_dir, D)
    env.proxy.status(code, path=DGZ, times=None)
    mark, off = env.proxy.mark(), len(env.m.stderr_text())
    rc, res = env.download(D)
    assert rc == 1, res
    assert len(env.proxy.gets(DGZ, since=mark)) == 1, "a permanent fault must not be retried"
    assert_failure_reported(env, D, str(code), off)
    assert_old_copy_intact(env, D, before, 1)
    env.proxy.clear()
    rc, res = env.download(D)
    assert rc == 0 and env.cached_version(D) == 2
    assert env.m.control("health")["status"] == "healthy"


@pytest.mark.parametrize("fault", ["503", "reset", "flip", "refused"])
def test_retries_are_bounded_and_keep_the_old_copy(env, fault):
    env.install(2, [D])
    new = env.versions.gz(2, D)
    before = cache_ids(env.m.cache_dir, D)
    p = env.proxy
    if fault == "503":
        p.status(503, path=DGZ, times=None)
    elif fault == "reset":
        p.reset_at(None, path=DGZ, times=None)
    elif fault == "flip":
        p.flip(len(new) // 3, path=DGZ, times=None)
    else:
        p.set_down(True)
    mark, off = p.mark(), len(env.m.stderr_text())
    rc, res = env.download(D)
    assert rc == 1, res
    if fault != "refused":
        assert len(p.gets(DGZ, since=mark)) == RETRIES + 1, p.gets(DGZ, since=mark)
    needle = {"503": "503", "reset": "", "flip": "corrupt", "refused": ""}[fault]
    assert_failure_reported(env, D, needle, off)
    assert_old_copy_intact(env, D, before, 1)
    p.clear()
    p.set_down(False)
    rc, res = env.download(D)
    assert rc == 0 and env.cached_version(D) == 2, res
    assert env.m.control("health")["status"] == "healthy"


def test_failed_download_resumes_at_the_next_attempt(env):
    """A download that gave up keeps its partial and state; the next command resumes it."""
    env.install(2, [D])
    new = env.versions.gz(2, D)
    cut = len(new) // 2
    env.proxy.short(cut, path=DGZ)
    env.proxy.status(503, path=DGZ, times=RETRIES)
    rc, res = env.download(D)
    assert rc == 1, res
    part = env.m.cache_dir / ".partial" / DGZ
    state = util.read_json(str(part) + ".state")
    assert {"url", "etag", "last_modified", "total", "durable"} <= set(state), state
    assert state["url"] == env.proxy.url() + DGZ and state["total"] == len(new)
    assert state["durable"] == cut and read_bytes(part) == new[:cut]
    assert env.cached_version(D) == 1
    mark = env.proxy.mark()
    rc, res = env.download(D)
    assert rc == 0 and res["downloaded_files"] == [DGZ], res
    [e] = env.proxy.gets(DGZ, since=mark)
    assert e["range"] == "bytes=%d-" % cut and e["if_range"] == state["etag"] and e["status"] == 206
    assert env.cached_version(D) == 2
    assert not part.exists() and not os.path.exists(str(part) + ".state")


def test_new_version_mid_download_starts_over(env):
    env.install(2, [D])
    v2, v3 = env.versions.gz(2, D), env.versions.gz(3, D)
    env.proxy.switch_version(len(v2) // 2, env.versions.path(3, D), path=DGZ)
    mark = env.proxy.mark()
    rc, res = env.download(D)
    assert rc == 0, res
    first, second = env.proxy.gets(DGZ, since=mark)
    assert first["fault"].startswith("switch@")
    assert second["range"] == "bytes=%d-" % (len(v2) // 2) and second["if_range"] == first["etag"]
    assert second["status"] == 200 and second["etag"] != first["etag"], second
    assert read_bytes(env.m.cache_dir / DGZ) == v3
    assert read_bytes(env.m / DGZ) == v3
    wait_idle(env.m)
    assert read_bytes(env.m / (D + ".tsv")) == env.versions.tsv(3, D)
    meta = util.read_json(env.m.cache_dir / (DGZ + ".meta"))
    assert meta["etag"] == second["etag"] and meta["size"] == len(v3)


def test_origin_without_ranges_restarts_from_scratch(env):
    env.install(2, [D])
    v2 = env.versions.gz(2, D)
    env.proxy.no_ranges(path=DGZ)
    env.proxy.reset_at(len(v2) // 2, path=DGZ)
    mark = env.proxy.mark()
    rc, res = env.download(D)
    assert rc == 0, res
    first, second = env.proxy.gets(DGZ, since=mark)
    assert second["range"] and second["no_ranges"] and second["status"] == 200
    assert second["body_bytes"] == len(v2)
    assert read_bytes(env.m / DGZ) == v2


@pytest.mark.parametrize("name", [DGZ, D + ".tsv"])
def test_reader_of_a_failed_download_gets_eio(env, name):
    """A cold read whose download fails ends in EIO past the bytes served, never a short EOF.
    (DESIGN.md invariant 6)"""
    os.unlink(env.m / DGZ)  # not cached any more: a read fetches
    gz = env.versions.gz(1, D)
    cut = len(gz) // 2
    env.proxy.short(cut, path=DGZ)                       # bytes arrive, then the body ends early
    env.proxy.status(503, path=DGZ, times=RETRIES)       # and every retry fails
    data, err = read_until_error(env.m / name)
    assert err == errno.EIO, (err, len(data))
    want = gz if name == DGZ else env.versions.tsv(1, D)
    assert want.startswith(data), "the bytes before the EIO are not the origin's"
    if name == DGZ:
        assert len(data) <= cut
    assert not (env.m.cache_dir / DGZ).exists()
    st = env.m.control("status")["datasets"][D]
    assert st["state"] == "failed" and st["cached"] is False and "503" in st["error"], st


def test_reader_rides_through_a_resumed_download(env):
    os.unlink(env.m / DGZ)
    gz = env.versions.gz(1, D)
    env.proxy.throttle(len(gz) * 4)
    env.proxy.reset_at(len(gz) // 3, path=DGZ)
    env.proxy.short(len(gz) // 2, path=DGZ, ranged=True)
    data, err = read_until_error(env.m / DGZ, chunk=4096)
    assert err is None and data == gz
    assert [e["status"] for e in env.proxy.gets(DGZ)[-3:]] == [200, 206, 206]


@pytest.mark.timeout_s(60)
def test_stale_copy_is_served_at_once_while_revalidating(versions, origin_factory, fault_proxy,
                                                         mount, tmp_path):
    env = make_env(versions, origin_factory, fault_proxy, mount, tmp_path,
                   opts=fast_opts(retries=RETRIES, extra=["max_age=1"]))
    time.sleep(1.5)
    env.install(2, [D])
    env.proxy.stall(1.5, at_byte=0, path=DGZ)  # the origin is slow to answer the revalidation
    mark = env.proxy.mark()
    t0 = time.monotonic()
    data = read_bytes(env.m / DGZ)
    assert time.monotonic() - t0 < 1.0, "a stale copy must be served at once"
    assert data == env.versions.gz(1, D)
    e = util.wait_for(lambda: env.proxy.gets(DGZ, since=mark), 10, "a revalidation request")[0]
    assert e["if_none_match"] and e["if_modified_since"], e
    util.wait_for(lambda: env.cached_version(D) == 2, 15, "the background refresh to commit v2")
    assert read_bytes(env.m / DGZ) == env.versions.gz(2, D)


# ====================================================================== randomized runs

N_RUNS = 400 if STRESS else 100
TRANSIENT_CODES = [500, 502, 503, 504, 429, 408]
PERMANENT_CODES = [404, 403]


class RandomRun:
    """One run: origin changes, faults per dataset, an action, then every check."""

    def __init__(self, env, rng, index, flip_ok, stall_s):
        self.env, self.rng, self.index = env, rng, index
        self.flip_ok = flip_ok
        self.stall_s = stall_s
        self.faults = {}  # dataset -> [description]

    def draw_faults(self, d, allow_stall):
        p, r, vs = self.env.proxy, self.rng, self.env.versions
        name = d + ".tsv.gz"
        k = r.choices(range(7), weights=[26, 26, 18, 12, 8, 6, 4])[0]
        out = []
        if r.random() < 0.08:
            p.no_ranges(path=name)
            out.append("no_ranges")
        for _ in range(k):
            kind = r.choices(["reset", "short", "status", "drop", "flip", "switch", "stall",
                              "permanent"], weights=[28, 14, 22, 6, 14, 8, 4, 3])[0]
            if kind == "stall" and not allow_stall:
                kind = "reset"
            if kind == "reset":
                p.reset_at(None, path=name)
            elif kind == "short":
                p.short(r.randrange(0, 60000), path=name)
            elif kind == "status":
                code = r.choice(TRANSIENT_CODES)
                p.status(code, retry_after=0 if code in (429, 503) and r.random() < 0.5 else None,
                         path=name)
                kind = "status %d" % code
            elif kind == "permanent":
                code = r.choice(PERMANENT_CODES)
                p.status(code, path=name)
                kind = "status %d" % code
            elif kind == "drop":
                p.drop(path=name)
            elif kind == "flip":
                at = r.choice(self.flip_ok[d])
                p.flip(at, mask=r.choice([0x01, 0x80, 0xFF]), path=name, ranged=False)
                kind = "flip@%d" % at
            elif kind == "switch":
                v = r.choice(vs.numbers)
                p.switch_version(r.randrange(0, 50000), vs.path(v, d), path=name)
                kind = "switch->v%d" % v
            elif kind == "stall":
                p.stall(self.stall_s, at_byte=r.randrange(0, 30000), path=name)
                allow_stall = False
            out.append(kind)
        self.faults[d] = out
        return allow_stall


def failed_attempt(e):
    """Did this request fail because of an injected fault (as far as the client could tell)?"""
    f = e["fault"]
    if not f:
        return False
    if f.startswith("stall"):
        # A stall the client sat out still delivered the whole body.
        return e["body_bytes"] < (e["content_length"] or 0) or e["error"] is not None
    return True


def permanent(e):
    return bool(e["fault"]) and e["fault"].split()[:2] in (["status", "404"], ["status", "403"])


def split_transfers(reqs, retries):
    """The requests of one file, cut where a transfer gave up: after a permanent fault, or
    after retries + 1 failed attempts."""
    out, seg = [], []
    for e in reqs:
        seg.append(e)
        if permanent(e) or (len(seg) == retries + 1 and failed_attempt(e)):
            out.append(seg)
            seg = []
    if seg or not out:
        out.append(seg)
    return out


def restarted(reqs):
    """Did the download have to start over (its readers then get EIO)?"""
    etags = {e["etag"] for e in reqs if e["status"] in (200, 206) and e["etag"]}
    return len(etags) > 1 or any((e["fault"] or "").startswith("flip") for e in reqs)


@pytest.mark.timeout_s(1800 if STRESS else 420)
def test_randomized_fault_runs(versions, origin_factory, fault_proxy, mount, tmp_path):
    """N_RUNS refreshes of all seven files under random faults; after each, every byte read
    through the mount or found in the cache is a complete origin version, a failed refresh left
    the previous copy untouched, and outcomes match what the origin was seen to do.
    (DESIGN.md invariant 2)"""
    seed = seeded("test_randomized_fault_runs")
    rng = random.Random(seed)
    env = make_env(versions, origin_factory, fault_proxy, mount, tmp_path)
    m, proxy, vs = env.m, env.proxy, env.versions
    retries = RETRIES
    flip_ok = {}
    for d in DATASETS:
        bad = unsafe_offsets(vs, d)
        flip_ok[d] = [i for i in range(min(len(vs.gz(v, d)) for v in vs.numbers)) if i not in bad]
    origin_v = {d: 1 for d in DATASETS}
    for d in DATASETS:  # extract all: refreshes then re-extract, reads check the .tsv too
        assert read_bytes(m / (d + ".tsv")) == vs.tsv(1, d)
    stats = {"runs": 0, "ok": 0, "failed": 0, "unchanged": 0, "faults": 0, "eio_reads": 0}
    t_start = time.monotonic()
    for i in range(N_RUNS):
        run_seed = rng.randrange(1 << 31)
        r = random.Random(run_seed)
        where = "run %d of %d (test seed %d, run seed %d)" % (i, N_RUNS, seed, run_seed)
        run = RandomRun(env, r, i, flip_ok, stall_s=3.5)
        try:
            one_random_run(env, run, r, origin_v, retries, stats)
        except AssertionError as e:
            raise AssertionError("%s: %s\nfaults: %r\nproxy log: %r" % (
                where, e, run.faults, proxy.requests(run.mark)[-40:])) from None
        stats["runs"] += 1
    took = time.monotonic() - t_start
    print("randomized fault runs: %r in %.0f s" % (stats, took))
    assert stats["ok"] > 0 and stats["failed"] > 0 and stats["faults"] >= N_RUNS


def one_random_run(env, run, r, origin_v, retries, stats):
    m, proxy, vs = env.m, env.proxy, env.versions
    # The origin publishes new versions of some files.
    for d in DATASETS:
        if r.random() < 0.5:
            v = r.choice([x for x in vs.numbers if x != origin_v[d]])
            install_all(vs, v, env.data, [d])
            origin_v[d] = v
    mode = r.choices(["download", "force", "read", "down"], weights=[70, 10, 17, 3])[0]
    targets = DATASETS if mode != "read" else r.sample(DATASETS, r.randint(1, 3))
    allow_stall = r.random() < 0.10
    if mode != "down":
        for d in targets:
            allow_stall = run.draw_faults(d, allow_stall)
            stats["faults"] += len(run.faults[d])
    before = {d: cache_ids(m.cache_dir, d) for d in DATASETS}
    old_v = {d: env.cached_version(d) for d in DATASETS}
    run.mark = proxy.mark()
    log_off = len(m.stderr_text())
    readers = {}
    job = None
    if mode in ("download", "force"):
        m.command("download", "all force" if mode == "force" else "all")
        rc = m.wait_job(timeout=120)
        job = m.control("download")
        assert rc == (1 if job["failed_downloads"] else 0), (rc, job)
    elif mode == "down":
        proxy.set_down(True)
        try:
            m.command("download", "all")
            rc = m.wait_job(timeout=120)
            job = m.control("download")
        finally:
            proxy.set_down(False)
        assert rc == 1 and len(job["failed_downloads"]) == 7, job
    else:
        for d in targets:
            os.unlink(m / (d + ".tsv.gz"))
            assert not (m.cache_dir / (d + ".tsv.gz")).exists()
        threads = []
        for d in targets:
            for name in (d + ".tsv.gz", d + ".tsv"):
                def read(name=name):
                    readers[name] = read_until_error(m / name, chunk=r.choice([4096, 65536]))
                t = threading.Thread(target=read)
                t.start()
                threads.append(t)
        for t in threads:
            t.join(120)
            assert not t.is_alive(), "a reader hung"
    wait_idle(m, timeout=60)
    proxy.settle(quiet=0.05)
    proxy.clear()
    # The origin's versions now (switch_version faults may have changed them).
    for d in DATASETS:
        origin_v[d] = vs.which_gz(d, read_bytes(env.data / (d + ".tsv.gz")))
    status = m.control("status")["datasets"]
    log = log_since(m, log_off)
    failed_now = set()
    for d in DATASETS:
        name = d + ".tsv.gz"
        reqs = [e for e in proxy.gets(name, since=run.mark)]
        cached_v = env.cached_version(d)
        st = status[d]
        if d not in targets:
            # Untouched this run: the same copy, still served.
            assert reqs == [], (d, reqs)
            assert cache_ids(m.cache_dir, d) == before[d], "%s changed without a transfer" % d
            if st["state"] == "failed":
                failed_now.add(d)
            continue
        if job is not None:
            failed = {f["file"]: f["error"] for f in job["failed_downloads"]}
            if name in failed:
                outcome = "failed"
            elif name in job["unchanged_files"]:
                outcome = "unchanged"
            else:
                assert name in job["downloaded_files"], (name, job)
                outcome = "downloaded"
            error = failed.get(name)
        else:
            outcome = "failed" if st["state"] == "failed" else "downloaded"
            error = st["error"]
        # Readers opened after a transfer gave up start another one (read mode only).
        transfers = split_transfers(reqs, retries) if mode == "read" else [reqs]
        for seg in transfers:
            assert len(seg) <= retries + 1, "%s: %d requests, retries=%d" % (d, len(seg), retries)
            for e in seg[:-1]:
                assert failed_attempt(e), "%s: request after a good response: %r" % (d, reqs)
        reqs = transfers[-1]
        if outcome == "failed":
            stats["failed"] += 1
            failed_now.add(d)
            assert error, (d, job, st)
            assert st["state"] == "failed" and st["error"], (d, st)
            if mode == "down":
                assert reqs == []
            else:
                assert reqs and failed_attempt(reqs[-1]), \
                    "%s failed but its last request went well: %r (%s)" % (d, reqs, error)
                if not permanent(reqs[-1]):
                    assert len(reqs) == retries + 1, \
                        "%s gave up after %d requests (retries=%d): %s" % (d, len(reqs), retries, error)
            assert any(util.ERROR_LINE.match(line) and d in line for line in log.splitlines()), \
                "no ERROR line for %s" % d
            if mode == "read":
                assert cached_v is None and st["cached"] is False
            else:
                # The previous copy: the same file, untouched.
                assert cache_ids(m.cache_dir, d) == before[d], "%s: old copy touched" % d
                assert cached_v == old_v[d], (d, cached_v, old_v[d])
                assert st["cached"] is (before[d][0] is not None), (d, before[d], st)
        else:
            stats["ok"] += 1
            assert st["state"] != "failed", (d, st)
            if reqs:
                assert not failed_attempt(reqs[-1]), (d, reqs)
            if outcome == "unchanged":
                stats["unchanged"] += 1
                assert reqs and reqs[-1]["status"] == 304, (d, reqs)
                assert cache_ids(m.cache_dir, d) == before[d]
                assert cached_v == old_v[d] == origin_v[d]
            else:
                assert not reqs or reqs[-1]["status"] in (200, 206), (d, reqs)
                if reqs:
                    assert cached_v == origin_v[d], \
                        "%s: committed v%s, the origin has v%s" % (d, cached_v, origin_v[d])
                else:
                    assert cached_v is not None  # a complete partial committed without a request
        # Readers (read mode): a complete version, or EIO; never a short or mixed file.
        for kind in ("gz", "tsv"):
            got = readers.get(d + (".tsv.gz" if kind == "gz" else ".tsv"))
            if got is None:
                continue
            data, err = got
            full = vs.gz if kind == "gz" else vs.tsv
            if err is None:
                assert outcome != "failed", "%s.%s read cleanly but the download failed" % (d, kind)
                assert data == full(cached_v, d), "%s.%s: a clean read is not the committed version" % (d, kind)
            else:
                stats["eio_reads"] += 1
                assert err == errno.EIO, (d, kind, err)
                assert outcome == "failed" or restarted(reqs) or len(transfers) > 1, \
                    "%s.%s: EIO although the download succeeded without a restart: %r" % (d, kind, reqs)
                if not any(f.startswith("flip") for f in run.faults.get(d, [])):
                    assert any(full(v, d).startswith(data) for v in vs.numbers), \
                        "%s.%s: %d bytes before EIO are no version's prefix" % (d, kind, len(data))
    # Every copy in the cache and every byte read through the mount is a complete version.
    for d in DATASETS:
        cached_v = env.cached_version(d)
        gz_path = m.cache_dir / (d + ".tsv.gz")
        if gz_path.exists():
            assert cached_v is not None, "%s: the cached .tsv.gz is no origin version" % d
            meta = util.read_json(str(gz_path) + ".meta")
            assert meta["size"] == os.path.getsize(gz_path)
            assert read_bytes(m / (d + ".tsv.gz")) == vs.gz(cached_v, d)
            assert read_bytes(m / (d + ".tsv")) == vs.tsv(cached_v, d), "%s.tsv is stale" % d
        elif d not in failed_now:
            raise AssertionError("%s: not cached although nothing failed" % d)
    h = m.control("health")
    if failed_now:
        assert h["status"] == "degraded", (failed_now, h)
        for d in failed_now:
            assert any(p.startswith(d + ":") for p in h["problems"]), (d, h)
    else:
        assert h["status"] == "healthy", h


def test_a_fault_being_retried_shows_in_status_and_health(env):
    env.install(2, [D])
    env.proxy.status(503, retry_after=2, path=DGZ)  # honoured (capped at 60 x retry_delay = 3 s)
    env.m.command("download", D)

    def retrying():
        st = env.m.control("status")["datasets"][D]
        return st["retrying"] and st
    st = util.wait_for(retrying, 1.5, "status to show the retry")
    assert "503" in (st["error"] or ""), st
    h = env.m.control("health")
    assert h["status"] == "degraded" and any(D in p and "503" in p for p in h["problems"]), h
    assert env.m.wait_job(timeout=30) == 0
    st = env.m.control("status")["datasets"][D]
    assert not st["retrying"] and st["state"] != "failed", st
    assert env.m.control("health")["status"] == "healthy"
    assert env.cached_version(D) == 2
