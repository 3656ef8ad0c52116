"""The manual pages packaging/man/imdbfs.1 and imdb-db.1.

They render with man(1) and groff without a single warning, and they document exactly what the
programs offer: the options and environment variables of `imdbfs --help`, the files of a real
mount's .control/, the commands and options of `scripts/imdb-db --help`.

The pages are read as rendered (`man -l`, 80 columns, plain text), the way a reader sees them:
a section starts at a line in column 0, and a .TP entry's tag is a line indented by 7 columns
after a blank line. A tag narrower than 7 columns shares its line with the body, which starts
at column 14.
"""

import os
import re
import shutil

import pytest

from util import REPO, imdbfs_bin, run

MAN_DIR = REPO / "packaging" / "man"
IMDBFS_PAGE = MAN_DIR / "imdbfs.1"
IMDB_DB_PAGE = MAN_DIR / "imdb-db.1"
IMDB_DB = REPO / "scripts" / "imdb-db"
PAGES = [IMDBFS_PAGE, IMDB_DB_PAGE]

WIDTH = 80
TAG_INDENT = 7
BODY_INDENT = 14
# IMDBFS_ORIGIN, LOG_LEVEL, XDG_CACHE_HOME: upper case with an underscore.
ENV_NAME = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


def _tool(name, package):
    path = shutil.which(name)
    if not path:
        pytest.fail("%s is not installed (Debian package %s): the manual pages cannot be checked"
                    % (name, package), pytrace=False)
    return path


