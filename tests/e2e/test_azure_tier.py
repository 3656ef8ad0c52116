"""storage=azure: the Azure Blob container as the tier between the local caches and the origin.

Real mounts against nginx as the origin and Azurite as the container. Two mounts with their own
cache dirs on one container stand for two hosts.
"""

import os
import re
import time
import urllib.parse

import pytest

import util
from azurite import DEV_ACCOUNT, DEV_KEY, Azurite, account_sas
from faultproxy import FaultProxy
from util import DATASETS, DATA_NAMES, read_bytes, sha256_file, wait_for




@pytest.fixture
def azure_env(azurite, request):
    name = "tier-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    return {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "AZURE_CONTAINER_NAME": name, "USE_AZURE_BLOB": "true"}


def expected_hashes(data_dir):
    out = {}
    for d in DATASETS:
        out[d + ".tsv.gz"] = util.sha256_bytes(util.origin_gz(data_dir, d))
        out[d + ".tsv"] = util.sha256_bytes(util.origin_tsv(data_dir, d))
    return out


def read_all(m, expected):
    for name in DATA_NAMES:
        assert sha256_file(m / name) == expected[name], name


def assert_no_secret(text):
    assert DEV_KEY not in text
    assert DEV_KEY[:20] not in text


@pytest.mark.timeout_s(120)
def test_second_host_reads_from_the_container_not_the_origin(origin, mount, sample_data,
                                                             azure_env):
    expected = expected_hashes(sample_data.path)
    a = mount(origin.url(), env=azure_env)
    a.command("full-process", "all")
    assert a.wait_job(timeout=60) == 0
    read_all(a, expected)
    assert a.control("health")["status"] == "healthy", a.control("health")
    origin.settle()
    mark = origin.mark()
    b = mount(origin.url(), env=azure_env)
    read_all(b, expected)
    origin.settle()
    assert origin.requests(since=mark) == [], "the second host asked the origin"
    assert "from the container" in b.stderr_text()
    # And a refresh on the second host revalidates with the container's version: 304s.
    b.command("download", "all")
    assert b.wait_job(timeout=60) == 0
    assert len(b.control("download")["unchanged_files"]) == 7
    for m in (a, b):
        for name in ("config", "status", "health"):
            assert_no_secret(read_bytes(m / ".control" / name).decode())
        assert_no_secret(m.stderr_text())


@pytest.mark.timeout_s(120)
def test_hosts_with_a_password_in_the_origin_url_share_the_container(origin, mount, sample_data,
                                                                     azure_env):
    """The blobs record the origin as shown (password redacted); the other host must trust them."""
    expected = expected_hashes(sample_data.path)
    url = origin.url().replace("http://", "http://loader:s3cret@", 1)
    a = mount(url, env=azure_env)
    a.command("download", "all")
    assert a.wait_job(timeout=60) == 0
    origin.settle()
    mark = origin.mark()
    b = mount(url, env=azure_env)
    for d in DATASETS:
        assert sha256_file(b / (d + ".tsv.gz")) == expected[d + ".tsv.gz"], d
    origin.settle()
    assert origin.requests(since=mark) == [], "the second host did not trust the container"
    assert "s3cret" not in b.stderr_text()


@pytest.mark.timeout_s(120)
def test_a_new_origin_version_reaches_the_other_host_through_the_container(
        origin_factory, private_data, mount, tmp_path, azure_env):
    o = origin_factory(private_data.path)
    a = mount(o.url(), env=azure_env)
    a.command("download", "all")
    assert a.wait_job(timeout=60) == 0
    b = mount(o.url(), env=azure_env)
    assert b.control("health")["status"] == "healthy"
    b.command("download", "all")
    assert b.wait_job(timeout=60) == 0
    v2 = tmp_path / "v2"
    util.gen_sample_data(v2, "--version", "2")
    for d in DATASETS:
        os.replace(v2 / (d + ".tsv.gz"), private_data.path / (d + ".tsv.gz"))
    a.command("download", "all")
    assert a.wait_job(timeout=60) == 0
    util.wait_uploads(a)  # b revalidates the container's version: it must be there
    expected = expected_hashes(private_data.path)
    o.settle()
    mark = o.mark()
    b.command("download", "all")
    assert b.wait_job(timeout=60) == 0
    o.settle()
    got = o.gets(since=mark)
    assert got and all(e["status"] == 304 for e in got), got
    for d in DATASETS:
        assert sha256_file(b / (d + ".tsv.gz")) == expected[d + ".tsv.gz"], d


