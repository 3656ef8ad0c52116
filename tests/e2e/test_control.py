"""The .control/ files: JSON reports and commands."""

import errno
import json
import os
import re
import shutil
import subprocess
import time

import promtext
import pytest

from util import (CONTROL_FILES, DATASETS, GZ_NAMES, STATES, TSV_NAMES, DATA_NAMES, origin_gz,
                  origin_tsv, read_bytes, read_json, run, strip_etag, wait_for, write_control)

JSON_FILES = [f for f in CONTROL_FILES if f != "metrics"]
ISO8601 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")
STATUS_FIELDS = {"state", "cached", "extracted", "bytes_done", "bytes_total", "rate_bps", "eta_s",
                 "error", "etag", "fetched_at"}


def download_all(m, command="all"):
    m.command("download", command)
    assert m.wait_job() == 0, m.control("download")
    return m.control("download")


@pytest.mark.parametrize("name", JSON_FILES)
def test_reads_are_json_with_a_newline(origin, mount, name):
    m = mount(origin.url())
    read_json(m / ".control" / name)


def test_reads_are_fresh_and_consistent_in_small_pieces(origin, mount):
    """procfs-like: a whole read of one open is one snapshot, each open is fresh."""
    m = mount(origin.url())
    fd = os.open(m / ".control" / "health", os.O_RDONLY)
    try:
        pieces = []
        while True:
            b = os.read(fd, 7)
            if not b:
                break
            pieces.append(b)
            time.sleep(0.01)
    finally:
        os.close(fd)
    doc = json.loads(b"".join(pieces))
    assert doc["status"] == "healthy"
    time.sleep(1.1)
    again = m.control("health")
    assert again["timestamp"] != doc["timestamp"], "a new open must render fresh content"


def test_health(origin, mount):
    m = mount(origin.url())
    h = m.control("health")
    assert h["status"] == "healthy"
    assert isinstance(h["message"], str) and h["message"]
    assert isinstance(h["version"], str) and h["version"]
    assert ISO8601.match(h["timestamp"]), h["timestamp"]
    assert h["storage"] == "local"
    assert h["origin"] == origin.url()
    assert isinstance(h["uptime_s"], (int, float)) and h["uptime_s"] >= 0


def test_datasets(origin, mount):
    m = mount(origin.url())
    d = m.control("datasets")
    assert sorted(d["datasets"]) == sorted(GZ_NAMES)
    assert d["total_count"] == 7


def test_config_shows_effective_settings(origin, mount):
    m = mount(origin.url(), extra_opts=("concurrency=3", "max_age=120"))
    c = m.control("config")
    assert c["origin"] == origin.url()
    assert os.path.realpath(c["cache_dir"]) == os.path.realpath(m.cache_dir)
    assert c["storage"] == "local"
    assert c["concurrency"] in (3, "3")
    assert c["max_age"] in (120, "120")
    assert c["log_level"] == "debug"


def test_config_defaults(origin, mount):
    m = mount(origin.url())
    c = m.control("config")
    assert c["concurrency"] in (7, "7")
    assert c["max_age"] in (86400, "86400")


def test_secrets_never_shown(origin, mount):
    secret = "c2VjcmV0LWtleS1zaG91bGQtbmV2ZXItbGVhaw=="
    env = {"AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=acct;"
           "AccountKey=%s;EndpointSuffix=core.windows.net" % secret,
           "AZURE_STORAGE_SAS_TOKEN": "sv=2022-11-02&sig=" + secret}
    m = mount(origin.url(), env=env)
    read_bytes(m / "title.ratings.tsv.gz")
    for name in CONTROL_FILES:
        assert secret not in read_bytes(m / ".control" / name).decode(), name
    assert secret not in m.stderr_text()