def _env():
    env = dict(os.environ, MANWIDTH=str(WIDTH), LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat")
    for k in ("MAN_KEEP_FORMATTING", "MANROFFOPT", "GROFF_TMAC_PATH", "MANOPT"):
        env.pop(k, None)
    return env


def render(page):
    """The page as man -l shows it, every groff warning on; fails the test on any diagnostic.

    --warnings takes groff's warning names: `w` is every warning, while groff's `all` leaves out
    `mac` (an undefined macro), `reg` and `di`, so `--warnings=all` misses a misspelt macro.
    """
    p = run([_tool("man", "man-db"), "--warnings=w", "-l", "-E", "UTF-8", page], timeout=30,
            universal_newlines=True, env=_env())
    assert p.returncode == 0 and not p.stderr, (
        "man -l %s: exit %d, stderr:\n%s" % (page.name, p.returncode, p.stderr))
    # Plain text: no overstrike (bold/underline) nor SGR escapes survive.
    return re.sub(r"\x1b\[[0-9;]*m", "", re.sub(r".\x08", "", p.stdout))


def sections(text):
    """{heading: [lines]} of a rendered page; the running header and footer end in NAME(1)."""
    out, name = {}, None
    for line in text.splitlines():
        if line and not line[0].isspace():
            if re.search(r"\(\d\)\s*$", line):
                continue
            name = line.strip()
            out[name] = []
        elif name is not None:
            out[name].append(line)
    return out


def section(text, heading):
    found = sections(text)
    assert heading in found, "no section %s; the page has: %s" % (heading, ", ".join(found))
    return found[heading]


def _indent(line):
    return len(line) - len(line.lstrip(" ")) if line.strip() else None


def tags(lines):
    """The tags of the .TP entries in a section's lines.

    A tag line is indented by TAG_INDENT after a blank line, and followed by its body (indented
    by BODY_INDENT) or, when the body shares its line, by a blank line; a paragraph's first line
    is followed by more of the paragraph at TAG_INDENT, or is its only line (and then holds no
    short word padded to BODY_INDENT, as a one-line entry does).
    """
    out = []
    for i, line in enumerate(lines):
        if _indent(line) != TAG_INDENT or (i and _indent(lines[i - 1]) is not None):
            continue
        following = _indent(lines[i + 1]) if i + 1 < len(lines) else None
        head = line[TAG_INDENT:BODY_INDENT - 1].strip()
        shared = (len(line) > BODY_INDENT and line[BODY_INDENT - 1] == " "
                  and line[BODY_INDENT] != " " and head and " " not in head)
        if shared and following in (None, BODY_INDENT):
            out.append(head)  # a tag narrower than the indent: the body is on its line
        elif following == BODY_INDENT:
            out.append(line.strip())
    return out


def entries(lines):
    """{tag: body text (whitespace collapsed)} of a section's .TP entries."""
    out, tag = {}, None
    pending = tags(lines)
    for i, line in enumerate(lines):
        indent = _indent(line)
        starts = (indent == TAG_INDENT and pending and line.strip().startswith(pending[0])
                  and (i == 0 or _indent(lines[i - 1]) is None))
        if starts:
            tag = pending.pop(0)
            out[tag] = line.strip()[len(tag):]
        elif indent == TAG_INDENT:
            tag = None  # a paragraph between or after the entries
        elif tag is not None and indent is not None:
            out[tag] += " " + line.strip()
    return {k: " ".join(v.split()) for k, v in out.items()}


def diff(what, doc, truth, doc_name, truth_name):
    missing, extra = sorted(truth - doc), sorted(doc - truth)
    return ("%s differ:\n  in %s but not in %s: %s\n  in %s but not in %s: %s"
            % (what, truth_name, doc_name, missing or "-", doc_name, truth_name, extra or "-"))


# ----------------------------------------------------------------- imdbfs --help

def imdbfs_help():
    p = run([imdbfs_bin(), "--help"], timeout=10, universal_newlines=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


def help_options(text):
    """{"-o origin": {"form": "-o origin=URL", "env": [...], "default": "..."}, "-f": {...}}
    from the block of --help that starts at "options (" and ends at a blank line."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("options")), None)
    assert start is not None, "imdbfs --help has no 'options' block:\n" + text
    out, current = {}, None
    for line in lines[start + 1:]:
        if not line.strip():
            break
        m = re.match(r"^\s+(-o\s+([a-z_]+)(=\S*)?|-([a-zA-Z]))(\s+(.*))?$", line)
        if m:
            key = "-o " + m.group(2) if m.group(2) else "-" + m.group(4)
            rest = m.group(6) or ""
            current = out[key] = {"form": " ".join(m.group(1).split()),
                                  "env": ENV_NAME.findall(rest.split("(")[0]), "text": rest}
        elif current is not None:
            current["text"] += " " + line.strip()
    for o in out.values():
        d = re.search(r"\(([^)]*)\)", o["text"])
        o["default"] = " ".join(d.group(1).split()) if d else None
    assert out, "no options parsed from imdbfs --help:\n" + text
    return out


def man_option_key(tag):
    m = re.match(r"^-o ([a-z_]+)(=\S*)?$", tag) or re.match(r"^-([a-zA-Z])$", tag)
    assert m, "OPTIONS of imdbfs.1 has a tag that is no option: %r" % tag
    return ("-o " if tag.startswith("-o ") else "-") + m.group(1)


@pytest.fixture(scope="module")
def imdbfs_page():
    return render(IMDBFS_PAGE)


@pytest.fixture(scope="module")
def imdb_db_page():
    return render(IMDB_DB_PAGE)


# ----------------------------------------------------------------- rendering

@pytest.mark.timeout_s(30)
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_renders_without_a_warning(page):
    text = render(page)  # asserts an empty stderr
    name = page.name[:-2]
    assert re.search(r"^NAME\n\s+%s\s+-\s+\S" % re.escape(name), text, re.M), (
        "no NAME line '%s - ...' in the rendered %s:\n%s" % (name, page.name, text[:600]))
    # groff itself, every warning on, to the UTF-8 terminal man uses and to PostScript, whose
    # real fonts make a font change to a font that does not exist (\fQ) a warning too.
    for device in ("utf8", "ps"):
        p = run([_tool("groff", "groff-base"), "-man", "-T" + device, "-ww", "-z", page],
                timeout=30, universal_newlines=True, env=_env())
        assert p.returncode == 0 and not p.stderr, (
            "groff -man -T%s -ww %s:\n%s" % (device, page.name, p.stderr))
    # mandb reads the NAME section with lexgrog for whatis(1) and apropos(1).
    p = run([_tool("lexgrog", "man-db"), page], timeout=30, universal_newlines=True, env=_env())
    assert p.returncode == 0 and " - " in p.stdout, "lexgrog %s: %s%s" % (page.name, p.stdout,
                                                                          p.stderr)


@pytest.mark.timeout_s(30)
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_source_is_portable(page):
    src = page.read_bytes()
    bad = [n for n, line in enumerate(src.splitlines(), 1) if any(b > 127 for b in line)]
    assert not bad, "%s: non-ASCII bytes on lines %s (use groff escapes)" % (page.name, bad)
    version = re.search(r'#define\s+IMDBFS_VERSION\s+"([^"]+)"',
                        (REPO / "include" / "version.h").read_text())
    th = re.search(r'^\.TH\s+(\S+)\s+1\s+"[^"]*"\s+"([^"]*)"', src.decode(), re.M)
    assert th, "%s has no .TH NAME 1 DATE SOURCE line" % page.name
    assert th.group(2) == "imdbfs " + version.group(1), (
        "%s: .TH says %r, include/version.h %r" % (page.name, th.group(2), version.group(1)))


# ----------------------------------------------------------------- imdbfs.1 vs the program

@pytest.mark.timeout_s(30)
def test_imdbfs_options_are_those_of_help(imdbfs_page):
    truth = help_options(imdbfs_help())
    doc_tags = tags(section(imdbfs_page, "OPTIONS"))
    doc = {man_option_key(t): t for t in doc_tags}
    assert len(doc) == len(doc_tags), "an option is listed twice in OPTIONS: %s" % doc_tags
    assert set(doc) == set(truth), diff("the options", set(doc), set(truth),
                                        "imdbfs.1 OPTIONS", "imdbfs --help")
    spelled = {k: v for k, v in doc.items() if v != truth[k]["form"]}
    assert not spelled, "spelled otherwise than in --help: %s" % {
        k: (v, truth[k]["form"]) for k, v in spelled.items()}
    bodies = entries(section(imdbfs_page, "OPTIONS"))
    for key, o in sorted(truth.items()):
        body = bodies[doc[key]]
        for var in o["env"]:
            assert var in ENV_NAME.findall(body), (
                "OPTIONS %s does not name its environment variable %s: %s" % (key, var, body))
        if o["default"] is not None and key.startswith("-o ") and o["env"]:
            assert re.search(r"Default: %s(?:[.;,]|\s|$)" % re.escape(o["default"]), body), (
                "OPTIONS %s does not give the default of --help (%s): %s"
                % (key, o["default"], body))


@pytest.mark.timeout_s(30)
def test_imdbfs_environment_names_every_variable_of_help(imdbfs_page):
    truth = set(ENV_NAME.findall(imdbfs_help()))
    doc = set()
    for t in tags(section(imdbfs_page, "ENVIRONMENT")):
        doc.update(ENV_NAME.findall(t) or [t])
    missing = sorted(truth - doc)
    assert not missing, (
        "imdbfs --help names variables that imdbfs.1 ENVIRONMENT lacks: %s" % missing)
    # And nothing the program does not read: each name is a string in the sources.
    sources = "".join(p.read_text() for p in sorted((REPO / "src").glob("*.c")))
    unknown = sorted(v for v in doc if '"%s"' % v not in sources)
    assert not unknown, "imdbfs.1 ENVIRONMENT names variables src/ never reads: %s" % unknown


@pytest.mark.timeout_s(60)
def test_imdbfs_control_files_are_those_of_a_mount(origin, mount, imdbfs_page):
    m = mount(origin.url())
    p = run(["ls", m / ".control"], timeout=10, universal_newlines=True, check=True)
    truth = set(p.stdout.split())
    assert truth, "ls %s/.control listed nothing" % m.path
    lines = section(imdbfs_page, "CONTROL FILES")
    doc = set(tags(lines))
    assert doc == truth, diff("the control files", doc, truth, "imdbfs.1 CONTROL FILES",
                              "ls MOUNT/.control")
    # Every metric family the mount exports is named in the entry of `metrics`.
    families = set(re.findall(r"^# TYPE (\S+) ", (m / ".control" / "metrics").read_text(), re.M))
    assert families, "no '# TYPE' line in .control/metrics"
    named = set(re.findall(r"\bimdbfs_[a-z0-9_]+", entries(lines)["metrics"]))
    assert named == families, diff("the metrics", named, families, "imdbfs.1 metrics entry",
                                   ".control/metrics")


@pytest.mark.timeout_s(30)
def test_imdbfs_page_has_its_sections(imdbfs_page):
    found = sections(imdbfs_page)
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT", "CONTROL FILES",
                    "FILES", "EXIT STATUS", "LOGGING", "EXAMPLES", "SEE ALSO"):
        assert heading in found, "imdbfs.1 has no %s section (has: %s)" % (heading, list(found))
    synopsis = " ".join(" ".join(found["SYNOPSIS"]).split())
    for form in ("imdbfs [options] [SOURCE] MOUNTPOINT", "imdbfs status MOUNTPOINT [--watch]",
                 "imdbfs wait MOUNTPOINT [--timeout SECONDS]", "imdbfs --help",
                 "imdbfs --version"):
        assert form in synopsis, "SYNOPSIS lacks %r: %s" % (form, synopsis)
    see_also = " ".join(found["SEE ALSO"])
    for ref in ("imdb-db(1)", "fusermount3(1)", "mount.fuse3(8)", "fstab(5)"):
        assert ref in see_also, "SEE ALSO lacks %s: %s" % (ref, see_also)


# ----------------------------------------------------------------- imdb-db.1 vs the script

def imdb_db_help():
    p = run([IMDB_DB, "--help"], timeout=10, universal_newlines=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


def help_block(text, heading):
    """The lines of the block of --help under `heading:` up to the next blank line."""
    lines = text.splitlines()
    assert heading + ":" in lines, "imdb-db --help has no %s: block:\n%s" % (heading, text)
    out = []
    for line in lines[lines.index(heading + ":") + 1:]:
        if not line.strip():
            break
        out.append(line)
    return out


@pytest.mark.timeout_s(30)
def test_imdb_db_commands_are_those_of_help(imdb_db_page):
    truth = {m.group(1) for line in help_block(imdb_db_help(), "Commands")
             for m in [re.match(r"^  ([a-z][a-z-]*)\s{2,}", line)] if m}
    assert truth, "no commands parsed from imdb-db --help"
    doc = set(tags(section(imdb_db_page, "COMMANDS")))
    assert doc == truth, diff("the commands", doc, truth, "imdb-db.1 COMMANDS", "imdb-db --help")


@pytest.mark.timeout_s(30)
def test_imdb_db_options_are_those_of_help(imdb_db_page):
    text = imdb_db_help()
    truth = {m.group(1) for line in help_block(text, "Options")
             for m in [re.match(r"^  (--[a-z-]+)", line)] if m}
    assert truth, "no options parsed from imdb-db --help"
    truth.add("--help")  # the option that printed the text
    doc_tags = tags(section(imdb_db_page, "OPTIONS"))
    doc = {o for t in doc_tags for o in re.findall(r"--[a-z-]+", t)}
    assert doc == truth, diff("the options", doc, truth, "imdb-db.1 OPTIONS", "imdb-db --help")
    # The usage line too.
    usage = re.search(r"^usage: (.*)$", text, re.M).group(1)
    synopsis = " ".join(" ".join(section(imdb_db_page, "SYNOPSIS")).split())
    assert usage in synopsis, "SYNOPSIS %r lacks the usage line %r" % (synopsis, usage)


@pytest.mark.timeout_s(30)
def test_imdb_db_database_urls_are_those_of_help(imdb_db_page):
    block = " ".join(help_block(imdb_db_help(), "DATABASE"))
    truth = set(re.findall(r"\b([a-z]+:(?://)?)(?=[\[A-Z)]|\s|$)", block))
    assert {"postgresql://", "sqlite:", "mysql://"} <= truth, truth
    text = " ".join(section(imdb_db_page, "DATABASE URLS"))
    missing = sorted(s for s in truth if s not in text)
    assert not missing, "imdb-db.1 DATABASE URLS does not describe %s" % missing
    found = sections(imdb_db_page)
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS",
                    "WHAT A LOAD GUARANTEES", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        assert heading in found, "imdb-db.1 has no %s section (has: %s)" % (heading, list(found))
    see_also = " ".join(found["SEE ALSO"])
    for ref in ("imdbfs(1)", "psql(1)", "sqlite3(1)", "mariadb(1)"):
        assert ref in see_also, "SEE ALSO lacks %s: %s" % (ref, see_also)
