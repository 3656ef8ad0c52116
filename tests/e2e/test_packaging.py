"""Installing and packaging: make install/uninstall, the systemd unit, the .deb, mount(8).

The binary under test is installed with `make install DESTDIR=... PREFIX=/usr` from the build
directory that holds $IMDBFS_BIN, then run from where it was installed. Two tests change the
machine itself, as root only, and always undo it: the .deb round trip installs and purges
the package `imdbfs` (skipped when a package, user or cache of that name is already there,
so that a developer's install is never clobbered), and the mount(8) test symlinks
/usr/local/bin/imdbfs for the duration. They take a lock so that two runs of the suite on
one machine do not interleave.
"""

import contextlib
import fcntl
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from util import (REPO, imdbfs_bin, in_mount_table, origin_gz, origin_tsv, read_bytes, run,
                  wait_for)

PREFIX = "/usr"
INSTALLED = sorted([
    "usr/bin/imdbfs",
    "usr/bin/imdb-db",
    "usr/share/man/man1/imdbfs.1",
    "usr/share/man/man1/imdb-db.1",
    "usr/share/imdbfs/sql/azure_sql_schema.sql",
    "usr/share/imdbfs/sql/postgresql_schema.sql",
    "usr/share/imdbfs/sql/sql_schema.sql",
    "usr/lib/systemd/system/imdbfs@.service",
])
EXECUTABLES = {"usr/bin/imdbfs", "usr/bin/imdb-db"}
UNIT = "usr/lib/systemd/system/imdbfs@.service"
INSTANCE = "imdbfs@mnt-imdb.service"  # mounts at /mnt/imdb
LOCK_PATH = "/run/lock/imdbfs-e2e-system.lock"
SYMLINK = Path("/usr/local/bin/imdbfs")


def version():
    m = re.search(r'#define IMDBFS_VERSION "([^"]+)"', (REPO / "include" / "version.h").read_text())
    assert m, "no IMDBFS_VERSION in include/version.h"
    return m.group(1)


def build_dir():
    """The build directory of the binary under test (BUILD= for make), else build/."""
    binary = Path(imdbfs_bin()).resolve()
    if binary.name == "imdbfs" and REPO in binary.parents:
        return binary.parent
    return REPO / "build"


def make(build, *args, timeout=120):
    """make -s -C REPO BUILD=build ARGS, not influenced by a make that runs the suite."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL")}
    p = run(["make", "-s", "-C", REPO, "BUILD=%s" % build, *args], timeout=timeout,
            universal_newlines=True, env=env)
    assert p.returncode == 0, "make %s failed (%d):\n%s%s" % (" ".join(args), p.returncode,
                                                             p.stdout, p.stderr)
    return p.stdout


def install(build, dest):
    make(build, "install", "DESTDIR=%s" % dest, "PREFIX=%s" % PREFIX)


def files_under(root):
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() or p.is_symlink())


def require_root(what):
    if os.geteuid() != 0:
        pytest.skip("%s needs root" % what)


@contextlib.contextmanager
def system_lock(timeout=240):
    """Serialize the tests that change the machine across concurrent runs of the suite."""
    os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
    with open(LOCK_PATH, "w") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError("%s held by another test run for %d s" % (LOCK_PATH, timeout))
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_through(mountpoint, data):
    """The mount serves a .tsv.gz and a .tsv byte-identical to the origin's."""
    mountpoint = Path(mountpoint)
    for dataset in ("title.ratings", "title.crew"):
        assert read_bytes(mountpoint / (dataset + ".tsv.gz")) == origin_gz(data, dataset), dataset
    assert read_bytes(mountpoint / "title.ratings.tsv") == origin_tsv(data, "title.ratings")


