"""The one HTTP engine (issue 13): the Azure client runs on http.c's request call.

A hostile Blob endpoint (tests/e2e/hostile_origin.py standing in for the service) answers
with an error whose body never ends. The Azure client bounds an error body the way the
origin path does (a few KiB, then the status is the answer), so the failure is reported
within seconds; before, its own curl stack read such a body until the request's overall
timeout (a read has none: for ever).
"""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

import util
from azurite import DEV_ACCOUNT, DEV_KEY, Azurite, AzuriteError
from faultproxy import FaultProxy
from hostile_origin import HostileOrigin

REPO = Path(__file__).resolve().parents[2]


def probe_bin():
    return os.environ.get("BLOB_PROBE", str(REPO / "build" / "blob-probe"))


@pytest.fixture
def endpoint():
    if not os.access(probe_bin(), os.X_OK):
        pytest.fail("%s is missing (make build/blob-probe)" % probe_bin(), pytrace=False)
    o = HostileOrigin().start()
    yield o
    o.stop()


def probe(o, *args, timeout):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_STORAGE_")}
    env["AZURE_STORAGE_CONNECTION_STRING"] = (
        "DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s/%s;"
        % (DEV_ACCOUNT, DEV_KEY, o.url().rstrip("/"), DEV_ACCOUNT))
    start = time.monotonic()
    try:
        r = subprocess.run([probe_bin(), *args], env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail("blob-probe %s still running after %d s" % (" ".join(args), timeout))
    return r, time.monotonic() - start


@pytest.mark.parametrize("code,errname", [(503, "EAGAIN"), (404, "ENOENT"), (403, "EACCES")])
def test_endless_azure_error_body_is_reported_at_once(endpoint, tmp_path, code, errname):
    endpoint.files["endless"] = ("endless_error", code)
    r, took = probe(endpoint, "get", "c", "endless", str(tmp_path / "out"), timeout=15)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert ": %s: " % errname in r.stderr and "HTTP %d" % code in r.stderr, r.stderr
    assert took < 5, took
    assert not (tmp_path / "out").exists() or (tmp_path / "out").stat().st_size == 0


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    try:
        a = Azurite.start(tmp_path_factory.mktemp("azurite-engine"))
    except AzuriteError as e:
        pytest.fail(str(e), pytrace=False)
    yield a
    a.stop()


@pytest.mark.timeout_s(120)
def test_an_upload_under_way_does_not_hold_the_unmount(azurite, origin, mount, sample_data):
    """Every Azure request polls the cancel check now, uploads too: unmount ends one at once.
    Before, an upload stuck in the service held the unmount for the whole shutdown wait
    (10 s), and its thread was still running when the daemon exited."""
    name = "title.basics.tsv.gz"
    proxy = FaultProxy(azurite.port).start()
    try:
        hold = proxy.hold(path="/" + name, query="comp=block", timeout=60)
        cs = azurite.connection_string.replace(":%d/" % azurite.port, ":%d/" % proxy.port)
        env = {"AZURE_STORAGE_CONNECTION_STRING": cs, "AZURE_CONTAINER_NAME": "engine-unmount",
               "USE_AZURE_BLOB": "true"}
        m = mount(origin.url(), env=env, extra_opts=["timeout=60"])
        m.command("download", "title.basics")
        assert hold.params["held"].wait(30), "no upload started: %s" % m.stderr_text()[-2000:]
        start = time.monotonic()
        m.unmount()
        took = time.monotonic() - start
        assert m.returncode == 0, m.stderr_text()[-2000:]
        assert took < 5, "unmount took %.1f s:\n%s" % (took, m.stderr_text()[-2000:])
        assert "did not stop in time" not in m.stderr_text()
    finally:
        proxy.release(hold)
        proxy.stop()


@pytest.mark.timeout_s(120)
def test_a_transient_put_block_failure_is_retried(azurite, origin, mount, sample_data):
    """A 503 to one Put Block is retried with the retry policy (Put Block and Put Block List
    are idempotent under the lease): the upload completes. Before, one transient answer
    failed the whole upload (`upload to the container failed`) and the blob never came."""
    name = "title.basics.tsv.gz"
    proxy = FaultProxy(azurite.port).start()
    try:
        proxy.status(503, path="/" + name, query="comp=block")
        cs = azurite.connection_string.replace(":%d/" % azurite.port, ":%d/" % proxy.port)
        env = {"AZURE_STORAGE_CONNECTION_STRING": cs, "AZURE_CONTAINER_NAME": "engine-retry",
               "USE_AZURE_BLOB": "true"}
        m = mount(origin.url(), env=env, extra_opts=["retry_delay=0.1"])
        m.command("download", "title.basics")
        assert m.wait_job(timeout=60) == 0
        util.wait_for(lambda: re.search(r"%s: (upload to the container failed|uploaded)"
                                        % re.escape(name), m.stderr_text()),
                      30, "the end of the upload")
        log = m.stderr_text()
        assert "%s: uploaded" % name in log, log[-3000:]
        blocks = [r for r in proxy.requests() if r["path"].endswith("/" + name)
                  and "comp=block&" in r["query"] + "&"]
        assert [r["status"] for r in blocks][:2] == [503, 201], blocks
    finally:
        proxy.stop()
