"""The Azure Blob client (src/azure_blob.c, src/azure_auth.c) against a real Azurite.

Each operation runs through build/blob-probe ($BLOB_PROBE overrides), which takes its
credentials from the environment as the daemon does. The tests check outcomes, not exit
codes alone: bytes uploaded in blocks come back identical (sha256), metadata and content
type round-trip, listings page, leases conflict, and credentials that are wrong or
malformed fail with the right class of error without ever printing a key or a signature.
SAS is exercised end to end with an account SAS signed here in Python.
"""

import base64
import hashlib
import os
import subprocess

import pytest

import util
from azurite import DEV_ACCOUNT, DEV_KEY, account_sas, probe_bin

# Valid base64, 64 bytes like a real key, but not the account's.
WRONG_KEY = base64.b64encode(hashlib.sha512(b"not the key").digest()).decode()





class Probe:
    """Runs blob-probe with one connection string; failures carry Azurite's log tail."""

    def __init__(self, azurite, connection_string):
        self.azurite = azurite
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_STORAGE_")}
        self.env["AZURE_STORAGE_CONNECTION_STRING"] = connection_string

    def run(self, *args, timeout=60):
        return subprocess.run([probe_bin(), *map(str, args)], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def ok(self, *args):
        r = self.run(*args)
        if r.returncode != 0:
            pytest.fail("blob-probe %s failed (%d): %s\n%s" % (
                " ".join(map(str, args)), r.returncode, r.stderr, self.azurite.log_tail()))
        return r.stdout

    def fails(self, errname, *args):
        """Runs an operation that must fail with errname; returns its stdout + stderr."""
        r = self.run(*args)
        assert r.returncode == 1, "blob-probe %s: exit %d, stdout %r stderr %r" % (
            " ".join(map(str, args)), r.returncode, r.stdout, r.stderr)
        assert ": %s: " % errname in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1, "not one line: %r" % r.stderr
        return r.stdout + r.stderr

    def props(self, container, name):
        out = self.ok("props", container, name)
        return dict(line.split("=", 1) for line in out.splitlines())

    def listing(self, container, *args):
        rows = []
        for line in self.ok("list", container, *args).splitlines():
            name, size, ctype, mtime, meta = line.split("\t")
            rows.append((name, int(size), ctype, dict(kv.split("=", 1) for kv in meta.split(";")
                                                       if kv)))
        return rows


@pytest.fixture
def probe(azurite):
    return Probe(azurite, azurite.connection_string)


@pytest.fixture
def container(probe, request):
    # Container names: 3-63 lowercase letters, digits and '-'.
    name = "t-" + request.node.name.replace("_", "-").lower()[:50]
    probe.ok("create-container", name)
    return name


def write_random(path, size):
    path.write_bytes(os.urandom(size))
    return util.sha256_file(path)


def test_create_container_twice_is_fine(probe, container):
    probe.ok("create-container", container)
    assert probe.listing(container) == []


def test_blocks_round_trip_with_metadata(probe, container, tmp_path):
    src = tmp_path / "title.basics.tsv.gz"
    size = 5 * 1000 * 1000 + 17  # not a multiple of the block size
    digest = write_random(src, size)
    out = probe.ok("put-blocks", container, "title.basics.tsv.gz", src,
                   "--block-size", 1 << 20, "--type", "application/gzip",
                   'etag="5f0c-63a2"', "lastmodified=Sun, 26 Oct 2025 02:00:00 GMT",
                   "size=%d" % size)
    assert out.strip() == "blocks=5"

    p = probe.props(container, "title.basics.tsv.gz")
    assert int(p["size"]) == size
    assert p["content_type"] == "application/gzip"
    assert p["meta.etag"] == '"5f0c-63a2"'
    assert p["meta.lastmodified"] == "Sun, 26 Oct 2025 02:00:00 GMT"
    assert p["meta.size"] == str(size)
    assert p["etag"] and p["last_modified"].endswith("GMT") and int(p["mtime"]) > 0

    whole = tmp_path / "whole"
    got = probe.ok("get", container, "title.basics.tsv.gz", whole)
    assert "bytes=%d\n" % size in got and "etag=%s\n" % p["etag"] in got
    assert util.sha256_file(whole) == digest

    # A range tied to the blob's ETag; its total size comes back too.
    part = tmp_path / "part"
    got = probe.ok("get", container, "title.basics.tsv.gz", part, "--offset", 1000003,
                   "--length", 2 << 20, "--if-match", p["etag"])
    assert "size=%d\n" % size in got
    assert part.read_bytes() == src.read_bytes()[1000003:1000003 + (2 << 20)]
    tail = tmp_path / "tail"
    probe.ok("get", container, "title.basics.tsv.gz", tail, "--offset", size - 10)
    assert tail.read_bytes() == src.read_bytes()[-10:]

    probe.fails("ESTALE", "get", container, "title.basics.tsv.gz", tmp_path / "x",
                "--if-match", '"0x0000"')
    probe.fails("ERANGE", "get", container, "title.basics.tsv.gz", tmp_path / "x",
                "--offset", size + 100, "--length", 10)


def test_new_version_replaces_atomically(probe, container, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_random(a, 300000)
    digest_b = write_random(b, 200001)
    probe.ok("put-blocks", container, "f", a, "--block-size", 65536, "version=1")
    # Blocks staged for a new version do not change what readers see until the commit.
    probe.ok("put-blocks", container, "f", b, "--block-size", 65536, "version=2")
    assert probe.props(container, "f")["meta.version"] == "2"
    probe.ok("get", container, "f", tmp_path / "got")
    assert util.sha256_file(tmp_path / "got") == digest_b


def test_put_blob_list_paging_and_delete(probe, container, tmp_path):
    names = ["data/file%d.tsv" % i for i in range(5)]
    for i, name in enumerate(names):
        src = tmp_path / ("src%d" % i)
        src.write_bytes(b"x" * (i + 1))
        probe.ok("put", container, name, src, "--type", "text/tab-separated-values",
                 "index=%d" % i)
    probe.ok("put", container, "other", tmp_path / "src0")

    rows = probe.listing(container, "--prefix", "data/", "--page-size", 2)
    assert [r[0] for r in rows] == names  # three pages, followed by NextMarker
    assert [r[1] for r in rows] == [1, 2, 3, 4, 5]
    assert {r[2] for r in rows} == {"text/tab-separated-values"}
    assert [r[3] for r in rows] == [{"index": str(i)} for i in range(5)]
    assert len(probe.listing(container)) == 6

    probe.ok("delete", container, names[1])
    assert [r[0] for r in probe.listing(container, "--prefix", "data/")] == \
        names[:1] + names[2:]
    out = probe.fails("ENOENT", "props", container, names[1])
    assert "BlobNotFound" in out or "404" in out
    probe.fails("ENOENT", "delete", container, names[1])


def test_put_if_absent(probe, container, tmp_path):
    src = tmp_path / "lock"
    src.write_bytes(b"")
    probe.ok("put", container, "locks/title.basics", src, "--if-absent")
    out = probe.fails("EEXIST", "put", container, "locks/title.basics", src, "--if-absent")
    assert "BlobAlreadyExists" in out


def test_leases(probe, container, tmp_path):
    src = tmp_path / "lock"
    src.write_bytes(b"")
    probe.ok("put", container, "lock", src)
    lease = probe.ok("lease-acquire", container, "lock", 15).strip().split("=", 1)[1]
    assert len(lease) == 36
    assert probe.props(container, "lock")["lease_state"] == "leased"

    # A second acquire, from anyone, is a lease conflict, reported as such.
    out = probe.fails("EBUSY", "lease-acquire", container, "lock", 15)
    assert "409 LeaseAlreadyPresent" in out
    # Writes to a leased blob need its lease id.
    out = probe.fails("ESTALE", "delete", container, "lock")
    assert "LeaseIdMissing" in out
    probe.ok("put", container, "lock", src, "--lease", lease, "holder=me")

    probe.ok("lease-renew", container, "lock", lease)
    probe.fails("EBUSY", "lease-renew", container, "lock", "0f8fad5b-d9cb-469f-a165-70867728950e")
    probe.ok("lease-release", container, "lock", lease)
    assert probe.props(container, "lock")["lease_state"] == "available"

    # Breaking ends someone else's lease: a dead holder's lock can be taken over.
    probe.ok("lease-acquire", container, "lock", 60)
    assert probe.ok("lease-break", container, "lock", 0).strip() == "remaining=0"
    new = probe.ok("lease-acquire", container, "lock", 15).strip().split("=", 1)[1]
    probe.ok("delete", container, "lock", "--lease", new)
    probe.fails("ENOENT", "lease-acquire", container, "lock", 15)


def test_lease_duration_is_checked(probe, container, tmp_path):
    src = tmp_path / "lock"
    src.write_bytes(b"")
    probe.ok("put", container, "lock", src)
    out = probe.fails("EINVAL", "lease-acquire", container, "lock", 61)
    assert "15 to 60" in out
    assert probe.props(container, "lock")["lease_state"] == "available"


def test_wrong_key_is_an_auth_error_without_secrets(azurite, probe, container):
    bad = Probe(azurite, azurite.connection_string_with_key(WRONG_KEY))
    for args in (("props", container, "x"), ("list", container),
                 ("create-container", container)):
        out = bad.fails("EACCES", *args)
        assert "403" in out
        assert WRONG_KEY not in out and DEV_KEY not in out
        assert WRONG_KEY[:12] not in out and DEV_KEY[:12] not in out


def test_malformed_connection_string(azurite):
    secret = "c2VjcmV0LWtleS1tYXRlcmlhbA"  # base64 without its padding: malformed
    p = Probe(azurite, "AccountName=%s;AccountKey=%s;BlobEndpoint=%s" % (
        DEV_ACCOUNT, secret, azurite.endpoint))
    out = p.fails("EINVAL", "list", "whatever")
    assert "credentials" in out and "not base64" in out
    assert secret not in out
    out = Probe(azurite, "AccountName=%s;Bogus=1" % DEV_ACCOUNT).fails("EINVAL", "list", "x")
    assert "unknown key 'Bogus'" in out


def test_missing_container(probe):
    out = probe.fails("ENOENT", "list", "no-such-container")
    assert "ContainerNotFound" in out


def test_unreachable_is_transient(azurite):
    port = util.free_port()
    p = Probe(azurite, "AccountName=%s;AccountKey=%s;BlobEndpoint=http://127.0.0.1:%d/%s" % (
        DEV_ACCOUNT, DEV_KEY, port, DEV_ACCOUNT))
    out = p.fails("EAGAIN", "props", "c-unreachable", "x")
    assert DEV_KEY not in out


def test_sas_from_connection_string(azurite, probe, container, tmp_path):
    src = tmp_path / "src"
    digest = write_random(src, 300000)
    sas = account_sas(DEV_ACCOUNT, DEV_KEY)
    sig = dict(kv.split("=", 1) for kv in sas.split("&"))["sig"]
    p = Probe(azurite, azurite.sas_connection_string(sas))
    p.ok("put-blocks", container, "via-sas", src, "--block-size", 100000, "by=sas")
    assert p.props(container, "via-sas")["meta.by"] == "sas"
    p.ok("get", container, "via-sas", tmp_path / "got")
    assert util.sha256_file(tmp_path / "got") == digest
    assert [r[0] for r in p.listing(container)] == ["via-sas"]

    # A read-only SAS cannot write; a forged signature is refused. Neither prints it.
    ro = account_sas(DEV_ACCOUNT, DEV_KEY, permissions="rl")
    out = Probe(azurite, azurite.sas_connection_string(ro)).fails(
        "EACCES", "put", container, "denied", src)
    assert dict(kv.split("=", 1) for kv in ro.split("&"))["sig"] not in out
    forged = sas.replace("sig=", "sig=AAAA")
    out = Probe(azurite, azurite.sas_connection_string(forged)).fails(
        "EACCES", "props", container, "via-sas")
    assert sig not in out and "AAAA" not in out
    assert "sig=" not in out
