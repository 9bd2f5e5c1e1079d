"""fastserve.datastructures.UploadFile and FormData.

UploadFile calls its file directly while a SpooledTemporaryFile is still in memory (nothing can
block) and through a worker thread once it has rolled over to disk.
"""

from __future__ import annotations

import io
import threading
from tempfile import SpooledTemporaryFile
from typing import Any

import pytest

from fastserve.datastructures import FormData, Headers, ImmutableMultiDict, UploadFile


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


pytestmark = pytest.mark.anyio


class ThreadRecordingFile(SpooledTemporaryFile):  # type: ignore[type-arg]
    """A spooled file that notes which thread each call ran in, and whether it was on disk then."""

    def __init__(self, max_size: int) -> None:
        super().__init__(max_size=max_size)
        self.calls: list[tuple[str, int, bool]] = []

    def _note(self, method: str) -> None:
        self.calls.append((method, threading.get_ident(), self._rolled))

    def write(self, data: Any) -> int:
        self._note("write")
        return super().write(data)

    def read(self, *args: Any) -> bytes:
        self._note("read")
        return super().read(*args)

    def seek(self, *args: Any) -> int:
        self._note("seek")
        return super().seek(*args)

    def close(self) -> None:
        self._note("close")
        super().close()


def test_attributes() -> None:
    headers = Headers({"content-type": "image/png", "x-extra": "1"})
    upload = UploadFile(io.BytesIO(b"png"), size=3, filename="a.png", headers=headers)
    assert upload.filename == "a.png"
    assert upload.size == 3
    assert upload.headers is headers
    assert upload.content_type == "image/png"
    assert repr(upload) == f"UploadFile(filename='a.png', size=3, headers={headers!r})"


def test_defaults() -> None:
    upload = UploadFile(io.BytesIO())
    assert (upload.filename, upload.size, upload.content_type) == (None, None, None)
    assert upload.headers == Headers()


async def test_write_read_seek_close() -> None:
    upload = UploadFile(SpooledTemporaryFile(max_size=1024), size=0, filename="f.txt")
    await upload.write(b"hello ")
    await upload.write(b"world")
    assert upload.size == 11
    await upload.seek(0)
    assert await upload.read(5) == b"hello"
    assert await upload.read() == b" world"
    await upload.close()
    assert upload.file.closed


async def test_write_leaves_an_unknown_size_unknown() -> None:
    upload = UploadFile(io.BytesIO())
    await upload.write(b"abc")
    assert upload.size is None


async def test_in_memory_file_is_used_from_the_event_loop_thread() -> None:
    loop_thread = threading.get_ident()
    spool = ThreadRecordingFile(max_size=100)
    upload = UploadFile(spool, size=0)
    await upload.write(b"small")
    await upload.seek(0)
    assert await upload.read() == b"small"
    await upload.close()
    assert [name for name, _, _ in spool.calls] == ["write", "seek", "read", "close"]
    assert {thread for _, thread, _ in spool.calls} == {loop_thread}
    assert not spool._rolled


async def test_file_rolled_to_disk_is_used_from_a_worker_thread() -> None:
    loop_thread = threading.get_ident()
    spool = ThreadRecordingFile(max_size=10)
    upload = UploadFile(spool, size=0)

    await upload.write(b"12345")  # still fits in memory
    await upload.write(b"6789abcdef")  # crosses max_size: this write rolls over to disk
    assert spool._rolled
    await upload.seek(0)
    assert await upload.read() == b"123456789abcdef"
    await upload.close()

    first_write, *on_disk = spool.calls
    assert first_write == ("write", loop_thread, False)
    assert [name for name, _, _ in on_disk] == ["write", "seek", "read", "close"]
    # The write that rolls over touches the disk, so it already runs in a worker thread.
    assert all(thread != loop_thread for _, thread, _ in on_disk)


async def test_writing_exactly_up_to_the_spool_size_stays_in_memory() -> None:
    spool = ThreadRecordingFile(max_size=10)
    upload = UploadFile(spool, size=0)
    await upload.write(b"0123456789")
    assert not spool._rolled
    assert spool.calls[0][1] == threading.get_ident()


async def test_spool_without_a_size_limit_never_leaves_the_loop_thread() -> None:
    spool = ThreadRecordingFile(max_size=0)  # 0: never rolls over
    upload = UploadFile(spool, size=0)
    await upload.write(b"x" * 100_000)
    assert not spool._rolled
    assert spool.calls == [("write", threading.get_ident(), False)]


async def test_other_file_objects_may_block_so_they_use_a_worker_thread(tmp_path: Any) -> None:
    threads: list[int] = []

    class RecordingFile(io.FileIO):
        def read(self, *args: Any) -> bytes:
            threads.append(threading.get_ident())
            return super().read(*args)

    path = tmp_path / "data.bin"
    path.write_bytes(b"on disk")
    upload = UploadFile(RecordingFile(str(path), "rb"))  # type: ignore[arg-type]
    assert await upload.read() == b"on disk"
    await upload.close()
    assert threads and threads[0] != threading.get_ident()


# --------------------------------------------------------------------------- FormData


def test_form_data_is_an_immutable_multidict_of_strings_and_uploads() -> None:
    upload = UploadFile(io.BytesIO(b"x"), filename="x.txt")
    form = FormData([("tag", "a"), ("file", upload), ("tag", "b")])
    assert isinstance(form, ImmutableMultiDict)
    assert form["tag"] == "b"
    assert form.getlist("tag") == ["a", "b"]
    assert form["file"] is upload
    assert FormData({"a": "1"}) == FormData(a="1")
    assert not hasattr(form, "__setitem__")


async def test_form_data_close_closes_every_upload() -> None:
    first, second = io.BytesIO(b"1"), io.BytesIO(b"2")
    form = FormData([("f", UploadFile(first)), ("name", "value"), ("f", UploadFile(second))])
    await form.close()
    assert first.closed and second.closed