def test_wrong_key_fails_the_mount_in_one_line(azurite, origin, tmp_path):
    bad = azurite.connection_string.replace(DEV_KEY, "A" * 86 + "==")
    env = {"AZURE_STORAGE_CONNECTION_STRING": bad, "USE_AZURE_BLOB": "true"}
    code, out = util.mount_expecting_failure(
        tmp_path / "mnt", "origin=%s,cache_dir=%s" % (origin.url(), tmp_path / "c"),
        env=env)
    assert code != 0
    lines = [ln for ln in out.strip().splitlines() if ln]
    assert len(lines) == 1 and "403" in lines[0], out
    assert "A" * 40 not in out and DEV_KEY not in out


def test_malformed_connection_string_fails_the_mount(origin, tmp_path):
    env = {"AZURE_STORAGE_CONNECTION_STRING": "AccountName=x;AccountKey=not base64!",
           "USE_AZURE_BLOB": "true"}
    code, out = util.mount_expecting_failure(
        tmp_path / "mnt", "origin=%s,cache_dir=%s" % (origin.url(), tmp_path / "c"),
        env=env)
    assert code != 0 and "not base64" not in out and out.strip(), out


@pytest.mark.timeout_s(120)
def test_container_down_falls_back_to_the_origin(tmp_path_factory, origin, mount,
                                                 sample_data):
    az = Azurite.start(tmp_path_factory.mktemp("azurite-down"))
    try:
        env = {"AZURE_STORAGE_CONNECTION_STRING": az.connection_string,
               "AZURE_CONTAINER_NAME": "down", "USE_AZURE_BLOB": "true"}
        m = mount(origin.url(), env=env, extra_opts=("retries=1", "retry_delay=0.1"),
                  expected_errors=[r"upload to the container failed"])
        az.stop()
        d = "title.ratings"
        assert read_bytes(m / (d + ".tsv.gz")) == util.origin_gz(sample_data.path, d)
        wait_for(lambda: m.control("health")["status"] == "degraded", 30,
                 "health to report the container")
        problems = " ".join(m.control("health")["problems"])
        assert "container" in problems, problems
    finally:
        az.stop()


def bodies_per_file(origin, since):
    """{file name: number of 200 responses} in the origin's log since the mark."""
    out = {}
    for e in origin.requests(since=since):
        if e["status"] == 200:
            name = e["uri"].rsplit("/", 1)[-1]
            out[name] = out.get(name, 0) + 1
    return out


@pytest.mark.timeout_s(120)
def test_two_hosts_refreshing_at_once_fetch_each_file_from_the_origin_once(
        origin_factory, private_data, mount, tmp_path, azure_env):
    o = origin_factory(private_data.path)
    a = mount(o.url(), env=azure_env)
    b = mount(o.url(), env=azure_env)
    expected = {}
    for version in ("1", "2"):
        if version == "2":
            # Both warm with version 1; the origin moves to version 2.
            v2 = tmp_path / "v2"
            util.gen_sample_data(v2, "--version", "2")
            for d in DATASETS:
                os.replace(v2 / (d + ".tsv.gz"), private_data.path / (d + ".tsv.gz"))
        expected = expected_hashes(private_data.path)
        o.settle()
        mark = o.mark()
        a.command("download", "all")
        b.command("download", "all")
        assert a.wait_job(timeout=60) == 0 and b.wait_job(timeout=60) == 0
        o.settle()
        got = bodies_per_file(o, mark)
        assert got == {d + ".tsv.gz": 1 for d in DATASETS}, (version, got)
        for m in (a, b):
            for d in DATASETS:
                assert sha256_file(m / (d + ".tsv.gz")) == expected[d + ".tsv.gz"], (version, d)


