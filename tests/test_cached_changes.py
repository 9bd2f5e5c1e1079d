"""Files that change under the open-file cache while its answer is trusted (``--cache-valid``).

nginx's ``open_file_cache`` (``open_file_cache_valid``) answers from the descriptor and the
``stat`` it holds until the interval ends, and so does fastserve: a file deleted or replaced by
a directory is still served whole as it was; what cannot be served as promised (a large file
truncated under its descriptor) is never an answer whose length lies about its body. After the
interval the change is seen. Found probing fastserve beside nginx over loopback; what the kernel
decides (sendfile of a shrunk file) is tests/test_server_limits.py's.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from inprocess import request

SMALL = b"a small file held in memory\n"
LARGE = bytes(range(256)) * 64  # 16 KiB: above --cache-max-file, sent from its descriptor


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "tdir").mkdir(parents=True)
    (root / "deleted.txt").write_bytes(SMALL)
    (root / "to-dir.txt").write_bytes(SMALL)
    (root / "large.bin").write_bytes(LARGE)
    (root / "target.txt").write_bytes(SMALL)
    (root / "tdir" / "index.html").write_bytes(b"<p>tdir</p>\n")
    os.symlink("target.txt", root / "link")
    return root


def whole(response) -> bool:
    """Whether the answer's length is its body's (a HEAD aside)."""
    return response.header("content-length") == str(len(response.body))


def change_after_answering(client, site: Path) -> None:
    """Each file answered once, then: one deleted, one replaced by a directory, the symlink
    pointed at a directory instead of a file."""
    for target in ("/deleted.txt", "/to-dir.txt", "/large.bin", "/link"):
        assert client.request("GET", target).status == 200
    (site / "deleted.txt").unlink()
    (site / "to-dir.txt").unlink()
    (site / "to-dir.txt").mkdir()
    (site / "link").unlink()
    os.symlink("tdir", site / "link")


def test_changes_within_the_validity_interval_answer_as_before_and_whole(site, serve_cli):
    server = serve_cli(str(site), "--cache-valid", "3600", "--cache-max-file", "1024")
    client = server.open()
    change_after_answering(client, site)
    for target, body in (("/deleted.txt", SMALL), ("/to-dir.txt", SMALL), ("/link", SMALL)):
        response = client.request("GET", target)
        assert (response.status, response.body) == (200, body), target
        assert whole(response), target
    os.truncate(site / "large.bin", 0)
    client = server.open()
    client.send(request("GET", "/large.bin"), [False])
    answers = client.wait_for(1) if not client.closed else client.parsed()
    if answers:  # a length that holds: the file as it is now, or none sent (the connection closed)
        assert answers[0].status == 200 and whole(answers[0]) and answers[0].body == b""
    else:
        assert client.closed


def test_changes_are_seen_once_every_lookup_checks(site, serve_cli):
    server = serve_cli(str(site), "--cache-valid", "0", "--cache-max-file", "1024")
    client = server.open()
    change_after_answering(client, site)
    os.truncate(site / "large.bin", 100)
    assert client.request("GET", "/deleted.txt").status == 404
    assert client.request("GET", "/to-dir.txt").status == 404  # a directory without index.html
    moved = client.request("GET", "/link")
    assert (moved.status, moved.header("location")) == (301, "/link/")
    assert client.request("GET", "/link/").body == b"<p>tdir</p>\n"
    large = client.request("GET", "/large.bin")
    assert (large.status, large.body) == (200, LARGE[:100]) and whole(large)


def test_distinct_files_through_a_small_cache(tmp_path, serve_cli):
    """Each asked for once through a cache of 100 entries, which evicts all along: every answer
    is its own file's."""
    root = tmp_path / "many"
    root.mkdir()
    for i in range(10_000):
        (root / f"f{i:05d}.txt").write_bytes(b"file %05d\n" % i)
    server = serve_cli(str(root), "--cache-entries", "100", "--cache-bytes", "100000")
    client = server.open()
    wrong = []
    for i in range(10_000):
        response = client.request("GET", f"/f{i:05d}.txt")
        if (response.status, response.body) != (200, b"file %05d\n" % i):
            wrong.append(i)
    assert not wrong
    assert server.state.cache.evictions >= 9_900