def load_and_count(imdb_db, mountpoint, db, sample_data):
    """imdb-db loads the mount into SQLite (which needs its schema files) and counts it."""
    p = run([imdb_db, "load", "--quiet", "--mount", mountpoint, "sqlite:%s" % db], timeout=120,
            universal_newlines=True)
    assert p.returncode == 0, "imdb-db load failed:\n%s%s" % (p.stdout, p.stderr)
    p = run([imdb_db, "counts", "sqlite:%s" % db], universal_newlines=True)
    assert p.returncode == 0, p.stderr
    counts = dict(line.split("\t") for line in p.stdout.splitlines())
    want = {d.replace(".", "_"): str(n) for d, n in sample_data.rows.items()}
    assert counts == want


def sql_dir_used(imdb_db, db):
    """The schema directory imdb-db picked by itself (from its xtrace: SQL_DIR=...)."""
    p = run(["bash", "-x", imdb_db, "test", "sqlite:%s" % db], universal_newlines=True)
    assert p.returncode == 0, p.stderr
    dirs = re.findall(r"^\++ SQL_DIR=(.*)$", p.stderr, flags=re.M)
    assert dirs, "no SQL_DIR assignment in imdb-db's trace:\n%s" % p.stderr[-2000:]
    return dirs[-1].strip("'")


# ----------------------------------------------------------------- make install

@pytest.mark.timeout_s(120)
def test_install_destdir(origin, mount, sample_data, tmp_path, monkeypatch):
    build = build_dir()
    dest = tmp_path / "dest"
    install(build, dest)
    assert files_under(dest) == INSTALLED
    for f in INSTALLED:
        mode = stat.S_IMODE(os.stat(dest / f).st_mode)
        assert mode == (0o755 if f in EXECUTABLES else 0o644), "%s has mode %o" % (f, mode)
    assert read_bytes(dest / "usr/bin/imdbfs") == read_bytes(build / "imdbfs")
    unit = (dest / UNIT).read_text()
    assert "@" + "BINDIR@" not in unit
    assert re.search(r"^ExecStart=/usr/bin/imdbfs -f ", unit, flags=re.M), unit

    binary = dest / "usr/bin/imdbfs"
    p = run([binary, "--version"], universal_newlines=True)
    assert p.returncode == 0 and p.stdout.startswith("imdbfs %s" % version()), p

    # The installed binary mounts and serves the origin's bytes.
    monkeypatch.setenv("IMDBFS_BIN", str(binary))
    m = mount(origin.url())
    read_through(m, sample_data)

    # The installed imdb-db finds the installed schemas (bin/../share/imdbfs/sql) and loads.
    imdb_db = dest / "usr/bin/imdb-db"
    p = run([imdb_db, "--help"], universal_newlines=True)
    assert p.returncode == 0 and p.stdout.startswith("usage: imdb-db"), p
    db = tmp_path / "imdb.db"
    load_and_count(imdb_db, m.path, db, sample_data)
    assert sql_dir_used(imdb_db, db) == str(dest / "usr/share/imdbfs/sql")
    m.unmount()

    make(build, "uninstall", "DESTDIR=%s" % dest, "PREFIX=%s" % PREFIX)
    assert files_under(dest) == []


# ----------------------------------------------------------------- systemd

def exec_paths(unit_text):
    """The programs of the unit's Exec*= lines (after systemd's -+@:! prefixes)."""
    paths = []
    for m in re.finditer(r"^Exec\w+=(\S+)", unit_text, flags=re.M):
        paths.append(m.group(1).lstrip("-+@:!"))
    return paths


def verify(root, man, unit=INSTANCE):
    return run(["systemd-analyze", "verify", "--root=%s" % root, unit], universal_newlines=True,
               env=dict(os.environ, MANPATH=str(man), LC_ALL="C"))


