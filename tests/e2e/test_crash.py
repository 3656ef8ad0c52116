"""kill -9 during refreshes, and restart recovery (issue 3).

The origin (nginx behind the fault proxy, throttled so that a refresh takes a while) serves
versions 1 and 2 of the seven files, with a big title.principals (see faulthelp.big_versions).
Each run of test_kill9_during_refresh_resumes publishes the other version, starts
`download all`, kills the daemon with SIGKILL at a random moment while title.principals is
arriving, checks the cache directory offline, remounts the same cache and checks that:
  - every committed file is a complete origin version, before and after the remount;
  - the partial download resumed: the first request after the remount asks for
    `Range: bytes=N-` (N = the bytes the partial held) with `If-Range: <its ETag>`, and nginx's
    access log shows that 206;
  - the bytes fetched for the file over the run (before and after the kill, as counted by the
    proxy, i.e. what was sent to imdbfs) stay under 1.2 x its size;
  - after the refresh every byte read through the mount is the new version.
Kill moments: N_KILLS runs kill at a random moment while title.principals's body arrives
(these must resume with Range), N_EARLY at any moment of the refresh's first 0.3 s, N_COMMIT
within 0.15 s after its last byte was sent (verification, fsync and renames under way; a
complete partial must then be committed without fetching again). Quick mode (default
`make test`): 20 + 5 + 5 runs, ~1 min. IMDBFS_STRESS=1: 60 + 15 + 15 runs, and a
title.principals twice as big. The seed is printed; IMDBFS_SEED=N replays a run's choices.

The other tests damage what a killed daemon left behind (a partial whose state is missing or
garbled, a partial whose bytes were corrupted, a cached copy that does not match its
metadata) and check that a remount never serves those bytes.
"""

import json
import os
import random
import time

import pytest

import util
from faulthelp import (BIG, DATA_FILE_ERRORS, STRESS, big_versions, fast_opts,  # noqa: F401
                       fault_proxy, install_all, seeded, versions, wait_idle)
from util import DATASETS, read_bytes, read_json, wait_for

BIG_GZ = BIG + ".tsv.gz"
SMALL = [d for d in DATASETS if d != BIG]
N_KILLS = 60 if STRESS else 20
N_EARLY = 15 if STRESS else 5
N_COMMIT = 15 if STRESS else 5
RATE = 16 << 20  # bytes/s per connection through the proxy


class Rig:
    def __init__(self, vs, origin, proxy, data, cache, mount):
        self.vs, self.origin, self.proxy, self.data, self.cache = vs, origin, proxy, data, cache
        self._mount = mount
        self.m = None

    def mount(self):
        self.m = self._mount(self.proxy.url(), cache_dir=self.cache,
                             extra_opts=fast_opts(retries=3),
                             expected_errors=DATA_FILE_ERRORS, expect_exit=None)
        return self.m

    def kill(self):
        """SIGKILL the daemon and clear its dead mount."""
        self.m.kill()
        self.m.proc.wait(10)
        self.m.unmount()
        assert self.m.returncode == -9, self.m.returncode

    def refresh(self, what="all"):
        self.m.command("download", what)
        rc = self.m.wait_job(timeout=120)
        res = self.m.control("download")
        assert rc == 0, res
        return res


@pytest.fixture
def rig(big_versions, origin_factory, fault_proxy, mount, tmp_path):
    data = tmp_path / "origin-data"
    install_all(big_versions, 1, data)
    origin = origin_factory(data)
    proxy = fault_proxy(origin, seed=5)
    r = Rig(big_versions, origin, proxy, data, tmp_path / "cache", mount)
    r.mount()
    r.refresh()
    for d in SMALL:  # extracted: a refresh re-extracts them, so kills hit extractions too
        assert read_bytes(r.m / (d + ".tsv")) == big_versions.tsv(1, d)
    wait_idle(r.m)
    return r


