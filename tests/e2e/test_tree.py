"""The mounted tree: names, types, sizes and times."""

import errno
import os
import stat

import pytest

from util import CONTROL_FILES, DATA_NAMES, DATASETS, origin_gz, origin_tsv


def test_root_lists_the_catalogue_and_control(origin, mount):
    m = mount(origin.url())
    assert sorted(os.listdir(m.path)) == sorted(DATA_NAMES + [".control"])


def test_control_dir_lists_its_files(origin, mount):
    m = mount(origin.url())
    assert sorted(os.listdir(m / ".control")) == sorted(CONTROL_FILES)
    assert stat.S_ISDIR(os.stat(m / ".control").st_mode)
    for name in CONTROL_FILES:
        assert stat.S_ISREG(os.stat(m / ".control" / name).st_mode), name


@pytest.mark.parametrize("opts", [(), ("fast_stat",)])
def test_listing_does_not_fetch(origin, mount, opts):
    """readdir never fetches, nor does a stat of a .tsv.gz (its size is the probe's HEAD); by
    default a stat of a cold .tsv waits for its size and so fetches (DESIGN.md invariant 14),
    which only fast_stat spares."""
    m = mount(origin.url(), extra_opts=list(opts))
    os.listdir(m.path)
    for name in DATA_NAMES:
        if name.endswith(".gz") or opts:
            st = os.stat(m / name)
            assert stat.S_ISREG(st.st_mode), name
    assert origin.gets() == [], "readdir/stat must not download anything"


@pytest.mark.parametrize("name", [
    "title.basics", "title.basics.tsv.bz2", "title.nothing.tsv.gz", "TITLE.BASICS.TSV.GZ",
    "name.basics.tsv.gz.meta", ".partial", "foo", ".control/nope", ".control/health/x",
    "title.basics.tsv.gz/x",
])
def test_no_other_names_exist(origin, mount, name):
    m = mount(origin.url())
    with pytest.raises(OSError) as e:
        os.stat(m / name)
    assert e.value.errno in (errno.ENOENT, errno.ENOTDIR), (name, e.value)


def test_sizes_are_exact_once_cached(origin, mount, sample_data):
    m = mount(origin.url())
    for d in DATASETS:
        gz, tsv = origin_gz(sample_data, d), origin_tsv(sample_data, d)
        assert (m / (d + ".tsv")).read_bytes() == tsv, d
        assert os.stat(m / (d + ".tsv.gz")).st_size == len(gz), d
        assert os.stat(m / (d + ".tsv")).st_size == len(tsv), d


def test_gz_mtime_is_the_origins_last_modified(origin_factory, mount, private_data):
    # A fixed past time per file, so that "now" or a fetch time cannot pass for it.
    for k, d in enumerate(DATASETS):
        t = 1700000000 + 86400 * k + 3600 * k + 7
        os.utime(private_data / (d + ".tsv.gz"), (t, t))
    origin = origin_factory(private_data.path)
    m = mount(origin.url())
    for k, d in enumerate(DATASETS):
        (m / (d + ".tsv.gz")).read_bytes()
        assert int(os.stat(m / (d + ".tsv.gz")).st_mtime) == 1700000000 + 86400 * k + 3600 * k + 7, d
