"""Segmented downloads (issue 7): -o segments=N against an origin that limits each connection.

The big_data fixture's title.principals.tsv.gz (~10 MB) comes from nginx's `/slow/` (2 MB/s per
connection) or `/seg/` (512 KB/s per connection). With segments=4 the file is cut into pieces of
1 MiB (the smallest: an eighth of each connection's share is less) taken in file order: the
first connection streams piece 0 from byte 0 (a plain GET, cut off at the end of piece 0) and
the others ask for `Range: bytes=a-b` with `If-Range: <ETag>`, one piece after another over a
kept-alive connection; at the end an idle connection takes over the second half of a piece still
arriving. Checked: the bytes are exact; every piece is asked for once, and only halves of pieces
besides; readers get the first line long before the end; four connections are much faster than
one; a reset inside piece 3 is retried from where it stopped; a new version in the middle
restarts the download and the result is one complete version; kill -9 and a remount resume from
the verified prefix.
"""

import random
import re
import subprocess
import threading
import time

import pytest

import util
from faulthelp import DATA_FILE_ERRORS, STRESS, fast_opts, fault_proxy, install_all  # noqa: F401
from faulthelp import seeded
from faulthelp import big_versions, versions  # noqa: F401
from util import origin_gz, origin_tsv, read_bytes, wait_for

BIG = "title.principals"
GZ = BIG + ".tsv.gz"
TSV = BIG + ".tsv"


PIECE = 1 << 20


def piece_ranges(size):
    """The Range headers of pieces 1.. of a fresh download of size bytes."""
    return ["bytes=%d-%d" % (a, min(a + PIECE, size) - 1) for a in range(PIECE, size, PIECE)]


def parse_range(header):
    a, b = re.match(r"bytes=(\d+)-(\d+)$", header).groups()
    return int(a), int(b)


def timed_read(path):
    t0 = time.monotonic()
    data = read_bytes(path)
    return data, time.monotonic() - t0


@pytest.mark.timeout_s(90)
def test_segments_exact_ranged_and_streaming(big_data, origin_factory, mount):
    origin = origin_factory(big_data.path)
    # fast_stat: by default a .tsv's open waits for its size (the whole .tsv.gz verified).
    m = mount(origin.url("/seg/"), extra_opts=["segments=4", "fast_stat"])
    want = origin_gz(big_data, BIG)
    t0 = time.monotonic()
    head = subprocess.run(["head", "-1", str(m / TSV)], stdout=subprocess.PIPE, timeout=30)
    head_s = time.monotonic() - t0
    got, _ = timed_read(m / GZ)
    total_s = time.monotonic() - t0
    assert got == want
    assert read_bytes(m / TSV) == origin_tsv(big_data, BIG)
    assert head.returncode == 0 and head.stdout.startswith(b"tconst\t")
    assert head_s < 1.5 and total_s > 2 * head_s + 1, (head_s, total_s)
    origin.settle()
    gets = origin.gets(GZ)
    plain = [e for e in gets if not e["range"]]
    ranged = [e for e in gets if e["range"]]
    assert len(plain) == 1 and plain[0]["status"] == 200, gets
    assert plain[0]["body_bytes_sent"] < len(want) // 2, "the first connection stops at segment 0"
    ranges = [e["range"] for e in ranged]
    pieces = piece_ranges(len(want))
    assert sorted(r for r in ranges if r in pieces) == sorted(pieces), gets
    splits = [r for r in ranges if r not in pieces]
    for r in splits:  # second halves of pieces still arriving, taken over at the end
        a, b = parse_range(r)
        assert a % PIECE and (b + 1) % PIECE in (0, len(want) % PIECE), r
        assert b + 1 - a >= 256 * 1024, r
    # The last pieces start together and two connections are left idle: they split.
    assert splits and "split off a piece still arriving" in m.stderr_text(), gets
    assert all(e["status"] == 206 and e["if_range"] == plain[0]["etag"] for e in ranged), gets
    # Connections cut off at a piece's end: only what sat in socket buffers comes twice.
    assert sum(e["body_bytes_sent"] for e in gets) < len(want) * 1.1
    assert "4 segments" in m.stderr_text()
    assert "pieces of %d bytes" % PIECE in m.stderr_text()


