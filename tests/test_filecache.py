"""fastserve._speedups.filecache: the open-file cache behind the fast path and StaticFiles."""
import os
import time

import pytest

from fastserve._speedups.filecache import (
    KIND_FILE,
    KIND_FORBIDDEN,
    KIND_MISSING,
    KIND_REDIRECT,
    FileCache,
    OpenFile,
    choose_representation,
)
from fastserve._speedups.headers import format_http_date, make_etag
from server_helpers import releases, swap

FILE, MISSING, REDIRECT, FORBIDDEN = KIND_FILE, KIND_MISSING, KIND_REDIRECT, KIND_FORBIDDEN


@pytest.fixture
def root(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "index.html").write_text("<p>index</p>")
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "small.txt").write_text("hello")
    (tmp_path / "big.bin").write_bytes(os.urandom(300 * 1024))
    return tmp_path


def test_small_file_entry_holds_body_and_validators(root):
    cache = FileCache([root])
    entry = cache.lookup("/small.txt")
    st = os.stat(root / "small.txt")
    assert entry.kind == FILE and entry.status == 200
    assert entry.body == b"hello"
    assert entry.file is None
    assert entry.size == 5
    assert entry.etag == make_etag(st.st_mtime_ns, st.st_size)
    assert entry.last_modified == format_http_date(st.st_mtime)
    assert entry.mtime == int(st.st_mtime)
    assert entry.content_type == b"text/plain; charset=utf-8"
    assert (b"content-length", b"5") in entry.fields
    assert (b"etag", entry.etag) in entry.fields
    # one list of fields, two renderings: the wire bytes are the list's
    assert b"Content-Length: 5\r\n" in entry.wire_fields
    assert b"ETag: " + entry.etag + b"\r\n" in entry.wire_fields
    assert entry.not_modified_fields == [(b"last-modified", entry.last_modified), (b"etag", entry.etag)]
    assert entry.wire_not_modified == b"Last-Modified: %s\r\nETag: %s\r\n" % (entry.last_modified, entry.etag)


def test_large_file_entry_keeps_an_open_descriptor(root):
    cache = FileCache([root], max_body=256 * 1024)
    entry = cache.lookup("/big.bin")
    assert entry.body is None
    assert isinstance(entry.file, OpenFile)
    assert os.pread(entry.file.fileno(), 10, 0) == (root / "big.bin").read_bytes()[:10]
    assert cache.held_bytes == 0


def test_entries_are_reused_while_fresh(root):
    cache = FileCache([root], valid_for=60)
    assert cache.lookup("/small.txt") is cache.lookup("/small.txt")


def test_changed_file_is_seen_after_the_validity_interval(root):
    cache = FileCache([root], valid_for=0.05)
    first = cache.lookup("/small.txt")
    (root / "small.txt").write_text("changed!")
    os.utime(root / "small.txt", ns=(first.stat.st_atime_ns, first.stat.st_mtime_ns + 10**9))
    assert cache.lookup("/small.txt").body == b"hello"  # still trusted
    time.sleep(0.06)
    second = cache.lookup("/small.txt")
    assert second.body == b"changed!"
    assert second.etag != first.etag


def test_unchanged_file_is_revalidated_not_rebuilt(root):
    cache = FileCache([root], valid_for=0.01)
    first = cache.lookup("/small.txt")
    time.sleep(0.02)
    assert cache.lookup("/small.txt") is first


def test_misses_are_cached_and_looked_up_again_later(root):
    cache = FileCache([root], valid_for=0.05)
    miss = cache.lookup("/later.txt")
    assert miss.kind == MISSING and miss.status == 404 and miss.body == b"Not Found"
    (root / "later.txt").write_text("now here")
    assert cache.lookup("/later.txt") is miss
    time.sleep(0.06)
    assert cache.lookup("/later.txt").body == b"now here"


def test_directories_in_html_mode(root):
    cache = FileCache([root], html=True)
    assert cache.lookup("/dir").kind == REDIRECT
    index = cache.lookup("/dir/")
    assert index.kind == FILE and index.body == b"<p>index</p>"
    assert cache.lookup("/empty-dir/").kind == MISSING


def test_directories_without_html_mode_are_missing(root):
    cache = FileCache([root])
    assert cache.lookup("/dir").kind == MISSING
    assert cache.lookup("/dir/").kind == MISSING


def test_html_mode_serves_404_page(root):
    (root / "404.html").write_text("<p>nope</p>")
    cache = FileCache([root], html=True)
    entry = cache.lookup("/nothing")
    assert entry.kind == MISSING and entry.status == 404
    assert entry.body == b"<p>nope</p>"
    assert entry.content_type == b"text/html; charset=utf-8"


def test_traversal_is_a_miss(root):
    cache = FileCache([root / "dir"])
    for path in ["/../small.txt", "/..", "/a/../../small.txt", "/..\\small.txt", "/\x00"]:
        assert cache.lookup(path).kind == MISSING, path