@pytest.mark.timeout_s(60)
def test_systemd_unit_verifies(tmp_path):
    """systemd-analyze verify on an instance of the installed unit: no complaint at all.

    verify checks the syntax, that the Exec programs exist and are executable and that the
    Documentation= man page exists. --root=DIR makes it read units and programs from DIR
    (man pages come from MANPATH), so DIR is the DESTDIR install plus what the unit relies
    on from the machine: the distribution's units (network-online.target, sysinit.target
    ...) and the tools its Exec lines run (fusermount3, install), each of which must exist
    here. No stderr line is tolerated: a good unit verifies in silence on systemd 252.
    """
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is missing (Debian package systemd; "
                    "scripts/install-deps.sh installs it)", pytrace=False)
    dest = tmp_path / "dest"
    install(build_dir(), dest)
    root = tmp_path / "root"
    systemd_dirs = {os.path.realpath(d) for d in ("/lib/systemd/system", "/usr/lib/systemd/system")
                    if os.path.isdir(d)}
    for d in sorted(systemd_dirs):
        shutil.copytree(d, root / d.lstrip("/"), symlinks=True, dirs_exist_ok=True)
    shutil.copytree(dest, root, symlinks=True, dirs_exist_ok=True)
    unit_text = (dest / UNIT).read_text()
    programs = exec_paths(unit_text)
    assert "/usr/bin/imdbfs" in programs, programs
    for prog in programs:
        assert prog.startswith("/"), "%s: Exec programs need absolute paths" % prog
        if not os.path.lexists(root / prog.lstrip("/")):
            assert os.access(prog, os.X_OK), "the unit runs %s, which this machine lacks" % prog
            (root / prog.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(prog), root / prog.lstrip("/"))
    man = dest / "usr/share/man"

    p = verify(root, man)
    assert p.returncode == 0 and p.stderr == "" and p.stdout == "", (
        "systemd-analyze verify %s exited %d:\n%s%s" % (INSTANCE, p.returncode, p.stdout, p.stderr))

    # The check is real: a typo, a missing program and a missing man page are each caught.
    unit_path = root / UNIT
    broken = {
        "an unknown key": (unit_text.replace("\nRestart=", "\nRestartt="), "Unknown key"),
        "a missing program": (unit_text.replace("ExecStart=/usr/bin/imdbfs ",
                                                "ExecStart=/usr/bin/imdbfs-missing "),
                              "is not executable"),
        "a missing man page": (unit_text.replace("man:imdbfs(1)", "man:imdbfs-missing(1)"),
                               "imdbfs-missing"),
    }
    for what, (text, complaint) in broken.items():
        assert text != unit_text, what
        unit_path.write_text(text)
        p = verify(root, man)
        assert complaint in p.stderr, "verify did not catch %s: exit %d, stderr %r" % (
            what, p.returncode, p.stderr)


# ----------------------------------------------------------------- the .deb

def dpkg_status(package):
    p = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package], universal_newlines=True)
    return p.stdout.strip() if p.returncode == 0 else ""