@pytest.mark.timeout_s(90)
def test_four_segments_beat_one(big_data, origin_factory, mount):
    origin = origin_factory(big_data.path)
    want = origin_gz(big_data, BIG)
    one = mount(origin.url("/slow/"), extra_opts=["segments=1"])
    got1, t1 = timed_read(one / GZ)
    four = mount(origin.url("/slow/"), extra_opts=["segments=4"])
    got4, t4 = timed_read(four / GZ)
    assert got1 == want and got4 == want
    print("segments=1: %.2f s, segments=4: %.2f s" % (t1, t4))
    assert t1 >= 1.8 * t4, (t1, t4)
    # Below 64 MiB the default is one connection.
    assert one.control("config")["segments"] == 1
    assert four.control("config")["segments"] == 4


@pytest.mark.timeout_s(90)
def test_fault_in_piece_3_is_retried_from_where_it_stopped(big_data, origin_factory, mount,
                                                          fault_proxy):
    origin = origin_factory(big_data.path)
    proxy = fault_proxy(origin, seed=3)
    want = origin_gz(big_data, BIG)
    seg3 = piece_ranges(len(want))[2]
    start3, end3 = parse_range(seg3)
    cut = 700000
    proxy.reset_at(cut, path=GZ, range=seg3)
    m = mount(proxy.url("/slow/"), extra_opts=["segments=4"] + fast_opts())
    assert read_bytes(m / GZ) == want
    assert read_bytes(m / TSV) == origin_tsv(big_data, BIG)
    proxy.settle()
    gets = proxy.gets(GZ)
    faulted = [e for e in gets if e["fault"]]
    assert len(faulted) == 1 and faulted[0]["range"] == seg3, gets
    again = [e for e in gets if e["range"] == "bytes=%d-%d" % (start3 + cut, end3)]
    assert len(again) == 1 and again[0]["status"] == 206, gets
    assert again[0]["if_range"] == faulted[0]["etag"]
    assert sum(e["body_bytes"] for e in gets) < len(want) + len(want) // 2
    assert "bytes from %d" % (start3 + cut) in m.stderr_text()


@pytest.mark.timeout_s(120)
def test_new_version_mid_download_restarts(big_versions, origin_factory, mount, fault_proxy,
                                           tmp_path):
    data = tmp_path / "origin-data"
    install_all(big_versions, 1, data)
    origin = origin_factory(data)
    proxy = fault_proxy(origin, data_dir=data, seed=4)
    size1 = len(big_versions.gz(1, BIG))
    seg2 = piece_ranges(size1)[1]
    proxy.switch_version(300000, big_versions.path(2, BIG), path=GZ, range=seg2)
    m = mount(proxy.url("/slow/"), extra_opts=["segments=4"] + fast_opts())
    # Readers of the abandoned version get EIO (as without segments): read once it is done.
    m.command("download", BIG)
    assert m.wait_job(timeout=90) == 0, m.control("download")
    got = read_bytes(m / GZ)
    assert big_versions.which_gz(BIG, got) == 2, "not one complete version"
    assert big_versions.which_tsv(BIG, read_bytes(m / TSV)) == 2
    proxy.settle()
    gets = proxy.gets(GZ)
    assert any(e["fault"] and e["fault"].startswith("switch") for e in gets), gets
    # The segment asked again with the old ETag and got the new file: a 200, not a 206.
    assert any(e["range"] and e["status"] == 200 for e in gets), gets
    assert "new version" in m.stderr_text()


@pytest.mark.timeout_s(120)
def test_kill9_then_remount_resumes(big_data, origin_factory, mount, tmp_path):
    origin = origin_factory(big_data.path)
    want = origin_gz(big_data, BIG)
    cache = tmp_path / "cache"
    opts = ["segments=4"]
    m = mount(origin.url("/seg/"), cache_dir=cache, extra_opts=opts, expect_exit=None)
    m.command("download", BIG)

    def verified():
        st = m.control("status")["datasets"][BIG]
        return st["bytes_done"] >= 1 << 20 and st

    wait_for(verified, 20, "a verified MiB of the segmented download")
    time.sleep(1.2)  # past a checkpoint of that MiB
    m.kill()
    m.proc.wait(10)
    m.unmount()
    partial = cache / ".partial" / (GZ + ".state")
    assert partial.exists(), "the killed download left no partial"
    origin.settle()
    mark = origin.mark()
    before = sum(e["body_bytes_sent"] for e in origin.gets(GZ))
    assert before < len(want)
    m2 = mount(origin.url("/seg/"), cache_dir=cache, extra_opts=opts)
    assert read_bytes(m2 / GZ) == want
    assert read_bytes(m2 / TSV) == origin_tsv(big_data, BIG)
    origin.settle()
    after = origin.gets(GZ, since=mark)
    first = after[0]
    assert first["range"].startswith("bytes=") and first["range"] != "bytes=0-", after
    assert first["if_range"] and first["status"] == 206, after
    fetched = before + sum(e["body_bytes_sent"] for e in after)
    print("fetched %d bytes for a file of %d (%.2fx)" % (fetched, len(want),
                                                        fetched / len(want)))
    assert fetched < 1.7 * len(want), (fetched, len(want))