def test_metrics_are_prometheus_text(origin, mount, sample_data):
    m = mount(origin.url())

    def scrape():
        text = read_bytes(m / ".control" / "metrics").decode()
        families = promtext.parse(text)  # strict: raises on anything malformed
        if shutil.which("promtool"):  # Prometheus's own parser and linter
            lint = subprocess.run(["promtool", "check", "metrics"], input=text, timeout=30,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  universal_newlines=True)
            assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout
        return families

    before = scrape()
    assert all(f["help"] and f["typed"] for f in before.values()), before
    # Only the times of cached copies have no series before anything is cached.
    empty = sorted(name for name, f in before.items() if not f["samples"])
    assert empty == ["imdbfs_dataset_fetched_timestamp_seconds",
                     "imdbfs_dataset_last_modified_timestamp_seconds"], empty
    assert all(name.startswith("imdbfs_") for name in before)
    assert all(name.endswith("_total") for name, f in before.items() if f["type"] == "counter")
    health = read_json(m / ".control" / "health")
    assert promtext.value(before, "imdbfs_build_info", version=health["version"]) == 1
    assert promtext.value(before, "imdbfs_healthy") == 1

    data = read_bytes(m / "title.ratings.tsv.gz")
    assert data == origin_gz(sample_data, "title.ratings")
    after = scrape()
    grew = lambda fam, **lb: (promtext.value(after, fam, **lb) -
                              promtext.value(before, fam, **lb))
    assert grew("imdbfs_fetched_bytes_total", source="origin") == len(data)
    assert grew("imdbfs_fetched_bytes_total", source="container") == 0
    assert grew("imdbfs_downloads_total", outcome="ok") == 1
    assert grew("imdbfs_read_bytes_total") == len(data)
    assert grew("imdbfs_reads_total") >= 1
    assert promtext.value(after, "imdbfs_cached_bytes", file="title.ratings.tsv.gz") == len(data)
    assert promtext.value(after, "imdbfs_cached_bytes", file="title.basics.tsv.gz") == 0
    fetched = promtext.value(after, "imdbfs_dataset_fetched_timestamp_seconds",
                             dataset="title.ratings")
    assert abs(fetched - time.time()) < 60
    states = {}
    for (_, labels), v in after["imdbfs_dataset_state"]["samples"].items():
        lb = dict(labels)
        assert v in (0, 1)
        states.setdefault(lb["dataset"], {})[lb["state"]] = v
    assert sorted(states) == sorted(DATASETS)
    for ds, by_state in states.items():
        assert set(by_state) == set(STATES) and sum(by_state.values()) == 1, (ds, by_state)
    assert states["title.ratings"]["cached"] == 1 and states["title.basics"]["absent"] == 1


@pytest.mark.parametrize("bad", [
    "metric 1",                                       # no newline at the end
    "# TYPE a counter\n# TYPE a gauge\na 1\n",          # TYPE twice
    "# TYPE a counter\na -1\n",                        # a counter below zero
    "a 1\nb 1\na 2\n",                                 # samples apart
    "a{x=\"1\"} 1\na{x=\"1\"} 2\n",                       # duplicate series
    "a{x=\"1\",x=\"2\"} 1\n",                            # label twice
    "a 1\n# HELP a late\n",                            # HELP after samples
    "a one\n",                                         # bad value
    "a{x=1} 1\n",                                      # unquoted label
])
def test_the_metrics_parser_is_strict(bad):
    with pytest.raises(ValueError):
        promtext.parse(bad)


def test_status_before_anything(origin, mount):
    m = mount(origin.url())
    s = m.control("status")
    assert sorted(s["datasets"]) == sorted(DATASETS)
    for d, st in s["datasets"].items():
        assert STATUS_FIELDS <= set(st), (d, st)
        assert st["state"] == "absent", (d, st)
        assert st["cached"] is False and st["extracted"] is False
    assert s["jobs_running"] == 0
    assert s["command_error"] is None