def dpkg(*args, timeout=120):
    """dpkg ARGS, waiting (up to a minute) while apt or another dpkg holds its lock."""
    deadline = time.monotonic() + 60
    while True:
        p = run(["dpkg", *args], timeout=timeout, universal_newlines=True,
                env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if p.returncode == 0 or "lock" not in p.stderr or time.monotonic() > deadline:
            return p
        time.sleep(1)


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


@pytest.mark.timeout_s(300)
def test_deb_round_trip(origin, mount, sample_data, tmp_path, monkeypatch):
    require_root("dpkg -i")
    for tool in ("dpkg-deb", "dpkg-shlibdeps", "dpkg-buildflags"):
        if not shutil.which(tool):
            pytest.fail("%s is missing (Debian package dpkg-dev; scripts/install-deps.sh "
                        "installs it)" % tool, pytrace=False)
    with system_lock():
        status = dpkg_status("imdbfs")
        if status and not status.startswith("un"):
            pytest.skip("a package named imdbfs is already on this machine (dpkg status %r); "
                        "not touching it" % status)
        if user_exists("imdbfs") or group_exists("imdbfs"):
            pytest.skip("a user or group imdbfs already exists (a source install?): "
                        "a purge would delete it")
        if os.path.lexists("/var/cache/imdbfs"):
            pytest.skip("/var/cache/imdbfs already exists: a purge would delete it")

        build = build_dir()
        out = make(build, "deb")
        deb = Path(out.strip().splitlines()[-1])
        want_name = "imdbfs_%s_%s.deb" % (
            version(), run(["dpkg", "--print-architecture"], check=True,
                           universal_newlines=True).stdout.strip())
        assert deb == build / want_name, out
        if shutil.which("lintian"):
            p = run(["lintian", "--fail-on", "error,warning", deb], timeout=120,
                    universal_newlines=True)
            tags = [line for line in p.stdout.splitlines() if re.match(r"^[EW]: ", line)]
            assert p.returncode == 0 and not tags, "lintian:\n%s%s" % (p.stdout, p.stderr)
        contents = run(["dpkg-deb", "-c", deb], check=True, universal_newlines=True).stdout
        shipped = [line.split(None, 5)[5].lstrip(".") for line in contents.splitlines()
                   if not line.startswith("d")]
        assert "/usr/bin/imdbfs" in shipped and "/etc/default/imdbfs" in shipped, shipped

        try:
            p = dpkg("-i", deb)
            assert p.returncode == 0, "dpkg -i failed:\n%s%s" % (p.stdout, p.stderr)
            assert dpkg_status("imdbfs") == "ii"

            p = run(["/usr/bin/imdbfs", "--version"], universal_newlines=True)
            assert p.returncode == 0 and p.stdout.startswith("imdbfs %s" % version()), p
            if shutil.which("man"):
                for page in ("imdbfs", "imdb-db"):
                    p = run(["man", "-w", page], universal_newlines=True)
                    assert p.stdout.strip() == "/usr/share/man/man1/%s.1.gz" % page, p
            user = pwd.getpwnam("imdbfs")
            assert user.pw_dir == "/var/cache/imdbfs" and user.pw_uid < 1000, user
            assert user.pw_shell.endswith("nologin"), user
            assert grp.getgrgid(user.pw_gid).gr_name == "imdbfs"
            assert stat.S_IMODE(os.stat("/etc/default/imdbfs").st_mode) == 0o600
            conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "imdbfs"],
                            universal_newlines=True).stdout
            assert "/etc/default/imdbfs" in conffiles, conffiles
            unit = Path("/usr/lib/systemd/system/imdbfs@.service").read_text()
            assert re.search(r"^ExecStart=/usr/bin/imdbfs -f ", unit, flags=re.M), unit
            p = run(["md5sum", "--check", "--quiet", "/var/lib/dpkg/info/imdbfs.md5sums"],
                    cwd="/", universal_newlines=True)
            assert p.returncode == 0, p.stdout + p.stderr

            # The packaged binary mounts and serves the origin's bytes; the packaged imdb-db
            # finds /usr/share/imdbfs/sql by itself.
            monkeypatch.setenv("IMDBFS_BIN", "/usr/bin/imdbfs")
            m = mount(origin.url())
            try:
                read_through(m, sample_data)
                db = tmp_path / "imdb.db"
                load_and_count("/usr/bin/imdb-db", m.path, db, sample_data)
                assert sql_dir_used("/usr/bin/imdb-db", db) == "/usr/share/imdbfs/sql"
            finally:
                m.unmount()
        finally:
            # Always, whatever failed above (an exception raised here keeps the first one
            # as its context).
            p = dpkg("--purge", "imdbfs")
            if p.returncode != 0:
                raise AssertionError("dpkg --purge imdbfs failed:\n%s%s" % (p.stdout, p.stderr))
        assert not dpkg_status("imdbfs").startswith(("i", "r", "h")), dpkg_status("imdbfs")
        left = [f for f in shipped if os.path.lexists(f)]
        assert left == [], "files left after the purge: %s" % left
        assert not os.path.lexists("/var/cache/imdbfs")
        assert not user_exists("imdbfs") and not group_exists("imdbfs")


# ----------------------------------------------------------------- mount(8)

def daemons_of(mountpoint, binary):
    """PIDs of imdbfs processes (running `binary`) whose command line names mountpoint."""
    pids = []
    want = os.path.realpath(binary)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.path.realpath("/proc/%s/exe" % pid) != want:
                continue
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:  # ENOENT, ESRCH: gone meanwhile
            continue
        if str(mountpoint).encode() in args:
            pids.append(int(pid))
    return pids


