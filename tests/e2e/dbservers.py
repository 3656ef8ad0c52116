"""Real database servers for tests: PostgreSQL 15 and MariaDB 10.11 from the Debian packages.

Each server runs in a directory of its own (data, socket, pid file and log), listens on a free
port on 127.0.0.1 only and reads no system configuration, so it never meets a system instance
(/etc/postgresql, /etc/mysql, the default ports and sockets). Settings trade durability for
speed: a crash may lose the data, which tests recreate anyway.

    pg = Postgres.start(basedir)     # initdb + pg_ctl start; database `imdb`
    pg.url                           # postgresql://postgres@127.0.0.1:PORT/imdb
    pg.psql("select 1")              # '1\\n'
    pg.stop()

    my = MariaDB.start(basedir)      # mariadb-install-db + mariadbd; database and user `imdb`
    my.url                           # mysql://imdb:imdb@127.0.0.1:PORT/imdb
    my.sql("select 1")               # '1\\n'
    my.stop()

start() fails (DBServerError, with the server's log tail) when the server is not ready before
its deadline, and then leaves no process behind; stop() is idempotent and makes sure the
server's processes are gone (SIGKILL as the last resort). Plain Python: no pytest here.

PostgreSQL refuses to run as root, so its programs run as the `postgres` system user, with
the ambient capability CAP_DAC_READ_SEARCH: pytest's temp dirs (/tmp/pytest-of-root, 0700)
are not searchable by that user, and pytest resets their mode at every session start, so
opening them up would not last. The basedir itself is chowned to postgres.
"""

import os
import pwd
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from util import free_port, tail

PG_BIN = Path(os.environ.get("IMDBFS_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
DATABASE = "imdb"
MARIADB_USER = "imdb"
MARIADB_PASSWORD = "imdb"

START_ATTEMPTS = 3            # a free port taken by someone else before the server binds it
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
SOCKET_PATH_MAX = 107         # sun_path, less the terminating NUL

PG_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "256MB",
    "maintenance_work_mem": "256MB",
    "work_mem": "64MB",
    "max_wal_size": "4GB",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "checkpoint_timeout": "30min",
    "autovacuum": "off",
    "max_connections": "50",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] '",
}

MARIADB_SETTINGS = [
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--innodb-buffer-pool-size=512M",
    "--innodb-log-file-size=512M",
    "--skip-log-bin",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
    "--skip-name-resolve",
    "--max-allowed-packet=1G",
]


class DBServerError(Exception):
    """A server did not start, a command failed, or a process would not die."""


# ----------------------------------------------------------------- processes

def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return data[data.rfind(")") + 2:].split()


def _identity(pid):
    """(pid, start time in clock ticks): tells a process from a later one with its pid."""
    fields = _stat_fields(pid)
    return (pid, fields[19]) if fields else None


def _alive(ident):
    """True while the process is running (a zombie, dead but not reaped yet, counts as gone)."""
    if ident is None:
        return False
    fields = _stat_fields(ident[0])
    return bool(fields) and fields[19] == ident[1] and fields[0] not in ("Z", "X")


def _in_dir(path):
    """Identities of the processes whose working directory is path.

    A server's processes all run in its data dir, also the children of a postmaster that died.
    """
    path = os.path.realpath(path)
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cwd = os.readlink("/proc/%s/cwd" % name)
            except OSError:
                continue
            if cwd == path:
                ident = _identity(int(name))
                if _alive(ident):
                    out.append(ident)
    return out


def _wait_gone(idents, timeout):
    deadline = time.monotonic() + timeout
    while any(_alive(i) for i in idents):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _signal(idents, sig):
    for ident in idents:
        if _alive(ident):
            try:
                os.kill(ident[0], sig)
            except ProcessLookupError:
                pass


def _kill_dir(path, first_signal, grace):
    """Send first_signal to the processes running in path, SIGKILL those left after grace s."""
    idents = _in_dir(path)
    if not idents:
        return
    _signal(idents, first_signal)
    if _wait_gone(idents, grace):
        return
    idents += [i for i in _in_dir(path) if i not in idents]
    _signal(idents, signal.SIGKILL)
    if not _wait_gone(idents, 10):
        raise DBServerError("processes %s survived SIGKILL" % [i[0] for i in idents if _alive(i)])


