"""storage=azure: replication to the container is a background queue (src/replicate.c).

A transfer ends at its local commit: its readers get their EOF and `status` shows the dataset
`cached` while the upload waits in the queue or runs, shown as the dataset's `upload` field.
The fault proxy in front of Azurite holds an upload's Put Block List (its commit) to make the
upload as slow as the test needs.
"""

import os
import re
import threading
import time

import pytest

import util
from test_azure_security import container, env_through, probe, proxy  # noqa: F401
from util import sha256_file, wait_for

BLOCKLIST = "comp=blocklist"


def upload_of(m, dataset):
    s = m.control("status")["datasets"][dataset]
    return s["state"], s.get("upload"), s.get("upload_error")


def commits(proxy, name):
    """The Put Block Lists of blob name the container accepted."""
    return [e for e in proxy.requests() if e["path"].endswith("/" + name)
            and BLOCKLIST in e["query"] and e["upstream_status"] == 201]


@pytest.mark.timeout_s(90)
def test_a_cold_read_ends_at_the_local_commit_not_after_the_upload(
        azurite, proxy, container, origin, sample_data, mount, tmp_path):  # noqa: F811
    name = "title.ratings.tsv.gz"
    want = util.origin_gz(sample_data.path, "title.ratings")
    hold = proxy.hold(path="/" + name, query=BLOCKLIST, timeout=60)
    a = mount(origin.url(), env=env_through(azurite, proxy, container))
    got = {}

    def read():
        t0 = time.monotonic()
        got["bytes"] = (a / name).read_bytes()
        got["s"] = time.monotonic() - t0

    reader = threading.Thread(target=read, daemon=True)
    try:
        reader.start()
        assert hold.params["held"].wait(30), a.stderr_text()[-2000:]
        reader.join(10)
        assert not reader.is_alive(), "the read's EOF waited for the upload's commit"
        assert got["bytes"] == want
        print("cold read of %s: %.2f s, its upload held meanwhile" % (name, got["s"]))
        # The dataset is cached; its upload is its own state, still running (held).
        assert upload_of(a, "title.ratings") == ("cached", "uploading", None)
        # A second upload waits behind it in the queue.
        assert (a / "name.basics.tsv.gz").read_bytes() == util.origin_gz(sample_data.path,
                                                                          "name.basics")
        wait_for(lambda: upload_of(a, "name.basics")[1] == "queued", 10, "a queued upload")
        assert upload_of(a, "name.basics")[0] == "cached"
    finally:
        proxy.release(hold)
    wait_for(lambda: upload_of(a, "title.ratings")[1] == "done"
             and upload_of(a, "name.basics")[1] == "done", 30, "the uploads to end")
    assert upload_of(a, "title.ratings") == ("cached", "done", None)
    probe(azurite, "get", container, name, tmp_path / "blob")
    assert (tmp_path / "blob").read_bytes() == want
    metrics = (a / ".control" / "metrics").read_text()
    assert re.search(r'^imdbfs_uploads_total\{outcome="ok"\} 2$', metrics, re.M), metrics


@pytest.mark.timeout_s(90)
def test_unmount_during_a_held_upload_is_prompt_and_clean(
        azurite, proxy, container, origin, sample_data, mount):  # noqa: F811
    name = "title.ratings.tsv.gz"
    hold = proxy.hold(path="/" + name, query=BLOCKLIST, timeout=60)
    a = mount(origin.url(), env=env_through(azurite, proxy, container))
    try:
        a.command("download", "title.ratings")
        assert hold.params["held"].wait(30), a.stderr_text()[-2000:]
        t0 = time.monotonic()
        assert a.unmount() == 0
        took = time.monotonic() - t0
    finally:
        proxy.release(hold)
    print("unmount with an upload in flight: %.2f s" % took)
    assert took < 5, "unmount took %.1f s with an upload in flight" % took
    assert not a.killed
    assert re.search(r"%s: upload cancelled" % re.escape(name), a.stderr_text()), (
        a.stderr_text()[-2000:])


@pytest.mark.timeout_s(120)
def test_newest_wins_two_refreshes_queued_behind_an_upload_commit_only_the_last(
        azurite, proxy, container, origin_factory, private_data, mount, tmp_path):  # noqa: F811
    o = origin_factory(private_data.path)
    busy, name = "name.basics.tsv.gz", "title.ratings.tsv.gz"
    hold = proxy.hold(path="/" + busy, query=BLOCKLIST, timeout=60)
    a = mount(o.url(), env=env_through(azurite, proxy, container))
    try:
        # The worker is busy with busy's upload, held: title.ratings' requests queue behind it.
        a.command("download", "name.basics")
        assert hold.params["held"].wait(30), a.stderr_text()[-2000:]
        assert a.wait_job(timeout=10) == 0
        for version in ("1", "2", "3"):
            if version != "1":
                v = tmp_path / ("v" + version)
                util.gen_sample_data(v, "--version", version)
                os.replace(v / name, private_data.path / name)
            a.command("download", "title.ratings")
            assert a.wait_job(timeout=20) == 0, version
            assert upload_of(a, "title.ratings") == ("cached", "queued", None), version
        newest = util.origin_gz(private_data.path, "title.ratings")
        assert sha256_file(a / name) == util.sha256_bytes(newest)
    finally:
        proxy.release(hold)
    wait_for(lambda: upload_of(a, "title.ratings")[1] == "done", 30, "the upload to end")
    probe(azurite, "get", container, name, tmp_path / "blob")
    assert (tmp_path / "blob").read_bytes() == newest
    proxy.settle()
    assert len(commits(proxy, name)) == 1, [e["query"] for e in commits(proxy, name)]


