"""Disk full (issue 3): the cache dir is a small tmpfs (the conftest fixture, as root; unmounted at
teardown). A download or an extraction that runs out of space fails with "No space left on
device" in the job result, status, health and the log; the previous copy stays, byte for
byte, and is still served; nothing is left in .partial/; a reader gets EIO, never a short file.
"""

import errno
import os

import pytest

import util
from faulthelp import (DATA_FILE_ERRORS, cache_ids, fast_opts, fault_proxy,  # noqa: F401
                       install_all, read_until_error, versions, wait_idle)
from faultproxy import install_version
from util import DATASETS, GZ_NAMES, read_bytes

ENOSPC_TEXT = "No space left on device"
BIGD = "title.principals"


@pytest.fixture(scope="module")
def big_v2(tmp_path_factory):
    """title.principals, version 2, about 1.8 MB of gzip: more than the small cache can take."""
    d = tmp_path_factory.mktemp("enospc-big")
    util.gen_sample_data(d, "--scale", "10", "--level", "1", "--version", "2", "--only", BIGD)
    return d / (BIGD + ".tsv.gz")


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def start(versions, origin_factory, fault_proxy, mount, cache, tmp_path):
    data = tmp_path / "origin-data"
    install_all(versions, 1, data)
    origin = origin_factory(data)
    proxy = fault_proxy(origin)
    m = mount(proxy.url(), cache_dir=cache, extra_opts=fast_opts(retries=2),
              expected_errors=DATA_FILE_ERRORS)
    m.command("download", "all")
    assert m.wait_job() == 0, m.control("download")
    return data, proxy, m


def assert_enospc_reported(m, d, result, key):
    failed = {f["file"]: f["error"] for f in result[key]}
    assert len(failed) == 1, result
    assert ENOSPC_TEXT in list(failed.values())[0], result
    st = m.control("status")["datasets"][d]
    assert st["state"] == "failed" and ENOSPC_TEXT in (st["error"] or ""), st
    h = m.control("health")
    assert h["status"] == "degraded" and any(d in p for p in h["problems"]), h
    assert any(util.ERROR_LINE.match(line) and d in line and ENOSPC_TEXT in line
               for line in m.stderr_text().splitlines()), "no ERROR line naming the reason"


def partial_names(cache):
    p = cache / ".partial"
    return sorted(os.listdir(p)) if p.exists() else []


@pytest.mark.timeout_s(90)
def test_disk_full_during_download_keeps_the_old_copy(tmpfs, versions, origin_factory,
                                                      fault_proxy, mount, tmp_path, big_v2):
    cache = tmpfs("1m")
    data, proxy, m = start(versions, origin_factory, fault_proxy, mount, cache, tmp_path)
    big = os.path.getsize(big_v2)
    assert free_bytes(cache) < big, "the test needs a new version bigger than the free space"
    before = {d: cache_ids(cache, d) for d in DATASETS}
    install_version(data, BIGD + ".tsv.gz", big_v2)
    m.command("download", "all")
    assert m.wait_job() == 1
    res = m.control("download")
    assert_enospc_reported(m, BIGD, res, "failed_downloads")
    assert sorted(res["unchanged_files"]) == sorted(set(GZ_NAMES) - {BIGD + ".tsv.gz"}), res
    # The old copy: same file, same bytes, still served; the partial is gone.
    assert {d: cache_ids(cache, d) for d in DATASETS} == before
    assert read_bytes(m / (BIGD + ".tsv.gz")) == versions.gz(1, BIGD)
    assert partial_names(cache) == [], partial_names(cache)
    # Its .tsv (never extracted) does not fit either: the reader gets EIO, not a short file.
    got, err = read_until_error(m / (BIGD + ".tsv"))
    assert err == errno.EIO and versions.tsv(1, BIGD).startswith(got), (err, len(got))
    assert read_bytes(m / "title.ratings.tsv") == versions.tsv(1, "title.ratings")
    assert m.control("status")["datasets"][BIGD]["cached"] is True
    wait_idle(m)
    assert partial_names(cache) == [], partial_names(cache)


@pytest.mark.timeout_s(90)
def test_disk_full_for_a_cold_read_is_eio(tmpfs, versions, origin_factory, fault_proxy,
                                          mount, tmp_path, big_v2):
    cache = tmpfs("1m")
    data, proxy, m = start(versions, origin_factory, fault_proxy, mount, cache, tmp_path)
    os.unlink(m / (BIGD + ".tsv.gz"))
    install_version(data, BIGD + ".tsv.gz", big_v2)
    got, err = read_until_error(m / (BIGD + ".tsv.gz"))
    assert err == errno.EIO, (err, len(got))
    assert read_bytes(big_v2).startswith(got)
    wait_idle(m)
    st = m.control("status")["datasets"][BIGD]
    assert st["state"] == "failed" and ENOSPC_TEXT in (st["error"] or ""), st
    assert partial_names(cache) == []
    for d in DATASETS:  # the others are untouched and served
        if d != BIGD:
            assert read_bytes(m / (d + ".tsv.gz")) == versions.gz(1, d)


@pytest.mark.timeout_s(90)
def test_disk_full_during_extraction(tmpfs, versions, origin_factory, fault_proxy, mount,
                                     tmp_path):
    gz_total = sum(len(versions.gz(1, d)) for d in DATASETS)
    tsv = len(versions.tsv(1, BIGD))
    # Room for the seven .tsv.gz, their metadata and the small .tsv, not for BIGD's .tsv.
    size_kib = (gz_total + 40 * 4096 + len(versions.tsv(1, "title.ratings")) + tsv // 2) // 1024
    cache = tmpfs("%dk" % size_kib)
    data, proxy, m = start(versions, origin_factory, fault_proxy, mount, cache, tmp_path)
    assert free_bytes(cache) < tsv
    before = {d: cache_ids(cache, d) for d in DATASETS}
    m.command("extract", "title.ratings")
    assert m.wait_job() == 0, m.control("extract")
    assert read_bytes(cache / "title.ratings.tsv") == versions.tsv(1, "title.ratings")
    m.command("extract", BIGD)
    assert m.wait_job() == 1
    res = m.control("extract")
    assert_enospc_reported(m, BIGD, res, "failed_extractions")
    assert partial_names(cache) == []
    assert not (cache / (BIGD + ".tsv")).exists()
    assert {d: cache_ids(cache, d) for d in DATASETS} == before, "the .tsv.gz copies changed"
    assert read_bytes(cache / "title.ratings.tsv") == versions.tsv(1, "title.ratings")
    # A reader of the .tsv gets every byte that fitted, then EIO; the .gz is still served.
    got, err = read_until_error(m / (BIGD + ".tsv"))
    assert err == errno.EIO and versions.tsv(1, BIGD).startswith(got), (err, len(got))
    assert read_bytes(m / (BIGD + ".tsv.gz")) == versions.gz(1, BIGD)
    wait_idle(m)
    assert partial_names(cache) == []