def fstype_of(mountpoint):
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(mountpoint):
                sep = fields.index("-")
                return fields[sep + 1], fields[sep + 2]
    return None


@contextlib.contextmanager
def imdbfs_on_mount_path():
    """mount(8) runs helpers with PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:...: make
    /usr/local/bin/imdbfs the binary under test for the duration."""
    binary = os.path.realpath(imdbfs_bin())
    created = False
    if os.path.lexists(SYMLINK):
        if os.path.realpath(SYMLINK) != binary:
            pytest.skip("%s exists and is not the binary under test (%s): not replacing it"
                        % (SYMLINK, binary))
    else:
        if os.path.lexists("/usr/local/sbin/imdbfs"):  # the one place before it in that PATH
            pytest.skip("/usr/local/sbin/imdbfs exists and would be run instead of %s" % SYMLINK)
        SYMLINK.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(binary, SYMLINK)
        created = True
    try:
        yield binary
    finally:
        if created:
            os.unlink(SYMLINK)


@pytest.mark.timeout_s(90)
def test_mount_helper(origin, sample_data, tmp_path):
    """`mount -t fuse.imdbfs` and an fstab line (mount -T) mount through mount.fuse3."""
    require_root("mount(8) of a fuse.imdbfs file system")
    for tool in ("mount", "umount"):
        assert shutil.which(tool), "%s is missing" % tool
    assert os.path.exists("/sbin/mount.fuse3"), "/sbin/mount.fuse3 is missing (package fuse3)"
    mnt = {k: tmp_path / ("mnt-" + k) for k in ("type", "fstab")}
    cache = {k: tmp_path / ("cache-" + k) for k in mnt}
    for d in list(mnt.values()) + list(cache.values()):
        d.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# an alternative fstab for mount -T\n"
        "imdbfs %s fuse.imdbfs origin=%s,cache_dir=%s,_netdev,noauto,nofail,"
        "x-systemd.automount,allow_other 0 0\n" % (mnt["fstab"], origin.url(), cache["fstab"]))
    commands = {
        "type": ["mount", "-t", "fuse.imdbfs", "imdbfs", mnt["type"], "-o",
                 "origin=%s,cache_dir=%s,_netdev,noauto" % (origin.url(), cache["type"])],
        "fstab": ["mount", "-T", fstab, mnt["fstab"]],
    }
    with system_lock(), imdbfs_on_mount_path() as binary:
        try:
            for kind, cmd in commands.items():
                p = run(cmd, timeout=30, universal_newlines=True)
                assert p.returncode == 0, "%s exited %d: %s%s" % (cmd, p.returncode, p.stdout,
                                                                 p.stderr)
                wait_for(lambda: os.path.ismount(mnt[kind]), 10, "%s mounted" % mnt[kind])
                assert fstype_of(mnt[kind]) == ("fuse.imdbfs", "imdbfs"), fstype_of(mnt[kind])
                pids = daemons_of(mnt[kind], binary)
                assert len(pids) == 1, "imdbfs daemons for %s: %s" % (mnt[kind], pids)
                read_through(mnt[kind], sample_data)
                assert list((cache[kind]).glob("title.ratings.tsv.gz")), \
                    "%s did not cache in %s" % (kind, cache[kind])
                p = run(["umount", mnt[kind]], timeout=30, universal_newlines=True)
                assert p.returncode == 0, "umount %s: %s" % (mnt[kind], p.stderr)
                assert not in_mount_table(mnt[kind])
                wait_for(lambda: not daemons_of(mnt[kind], binary), 10,
                         "the daemon of %s to exit after umount" % mnt[kind])
        finally:
            for kind, path in mnt.items():
                if in_mount_table(path):
                    subprocess.run(["umount", "-l", str(path)], timeout=10,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for pid in daemons_of(path, binary):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, 9)
