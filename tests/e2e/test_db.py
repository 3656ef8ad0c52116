"""scripts/imdb-db against real servers, reading a real imdbfs mount (issue 4).

For PostgreSQL, SQLite and MariaDB (one database of its own per test; the servers are the
session's): an exact load (every table exported back and compared with the origin's files
field by field, NULLs told apart from the text `\\N`), the views against rows computed here
from the files, a reload while a reader counts rows in a loop, a load killed halfway that
leaves the old tables, loading twice, and the CLI's commands and errors. The three schema
files are compared by name. PostgreSQL only: `full-process` on a cold, throttled mount starts
loading while the download is still running, and waits for a refresh of cached datasets.
"""

import gzip
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import dbservers
import util
from util import DATASETS, REPO, run, wait_for

IMDB_DB = REPO / "scripts" / "imdb-db"
SQL_DIR = REPO / "sql"
NULL = "\\N"
SENTINEL = "<<NULL>>"  # how exports show a NULL: never a field of the files
CLIENTS = ("psql", "sqlite3", "mariadb", "mysql")
KINDS = ["postgresql", "sqlite", "mariadb"]

# table: (dataset, [(column, kind)]), columns in the files' order. Kinds: text, int, bool,
# rating (one decimal), array (',' between elements), array02 (byte 0x02 between elements).
TABLES = {
    "name_basics": ("name.basics", [
        ("nconst", "text"), ("primary_name", "text"), ("birth_year", "int"),
        ("death_year", "int"), ("primary_profession", "array"), ("known_for_titles", "array")]),
    "title_akas": ("title.akas", [
        ("title_id", "text"), ("ordering", "int"), ("title", "text"), ("region", "text"),
        ("language", "text"), ("types", "array02"), ("attributes", "array02"),
        ("is_original_title", "bool")]),
    "title_basics": ("title.basics", [
        ("tconst", "text"), ("title_type", "text"), ("primary_title", "text"),
        ("original_title", "text"), ("is_adult", "bool"), ("start_year", "int"),
        ("end_year", "int"), ("runtime_minutes", "int"), ("genres", "array")]),
    "title_crew": ("title.crew", [
        ("tconst", "text"), ("directors", "array"), ("writers", "array")]),
    "title_episode": ("title.episode", [
        ("tconst", "text"), ("parent_tconst", "text"), ("season_number", "int"),
        ("episode_number", "int")]),
    "title_principals": ("title.principals", [
        ("tconst", "text"), ("ordering", "int"), ("nconst", "text"), ("category", "text"),
        ("job", "text"), ("characters", "text")]),
    "title_ratings": ("title.ratings", [
        ("tconst", "text"), ("average_rating", "rating"), ("num_votes", "int")]),
}
TABLE_OF = {ds: t for t, (ds, _) in TABLES.items()}
VIEWS = {
    "movies_with_ratings": [
        ("tconst", "text"), ("primary_title", "text"), ("original_title", "text"),
        ("start_year", "int"), ("runtime_minutes", "int"), ("genres", "array"),
        ("average_rating", "rating"), ("num_votes", "int")],
    "top_rated_movies": [
        ("tconst", "text"), ("primary_title", "text"), ("start_year", "int"),
        ("average_rating", "rating"), ("num_votes", "int")],
    "tv_episodes": [
        ("tconst", "text"), ("parent_tconst", "text"), ("series_title", "text"),
        ("season_number", "int"), ("episode_number", "int"), ("episode_title", "text")],
    "title_cast": [
        ("tconst", "text"), ("ordering", "int"), ("nconst", "text"), ("primary_name", "text"),
        ("category", "text"), ("job", "text"), ("characters", "text")],
}