N_RANDOM_RUNS = 100 if STRESS else 20


def draw_piece_faults(proxy, r, big_versions):
    """Up to four one-shot faults on the ranged requests (the pieces) or the first connection;
    returns their descriptions and whether they allow the download to fail."""
    out, may_fail, switches = [], False, 0
    for _ in range(r.choices(range(5), weights=[10, 30, 30, 20, 10])[0]):
        kind = r.choices(["reset", "short", "status", "drop", "switch", "permanent"],
                         weights=[30, 20, 25, 10, 10, 5])[0]
        ranged = r.random() < 0.8
        if kind == "reset":
            proxy.reset_at(None, path=GZ, ranged=ranged)
        elif kind == "short":
            proxy.short(r.randrange(0, 600000), path=GZ, ranged=ranged)
        elif kind == "status":
            kind = "status %d" % r.choice([500, 502, 503, 429])
            proxy.status(int(kind.split()[1]), path=GZ, ranged=ranged)
        elif kind == "drop":
            proxy.drop(path=GZ, ranged=ranged)
        elif kind == "switch":
            v = r.choice(big_versions.numbers)
            proxy.switch_version(r.randrange(0, 600000), big_versions.path(v, BIG), path=GZ,
                                 ranged=ranged)
            kind = "switch->v%d" % v
            switches += 1
        else:
            kind = "status 404"
            proxy.status(404, path=GZ, ranged=ranged)
            may_fail = True
        out.append("%s%s" % (kind, " (ranged)" if ranged else ""))
    return out, may_fail or switches > 3


@pytest.mark.timeout_s(900 if STRESS else 240)
def test_randomized_faults_in_pieces(big_versions, origin_factory, mount, fault_proxy, tmp_path):
    """N_RANDOM_RUNS forced downloads of a ~20 MB file over 4 connections, each with random
    one-shot faults on its pieces and first connection (resets, short bodies, 5xx and 429,
    dropped connections, a new version mid-piece, a 404). After each: the mount serves one
    complete version; a download that succeeded has the origin's current bytes, one that failed
    left the previous copy; with transient faults only (fewer than the retries) it succeeds."""
    seed = seeded("test_randomized_faults_in_pieces")
    rng = random.Random(seed)
    data = tmp_path / "origin-data"
    install_all(big_versions, 1, data)
    origin = origin_factory(data)
    proxy = fault_proxy(origin, data_dir=data, seed=seed)
    m = mount(proxy.url("/"), extra_opts=["segments=4"] + fast_opts(),
              expected_errors=DATA_FILE_ERRORS)
    good = read_bytes(m / GZ)
    assert good == big_versions.gz(1, BIG)
    stats = {"ok": 0, "failed": 0, "faults": 0}
    for i in range(N_RANDOM_RUNS):
        r = random.Random(rng.randrange(1 << 31))
        if r.random() < 0.3:
            install_all(big_versions, r.choice(big_versions.numbers), data, [BIG])
        proxy.clear()
        faults, may_fail = draw_piece_faults(proxy, r, big_versions)
        stats["faults"] += len(faults)
        where = "run %d (seed %d): faults %r" % (i, seed, faults)
        m.command("download", BIG + " force")
        rc = m.wait_job(timeout=120)
        got = read_bytes(m / GZ)
        assert big_versions.which_gz(BIG, got), where + ": not one complete version"
        if rc == 0:
            assert got == read_bytes(data / GZ), where + ": not the origin's current version"
            stats["ok"] += 1
        else:
            assert may_fail, "%s: failed: %r" % (where, m.control("download"))
            assert got == good, where + ": the failed download replaced the copy"
            stats["failed"] += 1
        good = got
        if i % 5 == 4 or i == N_RANDOM_RUNS - 1:
            assert big_versions.which_tsv(BIG, read_bytes(m / TSV)) == \
                big_versions.which_gz(BIG, got), where
    proxy.clear()
    print("randomized piece faults: %r" % stats)
    assert stats["ok"] > 0 and stats["faults"] >= N_RANDOM_RUNS
