"""Concurrency (issue 3): 32 readers across all 14 files while the origin publishes new
versions and refreshes, rm, delete and extract run in a loop.

For DURATION seconds (60 in the default `make test`, 180 with IMDBFS_STRESS=1), 32 reader
threads open random data files and read them to the end (in random chunk sizes, some slowly
so that their handle outlives refreshes and evictions, some with random-access preads), while
mutator threads publish new origin versions, run `download` (sometimes `force`), `extract`,
`full-process` and `delete` commands, and `rm` files. The daemon runs with max_age=2, so
stale copies are also revalidated in the background, behind the proxy throttled to 1 MB/s
per connection so that reads often join downloads in progress.

Checks: every read that ends cleanly returned exactly one complete origin version (never a
mix, never short); a read that fails fails with EIO only, after bytes that are a prefix of
some version; no operation hangs (each has a deadline, and the run as a whole must make
progress); the daemon is alive at the end; afterwards a refresh brings every file to the
origin's current version, byte for byte. The seed is printed; IMDBFS_SEED=N replays choices.
"""

import errno
import os
import random
import threading
import time

import pytest

import util
from faulthelp import (DATA_FILE_ERRORS, STRESS, fast_opts, fault_proxy, install_all,  # noqa: F401
                       seeded, versions, wait_idle)
from util import DATASETS, DATA_NAMES, read_bytes

DURATION = 180 if STRESS else 60
READERS = 32
OP_DEADLINE = 30  # seconds any single read or command may take


def kernel_waits(pid):
    """{wait channel: number of threads} of a process, with one kernel stack per channel."""
    counts, stacks = {}, {}
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            base = "/proc/%d/task/%s/" % (pid, tid)
            try:
                w = open(base + "wchan").read().strip() or "running"
                counts[w] = counts.get(w, 0) + 1
                if w not in stacks:
                    stacks[w] = " <- ".join(line.split()[-1].split("+")[0]
                                            for line in open(base + "stack").read().splitlines())
            except OSError:
                continue
    except OSError as e:
        return "unavailable (%s)" % e
    return "; ".join("%d x %s [%s]" % (n, w, stacks.get(w, "")) for w, n in counts.items())