@pytest.mark.timeout_s(150)
def test_a_dead_lease_holder_is_taken_over(origin_factory, big_data, mount, azure_env):
    o = origin_factory(big_data.path)
    big = "title.principals.tsv.gz"
    a = mount(o.url("/slow/"), env=azure_env, expect_exit=None)
    a.command("download", "title.principals")
    # (nginx logs a request when it ends: a's progress shows in its status instead.)
    wait_for(lambda: a.control("status")["datasets"]["title.principals"]["bytes_done"] > 0,
             20, "a's download to start")
    b = mount(o.url("/slow/"), env=azure_env)
    b.command("download", "title.principals")
    wait_for(lambda: "another host is fetching it" in b.stderr_text(), 20,
             "b to wait for a's lease")
    t0 = time.monotonic()
    a.kill()
    assert b.wait_job(timeout=120) == 0, b.control("download")
    took = time.monotonic() - t0
    assert sha256_file(b / big) == util.sha256_bytes(util.origin_gz(big_data.path,
                                                                   "title.principals"))
    # B waited for the lease to expire, then fetched it itself.
    assert took >= 5, took
    assert len([e for e in o.gets(big) if e["status"] in (200, 206)]) == 2, o.gets(big)


@pytest.mark.timeout_s(90)
def test_files_lists_the_container_and_delete_empties_it(origin, mount, azure_env, sample_data):
    a = mount(origin.url(), env=azure_env)
    a.command("full-process", "all")
    assert a.wait_job(timeout=60) == 0
    util.wait_uploads(a)
    files = a.control("files")
    assert files["directory"] == "Azure Blob Container: " + azure_env["AZURE_CONTAINER_NAME"]
    names = sorted(f["name"] for f in files["files"])
    assert names == DATA_NAMES and files["total_files"] == 14, files
    for f in files["files"]:
        assert f["content_type"] == ("application/gzip" if f["name"].endswith(".gz")
                                     else "text/tab-separated-values"), f
        local = a.cache_dir / f["name"]
        assert f["size_bytes"] == local.stat().st_size, f
    a.command("delete", "all")
    assert a.wait_job(timeout=30) == 0
    deleted = a.control("delete")["deleted_files"]
    assert sorted(deleted) == DATA_NAMES, deleted
    files = a.control("files")
    assert files["files"] == [] and files["total_files"] == 0, files
    # Gone from the container: a new host reads from the origin again.
    origin.settle()
    mark = origin.mark()
    b = mount(origin.url(), env=azure_env)
    d = "title.crew"
    assert read_bytes(b / (d + ".tsv.gz")) == util.origin_gz(sample_data.path, d)
    origin.settle()
    assert [e["uri"] for e in origin.gets(since=mark)] == ["/" + d + ".tsv.gz"]