def client_env():
    """Our environment without the clients' variables (PGHOST, MYSQL_PWD, ...)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PG", "MYSQL", "IMDBFS_MOUNT"))}


def imdb_db(*args, timeout=120):
    return run([IMDB_DB, *args], timeout=timeout, universal_newlines=True, env=client_env())


def describe(p):
    return "exit %s\nstdout:\n%s\nstderr:\n%s" % (p.returncode, p.stdout, p.stderr)


# ----------------------------------------------------------------- databases

class DB:
    """A database of its own on one of the servers (or an SQLite file), queried with the
    stock client. rows(sql) returns the result as lists of strings, NULL as SENTINEL (for
    MariaDB only where the query says so: its client cannot be told)."""

    def __init__(self, kind, url, name=None, server=None, path=None):
        self.kind, self.url, self.name, self.server, self.path = kind, url, name, server, path

    def __repr__(self):
        return "DB(%s)" % self.url

    def command(self):
        if self.kind == "postgresql":
            return ["psql", "-X", "-q", "-At", "-F", "\t", "-P", "null=" + SENTINEL,
                    "-v", "ON_ERROR_STOP=1", "-d", self.url, "-f", "-"]
        if self.kind == "sqlite":
            return ["sqlite3", "-batch", "-bail", "-noheader", "-separator", "\t",
                    "-nullvalue", SENTINEL, "-cmd", ".timeout 30000", str(self.path)]
        return ["mariadb", "--no-defaults", "--protocol=TCP", "--host=127.0.0.1",
                "--port=%d" % self.server.port, "--user=" + dbservers.MARIADB_USER,
                "--password=" + dbservers.MARIADB_PASSWORD, "--batch", "--raw",
                "--skip-column-names", "--default-character-set=utf8mb4", self.name]

    def rows(self, sql, timeout=120):
        p = subprocess.run(self.command(), input=sql.encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, env=client_env())
        if p.returncode != 0:
            raise AssertionError("%s failed on %r: %s" % (self.kind, sql[:300],
                                                          p.stderr.decode(errors="replace")))
        out = p.stdout.decode("utf-8")
        assert out == "" or out.endswith("\n"), out[-200:]
        return [line.split("\t") for line in out[:-1].split("\n")] if out else []

    def scalar(self, sql):
        rows = self.rows(sql)
        assert len(rows) == 1 and len(rows[0]) == 1, (sql, rows)
        return rows[0][0]

    def count(self, relation):
        return int(self.scalar("SELECT count(*) FROM %s;" % relation))

    # -- how a column reads back as the files' text

    def expr(self, col, kind):
        if self.kind == "postgresql":
            return {"text": col, "int": col + "::text", "bool": col + "::int::text",
                    "rating": col + "::text", "array": "array_to_string(%s, ',')" % col,
                    "array02": "array_to_string(%s, E'\\x02')" % col}[kind]
        if self.kind == "sqlite":
            if kind == "rating":  # SQLite stores 10.0 as the integer 10
                return "CASE WHEN %s IS NULL THEN NULL ELSE printf('%%.1f', %s) END" % (col, col)
            return col
        return "IFNULL(%s, '%s')" % (col, SENTINEL)

    def select(self, relation, columns, tail=""):
        return "SELECT %s FROM %s%s;" % (", ".join(self.expr(c, k) for c, k in columns),
                                         relation, tail)

    def export(self, relation, columns):
        return self.rows(self.select(relation, columns))

    def export_all(self):
        return {t: sorted(map(tuple, self.export(t, cols))) for t, (_, cols) in TABLES.items()}

    def backslash_n(self):
        """The SQL literal of the two-byte text backslash N."""
        return "'\\\\N'" if self.kind == "mariadb" else "'\\N'"

    def tables(self):
        """The base tables in this database."""
        q = {"postgresql": "SELECT schemaname || '.' || tablename FROM pg_tables WHERE "
                           "schemaname NOT IN ('pg_catalog', 'information_schema');",
             "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table';",
             "mariadb": "SELECT table_name FROM information_schema.tables WHERE "
                        "table_schema = DATABASE() AND table_type = 'BASE TABLE';"}[self.kind]
        return sorted(r[0] for r in self.rows(q))

    def drop(self):
        try:
            if self.kind == "postgresql":
                self.server.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.name,
                                 db="postgres")
            elif self.kind == "mariadb":
                self.server.sql("DROP DATABASE IF EXISTS %s" % self.name)
        except dbservers.DBServerError:
            pass  # the server may be gone already (end of session)


@pytest.fixture
def new_db(request, tmp_path):
    """new_db(kind) -> a new empty database (dropped at teardown)."""
    made = []

    def make(kind):
        name = "t_%s" % uuid.uuid4().hex[:12]
        if kind == "postgresql":
            pg = request.getfixturevalue("postgres")
            pg.psql("CREATE DATABASE %s" % name, db="postgres")
            d = DB(kind, pg.url.rsplit("/", 1)[0] + "/" + name, name, pg)
        elif kind == "mariadb":
            my = request.getfixturevalue("mariadb")
            my.sql("CREATE DATABASE %s CHARACTER SET utf8mb4" % name)
            d = DB(kind, my.url.rsplit("/", 1)[0] + "/" + name, name, my)
        else:
            path = tmp_path / ("%s.db" % name)
            d = DB(kind, "sqlite:%s" % path, path=path)
        made.append(d)
        return d

    yield make
    for d in made:
        d.drop()


@pytest.fixture(params=KINDS)
def db(request, new_db):
    return new_db(request.param)


# ----------------------------------------------------------------- the files

_PARSED = {}


def file_rows(data_dir, dataset):
    """The data lines of the origin's NAME.tsv.gz (all members), each a tuple of fields."""
    path = Path(data_dir) / (dataset + ".tsv.gz")
    key = (str(path), os.stat(path).st_mtime_ns, os.stat(path).st_size)
    if key not in _PARSED:
        with gzip.open(path, "rb") as f:
            text = f.read().decode("utf-8")
        assert text.endswith("\n")
        lines = text[:-1].split("\n")
        ncols = len(TABLES[TABLE_OF[dataset]][1])
        rows = [tuple(line.split("\t")) for line in lines[1:]]
        bad = [r for r in rows if len(r) != ncols]
        assert not bad, "%s: lines with the wrong number of fields: %r" % (dataset, bad[:3])
        _PARSED[key] = rows
    return _PARSED[key]