@pytest.mark.timeout_s(DURATION + 120)
def test_readers_during_refresh_rm_and_extract(versions, origin_factory, fault_proxy, mount,
                                               tmp_path):
    """Readers racing refreshes, rm and extractions each read one whole version
    (DESIGN.md invariant 3)."""
    seed = seeded("test_readers_during_refresh_rm_and_extract")
    vs = versions
    data = tmp_path / "origin-data"
    install_all(vs, 1, data)
    origin = origin_factory(data)
    proxy = fault_proxy(origin, seed=seed)
    proxy.throttle(1 << 20)
    m = mount(proxy.url(), extra_opts=fast_opts(retries=3, extra=["max_age=2"]),
              expected_errors=DATA_FILE_ERRORS)
    gz_of = {h: (v, d) for (v, d), h in vs.gz_hash.items()}
    tsv_of = {h: (v, d) for (v, d), h in vs.tsv_hash.items()}
    stop = threading.Event()
    lock = threading.Lock()
    stats = {"reads": 0, "bytes": 0, "eio": 0, "slow": 0, "pread": 0, "commands": 0,
             "ebusy": 0, "rm": 0, "publish": 0}
    problems = []
    progress = {"t": time.monotonic()}

    def problem(msg):
        with lock:
            problems.append(msg)
        stop.set()

    def bump(key, n=1):
        with lock:
            stats[key] += n
            progress["t"] = time.monotonic()

    def describe(got, name):
        """How bytes compare with each version: its size and the first differing offset."""
        out = []
        for v, want in zip(vs.numbers, full(name)):
            diff = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                        min(len(got), len(want)))
            out.append("v%d: %d bytes, first difference at %d" % (v, len(want), diff))
        bad = tmp_path / ("bad-read-%d-%s" % (len(problems), name))
        bad.write_bytes(got)
        return "; ".join(out) + " (saved as %s)" % bad

    def full(name):
        d = name.split(".tsv")[0]
        return [(vs.gz if name.endswith(".gz") else vs.tsv)(v, d) for v in vs.numbers]

    def check_read(name, got, err, how):
        if err is None:
            table = gz_of if name.endswith(".gz") else tsv_of
            hit = table.get(util.sha256_bytes(got))
            if hit is None or hit[1] != name.split(".tsv")[0]:
                problem("%s read (%s) ended cleanly with %d bytes that are no complete version: %s"
                        % (name, how, len(got), describe(got, name)))
            bump("reads")
            bump("bytes", len(got))
        else:
            if err != errno.EIO:
                problem("%s read (%s) failed with errno %d (%s)" % (name, how, err,
                                                                    os.strerror(err)))
            elif not any(v.startswith(got) for v in full(name)):
                problem("%s: %d bytes before EIO are no version's prefix" % (name, len(got)))
            bump("eio")

    def reader(k):
        r = random.Random(seed * 1000 + k)
        while not stop.is_set():
            name = r.choice(DATA_NAMES)
            mode = r.choices(["stream", "slow", "pread"], weights=[70, 20, 10])[0]
            chunk = r.choice([4096, 65536, 131072, 1 << 20])
            t0 = time.monotonic()
            out, err = [], None
            try:
                with open(m / name, "rb", buffering=0) as f:
                    if mode == "pread":
                        # Random-access reads first (they must match one version), then a
                        # full read of the same handle.
                        fd = f.fileno()
                        for _ in range(3):
                            off = r.randrange(0, 200000)
                            piece = os.pread(fd, 4096, off)
                            if piece and not any(v[off:off + len(piece)] == piece
                                                 for v in full(name)):
                                problem("%s: pread at %d returned bytes of no version"
                                        % (name, off))
                        bump("pread")
                    n = 0
                    while True:
                        b = os.pread(f.fileno(), chunk, n) if mode == "pread" else f.read(chunk)
                        if not b:
                            break
                        out.append(b)
                        n += len(b)
                        if mode == "slow" and len(out) <= 3:
                            time.sleep(r.uniform(0.05, 0.4))
                        if time.monotonic() - t0 > OP_DEADLINE:
                            problem("%s: a read took over %d s" % (name, OP_DEADLINE))
                            return
                    if mode == "slow":
                        bump("slow")
            except OSError as e:
                err = e.errno
            check_read(name, b"".join(out), err, mode)

    def command(name, text):
        t0 = time.monotonic()
        try:
            m.command(name, text)
            bump("commands")
        except OSError as e:
            if e.errno == errno.EBUSY:
                bump("ebusy")
                time.sleep(0.05)
            else:
                problem("command %s %r failed with %s" % (name, text, e))
        if time.monotonic() - t0 > OP_DEADLINE:
            problem("command %s %r took over %d s" % (name, text, OP_DEADLINE))

    def publisher():
        r = random.Random(seed + 1)
        cur = {d: 1 for d in DATASETS}
        while not stop.wait(r.uniform(0.2, 0.8)):
            d = r.choice(DATASETS)
            cur[d] = r.choice([v for v in vs.numbers if v != cur[d]])
            install_all(vs, cur[d], data, [d])
            bump("publish")

    def refresher():
        r = random.Random(seed + 2)
        while not stop.wait(r.uniform(0.05, 0.5)):
            what = r.choice(["all", "all force", " ".join(r.sample(DATASETS, 2)),
                             r.choice(DATASETS) + " force"])
            command(r.choice(["download", "download", "full-process"]), what)

    def extractor():
        r = random.Random(seed + 3)
        while not stop.wait(r.uniform(0.05, 0.5)):
            command("extract", r.choice(["all", r.choice(DATASETS)]))

    def remover():
        r = random.Random(seed + 4)
        while not stop.wait(r.uniform(0.05, 0.4)):
            if r.random() < 0.15:
                command("delete", r.choice(DATASETS))
                continue
            name = r.choice(DATA_NAMES)
            t0 = time.monotonic()
            try:
                os.unlink(m / name)
                bump("rm")
            except OSError as e:
                if e.errno != errno.ENOENT:  # not cached: nothing to evict
                    problem("rm %s failed with %s" % (name, e))
            if time.monotonic() - t0 > OP_DEADLINE:
                problem("rm %s took over %d s" % (name, OP_DEADLINE))

    def controls():
        r = random.Random(seed + 5)
        while not stop.wait(r.uniform(0.1, 0.3)):
            for c in ("status", "health", "files", "metrics"):
                try:
                    if c == "metrics":
                        read_bytes(m / ".control" / c)
                    else:
                        m.control(c)
                except Exception as e:  # noqa: BLE001 - any failure is a problem here
                    problem("reading .control/%s: %r" % (c, e))

    threads = [threading.Thread(target=reader, args=(k,), daemon=True) for k in range(READERS)]
    threads += [threading.Thread(target=fn, daemon=True)
                for fn in (publisher, refresher, extractor, remover, controls)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + DURATION
    while time.monotonic() < deadline and not stop.is_set():
        time.sleep(0.5)
        if m.proc.poll() is not None:
            problem("imdbfs died (exit %s)" % m.proc.returncode)
        if time.monotonic() - progress["t"] > 20:
            problem("no progress for 20 s: a deadlock? %r" % stats)
    stop.set()
    for t in threads:
        t.join(OP_DEADLINE + 10 if not problems else 5)
        if t.is_alive():
            break
    hung = [t for t in threads if t.is_alive()]
    if hung:
        # Deadlocked: record where the daemon's threads are stuck, then free ours.
        problems.append("threads stuck in the mount; imdbfs threads (kernel wait channels): %s"
                        % kernel_waits(m.proc.pid))
        m.kill()
        time.sleep(3)
        m.abort()
        for t in threads:
            t.join(10)
    print("concurrency: %r, %d problems" % (stats, len(problems)))
    assert not problems, "\n".join(problems[:20])
    assert not hung, "%d threads were blocked in the mount after the run" % len(hung)
    assert m.proc.poll() is None, "imdbfs died"
    assert stats["reads"] > 100 and stats["slow"] > 0 and stats["rm"] > 0, stats

    # Quiet now: one refresh brings everything to the origin's current versions.
    proxy.throttle(None)
    wait_idle(m, timeout=60)
    m.command("download", "all")
    assert m.wait_job(timeout=60) == 0, m.control("download")
    wait_idle(m, timeout=60)
    for d in DATASETS:
        v = vs.which_gz(d, read_bytes(data / (d + ".tsv.gz")))
        assert read_bytes(m / (d + ".tsv.gz")) == vs.gz(v, d), d
        wait_idle(m, timeout=60)
        assert read_bytes(m / (d + ".tsv")) == vs.tsv(v, d), d


@pytest.mark.timeout_s(60)
def test_open_handles_keep_their_version_through_refresh_and_rm(versions, origin_factory,
                                                                fault_proxy, mount, tmp_path):
    """Handles opened before a refresh and an rm keep reading their own version to its end
    (DESIGN.md invariant 3)."""
    vs = versions
    data = tmp_path / "origin-data"
    install_all(vs, 1, data)
    origin = origin_factory(data)
    proxy = fault_proxy(origin)
    m = mount(proxy.url(), extra_opts=fast_opts(), expected_errors=DATA_FILE_ERRORS)
    m.command("full-process", "all")
    assert m.wait_job() == 0
    handles = {}
    for d in DATASETS:
        for name, want in ((d + ".tsv.gz", vs.gz(1, d)), (d + ".tsv", vs.tsv(1, d))):
            f = open(m / name, "rb", buffering=0)
            handles[name] = (f, [f.read(1000)], want)
    # A refresh to v2 replaces every copy (and re-extracts), then rm evicts half of them.
    install_all(vs, 2, data)
    m.command("download", "all")
    assert m.wait_job() == 0
    wait_idle(m)
    for d in DATASETS[::2]:
        os.unlink(m / (d + ".tsv.gz"))
    for name, (f, parts, want) in handles.items():
        while True:
            b = f.read(65536)
            if not b:
                break
            parts.append(b)
        f.close()
        assert b"".join(parts) == want, "%s: an open handle did not keep its version" % name
    for d in DATASETS:
        assert read_bytes(m / (d + ".tsv.gz")) == vs.gz(2, d)
        assert read_bytes(m / (d + ".tsv")) == vs.tsv(2, d)