def _run(cmd, what, timeout=60, input=None, env=None, cwd=None):
    """Run cmd, return its stdout; raise DBServerError with its stderr if it fails.

    cmd runs in a session of its own, killed as a whole at the timeout (mariadb-install-db
    is a script that runs the server).
    """
    cmd = [str(c) for c in cmd]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                         env=env, cwd=cwd, start_new_session=True)
    try:
        out, err = p.communicate(input, timeout=timeout)
    except BaseException as e:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
        if isinstance(e, subprocess.TimeoutExpired):
            raise DBServerError("%s timed out after %d s: %s\nstderr:\n%s"
                                % (what, timeout, _quote(cmd), err)) from None
        raise
    if p.returncode != 0:
        raise DBServerError("%s exited with %d: %s\nstderr:\n%s\nstdout:\n%s"
                            % (what, p.returncode, _quote(cmd), err, tail(out, 20)))
    return out


def _quote(cmd):
    return " ".join(shlex.quote(str(c)) for c in cmd)


def _clean_env(prefixes):
    """Our environment without the client/server variables starting with prefixes."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def _read_tail(path, n):
    try:
        return tail(Path(path).read_text(errors="replace"), n)
    except FileNotFoundError:
        return "(%s does not exist)" % path


def _check_socket_path(path):
    if len(str(path)) > SOCKET_PATH_MAX:
        raise DBServerError("socket path %s is longer than %d bytes: use a shorter basedir"
                            % (path, SOCKET_PATH_MAX))


def _require(programs, package):
    missing = [str(p) for p in programs if not (os.access(str(p), os.X_OK) or shutil.which(str(p)))]
    if missing:
        raise DBServerError("%s not found: install the Debian package %s (scripts/install-deps.sh)"
                            % (", ".join(missing), package))


def _port_in_use(log):
    return "Address already in use" in log or "Can't start server: Bind on TCP/IP port" in log


# ----------------------------------------------------------------- PostgreSQL

class Postgres:
    """A PostgreSQL 15 cluster in basedir/data, run by the `postgres` system user.

    url          postgresql://postgres@127.0.0.1:PORT/imdb (superuser, trust authentication)
    port, basedir, datadir, socket_dir, log_path
    start_seconds  how long start() took (initdb included)
    psql(sql, db=None)  run sql with psql (-X -v ON_ERROR_STOP=1 -At); returns stdout
    stop()       pg_ctl stop -m fast, then make sure no server process is left; idempotent
    log_tail(n)  the last n lines of the server log
    """

    def __init__(self, basedir):
        self.basedir = Path(basedir).resolve()
        self.datadir = self.basedir / "data"
        self.socket_dir = self.basedir
        self.log_path = self.basedir / "postgres.log"
        self.port = None
        self.url = None
        self.start_seconds = None
        self._ident = None
        self._stopped = False

    @classmethod
    def start(cls, basedir, timeout=START_TIMEOUT_S):
        pg = cls(basedir)
        t0 = time.monotonic()
        try:
            pg._initdb(timeout)
            pg._start_server(t0 + timeout)
            pg.psql("CREATE DATABASE %s" % DATABASE, db="postgres")
            pg.psql("CREATE ROLE root SUPERUSER LOGIN", db="postgres")
        except BaseException:
            pg.stop()
            raise
        pg.start_seconds = time.monotonic() - t0
        return pg

    # -- running the server's programs as the postgres user

    def _as_postgres(self, cmd):
        return ["setpriv", "--reuid=" + PG_USER, "--regid=" + PG_USER, "--init-groups",
                "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--",
                *[str(c) for c in cmd]]

    def _server_env(self):
        env = _clean_env(("PG", "LC_", "LANG"))
        env.update(LANG="C.UTF-8", HOME=pwd.getpwnam(PG_USER).pw_dir)
        return env

    def _initdb(self, timeout):
        _require([PG_BIN / "initdb", PG_BIN / "pg_ctl", PG_BIN / "postgres", "psql", "setpriv"],
                 "postgresql-15")
        try:
            pw = pwd.getpwnam(PG_USER)
        except KeyError:
            raise DBServerError("no system user %r: install the Debian package postgresql-15"
                                % PG_USER) from None
        self.basedir.mkdir(parents=True, exist_ok=True)
        os.chown(self.basedir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.basedir, 0o700)
        _check_socket_path(self.socket_dir / ".s.PGSQL.65535")
        _run(self._as_postgres([PG_BIN / "initdb", "-D", self.datadir, "-U", PG_USER, "-A", "trust",
                                "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]),
             "initdb", timeout=timeout, env=self._server_env(), cwd=self.basedir)
        with open(self.datadir / "pg_hba.conf", "w") as f:
            f.write("# written by tests/e2e/dbservers.py\n"
                    "local all all              trust\n"
                    "host  all all 127.0.0.1/32 trust\n")

    def _write_conf(self):
        settings = dict(PG_SETTINGS, port=str(self.port),
                        unix_socket_directories="'%s'" % self.socket_dir)
        with open(self.datadir / "postgresql.auto.conf", "w") as f:
            f.write("# written by tests/e2e/dbservers.py\n")
            for k, v in settings.items():
                f.write("%s = %s\n" % (k, v))

    def _start_server(self, deadline):
        for attempt in range(START_ATTEMPTS):
            self.port = free_port()
            self._write_conf()
            if self.log_path.exists():
                self.log_path.unlink()
            left = max(5, int(deadline - time.monotonic()))
            cmd = self._as_postgres([PG_BIN / "pg_ctl", "-D", self.datadir, "-l", self.log_path,
                                     "-w", "-t", left, "start"])
            try:
                p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, universal_newlines=True,
                                   timeout=left + 10, env=self._server_env(), cwd=self.basedir)
                status, output = p.returncode, p.stdout
            except subprocess.TimeoutExpired as e:
                status, output = "a timeout", e.output or ""
            self._ident = self._postmaster()
            if status == 0 and _alive(self._ident):
                self.url = "postgresql://%s@127.0.0.1:%d/%s" % (PG_USER, self.port, DATABASE)
                return
            log = self.log_tail(60)
            self._kill()  # pg_ctl gave up waiting: the postmaster may still be there
            if not _port_in_use(log) or attempt == START_ATTEMPTS - 1:
                raise DBServerError("PostgreSQL did not start (pg_ctl ended with %s):\n%s\n"
                                    "server log %s:\n%s"
                                    % (status, output, self.log_path, log))

    def _postmaster(self):
        """The postmaster's identity from postmaster.pid, or None."""
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return self._ident
        return _identity(pid) or self._ident

    def _kill(self):
        """SIGQUIT (immediate shutdown) to every process of the cluster, then SIGKILL."""
        self._ident = None
        _kill_dir(self.datadir, signal.SIGQUIT, 10)

    # -- the API

    def psql(self, sql, db=None, timeout=300):
        if self.url is None:
            raise DBServerError("PostgreSQL in %s is not running" % self.basedir)
        url = self.url if db is None else self.url.rsplit("/", 1)[0] + "/" + db
        return _run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-d", url],
                    "psql", timeout=timeout, input=sql, env=_clean_env(("PG",)))

    def stop(self):
        if self._stopped:
            return
        self._stopped = True
        self.url = None
        if _alive(self._postmaster()):
            try:
                subprocess.run(self._as_postgres([PG_BIN / "pg_ctl", "-D", self.datadir, "-m",
                                                  "fast", "-w", "-t", STOP_TIMEOUT_S, "stop"]),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=STOP_TIMEOUT_S + 10,
                               env=self._server_env(), cwd=self.basedir)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()  # after a clean stop: nothing left to kill

    def log_tail(self, n=40):
        return _read_tail(self.log_path, n)

    def pids(self):
        """Pids of the cluster's processes now (empty when stopped)."""
        return sorted(i[0] for i in _in_dir(self.datadir))