def with_sentinel(rows):
    return sorted(tuple(SENTINEL if f == NULL else f for f in r) for r in rows)


def expected_views(data_dir):
    """The four views' rows, computed from the files (NULL as SENTINEL)."""
    f = {d: [tuple(SENTINEL if v == NULL else v for v in r) for r in file_rows(data_dir, d)]
         for d in DATASETS}
    basics_by, ratings_by, names_by = defaultdict(list), defaultdict(list), defaultdict(list)
    for b in f["title.basics"]:
        basics_by[b[0]].append(b)
    for r in f["title.ratings"]:
        ratings_by[r[0]].append(r)
    for n in f["name.basics"]:
        names_by[n[0]].append(n)
    mwr = [(b[0], b[2], b[3], b[5], b[7], b[8], r[1], r[2])
           for b in f["title.basics"] if b[1] == "movie" for r in ratings_by[b[0]]]
    assert all(m[6] != SENTINEL and m[7] != SENTINEL for m in mwr)  # the order below needs it
    top = sorted([(m[0], m[1], m[3], m[6], m[7]) for m in mwr if int(m[7]) >= 25000],
                 key=lambda m: (-float(m[3]), -int(m[4]), m[0]))
    episodes = [(e[0], e[1], s[2] if s else SENTINEL, e[2], e[3], t[2] if t else SENTINEL)
                for e in f["title.episode"]
                for t in (basics_by.get(e[0]) or [None])
                for s in (basics_by.get(e[1]) or [None])]
    cast = [(p[0], p[1], p[2], n[1] if n else SENTINEL, p[3], p[4], p[5])
            for p in f["title.principals"] for n in (names_by.get(p[2]) or [None])]
    return {"movies_with_ratings": sorted(mwr), "top_rated_movies": top,
            "tv_episodes": sorted(episodes), "title_cast": sorted(cast)}


def diff(actual, expected, what):
    """An assertion message: the lines only one side has (as multisets)."""
    a, e = Counter(actual), Counter(expected)
    extra, missing = list((a - e).elements()), list((e - a).elements())
    return ("%s differs: %d rows vs %d expected; %d unexpected, e.g. %r; %d missing, e.g. %r"
            % (what, len(actual), len(expected), len(extra), extra[:3], len(missing),
               missing[:3]))


def parse_counts(out):
    counts = {}
    for line in out.splitlines():
        m = re.match(r"^([a-z_]+)\t(\d+)$", line)
        assert m, "unexpected line from imdb-db counts: %r" % line
        counts[m.group(1)] = int(m.group(2))
    return counts


