"""A file that changes while its answer is being sent: never bytes of two versions under one
ETag taken for a whole answer (RFC 9110 section 8.8.3).

Written in place (``cp`` over it keeps the inode), appended to, truncated or touched, the file
is no longer the version whose length and validators went out in the head: the fast path
(``FileSender``, before each piece and once more before the answer's last byte, which it
holds back until then), ``StaticFiles`` and ``FileResponse`` (``send_slices``, after each
piece is read) cut the answer short of its length, and the on-the-fly encoder declines to
encode it. A file replaced by a rename leaves the descriptor on the old version, which is sent
whole. Found probing fastserve beside nginx over loopback (nginx sends the mix whole); the
kernel's side (sendfile on a real socket) is tests/test_server_limits.py's.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

from fastserve.compression import _read_content
from fastserve.responses import FileResponse
from fastserve.staticfiles import StaticFiles
from inprocess import request

SIZE = 1024 * 1024  # eight of the sender's 128 KiB copies, above --cache-max-file
ORIGINAL = bytes(range(256)) * (SIZE // 256)
SMALL = b"a small file held in memory\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "large.bin").write_bytes(ORIGINAL)
    (root / "small.txt").write_bytes(SMALL)
    return root


def later_mtime(path: Path) -> None:
    """Move the modification time on by a millisecond: the kernel's clock tick may not have
    moved since the write that made the file."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def rewrite_in_place(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(bytes(255 - b for b in ORIGINAL))
    later_mtime(path)


def append(path: Path) -> None:
    with open(path, "ab") as f:
        f.write(b"appended while it was sent\n")


def truncate(path: Path) -> None:
    os.truncate(path, SIZE // 2)


CHANGES: Dict[str, Callable[[Path], None]] = {
    "rewritten in place": rewrite_in_place, "appended to": append, "truncated": truncate, "touched": later_mtime,
}


def replace_by_rename(path: Path) -> None:
    fresh = path.with_name(path.name + ".new")
    fresh.write_bytes(bytes(255 - b for b in ORIGINAL))
    os.replace(fresh, path)


def body_of(data: bytes) -> bytes:
    return data[data.index(b"\r\n\r\n") + 4:]


def sending_with(client: Any, when: Callable[[int], bool], change: Callable[[], None]) -> None:
    """Have ``change`` made once, as soon as a write leaves ``when(body bytes written)`` true."""
    transport = client.transport
    original_write = transport.write
    done: List[bool] = []

    def write(data: bytes) -> None:
        original_write(data)
        written = bytes(transport.data)
        if not done and b"\r\n\r\n" in written and when(len(body_of(written))):
            done.append(True)
            change()

    transport.write = write


# -- the server's fast path ---------------------------------------------------------------------


@pytest.mark.parametrize("how", sorted(CHANGES))
def test_a_file_changed_while_the_fast_path_sends_it_is_cut(site: Path, serve_cli: Any, how: str) -> None:
    server = serve_cli(str(site), "--cache-valid", "3600", "--cache-max-file", "1024")
    client = server.open()
    path = site / "large.bin"
    sending_with(client, lambda body: body > 0, lambda: CHANGES[how](path))
    client.send(request("GET", "/large.bin") + request("GET", "/small.txt"), [False, False])
    server.run_until(lambda: client.closed)
    data = bytes(client.transport.data)
    assert data.startswith(b"HTTP/1.1 200 ") and f"content-length: {SIZE}\r\n".encode() in data.lower()
    body = body_of(data)
    assert 0 < len(body) < SIZE  # cut after the piece sent before the change
    assert body == ORIGINAL[:len(body)]
    assert client.transport.aborted
    assert b"HTTP/1.1" not in body  # the pipelined request is not answered into the cut one


@pytest.mark.parametrize("how", sorted(CHANGES))
def test_the_last_byte_waits_for_the_file_to_be_checked_again(site: Path, serve_cli: Any, how: str) -> None:
    """A change made once every byte but the last has left is still seen: the last byte is read,
    the file checked, and only then is the byte sent."""
    server = serve_cli(str(site), "--cache-valid", "3600", "--cache-max-file", "1024")
    client = server.open()
    path = site / "large.bin"
    sending_with(client, lambda body: body >= SIZE - 1, lambda: CHANGES[how](path))
    client.send(request("GET", "/large.bin"), [False])
    server.run_until(lambda: client.closed)
    assert body_of(bytes(client.transport.data)) == ORIGINAL[:SIZE - 1]
    assert client.transport.aborted


@pytest.mark.parametrize("range_value", ["bytes=0-", "bytes=100-199,-300000"])
def test_a_file_replaced_by_a_rename_while_sent_goes_out_whole_as_it_was(
    site: Path, serve_cli: Any, range_value: str
) -> None:
    """The descriptor stays on the old version (a rename moves only its change time): its bytes
    go out whole, and the pipelined request behind it is answered."""
    server = serve_cli(str(site), "--cache-valid", "3600", "--cache-max-file", "1024")
    client = server.open()
    path = site / "large.bin"
    whole = client.request("HEAD", "/large.bin", [("Range", range_value)])
    sending_with(client, lambda body: body > 0, lambda: replace_by_rename(path))
    client.send(request("GET", "/large.bin", [("Range", range_value)]) + request("GET", "/small.txt"), [False, False])
    _, first, second = client.wait_for(3)
    assert first.status == 206 and len(first.body) == int(whole.header("content-length"))
    if range_value == "bytes=0-":
        assert first.body == ORIGINAL
    else:
        assert ORIGINAL[100:200] in first.body and ORIGINAL[-300000:] in first.body
    assert (second.status, second.body) == (200, SMALL)
    assert not client.closed


def test_a_multipart_answer_holds_back_its_closing_delimiter(site: Path, serve_cli: Any) -> None:
    """The last byte of a multipart/byteranges answer is its close delimiter's: held back too,
    so a change while the last part is sent still cuts the answer."""
    server = serve_cli(str(site), "--cache-valid", "3600", "--cache-max-file", "1024")
    client = server.open()
    path = site / "large.bin"
    ranges = [("Range", "bytes=0-9,-600000")]
    promised = int(client.request("HEAD", "/large.bin", ranges).header("content-length"))
    client.transport.data.clear()
    sending_with(client, lambda body: body >= promised - 1, lambda: rewrite_in_place(path))
    client.send(request("GET", "/large.bin", ranges), [False])
    server.run_until(lambda: client.closed)
    data = bytes(client.transport.data)
    assert data.startswith(b"HTTP/1.1 206 ")
    body = body_of(data)
    # all but the close delimiter's last byte: "--BOUNDARY-", its last "-" held back
    assert len(body) == promised - 1 and body.endswith(b"-") and not body.endswith(b"--")
    assert ORIGINAL[-600000:] in body
    assert client.transport.aborted


# -- the library: StaticFiles (answers="static") and FileResponse --------------------------------


def scope_for(path: str, headers: List[tuple] = ()) -> Dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": list(headers), "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 40000),
    }


