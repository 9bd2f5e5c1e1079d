"""Python-level tests of small compiled helpers the day's fixes added, each called directly
(their behaviour through the server is tested where they are used)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from fastserve._speedups.filecache import open_to_send
from fastserve._speedups.headers import is_field_value
from fastserve._speedups.pathlookup import raw_path_prefix
from fastserve._speedups.staticanswer import slash_location


def test_open_to_send_opens_regular_files_only(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"abc")
    handle = open_to_send(str(tmp_path / "a.txt"))  # closes its descriptor when collected
    assert os.pread(handle.fileno(), 3, 0) == b"abc"
    del handle
    os.mkfifo(tmp_path / "fifo")  # would block a plain open() until a writer came
    for not_a_file in (tmp_path / "fifo", tmp_path, Path("/dev/zero")):
        with pytest.raises(FileNotFoundError):
            open_to_send(str(not_a_file))
    with pytest.raises(FileNotFoundError):
        open_to_send(str(tmp_path / "missing"))
    with socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(tmp_path / "sock"))
        with pytest.raises(OSError):
            open_to_send(str(tmp_path / "sock"))


@pytest.mark.parametrize("value, allowed", [
    (b"no-cache", True), (b"", True), (b"max-age=60, \xff", True),
    (b"no-cache\r\nSet-Cookie: x=1", False), (b"a\nb", False), (b"a\rb", False), (b"a\x00b", False),
    ("no-cache", False), (None, False), (bytearray(b"x"), False),
])
def test_is_field_value(value: object, allowed: bool) -> None:
    assert is_field_value(value) is allowed


@pytest.mark.parametrize("root_path, raw", [
    ("", b""), ("/app", b"/app"), ("/a b", b"/a%20b"), ("/ü", b"/%C3%BC"), ("/x?y#z", b"/x%3Fy%23z"),
    ("/a;b=c@d:e", b"/a;b=c@d:e"),
])
def test_raw_path_prefix(root_path: str, raw: bytes) -> None:
    assert raw_path_prefix(root_path) == raw


@pytest.mark.parametrize("raw_path, path, query, location", [
    (b"/docs", "/docs", b"", b"/docs/"),
    (b"/d%20x", "/d x", b"?a=1", b"/d%20x/?a=1"),
    (b"//evil.example/dir", "//evil.example/dir", b"", b"/evil.example/dir/"),  # never protocol-relative
    (b"/a/../b", "/a/../b", b"", b"/b/"),  # where the dot segments lead, not through them
    (b"/a%0d%0ab", "/a\r\nb", b"", b"/a%0d%0ab/"),  # the raw path as spelled: encoded, one line
    (b"/a\r\nb", "/a\r\nb", b"", None),  # a CR or LF in what would be written: no Location (400)
    (b"/a", "/a", b"?x\r\nSet-Cookie: y", None),
])
def test_slash_location(raw_path: bytes, path: str, query: bytes, location: object) -> None:
    assert slash_location(raw_path, path, query) == location