def file_counts(data_dir):
    return {TABLE_OF[d]: len(file_rows(data_dir, d)) for d in DATASETS}


def load(db, mount_path, timeout=120):
    p = imdb_db("load", "--mount", mount_path, db.url, timeout=timeout)
    assert p.returncode == 0, describe(p)
    return p


def assert_exact(db, data_dir):
    """Every table holds exactly the files' rows; NULL is `\\N` and nothing else."""
    exported = db.export_all()
    for table, (dataset, cols) in TABLES.items():
        rows = file_rows(data_dir, dataset)
        expected = with_sentinel(rows)
        assert exported[table] == expected, diff(exported[table], expected, table)
        # NULLs per column equal the `\N` fields of the file; no column holds the text.
        nulls = db.rows("SELECT %s FROM %s;" % (
            ", ".join("count(*) - count(%s)" % c for c, _ in cols), table))[0]
        want = [sum(1 for r in rows if r[i] == NULL) for i in range(len(cols))]
        assert list(map(int, nulls)) == want, (table, nulls, want)
        texts = [c for c, k in cols if k in ("text", "array", "array02")]
        if db.kind == "postgresql":
            conds = ["%s = %s" % (c, db.backslash_n()) if k == "text" else
                     "%s = ANY(%s)" % (db.backslash_n(), c) for c, k in cols if c in texts]
        else:
            conds = ["%s = %s" % (c, db.backslash_n()) for c in texts]
        literal = db.scalar("SELECT count(*) FROM %s WHERE %s;" % (table, " OR ".join(conds)))
        assert literal == "0", "%s: %s rows hold the text \\N instead of NULL" % (table, literal)
    return exported


# ----------------------------------------------------------------- 1. exact load

@pytest.mark.timeout_s(90)
def test_load_is_exact(origin, mount, sample_data, db):
    m = mount(origin.url())
    p = load(db, m.path)
    for d in DATASETS:
        assert re.search(r"^%s +%d rows" % (re.escape(d), sample_data.rows[d]), p.stdout,
                         re.M), describe(p)
    assert "name_basics: 1 duplicate keys, all rows kept" in p.stdout, describe(p)
    assert re.search(r"^loaded %d rows into 7 tables" % sum(sample_data.rows.values()),
                     p.stdout, re.M), describe(p)
    assert p.stderr == "", describe(p)

    c = imdb_db("counts", db.url)
    assert c.returncode == 0, describe(c)
    assert parse_counts(c.stdout) == {TABLE_OF[d]: n for d, n in sample_data.rows.items()}
    assert file_counts(sample_data.path) == parse_counts(c.stdout)

    exported = assert_exact(db, sample_data.path)
    # The quirks are really there (a sample without them would prove nothing).
    flat = "\n".join("\t".join(r) for rows in exported.values() for r in rows)
    for needle in ('\t"Rolling in the Deep Dish', "\\", "🎬", "千と千尋の神隠し", "\x02"):
        assert needle in flat, needle
    if db.kind == "sqlite":  # numbers are numbers, not text that looks like them
        assert db.scalar("SELECT count(*) FROM title_basics WHERE typeof(start_year) NOT IN "
                         "('integer', 'null') OR typeof(is_adult) <> 'integer';") == "0"
    if db.kind == "postgresql":  # arrays are split, on ',' and on 0x02 for akas
        assert db.scalar("SELECT max(cardinality(directors)) FROM title_crew;") == "1200"
        assert db.scalar("SELECT count(*) FROM title_akas WHERE cardinality(types) = 2 "
                         "AND types[2] = 'working';") != "0"
        assert db.scalar("SELECT count(*) FROM title_akas WHERE array_to_string(types, '') "
                         "LIKE E'%\\x02%';") == "0"


# ----------------------------------------------------------------- 2. views

class _Data:
    def __init__(self, path, rows):
        self.path, self.rows = Path(path), rows


@pytest.fixture(scope="session")
def view_data(tmp_path_factory):
    """A bigger, different data set: over 20 top-rated movies."""
    d = tmp_path_factory.mktemp("origin-views")
    return _Data(d, util.gen_sample_data(d, "--scale", "5", "--version", "3"))


