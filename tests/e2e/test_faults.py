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
from faulthelp import (DATA_FILE_ERRORS, STRESS, fast_opts, fault_proxy, install_all,  # noqa: F401
                       random_safe_position, seeded, sha, versions)
from faultproxy import install_version
from util import DATASETS, GZ_NAMES, read_bytes, wait_for


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
    rng = random.Random(7)  # the proxy's seed
    assert cuts == [rng.randrange(len(want)) for _ in range(3)]


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
    assert entry["range"] == "bytes=100-" and entry["status"] == 200 and entry["fault"] == "no_ranges"
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
