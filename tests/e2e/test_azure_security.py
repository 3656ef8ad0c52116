"""storage=azure against a hostile or racing container, and the secrets the daemon holds.

Fencing: every upload leases the blob it writes and every write of it (Put Block, Put Block
List) carries the lease id, so a host whose lease was broken and taken over cannot commit,
and its blocks (ids unique to the upload) cannot mix with another upload's. Blob metadata is
checked before it is trusted. The Azure secrets are gone from the daemon's environment and
the daemon is not dumpable. Real mounts against nginx as the origin and Azurite as the
container; the fault proxy in front of Azurite holds or logs a mount's requests to it.
"""

import base64
import gzip
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

import util
from azurite import DEV_KEY, probe_bin
from faultproxy import FaultProxy
from util import read_bytes, sha256_file, wait_for

NOGROUP = ["setpriv", "--regid=nogroup", "--clear-groups"]





@pytest.fixture
def container(request):
    return "sec-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")


def probe(azurite, *args, check=True):
    """blob-probe straight to Azurite (not through a mount's proxy): the other host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_STORAGE_")}
    env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string
    r = subprocess.run([probe_bin(), *map(str, args)], env=env, capture_output=True, text=True,
                       timeout=60)
    if check and r.returncode != 0:
        pytest.fail("blob-probe %s: %s\n%s" % (" ".join(map(str, args)), r.stderr,
                                                azurite.log_tail()), pytrace=False)
    return r


def env_through(azurite, proxy, container):
    cs = azurite.connection_string.replace(":%d/" % azurite.port, ":%d/" % proxy.port)
    return {"AZURE_STORAGE_CONNECTION_STRING": cs, "AZURE_CONTAINER_NAME": container,
            "USE_AZURE_BLOB": "true"}


def query_param(query, name):
    for part in query.split("&"):
        k, _, v = part.partition("=")
        if k == name:
            return v
    return None


@pytest.fixture
def proxy(azurite):
    p = FaultProxy(azurite.port).start()
    yield p
    p.stop()


# ------------------------------------------------------------------ fencing (finding 12)

@pytest.mark.timeout_s(120)
def test_a_host_that_lost_its_lease_cannot_commit(azurite, proxy, container, origin_factory,
                                                  big_data, mount, tmp_path):
    o = origin_factory(big_data.path)
    name = "title.principals.tsv.gz"
    v1 = util.origin_gz(big_data.path, "title.principals")
    assert len(v1) > 8 << 20  # several blocks: a mix of two uploads would show
    # A's commit of the blob waits in the proxy until the other host has taken the lease.
    hold = proxy.hold(path="/" + name, query="comp=blocklist")
    a = mount(o.url(), env=env_through(azurite, proxy, container),
              expected_errors=[r"upload to the container failed"])
    a.command("download", "title.principals")
    assert hold.params["held"].wait(30), "A never committed: %s" % a.stderr_text()[-2000:]
    # The other host breaks each lease A holds (the lock on fetching the file, and the lease
    # on the blob if A took one) at once and takes it itself: to A a broken, expired or
    # stolen lease all look the same.
    leases = {}
    for blob in (name + ".lock", name):
        if probe(azurite, "lease-break", container, blob, 0, check=False).returncode == 0:
            got = probe(azurite, "lease-acquire", container, blob, 60)
            leases[blob] = got.stdout.strip().split("=", 1)[1]
    assert name + ".lock" in leases
    proxy.release(hold)
    wait_for(lambda: re.search(r"%s: (upload to the container failed|uploaded)" % re.escape(name),
                               a.stderr_text()), 30, "the end of A's upload")
    log = a.stderr_text()
    assert "%s: upload to the container failed" % name in log, (
        "A committed after losing its lease (the other host holds %s):\n%s"
        % (sorted(leases), log[-3000:]))
    assert "lost the lease" in log, log[-3000:]
    # The other host's version (random bytes: any block of A's would show) commits whole.
    v2 = os.urandom(len(v1))
    (tmp_path / "v2").write_bytes(v2)
    probe(azurite, "put-blocks", container, name, tmp_path / "v2",
          *(("--lease", leases[name]) if name in leases else ()))
    probe(azurite, "get", container, name, tmp_path / "blob")
    blob = (tmp_path / "blob").read_bytes()
    assert blob == v2, "the blob is not exactly the other host's version (A's bytes: %s)" % (
        blob == v1)
    for blob, lease in leases.items():
        probe(azurite, "lease-release", container, blob, lease)
    # A keeps serving its own copy, the origin's bytes.
    assert a.wait_job(timeout=30) == 0
    assert sha256_file(a / name) == util.sha256_bytes(v1)
    assert a.control("status")["datasets"]["title.principals"]["state"] == "cached"


@pytest.mark.timeout_s(120)
def test_each_upload_has_its_own_block_ids_and_writes_under_its_lease(
        azurite, proxy, container, origin_factory, private_data, mount):
    o = origin_factory(private_data.path)
    a = mount(o.url(), env=env_through(azurite, proxy, container))
    gz, tsv = "title.ratings.tsv.gz", "title.ratings.tsv"
    assert read_bytes(a / gz) == util.origin_gz(private_data.path, "title.ratings")
    wait_for(lambda: "%s: uploaded" % gz in a.stderr_text(), 30, "the first upload")
    # The same bytes with a later mtime: nginx's new ETag makes it a new version to upload.
    later = time.time() + 60
    os.utime(private_data.path / gz, (later, later))
    a.command("download", "title.ratings")
    assert a.wait_job(timeout=60) == 0
    wait_for(lambda: a.stderr_text().count("%s: uploaded" % gz) == 2, 30, "the second upload")
    assert read_bytes(a / tsv) == util.origin_tsv(private_data.path, "title.ratings")
    wait_for(lambda: "%s: uploaded" % tsv in a.stderr_text(), 30, "the .tsv upload")
    proxy.settle()
    uploads = {gz: [], tsv: []}  # per blob: one dict per upload, in order
    current = {}
    for e in proxy.requests():
        blob = e["path"].rsplit("/", 1)[-1]
        if blob not in uploads or e["method"] != "PUT":
            continue
        comp = query_param(e["query"], "comp")
        if comp == "lease" and e["headers"].get("x-ms-lease-action") == "acquire":
            current[blob] = {"lease": e["headers"]["x-ms-proposed-lease-id"], "ids": [],
                             "writes": []}
        elif comp in ("block", "blocklist"):
            assert blob in current, "%s: %s?%s without a lease" % (blob, e["path"], e["query"])
            current[blob]["writes"].append(e["headers"].get("x-ms-lease-id"))
            if comp == "block":
                current[blob]["ids"].append(query_param(e["query"], "blockid"))
            else:
                uploads[blob].append(current.pop(blob))
    assert len(uploads[gz]) == 2 and len(uploads[tsv]) == 1, uploads
    for blob, ups in uploads.items():
        for up in ups:
            # Every write of the blob is conditioned on the upload's own lease.
            assert up["writes"] and all(w == up["lease"] for w in up["writes"]), (blob, up)
            assert len({len(i) for i in up["ids"]}) == 1, up["ids"]  # one length per blob
            for i in up["ids"]:
                base64.b64decode(i.replace("%3D", "="), validate=True)
    first, second = (set(u["ids"]) for u in uploads[gz])
    assert first and second and not first & second, (first, second)


# ------------------------------------------------------------------ metadata (finding 12)

def small_gzip(text):
    return gzip.compress(text.encode(), mtime=0)


@pytest.mark.timeout_s(90)
def test_a_blob_with_bad_metadata_is_not_trusted(azurite, container, origin, mount,
                                                 sample_data, tmp_path):
    probe(azurite, "create-container", container)
    fake = small_gzip("tconst\tbogus\ntt0000001\tplanted\n")
    (tmp_path / "fake.gz").write_bytes(fake)
    n = len(fake)
    good = {"originetag": '"planted"', "lastmodified": "Mon, 30 Nov 2026 10:00:00 GMT",
            "mtime": "1796032800", "size": str(n), "tsvsize": "40", "fetchedat": "1796032900.0"}
    bad = {
        # Another host's origin: its copy is not of our origin's file.
        "title.ratings": {"originurl": "http://other.example:8080/title.ratings.tsv.gz"},
        # Numbers that are not numbers, or out of range.
        "title.crew": {"size": "%dabc" % n},
        "title.episode": {"tsvsize": "9223372036854775807"},
        "title.akas": {"mtime": "yesterday"},
        "title.basics": {"fetchedat": "-5"},
    }
    for d, override in bad.items():
        meta = dict(good, originurl=origin.url() + d + ".tsv.gz")
        meta.update(override)
        probe(azurite, "put", container, d + ".tsv.gz", tmp_path / "fake.gz",
              "--type", "application/gzip", *("%s=%s" % kv for kv in meta.items()))
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
           "AZURE_CONTAINER_NAME": container, "USE_AZURE_BLOB": "true"}
    m = mount(origin.url(), env=env)
    origin.settle()
    mark = origin.mark()
    for d in bad:
        want = util.origin_gz(sample_data.path, d)
        assert read_bytes(m / (d + ".tsv.gz")) == want, d
        assert os.stat(m / (d + ".tsv.gz")).st_size == len(want), d
    origin.settle()
    fetched = {e["uri"].rsplit("/", 1)[-1] for e in origin.gets(since=mark)
               if e["status"] == 200}
    assert fetched == {d + ".tsv.gz" for d in bad}, fetched
    log = m.stderr_text()
    for d in bad:
        assert re.search(r"WARN.*%s\.tsv\.gz: .*not trusted" % re.escape(d), log), (d, log[-3000:])


# ------------------------------------------------------------------ secrets (finding 14)

def daemon_pid(mountpoint):
    """The imdbfs process serving mountpoint (after fuse_daemonize's fork: the child)."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"imdbfs") and str(mountpoint).encode() in argv:
            found.append(int(p.name))
    assert len(found) == 1, found
    return found[0]


@pytest.mark.timeout_s(60)
def test_the_daemon_keeps_no_secret_in_its_environment_and_is_not_dumpable(
        azurite, container, origin, sample_data, tmp_path):
    """Daemonized (fuse_daemonize forks: the final process is the one checked).

    Dumpable: the kernel gives the /proc/PID files of a process that is not dumpable to the
    root user and group (task_dump_owner), those of a dumpable one to its effective ids. Run as
    uid root (to open /dev/fuse) but gid nogroup, the daemon's /proc/PID/status is group 0
    only if it is not dumpable; a dumpable process run the same way is the control.
    """
    mnt, cache = tmp_path / "mnt", tmp_path / "cache"
    mnt.mkdir()
    env = util.daemon_env({"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
                           "AZURE_CONTAINER_NAME": container, "USE_AZURE_BLOB": "true"})
    cmd = NOGROUP + [util.imdbfs_bin(), "-o", "origin=%s,cache_dir=%s" % (origin.url(), cache),
                     str(mnt)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    pid = None
    try:
        pid = daemon_pid(mnt)
        environ = Path("/proc/%d/environ" % pid).read_bytes()
        assert DEV_KEY.encode() not in environ and DEV_KEY[:16].encode() not in environ
        assert b"AccountKey" not in environ
        secret_vars = [v for v in environ.split(b"\0") if v.startswith(b"AZURE_STORAGE_")
                       and not v.endswith(b"=")]
        assert secret_vars == [], secret_vars
        assert b"AZURE_CONTAINER_NAME=" + container.encode() in environ  # the check can see
        control = subprocess.Popen(NOGROUP + ["sleep", "30"])
        try:
            wait_for(lambda: os.stat("/proc/%d/status" % control.pid).st_gid != 0, 5,
                     "the dumpable control to run as nogroup")
        finally:
            control.kill()
            control.wait()
        assert os.stat("/proc/%d/status" % pid).st_gid == 0, "the daemon is dumpable"
        # It works, and still says which secrets it was given (read as the mount's own ids:
        # without allow_other, FUSE lets no other uid or gid in).
        def cat(path):
            r = subprocess.run(NOGROUP + ["cat", str(path)], capture_output=True, timeout=30)
            assert r.returncode == 0, r.stderr
            return r.stdout
        cfg = json.loads(cat(mnt / ".control" / "config"))
        assert cfg["azure_credentials"]["AZURE_STORAGE_CONNECTION_STRING"] == "***", cfg
        assert cat(mnt / "title.ratings.tsv.gz") == util.origin_gz(sample_data.path,
                                                                   "title.ratings")
    finally:
        util.lazy_unmount(mnt)
        if pid is not None:
            wait_for(lambda: not Path("/proc/%d" % pid).exists(), 10, "the daemon to exit")