@pytest.mark.timeout_s(120)
def test_views(origin_factory, mount, view_data, db):
    o = origin_factory(view_data.path)
    m = mount(o.url())
    load(db, m.path)
    expected = expected_views(view_data.path)
    assert len(expected["top_rated_movies"]) >= 20, len(expected["top_rated_movies"])
    for view, cols in VIEWS.items():
        assert db.count(view) == len(expected[view]), view
        if view != "top_rated_movies":
            got = sorted(map(tuple, db.export(view, cols)))
            assert got == expected[view], diff(got, expected[view], view)
    # The view's own order; the first 20 rows exactly.
    got = [tuple(r) for r in db.export("top_rated_movies", VIEWS["top_rated_movies"])]
    assert got[:20] == expected["top_rated_movies"][:20]
    assert sorted(got) == sorted(expected["top_rated_movies"])
    # Duplicate keys multiply joins: name.basics has one, and title_cast shows it.
    dup = Counter(r[0] for r in file_rows(view_data.path, "name.basics"))
    assert [k for k, v in dup.items() if v > 1] == ["nm0000001"]
    assert db.count("title_cast") > db.count("title_principals")


# ----------------------------------------------------------------- 3. reload while reading

def publish_version(data_dir, *args):
    """Replace all seven files at the origin with another version (a later mtime)."""
    mtimes = {d: os.stat(Path(data_dir) / (d + ".tsv.gz")).st_mtime for d in DATASETS}
    rows = util.gen_sample_data(data_dir, *args)
    for d, t in mtimes.items():
        os.utime(Path(data_dir) / (d + ".tsv.gz"), (t + 3600, t + 3600))
    return rows


@pytest.mark.timeout_s(150)
def test_reload_while_reading(origin_factory, mount, private_data, db):
    o = origin_factory(private_data.path)
    m = mount(o.url())
    load(db, m.path)
    queries = {"title_principals": "SELECT count(*) FROM title_principals;",
               "movies_with_ratings": "SELECT count(*) FROM movies_with_ratings;"}
    old = {"title_principals": len(file_rows(private_data.path, "title.principals")),
           "movies_with_ratings": len(expected_views(private_data.path)["movies_with_ratings"])}
    assert {t: db.count(t) for t in queries} == old

    publish_version(private_data.path, "--version", "2", "--scale", "4")
    new = {"title_principals": len(file_rows(private_data.path, "title.principals")),
           "movies_with_ratings": len(expected_views(private_data.path)["movies_with_ratings"])}
    assert all(new[t] != old[t] for t in queries), (old, new)
    m.command("download", "all")
    assert m.wait_job() == 0, m.control("download")
    assert sorted(m.control("download")["downloaded_files"]) == util.GZ_NAMES

    seen = []          # (monotonic time, table, count or error text)
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            for table, q in queries.items():
                try:
                    v = int(db.scalar(q))
                except Exception as e:  # a failed query is a finding, not the end of the test
                    v = "error: %s" % e
                seen.append((time.monotonic(), table, v))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(seen) >= 4, 30, "the reader's first queries")
        t0 = time.monotonic()
        p = imdb_db("load", "--mount", m.path, db.url)
        t1 = time.monotonic()
        n_after = len(seen)
        wait_for(lambda: len(seen) >= n_after + 4 or not t.is_alive(), 30,
                 "the reader's queries after the load")
    finally:
        stop.set()
        t.join(60)
    assert p.returncode == 0, describe(p)
    errors = [s for s in seen if not isinstance(s[2], int)]
    assert not errors, errors[:5]
    bad = [s for s in seen if s[2] not in (old[s[1]], new[s[1]])]
    assert not bad, "counts neither old %s nor new %s: %s" % (old, new, bad[:10])
    during = [s for s in seen if t0 <= s[0] <= t1]
    print("%s: %d queries, %d during the %.2f s load" % (db.kind, len(seen), len(during), t1 - t0))
    assert len(during) >= 5, "only %d queries ran during the %.2f s load" % (len(during), t1 - t0)
    for table in queries:  # once the new tables are in, the old ones never show again
        values = [s[2] for s in seen if s[1] == table]
        first_new = values.index(new[table])
        assert all(v == new[table] for v in values[first_new:]), (table, values)
        assert values[0] == old[table] and values[-1] == new[table], (table, values)
    assert_exact(db, private_data.path)