def test_name_too_long_is_a_miss(root):
    assert FileCache([root]).lookup("/" + "x" * 5000).kind == MISSING


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file regardless of permissions")
def test_permission_denied_is_forbidden(root):
    os.chmod(root / "small.txt", 0)
    try:
        entry = FileCache([root]).lookup("/small.txt")
        assert entry.kind == FORBIDDEN and entry.status == 403
    finally:
        os.chmod(root / "small.txt", 0o644)


def test_permission_error_while_opening_is_forbidden(root, monkeypatch):
    # Tests may run as root, whom the filesystem never refuses: make opening refuse instead.
    def refusing_open(path, flags, *args):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "open", refusing_open)
    entry = FileCache([root]).lookup("/small.txt")
    assert entry.kind == FORBIDDEN and entry.status == 403
    assert entry.body == b"Forbidden"
    os.fstat(0)  # the failed open must not have closed some other descriptor (fd 0)


def test_entry_count_is_bounded(root):
    cache = FileCache([root], max_entries=3)
    for i in range(10):
        cache.lookup(f"/missing-{i}")
    assert len(cache) == 3


def test_body_bytes_are_bounded(root):
    for i in range(5):
        (root / f"f{i}.bin").write_bytes(b"x" * 1000)
    cache = FileCache([root], max_bytes=2500)
    for i in range(5):
        assert cache.lookup(f"/f{i}.bin").body == b"x" * 1000
    assert cache.held_bytes <= 2500
    assert len(cache) == 2


def test_several_roots(root, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    (other / "only-here.txt").write_text("other root")
    cache = FileCache([root, other])
    assert cache.lookup("/only-here.txt").body == b"other root"
    assert cache.lookup("/small.txt").body == b"hello"


def test_clear(root):
    cache = FileCache([root])
    cache.lookup("/small.txt")
    cache.clear()
    assert len(cache) == 0 and cache.held_bytes == 0


# -- precompressed siblings ---------------------------------------------------------------


@pytest.fixture
def compressed_root(root):
    import gzip

    (root / "app.js").write_text("console.log('hi');" * 50)
    (root / "app.js.gz").write_bytes(gzip.compress((root / "app.js").read_bytes()))
    (root / "app.js.br").write_bytes(b"pretend-brotli")
    return root


def test_siblings_are_variants_only_when_asked(compressed_root):
    assert FileCache([compressed_root]).lookup("/app.js").variants is None
    entry = FileCache([compressed_root], precompressed=True).lookup("/app.js")
    assert [coding for coding, _ in entry.variants] == ["br", "gzip"]
    assert b"Vary: Accept-Encoding\r\n" in entry.wire_fields
    assert (b"vary", b"Accept-Encoding") in entry.fields
    assert (b"vary", b"Accept-Encoding") in entry.not_modified_fields


def test_choose_representation_by_accept_encoding(compressed_root):
    entry = FileCache([compressed_root], precompressed=True).lookup("/app.js")
    br = choose_representation(entry, b"gzip, br")
    assert br.body == b"pretend-brotli"
    assert (b"content-encoding", b"br") in br.fields and br.coding == b"br"
    assert b"Content-Encoding: br\r\n" in br.wire_fields
    assert not any(name == b"accept-ranges" for name, _ in br.fields)  # sent whole, never in ranges
    assert br.content_type == entry.content_type
    gz = choose_representation(entry, b"gzip;q=0.5, br;q=0")
    assert b"Content-Encoding: gzip\r\n" in gz.wire_fields
    assert len({entry.etag, br.etag, gz.etag}) == 3
    assert choose_representation(entry, b"identity") is entry
    assert choose_representation(entry, None) is entry
    assert choose_representation(entry, b"*;q=0, identity") is entry


def test_sibling_added_later_is_seen_on_revalidation(root):
    (root / "late.css").write_text("a{}")
    cache = FileCache([root], precompressed=True, valid_for=0.01)
    assert cache.lookup("/late.css").variants is None
    (root / "late.css.gz").write_bytes(b"gz")
    time.sleep(0.02)
    assert [coding for coding, _ in cache.lookup("/late.css").variants] == ["gzip"]


def test_sibling_linking_outside_the_root_is_ignored(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "page.html").write_text("<p>page</p>")
    (tmp_path / "secret").write_text("secret")
    os.symlink(tmp_path / "secret", served / "page.html.gz")
    assert FileCache([served], precompressed=True).lookup("/page.html").variants is None
    followed = FileCache([served], precompressed=True, follow_symlink=True).lookup("/page.html")
    assert [coding for coding, _ in followed.variants] == ["gzip"]


def _release_after(path, seconds):
    """Open the FIFO ``path`` for writing after ``seconds`` (then close it): a reader blocked
    in open() is let go, so a regression fails on the time taken instead of hanging."""
    import contextlib
    import threading

    def release():
        time.sleep(seconds)
        with contextlib.suppress(OSError):  # ENXIO: nobody is blocked reading it
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=release, daemon=True).start()