def test_download_all_with_shell_echo(origin, mount, sample_data):
    m = mount(origin.url())
    p = run(["sh", "-c", 'echo all > "$1"', "sh", m / ".control" / "download"], timeout=10)
    assert p.returncode == 0, p.stderr
    assert m.wait_job() == 0
    r = m.control("download")
    assert isinstance(r["message"], str) and r["message"]
    assert sorted(r["downloaded_files"]) == sorted(GZ_NAMES)
    assert r["unchanged_files"] == []
    assert r["failed_downloads"] == []
    assert r["total_files"] == 7
    assert r["successful_downloads"] == 7
    for d in DATASETS:
        assert len(origin.gets(d + ".tsv.gz")) == 1, d

    s = m.control("status")
    assert sorted(s["datasets"]) == sorted(DATASETS)
    for d, st in s["datasets"].items():
        assert st["state"] == "cached", (d, st)
        assert st["cached"] is True and st["extracted"] is False
        size = os.path.getsize(sample_data / (d + ".tsv.gz"))
        assert st["bytes_done"] == size and st["bytes_total"] == size, (d, st)
        assert st["error"] is None
        assert strip_etag(st["etag"]) == strip_etag(origin.gets(d + ".tsv.gz")[0]["etag"])
        assert ISO8601.match(st["fetched_at"]), st["fetched_at"]
    job = s["job"]
    assert "id" in job
    assert job["command"] == "download" and job["args"] == "all"
    assert job["state"] == "succeeded"
    assert ISO8601.match(job["started_at"]) and ISO8601.match(job["finished_at"])
    assert s["jobs_running"] == 0
    # The cached copies are the origin's bytes.
    for d in DATASETS:
        assert read_bytes(m.cache_dir / (d + ".tsv.gz")) == origin_gz(sample_data, d)


def test_download_with_python_open(origin, mount):
    m = mount(origin.url())
    with open(m / ".control" / "download", "w") as f:
        f.write("title.basics\n")
    assert m.wait_job() == 0
    r = m.control("download")
    assert r["downloaded_files"] == ["title.basics.tsv.gz"]
    assert r["total_files"] == 1 and r["successful_downloads"] == 1
    assert len(origin.gets("title.basics.tsv.gz")) == 1
    assert origin.gets("title.ratings.tsv.gz") == []


@pytest.mark.parametrize("command,names", [
    ("title.basics title.ratings.tsv.gz", ["title.basics", "title.ratings"]),
    ("title.crew,title.episode", ["title.crew", "title.episode"]),
    ("name.basics, title.akas.tsv.gz", ["name.basics", "title.akas"]),
    ("title.ratings force", ["title.ratings"]),
])
def test_download_named_datasets(origin, mount, command, names):
    m = mount(origin.url())
    r = download_all(m, command)
    assert sorted(r["downloaded_files"]) == sorted(n + ".tsv.gz" for n in names)
    assert r["total_files"] == len(names)
    fetched = sorted({e["uri"].rsplit("/", 1)[-1] for e in origin.gets()})
    assert fetched == sorted(n + ".tsv.gz" for n in names)
    s = m.control("status")["datasets"]
    for d in DATASETS:
        assert s[d]["state"] == ("cached" if d in names else "absent"), (d, s[d])


def test_download_again_revalidates(origin, mount):
    m = mount(origin.url())
    download_all(m)
    mark = origin.mark()
    r = download_all(m)
    assert sorted(r["unchanged_files"]) == sorted(GZ_NAMES)
    assert r["downloaded_files"] == []
    assert r["failed_downloads"] == []
    origin.settle()
    for e in origin.requests(mark):
        assert e["status"] == 304 and (e["if_none_match"] or e["if_modified_since"]), e


def test_download_force_refetches(origin, mount):
    m = mount(origin.url())
    download_all(m)
    mark = origin.mark()
    r = download_all(m, "all force")
    assert sorted(r["downloaded_files"]) == sorted(GZ_NAMES)
    origin.settle()
    full = [e for e in origin.requests(mark) if e["status"] == 200]
    assert sorted(e["uri"].rsplit("/", 1)[-1] for e in full) == sorted(GZ_NAMES)


def test_extract_all(origin, mount, sample_data):
    m = mount(origin.url())
    download_all(m)
    m.command("extract", "all")
    assert m.wait_job() == 0
    r = m.control("extract")
    assert isinstance(r["message"], str) and r["message"]
    assert sorted(r["extracted_files"]) == sorted(TSV_NAMES)
    assert r["failed_extractions"] == []
    assert r["total_files"] == 7 and r["successful_extractions"] == 7
    s = m.control("status")
    for d, st in s["datasets"].items():
        assert st["state"] == "extracted", (d, st)
        assert st["cached"] is True and st["extracted"] is True
    assert s["job"]["command"] == "extract" and s["job"]["state"] == "succeeded"
    for d in DATASETS:
        assert read_bytes(m.cache_dir / (d + ".tsv")) == origin_tsv(sample_data, d)


