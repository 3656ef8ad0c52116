"""A strict parser of the Prometheus text exposition format (version 0.0.4).

parse(text) returns {family: {"type": ..., "help": ..., "samples": {(name, labels): value}}}
and raises ValueError, naming the line, for anything the format does not allow:
unknown comment kinds aside, a malformed name, label or value; a family's HELP or TYPE
twice or after its samples; a family's samples not contiguous; a duplicate series; a
counter sample not named after its family; a missing final newline.
"""
import math
import re

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
SAMPLE = re.compile(r"^(%s)(\{(.*)\})? (\S+)( -?\d+)?$" % NAME)
PAIR = re.compile(r'(%s)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"' % LABEL)
FLOAT = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


def _labels(text, where):
    out, pos = [], 0
    while pos < len(text):
        m = PAIR.match(text, pos)
        if not m:
            raise ValueError("%s: malformed labels %r" % (where, text))
        out.append((m.group(1), m.group(2)))
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise ValueError("%s: labels not separated by commas: %r" % (where, text))
            pos += 1
    names = [k for k, _ in out]
    if len(names) != len(set(names)):
        raise ValueError("%s: a label given twice: %r" % (where, text))
    return tuple(sorted(out))


def _value(text, where):
    if text in ("NaN", "+Inf", "-Inf"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not FLOAT.match(text):
        raise ValueError("%s: malformed value %r" % (where, text))
    return float(text)


def _family_of(name, families):
    for suffix in ("_bucket", "_sum", "_count", ""):
        base = name[:-len(suffix)] if suffix and name.endswith(suffix) else name
        if base in families and (not suffix or families[base]["type"] in ("histogram",
                                                                         "summary")):
            return base
    return name


def parse(text):
    if not text.endswith("\n"):
        raise ValueError("the text does not end with a newline")
    families, done, current = {}, set(), None
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d (%r)" % (n, line)
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
                continue  # a plain comment
            kind, name = parts[1], parts[2]
            if not re.fullmatch(NAME, name):
                raise ValueError("%s: malformed metric name" % where)
            fam = families.setdefault(name, {"type": "untyped", "help": None, "samples": {},
                                             "typed": False})
            if fam["samples"]:
                raise ValueError("%s: %s after the family's samples" % (where, kind))
            if kind == "TYPE":
                if fam["typed"] or len(parts) != 4 or parts[3] not in TYPES:
                    raise ValueError("%s: a second or malformed TYPE" % where)
                fam["type"], fam["typed"] = parts[3], True
            else:
                if fam["help"] is not None or len(parts) != 4:
                    raise ValueError("%s: a second or empty HELP" % where)
                fam["help"] = parts[3]
            continue
        if not line.strip():
            raise ValueError("%s: blank line" % where)
        m = SAMPLE.match(line)
        if not m:
            raise ValueError("%s: not a sample" % where)
        name = m.group(1)
        base = _family_of(name, families)
        fam = families.setdefault(base, {"type": "untyped", "help": None, "samples": {},
                                         "typed": False})
        if base != current:
            if base in done:
                raise ValueError("%s: the samples of %s are not together" % (where, base))
            if current:
                done.add(current)
            current = base
        if fam["type"] == "counter" and name != base:
            raise ValueError("%s: a counter sample named apart from its family" % where)
        key = (name, _labels(m.group(3) or "", where))
        if key in fam["samples"]:
            raise ValueError("%s: a duplicate series" % where)
        value = _value(m.group(4), where)
        if fam["type"] == "counter" and (value < 0 or math.isnan(value)):
            raise ValueError("%s: a counter below zero" % where)
        fam["samples"][key] = value
    return families


def value(families, family, **labels):
    """The value of one series, by its family and exact labels."""
    key = (family, tuple(sorted(labels.items())))
    return families[family]["samples"][key]