@pytest.mark.parametrize("name", ["app.js.gz", "app.js.br"])
def test_a_fifo_beside_a_file_is_no_sibling_and_never_opened(tmp_path, name):
    """A FIFO named like a precompressed sibling once held the worker in open() until a writer
    came (every connection of it waiting); it is skipped as not a regular file."""
    (tmp_path / "app.js").write_bytes(b"x" * 2000)
    os.mkfifo(tmp_path / name)
    _release_after(tmp_path / name, 2.0)
    started = time.monotonic()
    entry = FileCache([tmp_path], precompressed=True).lookup("/app.js")
    assert time.monotonic() - started < 1.0
    assert entry.kind == FILE and entry.variants is None


def test_a_fifo_in_a_files_place_is_missing(tmp_path):
    os.mkfifo(tmp_path / "pipe.txt")
    _release_after(tmp_path / "pipe.txt", 2.0)
    started = time.monotonic()
    assert FileCache([tmp_path]).lookup("/pipe.txt").kind == MISSING
    assert time.monotonic() - started < 1.0


def test_open_file_never_blocks_on_a_fifo(tmp_path):
    """What a file swapped for a FIFO between the lookup's stat and its open meets: the open
    returns at once (the entry is then refused by its fstat)."""
    os.mkfifo(tmp_path / "swapped")
    _release_after(tmp_path / "swapped", 2.0)
    started = time.monotonic()
    handle = OpenFile(str(tmp_path / "swapped"))
    assert time.monotonic() - started < 1.0 and handle.fileno() >= 0


def test_open_file_unchanged_until_the_file_is_written_in_place_or_its_mode_changes(tmp_path):
    """``OpenFile.unchanged`` compares one fstat with the one taken at open: size, modification
    and change time. A write in place (same inode), a truncation to the same length or a chmod
    each make it False; the same file merely read stays True."""
    path = tmp_path / "asset.bin"
    for change in (
        lambda: path.write_bytes(b"B" * 4096),  # in place, same size
        lambda: os.truncate(path, 4096),  # same length, only the times move
        lambda: os.chmod(path, 0o600),  # who may read it: the change time moves
    ):
        path.write_bytes(b"A" * 4096)
        os.utime(path, ns=(1, 1))
        handle = OpenFile(str(path))
        assert handle.unchanged()
        path.read_bytes()
        assert handle.unchanged()
        time.sleep(0.01)  # coarse file-system clocks: a change must land on another tick
        change()
        assert not handle.unchanged()


def test_a_root_symlink_swapped_to_a_new_release_is_followed_after_the_validity_interval(tmp_path):
    """The atomic deploy nginx follows: the root was resolved once, at start, so a server kept
    serving the first release until restarted. Now the roots are resolved again each
    ``valid_for`` seconds, the old release's entries dropped; what lies outside the new target
    (a link back into the old release) is outside the root."""
    current = releases(tmp_path)
    cache = FileCache([current], valid_for=0.05)
    assert cache.lookup("/a.txt").body == b"one" and cache.lookup("/new.txt").kind == MISSING
    swap(current, "v2")
    assert cache.lookup("/a.txt").body == b"one"  # within the interval: still trusted
    time.sleep(0.06)
    assert cache.lookup("/a.txt").body == b"two" and cache.lookup("/new.txt").body == b"new"
    assert cache.roots == (str(tmp_path / "v2"),) and cache.configured_roots == (str(current),)
    assert cache.lookup("/old.txt").kind == MISSING  # a symlink out of the root, as any other
    assert len(cache) == 3  # v1's entries went with it


@pytest.mark.parametrize("change", ["root symlink", "symlink above the root", "directory renamed in"])
def test_a_swapped_root_is_seen_at_the_next_lookup_when_every_lookup_checks(tmp_path, change):
    """``valid_for=0`` (the library ``StaticFiles``): the roots are checked on every lookup, by
    one ``stat`` each (the ``realpath`` walk only when what a root names changed); each way a
    root comes to name another directory is seen at once."""
    current = releases(tmp_path)
    root = current / "site" if change == "symlink above the root" else current
    for release, body in (("v1", b"one"), ("v2", b"two")):
        (tmp_path / release / "site").mkdir()
        (tmp_path / release / "site" / "a.txt").write_bytes(body)
    if change == "directory renamed in":
        current.unlink()
        (tmp_path / "v1").rename(current)
        root = current
    cache = FileCache([root], valid_for=0)
    assert cache.lookup("/a.txt").body == b"one"
    assert cache.lookup("/a.txt").body == b"one"  # nothing changed: still served
    if change == "directory renamed in":
        current.rename(tmp_path / "v1")  # mv current v1 && mv v2 current
        (tmp_path / "v2").rename(current)
    else:
        swap(current, "v2")
    assert cache.lookup("/a.txt").body == b"two"


def test_with_follow_symlink_the_root_is_walked_anew_on_each_lookup(tmp_path):
    current = releases(tmp_path)
    cache = FileCache([current], valid_for=0.05, follow_symlink=True)
    assert cache.lookup("/a.txt").body == b"one"
    swap(current, "v2")
    time.sleep(0.06)
    assert cache.lookup("/a.txt").body == b"two" and cache.roots == (str(current),)
