"""Micro-benchmarks: path lookup and the open-file cache against the pure-Python way.

``pytest --benchmark-enable tests/test_bench_speedups_lookup.py`` prints each group's ratio;
with ``--benchmark-disable`` (the project default) each runs once and checks its answer.
"""
import os
import stat
import urllib.parse

import pytest

from fastserve._speedups.filecache import FileCache
from fastserve._speedups.pathlookup import percent_decode, resolve_path, split_url_path

RAW = b"/assets/css/site%20main.css"


def bench(group: str):
    return pytest.mark.benchmark(group=group, max_time=0.25, min_rounds=5)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("lookup")
    (base / "assets" / "css").mkdir(parents=True)
    (base / "assets" / "css" / "site main.css").write_text("body{}" * 100)
    return str(base)


def python_lookup(root: str, raw: bytes):
    """What a per-request lookup costs without a cache: decode, normalise, contain, stat, read."""
    path = urllib.parse.unquote(raw.decode("latin-1"))
    full = os.path.realpath(os.path.join(root, os.path.normpath(path.lstrip("/"))))
    if os.path.commonpath([full, root]) != root:
        return None
    st = os.stat(full)
    if not stat.S_ISREG(st.st_mode):
        return None
    with open(full, "rb") as f:
        return f.read()


@bench("percent_decode")
def test_percent_decode_fastserve(benchmark):
    assert benchmark(percent_decode, RAW) == "/assets/css/site main.css"


@bench("percent_decode")
def test_percent_decode_python(benchmark):
    assert benchmark(lambda: urllib.parse.unquote(RAW.decode("latin-1"))) == "/assets/css/site main.css"


@bench("split_url_path")
def test_split_url_path_fastserve(benchmark):
    assert benchmark(split_url_path, "/assets/css/site main.css") == ("assets", "css", "site main.css")


@bench("split_url_path")
def test_split_url_path_python(benchmark):
    def normalise(path):
        parts = os.path.normpath(path.lstrip("/")).split(os.sep)
        return None if ".." in parts else tuple(parts)

    assert benchmark(normalise, "/assets/css/site main.css") == ("assets", "css", "site main.css")


@bench("lookup")
def test_cached_lookup_fastserve(benchmark, root):
    cache = FileCache([root], valid_for=3600)

    def lookup():
        return cache.lookup(percent_decode(RAW)).body

    assert benchmark(lookup) == b"body{}" * 100


@bench("lookup")
def test_uncached_resolve_fastserve(benchmark, root):
    roots = (os.path.realpath(root),)
    full, st = benchmark(resolve_path, roots, ("assets", "css", "site main.css"), False)
    assert st.st_size == 600


@bench("lookup")
def test_lookup_python(benchmark, root):
    assert benchmark(python_lookup, os.path.realpath(root), RAW) == b"body{}" * 100