# ----------------------------------------------------------------- 4. a failed load

def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir("/proc/%d/task" % p)
        except (FileNotFoundError, ProcessLookupError):
            continue
        for task in tasks:
            try:
                with open("/proc/%d/task/%s/children" % (p, task)) as f:
                    kids = [int(x) for x in f.read().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
            out += kids
            todo += kids
    return out


def reading(pid, path):
    """How far process pid has read path (its file position), or None when not open."""
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except (FileNotFoundError, ProcessLookupError):
        return None
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == str(path):
                with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                    return int(re.search(r"^pos:\s*(\d+)", f.read(), re.M).group(1))
        except (FileNotFoundError, ProcessLookupError, AttributeError):
            continue
    return None


def client_reading(pid, path):
    """The database client under imdb-db pid that is reading path, and its position."""
    for child in descendants(pid):
        try:
            with open("/proc/%d/comm" % child) as f:
                comm = f.read().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if comm in CLIENTS:
            pos = reading(child, path)
            if pos:
                return child, pos
    return None


def no_other_sessions(db):
    """PostgreSQL ends a killed client's backend (and its advisory lock) a moment later."""
    if db.kind != "postgresql":
        return True
    return db.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                     "AND pid <> pg_backend_pid();") == "0"


@pytest.mark.timeout_s(120)
def test_failed_load_leaves_the_old_tables(origin, origin_factory, mount, sample_data, big_data,
                                          db):
    fast = mount(origin.url())
    load(db, fast.path)
    before = db.export_all()
    counts_before = parse_counts(imdb_db("counts", db.url).stdout)

    # Another version (a 10 MB title.principals) from a cold cache over the 2 MB/s origin:
    # the client streams it from the mount (fast_stat: by default its open would wait for the
    # whole .tsv.gz), and is killed on the way.
    slow = mount(origin_factory(big_data.path).url("/slow/"), extra_opts=["fast_stat"])
    target = slow.path / "title.principals.tsv"
    proc = subprocess.Popen([str(IMDB_DB), "load", "--mount", str(slow.path), db.url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, env=client_env())
    try:
        victim = wait_for(lambda: proc.poll() is None and client_reading(proc.pid, target),
                          60, "the client reading title.principals.tsv")
        time.sleep(0.5)
        assert proc.poll() is None and reading(victim[0], target), \
            "the client finished title.principals.tsv too soon for this test"
        os.kill(victim[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0, (out, err)
    assert "load failed" in err, (out, err)
    assert re.search(r"^title\.akas +%d rows" % big_data.rows["title.akas"], out, re.M), out

    assert parse_counts(imdb_db("counts", db.url).stdout) == counts_before
    after = db.export_all()
    for table in TABLES:
        assert after[table] == before[table], diff(after[table], before[table], table)
    wait_for(lambda: no_other_sessions(db), 30, "the killed client's session to end")
    load(db, fast.path)
    assert db.export_all() == before
    assert db.tables() == sorted(("public." if db.kind == "postgresql" else "") + t
                                 for t in TABLES)
    if db.kind == "postgresql":
        assert db.scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'imdb\\_%';") \
            == "0"


# ----------------------------------------------------------------- 5. loading twice

@pytest.mark.timeout_s(90)
def test_loading_twice_gives_the_same_result(origin, mount, sample_data, db):
    m = mount(origin.url())
    load(db, m.path)
    first = db.export_all()
    views = {v: sorted(map(tuple, db.export(v, cols))) for v, cols in VIEWS.items()}
    p = load(db, m.path)
    assert "name_basics: 1 duplicate keys, all rows kept" in p.stdout, describe(p)
    assert db.export_all() == first
    assert {v: sorted(map(tuple, db.export(v, cols))) for v, cols in VIEWS.items()} == views
    assert parse_counts(imdb_db("counts", db.url).stdout) == file_counts(sample_data.path)
    assert db.tables() == sorted(("public." if db.kind == "postgresql" else "") + t
                                 for t in TABLES)


# ----------------------------------------------------------------- 6. the three schemas

def parse_schema(path):
    text = re.sub(r"--[^\n]*", "", Path(path).read_text())
    text = re.sub(r"/\*!.*?\*/", "", text, flags=re.S)
    tables = {}
    for name, body in re.findall(r"CREATE\s+TABLE\s+(\w+)\s*\((.*?)\)\s*(?:;|\n)", text,
                                 flags=re.S | re.I):
        cols = [line.strip().split()[0] for line in body.split(",\n")]
        tables[name] = cols
    indexes = re.findall(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(\w+)\s+ON\s+(\w+)\s*\(([^)]*)\)",
                         text, flags=re.I)
    views = re.findall(r"CREATE\s+(?:OR\s+(?:REPLACE|ALTER)\s+)?VIEW\s+(\w+)", text, flags=re.I)
    return {"tables": tables,
            "indexes": {n: (t, [c.strip() for c in cols.split(",")]) for n, t, cols in indexes},
            "views": views}


@pytest.mark.timeout_s(10)
def test_the_three_schemas_agree():
    schemas = {f: parse_schema(SQL_DIR / f) for f in
               ("postgresql_schema.sql", "sql_schema.sql", "azure_sql_schema.sql")}
    pg = schemas["postgresql_schema.sql"]
    assert list(pg["tables"]) == sorted(TABLES)
    for table, (_, cols) in TABLES.items():
        assert pg["tables"][table] == [c for c, _ in cols], table
    assert sorted(pg["views"]) == sorted(VIEWS)
    assert len(pg["indexes"]) >= 7
    for f, s in schemas.items():
        assert s["tables"] == pg["tables"], f
        assert s["indexes"] == pg["indexes"], f
        assert s["views"] == pg["views"], f
    # The three sections imdb-db runs separately are marked in each file, in order.
    for f in schemas:
        marks = re.findall(r"^-- imdb-db: (\w+)$", (SQL_DIR / f).read_text(), flags=re.M)
        assert marks == ["tables", "indexes", "views"], (f, marks)


# ----------------------------------------------------------------- 7. the CLI

@pytest.mark.timeout_s(60)
def test_cli_errors(postgres, mariadb, tmp_path):
    p = imdb_db("frobnicate", "sqlite:%s" % (tmp_path / "x.db"))
    assert p.returncode != 0 and "unknown command 'frobnicate'" in p.stderr, describe(p)
    p = imdb_db()
    assert p.returncode == 2 and "usage:" in p.stderr, describe(p)
    p = imdb_db("counts")
    assert p.returncode != 0 and "which database" in p.stderr, describe(p)
    p = imdb_db("counts", "oracle://scott:tiger@db/imdb")
    assert p.returncode != 0 and "unsupported database" in p.stderr, describe(p)
    p = imdb_db("counts", "sqlite:")
    assert p.returncode != 0 and "needs a path" in p.stderr, describe(p)

    port = util.free_port()
    url = "postgresql://postgres@127.0.0.1:%d/imdb" % port
    for cmd in ("test", "counts"):
        p = imdb_db(cmd, url, timeout=30)
        assert p.returncode == 1 and "cannot connect to %s" % url in p.stderr, describe(p)

    password = "s3cret-Pw_%s" % uuid.uuid4().hex[:6]
    url = "mysql://imdb:%s@127.0.0.1:%d/imdb" % (password, mariadb.port)
    for cmd in ("test", "counts", "truncate"):
        p = imdb_db(cmd, url, timeout=30)
        assert p.returncode == 1, describe(p)
        assert "cannot connect to mysql://imdb:***@127.0.0.1:%d/imdb" % mariadb.port \
            in p.stderr, describe(p)
        assert "Access denied" in p.stderr, describe(p)
        assert password not in p.stdout + p.stderr, describe(p)

    # A directory that is not a mount of the datasets.
    empty = tmp_path / "empty"
    empty.mkdir()
    db_url = "sqlite:%s" % (tmp_path / "y.db")
    p = imdb_db("load", "--mount", empty, db_url)
    assert p.returncode == 1 and "%s has no title.ratings.tsv: is imdbfs mounted there?" \
        % empty in p.stderr, describe(p)
    p = imdb_db("load", "--mount", tmp_path / "nowhere", db_url)
    assert p.returncode == 1 and "no such directory" in p.stderr, describe(p)
    assert not (tmp_path / "y.db").exists()
    p = imdb_db("full-process", "--mount", empty, db_url)
    assert p.returncode == 1 and "is not an imdbfs mount" in p.stderr, describe(p)
    p = imdb_db("test", db_url)
    assert p.returncode == 1 and "no such database file" in p.stderr, describe(p)


@pytest.mark.timeout_s(90)
def test_cli_test_truncate_counts(origin, mount, sample_data, db):
    if db.kind == "sqlite":
        db.path.touch()  # an empty file is an empty database
    p = imdb_db("test", db.url)
    assert p.returncode == 2, describe(p)
    assert p.stdout.startswith("connected: ") and "schema: not installed" in p.stdout, \
        describe(p)
    p = imdb_db("counts", db.url)
    assert p.returncode == 1 and "no IMDb tables" in p.stderr, describe(p)

    m = mount(origin.url())
    load(db, m.path)
    p = imdb_db("test", db.url)
    assert p.returncode == 0 and "schema: complete (7 tables)" in p.stdout, describe(p)
    p = imdb_db("truncate", db.url)
    assert p.returncode == 0, describe(p)
    p = imdb_db("counts", db.url)
    assert p.returncode == 0 and parse_counts(p.stdout) == dict.fromkeys(TABLES, 0), describe(p)
    assert all(db.count(v) == 0 for v in VIEWS)
    p = imdb_db("test", db.url)
    assert p.returncode == 0 and "schema: complete" in p.stdout, describe(p)
    # Tables dropped behind its back: incomplete.
    db.rows("DROP VIEW title_cast; DROP TABLE title_principals;")
    p = imdb_db("test", db.url)
    assert p.returncode == 2 and "schema: incomplete, missing title_principals" in p.stdout, \
        describe(p)
    # A load makes it whole again.
    load(db, m.path)
    assert parse_counts(imdb_db("counts", db.url).stdout) == file_counts(sample_data.path)
    assert db.count("title_cast") > 0


# ----------------------------------------------------------------- 8. full-process overlaps

def downloading(status):
    """The datasets whose download has not completed."""
    return sorted(d for d, s in status["datasets"].items()
                  if s["state"] in ("queued", "downloading") or
                  (s["bytes_total"] and s["bytes_done"] < s["bytes_total"]))


@pytest.mark.timeout_s(120)
def test_full_process_loads_while_downloading(origin_factory, mount, big_data, new_db):
    db = new_db("postgresql")
    m = mount(origin_factory(big_data.path).url("/slow/"))
    proc = subprocess.Popen([str(IMDB_DB), "full-process", "--mount", str(m.path), db.url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, env=client_env())
    lines, busy = [], None
    try:
        for line in proc.stdout:
            lines.append(line)
            if busy is None and re.match(r"^title\.\S+ +\d+ rows", line):
                status = m.control("status")
                busy = downloading(status)
                assert busy, "the first table was loaded only after every download ended: %s" \
                    % status
                assert "title.principals" in busy, status
        err = proc.stderr.read()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines)
    assert proc.returncode == 0, (out, err)
    assert busy, out
    assert lines[0].startswith("full-process started"), out
    counts = parse_counts(imdb_db("counts", db.url).stdout)
    assert counts == {TABLE_OF[d]: n for d, n in big_data.rows.items()}
    assert counts["title_principals"] > 1000000
    assert db.count("title_cast") > counts["title_principals"]


# ----------------------------------------------------------------- 9. full-process refreshes

@pytest.mark.timeout_s(120)
def test_full_process_loads_the_new_version(origin_factory, mount, private_data, new_db):
    """A cached dataset being refreshed is loaded once its new version is in, not before."""
    db = new_db("postgresql")
    o = origin_factory(private_data.path)
    m = mount(o.url("/slow200k/"))
    m.command("full-process", "all")
    assert m.wait_job(timeout=60) == 0
    publish_version(private_data.path, "--version", "2", "--scale", "1.5")
    p = imdb_db("full-process", "--mount", m.path, db.url)
    assert p.returncode == 0, describe(p)
    assert parse_counts(imdb_db("counts", db.url).stdout) == file_counts(private_data.path)
    assert_exact(db, private_data.path)