# ----------------------------------------------------------------- MariaDB

class MariaDB:
    """A MariaDB 10.11 server in basedir/data, run as root (mariadbd --user=root).

    url          mysql://imdb:imdb@127.0.0.1:PORT/imdb; the user imdb (password imdb, at
                 127.0.0.1 and localhost) has all privileges; local_infile is on
    port, basedir, datadir, socket, log_path
    start_seconds  how long start() took (mariadb-install-db included)
    sql(sql, db=None)   run sql with the mariadb client as imdb over TCP (--batch
                 --skip-column-names --local-infile=1); returns stdout
    stop()       mariadb-admin shutdown, then SIGTERM/SIGKILL; idempotent
    log_tail(n)  the last n lines of the server's error log
    """

    def __init__(self, basedir):
        self.basedir = Path(basedir).resolve()
        self.datadir = self.basedir / "data"
        self.tmpdir = self.basedir / "tmp"
        self.socket = self.basedir / "mariadbd.sock"
        self.pid_file = self.basedir / "mariadbd.pid"
        self.log_path = self.basedir / "mariadbd.err"
        self.install_log = self.basedir / "install-db.log"
        self.port = None
        self.url = None
        self.start_seconds = None
        self.proc = None
        self._stopped = False

    @classmethod
    def start(cls, basedir, timeout=START_TIMEOUT_S):
        my = cls(basedir)
        t0 = time.monotonic()
        try:
            my._install_db(timeout)
            my._start_server(t0 + timeout)
            my._root_sql(
                "CREATE DATABASE {db} CHARACTER SET utf8mb4;\n"
                "CREATE USER '{u}'@'127.0.0.1' IDENTIFIED BY '{p}';\n"
                "CREATE USER '{u}'@'localhost' IDENTIFIED BY '{p}';\n"
                "GRANT ALL PRIVILEGES ON *.* TO '{u}'@'127.0.0.1' WITH GRANT OPTION;\n"
                "GRANT ALL PRIVILEGES ON *.* TO '{u}'@'localhost' WITH GRANT OPTION;\n"
                .format(db=DATABASE, u=MARIADB_USER, p=MARIADB_PASSWORD))
        except BaseException:
            my.stop()
            raise
        my.url = "mysql://%s:%s@127.0.0.1:%d/%s" % (MARIADB_USER, MARIADB_PASSWORD, my.port,
                                                    DATABASE)
        my.start_seconds = time.monotonic() - t0
        return my

    def _install_db(self, timeout):
        _require(["mariadb-install-db", "mariadbd", "mariadb-admin", "mariadb"],
                 "mariadb-server and mariadb-client")
        self.datadir.mkdir(parents=True)
        self.tmpdir.mkdir()
        _check_socket_path(self.socket)
        cmd = ["mariadb-install-db", "--no-defaults", "--datadir=%s" % self.datadir,
               "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db",
               "--skip-name-resolve", "--tmpdir=%s" % self.tmpdir, *MARIADB_SETTINGS]
        try:
            out = _run(cmd, "mariadb-install-db", timeout=timeout, env=_clean_env(("MYSQL",)),
                       cwd=self.basedir)
        except DBServerError as e:
            self.install_log.write_text(str(e))
            raise
        self.install_log.write_text(out)

    def _server_cmd(self):
        return ["mariadbd", "--no-defaults", "--datadir=%s" % self.datadir,
                "--socket=%s" % self.socket, "--port=%d" % self.port, "--bind-address=127.0.0.1",
                "--pid-file=%s" % self.pid_file, "--log-error=%s" % self.log_path,
                "--tmpdir=%s" % self.tmpdir, "--user=root", "--local-infile=1",
                *MARIADB_SETTINGS]

    def _start_server(self, deadline):
        for attempt in range(START_ATTEMPTS):
            self.port = free_port()
            if self.log_path.exists():
                self.log_path.unlink()
            with open(self.basedir / "mariadbd.out", "ab") as out:
                # A session of its own: a Ctrl-C at the terminal leaves the shutdown to stop().
                self.proc = subprocess.Popen(self._server_cmd(), stdin=subprocess.DEVNULL,
                                             stdout=out, stderr=subprocess.STDOUT,
                                             env=_clean_env(("MYSQL",)), cwd=self.basedir,
                                             start_new_session=True)
            while True:
                if self.proc.poll() is not None:
                    break
                if self._ping():
                    return
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            log = self.log_tail(60)
            how = ("exited with %d" % self.proc.returncode if self.proc.poll() is not None
                   else "was not ready within the start deadline")
            self._kill()
            if not _port_in_use(log) or attempt == START_ATTEMPTS - 1 \
                    or time.monotonic() > deadline:
                raise DBServerError("mariadbd %s; error log %s:\n%s" % (how, self.log_path, log))

    def _admin(self, *args, timeout=10):
        return subprocess.run(["mariadb-admin", "--no-defaults", "--socket=%s" % self.socket,
                               "--user=root", "--connect-timeout=2", *args],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout,
                              env=_clean_env(("MYSQL",)))

    def _ping(self):
        if not self.socket.exists():
            return False
        try:
            return self._admin("ping").returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _root_sql(self, sql):
        return _run(["mariadb", "--no-defaults", "--socket=%s" % self.socket, "--user=root",
                     "--batch", "--skip-column-names"],
                    "mariadb (root, setup)", input=sql, env=_clean_env(("MYSQL",)))

    def _kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    # -- the API

    def sql(self, sql, db=None, timeout=300):
        if self.url is None:
            raise DBServerError("MariaDB in %s is not running" % self.basedir)
        return _run(["mariadb", "--no-defaults", "--protocol=TCP", "--host=127.0.0.1",
                     "--port=%d" % self.port, "--user=" + MARIADB_USER,
                     "--password=" + MARIADB_PASSWORD, "--batch", "--skip-column-names",
                     "--local-infile=1", "--default-character-set=utf8mb4", db or DATABASE],
                    "mariadb", timeout=timeout, input=sql, env=_clean_env(("MYSQL",)))

    def stop(self):
        if self._stopped:
            return
        self._stopped = True
        self.url = None
        if self.proc is not None and self.proc.poll() is None:
            try:
                self._admin("shutdown", timeout=STOP_TIMEOUT_S)
                self.proc.wait(STOP_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()
        _kill_dir(self.datadir, signal.SIGTERM, STOP_TIMEOUT_S)  # e.g. a lost bootstrap server

    def log_tail(self, n=40):
        return _read_tail(self.log_path, n)

    def pids(self):
        """Pids of the processes running in the data dir: mariadbd's (empty when stopped)."""
        return sorted(i[0] for i in _in_dir(self.datadir))