def check_cache_offline(rig, allowed):
    """With no daemon running: what the cache dir holds must be complete versions, and
    partials must be prefixes of a version. Returns {name: partial size} for .partial/."""
    vs, cache = rig.vs, rig.cache
    for d in DATASETS:
        gz = cache / (d + ".tsv.gz")
        assert gz.exists(), "%s: the committed copy disappeared" % d
        v = vs.which_gz(d, read_bytes(gz))
        assert v in allowed, "%s: the cache holds no complete origin version" % d
        tsv = cache / (d + ".tsv")
        if tsv.exists():
            assert vs.which_tsv(d, read_bytes(tsv)) is not None, "%s.tsv: not a complete version" % d
    partials = {}
    pdir = cache / ".partial"
    for name in (os.listdir(pdir) if pdir.exists() else []):
        path = pdir / name
        if name.endswith(".tsv.gz"):
            d = name[:-len(".tsv.gz")]
            data = read_bytes(path)
            assert any(vs.gz(v, d).startswith(data) for v in vs.numbers), \
                "%s: the partial is no version's prefix" % name
            partials[name] = len(data)
            state = pdir / (name + ".state")
            if state.exists():
                st = read_json(state)
                assert {"url", "etag", "total", "durable"} <= set(st), st
                assert 0 <= st["durable"] <= len(data), (st, len(data))
        elif name.endswith(".tsv"):
            d = name[:-len(".tsv")]
            data = read_bytes(path)
            assert any(vs.tsv(v, d).startswith(data) for v in vs.numbers), \
                "%s: the partial decompression is no version's prefix" % name
    return partials


def check_served(rig, v, big_tsv=False):
    """After a refresh to version v: the cache and every read through the mount are v."""
    m, vs = rig.m, rig.vs
    wait_idle(m, timeout=60)
    for d in DATASETS:
        assert vs.which_gz(d, read_bytes(rig.cache / (d + ".tsv.gz"))) == v, d
        assert util.sha256_file(m / (d + ".tsv.gz")) == vs.gz_hash[v, d], d
        if d != BIG or big_tsv:
            assert util.sha256_file(m / (d + ".tsv")) == vs.tsv_hash[v, d], d
    st = m.control("status")["datasets"]
    assert all(s["state"] in ("cached", "extracted") for s in st.values()), st
    assert m.control("health")["status"] == "healthy"