def test_full_process(origin, mount, sample_data):
    m = mount(origin.url())
    m.command("full-process", "all")
    assert m.wait_job() == 0
    r = m.control("full-process")
    assert isinstance(r["message"], str) and r["message"]
    assert sorted(r["download"]["downloaded_files"]) == sorted(GZ_NAMES)
    assert r["download"]["successful_downloads"] == 7
    assert sorted(r["extract"]["extracted_files"]) == sorted(TSV_NAMES)
    assert r["extract"]["successful_extractions"] == 7
    for d, st in m.control("status")["datasets"].items():
        assert st["state"] == "extracted", (d, st)
    for d in DATASETS:
        assert read_bytes(m / (d + ".tsv")) == origin_tsv(sample_data, d)


def test_delete_all(origin, mount, sample_data):
    m = mount(origin.url())
    m.command("full-process", "all")
    assert m.wait_job() == 0
    assert m.control("files")["total_files"] == 14
    m.command("delete", "all")
    assert m.wait_job() == 0
    r = m.control("delete")
    assert isinstance(r["message"], str) and r["message"]
    assert sorted(r["deleted_files"]) == sorted(DATA_NAMES)
    assert r["total_deleted"] == 14
    f = m.control("files")
    assert f["files"] == [] and f["total_files"] == 0
    assert sorted(os.listdir(m.path)) == sorted(DATA_NAMES + [".control"])
    for name in DATA_NAMES:
        assert not (m.cache_dir / name).exists(), name
    for d, st in m.control("status")["datasets"].items():
        assert st["state"] == "absent", (d, st)
    # And a read fetches again.
    mark = origin.mark()
    assert read_bytes(m / "title.ratings.tsv") == origin_tsv(sample_data, "title.ratings")
    assert len(origin.gets("title.ratings.tsv.gz", since=mark)) == 1


def test_files_lists_cached_files_only(origin, mount, sample_data):
    m = mount(origin.url())
    f = m.control("files")
    assert f["files"] == [] and f["total_files"] == 0
    assert isinstance(f["directory"], str) and f["directory"]
    read_bytes(m / "title.ratings.tsv.gz")
    f = m.control("files")
    assert f["total_files"] == 1
    [entry] = f["files"]
    size = os.path.getsize(sample_data / "title.ratings.tsv.gz")
    assert entry["name"] == "title.ratings.tsv.gz"
    assert entry["size_bytes"] == size
    assert abs(entry["size_mb"] - size / (1024 * 1024)) < 0.01
    assert ISO8601.match(entry["last_modified"]), entry
    assert strip_etag(entry["etag"]) == strip_etag(origin.gets("title.ratings.tsv.gz")[0]["etag"])
    assert entry["content_type"]
    assert entry["state"] in STATES and entry["state"] in ("cached", "extracted")


@pytest.mark.parametrize("target,command", [
    ("download", c) for c in ("bogus", "title.nothing", "", "force", "all bogus", "title.basics.tsv.bz2")
] + [(t, c) for t in ("extract", "full-process", "delete") for c in ("bogus", "title.nothing")])
def test_malformed_command_is_einval_and_starts_nothing(origin, mount, target, command):
    m = mount(origin.url())
    if target == "delete":
        read_bytes(m / "title.ratings.tsv.gz")  # something that a wrong delete would remove
    # The HEADs the mount sends for the sizes (README: Sizes at the first stat) come first.
    wait_for(lambda: not m.control("health")["sizes"]["probing"], 10, "the size probe")
    origin.settle(quiet=0.1)
    mark = origin.mark()
    with pytest.raises(OSError) as e:
        write_control(m / ".control" / target, command + "\n")
    assert e.value.errno == errno.EINVAL, e.value
    time.sleep(0.3)
    assert origin.requests(mark) == [], "a refused command started requests"
    s = m.control("status")
    assert s["jobs_running"] == 0
    assert s["command_error"], "status should explain the refused command"
    if command == "bogus":
        assert "bogus" in json.dumps(s["command_error"])
    if target == "delete":
        assert (m.cache_dir / "title.ratings.tsv.gz").exists()