@pytest.mark.timeout_s(90)
def test_a_delete_during_an_upload_leaves_the_container_without_the_file(
        azurite, proxy, container, origin, sample_data, mount):  # noqa: F811
    name = "title.ratings.tsv.gz"
    hold = proxy.hold(path="/" + name, query=BLOCKLIST, timeout=60)
    a = mount(origin.url(), env=env_through(azurite, proxy, container))
    try:
        a.command("download", "title.ratings")
        assert hold.params["held"].wait(30), a.stderr_text()[-2000:]
        assert a.wait_job(timeout=10) == 0
        a.command("delete", "title.ratings")
        assert a.wait_job(timeout=10) == 0
        assert a.control("delete")["deleted_files"] == [name]
        assert upload_of(a, "title.ratings")[1:] == ("dropped", "deleted before its upload ended")
        # The upload was cancelled before the delete was sent, and nothing of it came after.
        log = [(e["method"], e["query"]) for e in proxy.requests() if e["path"].endswith("/" + name)]
        assert log[-1] == ("DELETE", ""), log
        time.sleep(1)
        names = [f["name"] for f in a.control("files")["files"]]
        assert name not in names, names
        assert len([e for e in proxy.requests() if e["path"].endswith("/" + name)]) == len(log)
    finally:
        proxy.release(hold)


@pytest.mark.timeout_s(120)
def test_newest_wins_a_newer_copy_cancels_the_upload_in_flight(
        azurite, proxy, container, origin_factory, private_data, mount, tmp_path):  # noqa: F811
    o = origin_factory(private_data.path)
    name = "title.ratings.tsv.gz"
    # The commits of the first two versions wait in the proxy; the third's goes through.
    hold = proxy.hold(path="/" + name, query=BLOCKLIST, times=2, timeout=60)
    a = mount(o.url(), env=env_through(azurite, proxy, container))
    try:
        for version in ("1", "2", "3"):
            if version != "1":
                v = tmp_path / ("v" + version)
                util.gen_sample_data(v, "--version", version)
                os.replace(v / name, private_data.path / name)
            mark = proxy.mark()
            a.command("download", "title.ratings")
            assert a.wait_job(timeout=20) == 0, version
            if version != "3":
                wait_for(lambda: any(e["held"] for e in proxy.requests(since=mark)), 20,
                         "version %s's commit to be held" % version)
        newest = util.origin_gz(private_data.path, "title.ratings")
        wait_for(lambda: upload_of(a, "title.ratings")[1] == "done", 30, "the upload to end")
        assert len(re.findall(r"%s: upload cancelled: a newer copy is queued" % re.escape(name),
                              a.stderr_text())) == 2, a.stderr_text()[-3000:]
        assert len(commits(proxy, name)) == 1
    finally:
        proxy.release(hold)  # the cancelled uploads' commits arrive late: refused (fencing)
    proxy.settle()
    probe(azurite, "get", container, name, tmp_path / "blob")
    assert (tmp_path / "blob").read_bytes() == newest
    assert len(commits(proxy, name)) == 1, [e["upstream_status"] for e in proxy.requests()
                                            if BLOCKLIST in e["query"]]


@pytest.mark.timeout_s(90)
def test_an_upload_refused_as_busy_waits_for_its_retry_after(
        azurite, proxy, container, origin, sample_data, mount, tmp_path):  # noqa: F811
    """A Put Block answered 503 ServerBusy with Retry-After is sent again after that wait, not
    after the policy's own backoff (retry_delay=0.1: 0.1 s +-25%; its cap is 6 s): one retry
    policy, Retry-After included, for the origin and the container alike (retry.h)."""
    name = "title.ratings.tsv.gz"
    want = util.origin_gz(sample_data.path, "title.ratings")
    proxy.status(503, retry_after=2, path="/" + name, query="comp=block&")
    a = mount(origin.url(), env=env_through(azurite, proxy, container),
              extra_opts=("retries=2", "retry_delay=0.1"))
    assert (a / name).read_bytes() == want
    wait_for(lambda: upload_of(a, "title.ratings")[1] == "done", 30, "the upload to end")
    blocks = [e for e in proxy.requests() if e["path"].endswith("/" + name)
              and "comp=block&" in e["query"]]
    assert blocks[0]["status"] == 503 and all(e["upstream_status"] == 201 for e in blocks[1:])
    assert blocks[1]["time"] - blocks[0]["time"] >= 1.9, [e["time"] for e in blocks]
    assert "retrying in 2.00 s" in a.stderr_text(), a.stderr_text()[-2000:]
    probe(azurite, "get", container, name, tmp_path / "blob")
    assert (tmp_path / "blob").read_bytes() == want