@pytest.mark.timeout_s(60)
def test_sas_works_and_a_read_only_sas_is_refused_at_once(azurite, origin, mount, sample_data,
                                                           tmp_path):
    sas = account_sas(DEV_ACCOUNT, DEV_KEY)
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.sas_connection_string(sas),
           "AZURE_CONTAINER_NAME": "sas", "USE_AZURE_BLOB": "true"}
    m = mount(origin.url(), env=env)
    d = "title.episode"
    assert read_bytes(m / (d + ".tsv.gz")) == util.origin_gz(sample_data.path, d)
    wait_for(lambda: "uploaded" in m.stderr_text(), 20, "the upload")
    assert m.control("health")["status"] == "healthy", m.control("health")
    signature = dict(p.split("=", 1) for p in sas.split("&"))["sig"]
    for sig in (signature, urllib.parse.unquote(signature)):
        for name in ("config", "status", "health"):
            assert sig not in read_bytes(m / ".control" / name).decode()
        assert sig not in m.stderr_text()
    # Read and list only: the mount cannot write the container, and says so in one line.
    ro = account_sas(DEV_ACCOUNT, DEV_KEY, permissions="rl")
    env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.sas_connection_string(ro)
    code, out = util.mount_expecting_failure(
        tmp_path / "mnt-ro", "origin=%s,cache_dir=%s" % (origin.url(), tmp_path / "c"),
        env=env)
    lines = [ln for ln in out.strip().splitlines() if ln]
    assert code != 0 and len(lines) == 1 and "403" in lines[0], out
    ro_sig = dict(p.split("=", 1) for p in ro.split("&"))["sig"]
    assert ro_sig not in out


@pytest.mark.timeout_s(120)
def test_container_failing_mid_read_resumes_from_the_origin(azurite, origin_factory, big_data,
                                                            mount, azure_env):
    o = origin_factory(big_data.path)
    big = "title.principals.tsv.gz"
    expected = util.origin_gz(big_data.path, "title.principals")
    a = mount(o.url(), env=azure_env)
    assert read_bytes(a / big) == expected
    wait_for(lambda: "%s: uploaded" % big in a.stderr_text(), 30, "a's upload")
    # b reaches the container through a proxy that resets the read at 3 MB, then answers 503.
    proxy = FaultProxy(azurite.port).start()
    try:
        env = dict(azure_env)
        env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string.replace(
            ":%d/" % azurite.port, ":%d/" % proxy.port)
        b = mount(o.url(), env=env, extra_opts=("retries=2", "retry_delay=0.2"),
                  expected_errors=[r"upload to the container failed"])
        proxy.reset_at(3 << 20, path=big)
        proxy.status(503, path=big, times=None)
        o.settle()
        mark = o.mark()
        assert read_bytes(b / big) == expected
        o.settle()
        got = o.gets(big, since=mark)
        assert [e["status"] for e in got] == [206], got
        # Where the container's bytes stopped (a reset may drop some in flight).
        start = int(re.fullmatch(r"bytes=(\d+)-", got[0]["range"]).group(1))
        assert 0 < start <= 3 << 20, got
        assert "reading from the origin" in b.stderr_text()
        wait_for(lambda: b.control("health")["status"] == "degraded", 30, "degraded health")
    finally:
        proxy.stop()


@pytest.mark.timeout_s(120)
def test_second_host_knows_every_size_before_it_reads_a_byte(origin, mount, sample_data,
                                                             azure_env):
    """Issue 13: a second host, on its own empty cache, learns every size at mount from the
    container (the blob's size and the .tsv size its verifier counted, in its metadata): every
    stat is exact before a byte is read, and neither the origin nor the container's bytes were
    asked for."""
    want = {}
    for d in DATASETS:
        want[d + ".tsv.gz"] = len(util.origin_gz(sample_data.path, d))
        want[d + ".tsv"] = len(util.origin_tsv(sample_data.path, d))
    a = mount(origin.url(), env=azure_env)
    a.command("download", "all")
    assert a.wait_job(timeout=60) == 0
    util.wait_uploads(a)
    origin.settle()
    mark = origin.mark()
    b = mount(origin.url(), env=azure_env)
    sizes = lambda: {name: os.stat(b / name).st_size for name in DATA_NAMES}
    wait_for(lambda: sizes() == want, 5, "every size on the second host (got %s)" % sizes())
    origin.settle()
    assert origin.requests(since=mark) == [], "the second host asked the origin"
    assert not any(n in DATA_NAMES for n in os.listdir(b.cache_dir)), os.listdir(b.cache_dir)
    assert "from the container" not in b.stderr_text(), "a file was read to learn its size"
    assert b.control("health")["sizes"]["unknown"] == []