def run_app(app: Any, scope: Dict[str, Any], change: Callable[[], None],
            messages: Optional[List[Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
    """Call ``app``; ``change`` is made once its first body piece has been sent. The messages
    sent (kept in ``messages`` when given, so they are there when the app raises)."""
    messages = [] if messages is None else messages

    async def receive() -> Dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: Dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and len(messages) == 2:
            change()

    asyncio.run(app(scope, receive, send))
    return messages


def static_app(site: Path) -> StaticFiles:
    app = StaticFiles(directory=site, answers="static")
    app.use_file_cache(app.build_file_cache(3600.0, max_body=1024))
    app.chunk_size = 64 * 1024
    return app


def file_response(site: Path) -> FileResponse:
    response = FileResponse(site / "large.bin")
    response.chunk_size = 64 * 1024
    return response


FACES = {"StaticFiles": lambda site: static_app(site), "FileResponse": file_response}


@pytest.mark.parametrize("face", sorted(FACES))
@pytest.mark.parametrize("how", sorted(CHANGES))
def test_a_file_changed_while_the_library_sends_it_raises(site: Path, face: str, how: str) -> None:
    """The piece read after the change is never sent: ``RuntimeError``, which the server
    answers by closing the connection short of the promised length."""
    with pytest.raises(RuntimeError, match="changed while it was sent"):
        run_app(FACES[face](site), scope_for("/large.bin"), lambda: CHANGES[how](site / "large.bin"))


@pytest.mark.parametrize("face", sorted(FACES))
def test_the_library_sends_no_piece_read_after_the_change(site: Path, face: str) -> None:
    messages: List[Dict[str, Any]] = []
    with pytest.raises(RuntimeError, match="changed while it was sent"):
        run_app(FACES[face](site), scope_for("/large.bin"), lambda: rewrite_in_place(site / "large.bin"), messages)
    bodies = [message["body"] for message in messages if message["type"] == "http.response.body"]
    assert len(bodies) == 1 and bodies[0] == ORIGINAL[:len(bodies[0])]  # the piece before the change, none after
    assert messages[1]["more_body"]  # never told it was whole


@pytest.mark.parametrize("face", sorted(FACES))
def test_the_library_sends_a_file_replaced_by_a_rename_whole_as_it_was(site: Path, face: str) -> None:
    messages = run_app(FACES[face](site), scope_for("/large.bin"), lambda: replace_by_rename(site / "large.bin"))
    assert messages[0]["status"] == 200
    assert b"".join(message["body"] for message in messages[1:]) == ORIGINAL
    assert not messages[-1].get("more_body")


# -- on-the-fly compression ---------------------------------------------------------------------


def test_no_encoding_is_made_of_a_file_changed_since_its_entry(site: Path) -> None:
    """An encoding of the new bytes would go out under the ETag made from the old version's
    stat: it is declined (the next lookup sees the change and builds a new entry)."""
    app = StaticFiles(directory=site, answers="static")
    cache = app.build_file_cache(3600.0, max_body=1024)
    entry = cache.lookup("/large.bin")
    assert entry.file is not None and _read_content(entry) == ORIGINAL
    rewrite_in_place(site / "large.bin")
    assert _read_content(entry) is None