@pytest.mark.timeout_s(1200 if STRESS else 300)
def test_kill9_during_refresh_resumes(rig):
    seed = seeded("test_kill9_during_refresh_resumes")
    rng = random.Random(seed)
    vs, proxy = rig.vs, rig.proxy
    proxy.throttle(RATE)
    kinds = ["body"] * N_KILLS + ["early"] * N_EARLY + ["commit"] * N_COMMIT
    rng.shuffle(kinds)
    cur = 1
    resumed = 0
    early_body = 0
    ratios = []
    t0 = time.monotonic()
    for i, kind in enumerate(kinds):
        new = 2 if cur == 1 else 1
        where = "run %d (seed %d, kill %s, v%d -> v%d)" % (i, seed, kind, cur, new)
        try:
            install_all(vs, new, rig.data)
            size = len(vs.gz(new, BIG))
            mark = proxy.mark()
            rig.m.command("download", "all")
            if kind == "early":
                time.sleep(rng.uniform(0, 0.3))
            elif kind == "body":
                def started():
                    got = proxy.gets(BIG_GZ, since=mark)
                    return got and got[-1]["body_bytes"] > 0 and got[-1]
                e = wait_for(started, 20, "the body of %s to arrive" % BIG_GZ, interval=0.01)
                left = (size - e["body_bytes"]) / RATE
                time.sleep(rng.uniform(0, 0.85 * left))
            else:
                # The last byte has been sent: verification, fsync, renames are under way.
                wait_for(lambda: any(e["done"] and e["body_bytes"] == e["content_length"]
                                     for e in proxy.gets(BIG_GZ, since=mark)), 20,
                         "the whole body of %s to be sent" % BIG_GZ, interval=0.005)
                time.sleep(rng.uniform(0, 0.15))
            rig.kill()
            live = [e for e in proxy.gets(BIG_GZ, since=mark)]
            partials = check_cache_offline(rig, {cur, new})
            held = partials.get(BIG_GZ)
            state = None
            state_path = rig.cache / ".partial" / (BIG_GZ + ".state")
            if held:
                # No byte is written before the first checkpoint.
                state = read_json(state_path)
            elif held == 0 and not state_path.exists():
                # Killed between creating the temporary and its first checkpoint:
                # the mount removes it and the download starts from the first byte.
                held = None
            proxy.settle(quiet=0.05)
            mark2 = proxy.mark()
            omark = rig.origin.mark()
            rig.mount()
            rig.refresh()
            after = proxy.gets(BIG_GZ, since=mark2)
            if held and held < size:
                # Resumed where the partial stopped, tied to its version.
                assert after, "no request for %s after the remount" % BIG_GZ
                first = after[0]
                assert first["range"] == "bytes=%d-" % held, (first, held, state)
                assert first["if_range"] == state["etag"] == live[-1]["etag"], (first, state)
                assert first["status"] == 206, first
                # nginx's own log shows it too.
                rig.origin.settle(quiet=0.05)
                ranged = [e for e in rig.origin.gets(BIG_GZ, since=omark) if e["range"]]
                assert ranged and ranged[0]["range"] == "bytes=%d-" % held, ranged
                assert ranged[0]["if_range"] == state["etag"] and ranged[0]["status"] == 206
                resumed += 1
            elif held == size:
                # Complete but not committed when killed: committed without fetching again.
                assert sum(e["body_bytes"] for e in after) == 0, after
            elif held is None and after and after[0]["range"]:
                raise AssertionError("a download with no partial resumed: %r" % after[0])
            elif kind == "body":
                # The proxy had sent body bytes that imdbfs had not yet taken in.
                early_body += 1
            total = proxy.body_bytes(BIG_GZ, since=mark)
            if kind != "early":
                ratios.append(total / size)
                assert total < 1.2 * size, "fetched %d bytes for a %d-byte file" % (total, size)
            check_served(rig, new)
            leftovers = os.listdir(rig.cache / ".partial")
            assert leftovers == [], "leftovers in .partial after the refresh: %r" % leftovers
        except AssertionError as e:
            raise AssertionError("%s: %s\ndaemon log tail:\n%s" % (
                where, e, util.tail(rig.m.stderr_text(), 30))) from None
        cur = new
    print("kill -9 runs: %d (%d resumed with Range, %d before the first byte), fetched/size max %.3f mean %.3f, %.0f s" % (
        len(kinds), resumed, early_body, max(ratios), sum(ratios) / len(ratios), time.monotonic() - t0))
    assert resumed + early_body >= N_KILLS, (resumed, early_body)
    assert early_body <= N_KILLS // 4, "most kills during the body left nothing to resume"
    check_served(rig, cur, big_tsv=True)


def kill_mid_download(rig, v, min_bytes=1 << 20):
    """Publish version v, start refreshing it, SIGKILL once min_bytes of BIG arrived."""
    install_all(rig.vs, v, rig.data)
    rig.proxy.throttle(RATE)
    mark = rig.proxy.mark()
    rig.m.command("download", "all")
    wait_for(lambda: any(e["body_bytes"] >= min_bytes for e in rig.proxy.gets(BIG_GZ, since=mark)),
             20, "%d bytes of %s" % (min_bytes, BIG_GZ), interval=0.01)
    rig.kill()
    rig.proxy.throttle(None)
    part = rig.cache / ".partial" / BIG_GZ
    assert part.exists() and (rig.cache / ".partial" / (BIG_GZ + ".state")).exists()
    return part


@pytest.mark.timeout_s(120)
@pytest.mark.parametrize("damage", ["missing", "garbled", "other-url"])
def test_partial_without_valid_state_is_removed_at_mount(rig, damage):
    part = kill_mid_download(rig, 2)
    state = rig.cache / ".partial" / (BIG_GZ + ".state")
    if damage == "missing":
        state.unlink()
    elif damage == "garbled":
        state.write_text('{"url": "http://')
    else:
        st = read_json(state)
        st["url"] = "http://127.0.0.1:1/elsewhere/" + BIG_GZ
        state.write_text(json.dumps(st) + "\n")
    mark = rig.proxy.mark()
    rig.mount()
    if damage != "other-url":
        # Removed at mount, before any download could have picked it up.
        assert not part.exists(), "a partial without valid state survived the mount"
    rig.refresh()
    first = rig.proxy.gets(BIG_GZ, since=mark)[0]
    assert first["range"] == "" and first["status"] == 200, first
    check_served(rig, 2)
    assert os.listdir(rig.cache / ".partial") == []


