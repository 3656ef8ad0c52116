"""Scheduled refresh without cron: refresh_every=SECONDS and refresh_at=HH:MM (UTC).

A scheduled refresh is a conditional `download all`: with an unchanged origin every
dataset costs one 304, and the job shows in .control/status with trigger "schedule".
"""
import datetime
import time

import pytest

from faulthelp import STRESS
from util import mount_expecting_failure, read_json, wait_for, write_control

ALL_GZ = ["name.basics.tsv.gz", "title.akas.tsv.gz", "title.basics.tsv.gz", "title.crew.tsv.gz",
          "title.episode.tsv.gz", "title.principals.tsv.gz", "title.ratings.tsv.gz"]


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S")


def scheduled_jobs(m):
    return [j for j in read_json(m / ".control" / "status")["jobs"] if j["trigger"] == "schedule"]


def conditional_gets(origin, since):
    """{file: [status, ...]} of the GETs since a log mark."""
    out = {}
    for e in origin.gets(since=since):
        out.setdefault(e["uri"].rsplit("/", 1)[-1], []).append(e["status"])
    return out


@pytest.mark.timeout_s(60)
def test_refresh_every_revalidates_all_seven_and_shows_in_status(origin, mount):
    m = mount(origin.url(), extra_opts=("refresh_every=2",))
    assert read_json(m / ".control" / "config")["refresh_every"] == 2
    # The first scheduled run fetches the empty cache; wait for it to end.
    wait_for(lambda: any(j["state"] == "succeeded" for j in scheduled_jobs(m)), 30,
             "the first scheduled refresh to succeed")
    origin.settle()
    mark = origin.mark()
    first_runs = read_json(m / ".control" / "status")["schedule"]["runs"]

    wait_for(lambda: len([j for j in scheduled_jobs(m) if j["state"] != "running"]) >= 3, 30,
             "two more scheduled refreshes")
    origin.settle()
    sched = read_json(m / ".control" / "status")["schedule"]
    assert sched["runs"] >= first_runs + 2 and sched["last_outcome"] == "started", sched
    assert sched["next_at"] > sched["last_at"], sched
    gets = conditional_gets(origin, mark)
    assert sorted(gets) == ALL_GZ, gets
    for name, statuses in gets.items():
        assert set(statuses) == {304}, (name, statuses)
        assert len(statuses) >= 2, (name, statuses)
    assert all(j["state"] == "succeeded" for j in scheduled_jobs(m) if j["state"] != "running")
    result = read_json(m / ".control" / "download")
    assert result["job"]["trigger"] in ("schedule",), result["job"]


@pytest.mark.timeout_s(30)
def test_refresh_at_is_due_at_the_next_hhmm_utc(origin, mount):
    now = time.time()
    soon = now + 2 * 3600 - (now % 60)  # two hours from now, on the minute
    passed = now - 3600 - (now % 60)  # an hour ago: due tomorrow
    for t, due in ((soon, soon), (passed, passed + 86400)):
        hhmm = time.strftime("%H:%M", time.gmtime(t))
        m = mount(origin.url(), extra_opts=("refresh_at=" + hhmm,))
        assert read_json(m / ".control" / "config")["refresh_at"] == hhmm
        sched = read_json(m / ".control" / "status")["schedule"]
        assert sched["next_at"].startswith(iso(due)), (hhmm, sched)
        assert sched["runs"] == 0 and sched["last_at"] is None, sched
        m.unmount()


@pytest.mark.timeout_s(30)
def test_no_schedule_by_default_and_commands_say_so(origin, mount):
    m = mount(origin.url())
    status = read_json(m / ".control" / "status")
    assert status["schedule"] is None
    config = read_json(m / ".control" / "config")
    assert config["refresh_at"] is None and config["refresh_every"] is None
    write_control(m / ".control" / "download", "title.ratings\n")
    m.wait_job()
    assert read_json(m / ".control" / "download")["job"]["trigger"] == "command"


@pytest.mark.timeout_s(30)
@pytest.mark.parametrize("opt", ["refresh_at=25:00", "refresh_at=9:00", "refresh_every=0",
                                 "refresh_every=soon"])
def test_bad_schedule_refuses_the_mount_in_one_line(tmp_path, opt):
    code, err = mount_expecting_failure(tmp_path / "mnt", opt + ",cache_dir=%s" % (tmp_path / "c"))
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and opt.split("=")[0] in lines[0], err


@pytest.mark.skipif(not STRESS, reason="waits up to a minute for the clock: make test-stress")
@pytest.mark.timeout_s(150)
def test_refresh_at_fires_on_the_minute(origin, mount):
    now = time.time()
    if 60 - now % 60 < 5:  # too close to the next minute to mount in time
        time.sleep(6)
        now = time.time()
    due = now + 60 - now % 60
    m = mount(origin.url(), extra_opts=("refresh_at=" + time.strftime("%H:%M", time.gmtime(due)),))
    wait_for(lambda: scheduled_jobs(m), 90, "the refresh at the minute")
    started = read_json(m / ".control" / "status")["schedule"]["last_at"]
    assert started.startswith(iso(due)), started
