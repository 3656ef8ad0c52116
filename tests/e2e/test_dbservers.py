"""The database server harness (dbservers.py): the servers start, load data and stop cleanly."""

import socket
import subprocess
import time
from urllib.parse import urlsplit

import pytest

import dbservers
from util import run

ROWS = [
    ("tt0000001", "Carmencita", "1894", None),
    ("tt0000002", "Le clown et ses chiens", "1892", "5"),
    ("tt0000003", "Pauvre Pierrot", None, "4"),
    ("tt0000004", "Ünicode – 映画", "1892", "12"),
]


def tsv(rows, header=None):
    """IMDb-style TSV: tab-separated, \\N for NULL, a newline after every line."""
    lines = ["\t".join(header)] if header else []
    lines += ["\t".join("\\N" if v is None else v for v in r) for r in rows]
    return "".join(line + "\n" for line in lines)


def parse(out, sep="\t"):
    """psql -At (sep "|", NULL as "") or mariadb --batch (NULL as "NULL") output as rows."""
    return [tuple(None if v in ("", "NULL") else v for v in line.split(sep))
            for line in out.splitlines()]


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def assert_gone(pids, what):
    alive = []
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state not in ("Z", "X"):  # a pid reused since would also be reported: unlikely
            alive.append(pid)
    assert not alive, "%s left processes %s after stop()" % (what, alive)


# ----------------------------------------------------------------- PostgreSQL

@pytest.mark.timeout_s(30)
def test_postgres_answers(postgres):
    assert postgres.url == "postgresql://postgres@127.0.0.1:%d/imdb" % postgres.port
    assert postgres.psql("select 1") == "1\n"
    assert postgres.psql("select current_database(), current_user") == "imdb|postgres\n"
    settings = postgres.psql("select name || '=' || setting from pg_settings where name in "
                             "('fsync', 'listen_addresses', 'wal_level', 'port') order by name")
    assert settings.split() == ["fsync=off", "listen_addresses=127.0.0.1",
                                "port=%d" % postgres.port, "wal_level=minimal"]
    with pytest.raises(dbservers.DBServerError, match="no_such_table"):
        postgres.psql("select * from no_such_table")


@pytest.mark.timeout_s(30)
def test_postgres_copy_from_stdin_with_url(postgres):
    postgres.psql("create table copy_test (tconst text primary key, title text, year int, "
                  "n int)")
    try:
        # A client that knows only the URL, as the importer will be.
        p = run(["psql", "-X", "-v", "ON_ERROR_STOP=1", postgres.url,
                 "-c", "COPY copy_test FROM STDIN (FORMAT text, HEADER true)"],
                input=tsv(ROWS, ["tconst", "title", "year", "n"]), universal_newlines=True)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == "COPY %d" % len(ROWS)
        out = postgres.psql("select tconst, title, year, n from copy_test order by tconst")
        assert parse(out, "|") == ROWS
    finally:
        postgres.psql("drop table copy_test")


@pytest.mark.timeout_s(90)
def test_postgres_stop_leaves_no_process(tmp_path):
    t0 = time.monotonic()
    pg = dbservers.Postgres.start(tmp_path / "pg")
    try:
        print("PostgreSQL started in %.2f s" % (time.monotonic() - t0))
        pids = pg.pids()
        assert len(pids) > 1, "expected the postmaster and its background processes: %s" % pids
        assert pg.psql("select 1") == "1\n"
        port = pg.port
    finally:
        pg.stop()
    assert_gone(pids, "PostgreSQL")
    assert pg.pids() == []
    assert refused(port)
    pg.stop()  # idempotent
    with pytest.raises(dbservers.DBServerError):
        pg.psql("select 1")


# ----------------------------------------------------------------- MariaDB

@pytest.mark.timeout_s(30)
def test_mariadb_answers(mariadb):
    assert mariadb.url == "mysql://imdb:imdb@127.0.0.1:%d/imdb" % mariadb.port
    assert mariadb.sql("select 1") == "1\n"
    assert parse(mariadb.sql("select database(), current_user(), @@local_infile, @@port")) == \
        [("imdb", "imdb@127.0.0.1", "1", str(mariadb.port))]
    with pytest.raises(dbservers.DBServerError, match="no_such_table"):
        mariadb.sql("select * from no_such_table")


@pytest.mark.timeout_s(30)
def test_mariadb_load_data_local_infile(mariadb, tmp_path):
    data = tmp_path / "rows.tsv"
    data.write_text(tsv(ROWS, ["tconst", "title", "year", "n"]), encoding="utf-8")
    mariadb.sql("create table load_test (tconst varchar(12) primary key, title text, year int, "
                "n int)")
    try:
        # A client that knows only the URL, with local_infile enabled on its side.
        u = urlsplit(mariadb.url)
        p = run(["mariadb", "--no-defaults", "--protocol=TCP", "-h", u.hostname, "-P", u.port,
                 "-u", u.username, "-p" + u.password, "--local-infile=1",
                 "--default-character-set=utf8mb4", "--batch", "--skip-column-names",
                 u.path.lstrip("/"),
                 "-e", "LOAD DATA LOCAL INFILE '%s' INTO TABLE load_test CHARACTER SET utf8mb4 "
                       "FIELDS TERMINATED BY '\\t' ESCAPED BY '' LINES TERMINATED BY '\\n' "
                       "IGNORE 1 LINES (tconst, title, @year, @n) "
                       "SET year = NULLIF(@year, '\\\\N'), n = NULLIF(@n, '\\\\N'); "
                       "select row_count()" % data],
                universal_newlines=True)
        assert p.returncode == 0, p.stderr
        assert p.stdout == "%d\n" % len(ROWS)
        out = mariadb.sql("select tconst, title, year, n from load_test order by tconst")
        assert parse(out) == ROWS
    finally:
        mariadb.sql("drop table load_test")


@pytest.mark.timeout_s(90)
def test_mariadb_stop_leaves_no_process(tmp_path):
    t0 = time.monotonic()
    my = dbservers.MariaDB.start(tmp_path / "my")
    try:
        print("MariaDB started in %.2f s" % (time.monotonic() - t0))
        pids = my.pids()
        assert len(pids) == 1
        assert my.sql("select 1") == "1\n"
        port = my.port
    finally:
        my.stop()
    assert_gone(pids, "MariaDB")
    assert my.pids() == []
    assert my.proc.returncode == 0, "mariadbd did not shut down cleanly: %s\n%s" \
        % (my.proc.returncode, my.log_tail())
    assert refused(port)
    assert not (tmp_path / "my" / "mariadbd.pid").exists()
    my.stop()  # idempotent
    with pytest.raises(dbservers.DBServerError):
        my.sql("select 1")
    # Nothing of it runs under another pid either (mariadbd has no children).
    p = subprocess.run(["pgrep", "-f", str(tmp_path / "my" / "data")], stdout=subprocess.PIPE,
                       universal_newlines=True)
    assert p.stdout == "", "processes still use the data dir: %s" % p.stdout