@pytest.mark.timeout_s(120)
def test_corrupt_partial_never_commits_wrong_bytes(rig):
    """Bytes of a partial changed behind the daemon's back: whatever it resumes, it commits
    only a verified complete version. (DESIGN.md invariant 2)"""
    part = kill_mid_download(rig, 2)
    data = bytearray(read_bytes(part))
    pos = len(data) // 2
    data[pos] ^= 0xFF
    part.write_bytes(bytes(data))
    rig.mount()
    rig.m.command("download", "all")
    rig.m.wait_job(timeout=120)  # may fail once the corruption is found, or recover by itself
    wait_idle(rig.m)
    got = rig.vs.which_gz(BIG, read_bytes(rig.cache / BIG_GZ))
    assert got in (1, 2), "the cache holds no complete version"
    if got == 1:  # the refresh failed: a second one must succeed from scratch
        rig.refresh()
    check_served(rig, 2)


@pytest.mark.timeout_s(120)
@pytest.mark.parametrize("damage", ["truncated", "meta-size", "meta-missing"])
def test_cached_copy_not_matching_its_metadata_is_never_served(rig, damage):
    """A copy whose file or metadata was damaged while unmounted is fetched again, never
    served (DESIGN.md invariant 1)."""
    d = "title.crew"
    gz = rig.cache / (d + ".tsv.gz")
    meta = rig.cache / (d + ".tsv.gz.meta")
    rig.m.unmount()
    if damage == "truncated":
        gz.write_bytes(read_bytes(gz)[:-100])
    elif damage == "meta-size":
        st = read_json(meta)
        st["size"] += 1
        meta.write_text(json.dumps(st) + "\n")
    else:
        meta.unlink()
    mark = rig.proxy.mark()
    m = rig.mount()
    data = read_bytes(m / (d + ".tsv.gz"))
    assert data == rig.vs.gz(1, d), "a copy that does not match its metadata was served"
    assert rig.proxy.gets(d + ".tsv.gz", since=mark), "it should have been fetched again"
    assert read_bytes(m / (d + ".tsv")) == rig.vs.tsv(1, d)


@pytest.mark.timeout_s(120)
def test_unmount_mid_download_resumes_at_the_next_mount(rig):
    """Not only a crash: a clean unmount during a download keeps the partial and its state,
    and the next mount resumes it by itself (Range + If-Range), without any command.
    (DESIGN.md invariant 11)"""
    install_all(rig.vs, 2, rig.data)
    rig.proxy.throttle(RATE)
    mark = rig.proxy.mark()
    rig.m.command("download", "all")
    wait_for(lambda: any(e["body_bytes"] >= 1 << 20 for e in rig.proxy.gets(BIG_GZ, since=mark)),
             20, "1 MiB of %s" % BIG_GZ, interval=0.01)
    assert rig.m.unmount() == 0
    part = rig.cache / ".partial" / BIG_GZ
    held = len(read_bytes(part))
    state = read_json(str(part) + ".state")
    assert state["durable"] == held and held >= 1 << 20, (state, held)
    assert rig.vs.gz(2, BIG).startswith(read_bytes(part))
    rig.proxy.throttle(None)
    mark2 = rig.proxy.mark()
    rig.mount()
    # No command: the mount picks the download up by itself.
    wait_for(lambda: rig.vs.which_gz(BIG, read_bytes(rig.cache / BIG_GZ)) == 2
             if (rig.cache / BIG_GZ).exists() else False, 30, "the resumed download to commit")
    first = rig.proxy.gets(BIG_GZ, since=mark2)[0]
    assert first["range"] == "bytes=%d-" % held and first["if_range"] == state["etag"], first
    assert first["status"] == 206
    # Only what was in flight at the unmount is fetched twice.
    assert rig.proxy.body_bytes(BIG_GZ, since=mark) < 1.05 * len(rig.vs.gz(2, BIG))
    rig.refresh()
    check_served(rig, 2)
