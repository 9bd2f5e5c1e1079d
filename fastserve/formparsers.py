"""Form body parsers: ``application/x-www-form-urlencoded`` and ``multipart/form-data``.

Both consume the request body as a stream (python-multipart does the tokenising) and never hold
more than one chunk plus the current field in memory; uploaded files are spooled to a
``SpooledTemporaryFile`` that moves to disk past ``MultiPartParser.spool_max_size``.

Every input the client controls is bounded: the number of files, the number of fields, the size
of one non-file part, the size of one part's headers. Anything malformed or over a limit raises
:class:`MultiPartException`, which ``Request.form()`` turns into a 400 inside an application.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile
from urllib.parse import unquote_to_bytes

import python_multipart
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from fastserve._interop import framework_base
from fastserve.datastructures import FormData, Headers, UploadFile

__all__ = ["FormParser", "MultiPartException", "MultiPartParser", "parse_content_type"]


class MultiPartException(Exception):
    """The form body is malformed or over one of the parser's limits; ``message`` says which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Apps catch it around ``await request.form()``: where Starlette is installed it is Starlette's
# class, so the same ``except`` works whichever framework's Request raised it (see _interop).
MultiPartException = framework_base("starlette.formparsers", "MultiPartException", MultiPartException)  # type: ignore[misc]


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``'Multipart/Form-Data; boundary="x"'`` -> ``("multipart/form-data", {"boundary": "x"})``."""
    media_type, params = parse_options_header(value)
    return (
        media_type.decode("latin-1"),
        {key.decode("latin-1"): item.decode("latin-1") for key, item in params.items()},
    )


def _decode(raw: bytes | bytearray, charset: str) -> str:
    """Decode client text in ``charset``; bytes that do not fit it fall back to latin-1 (never fails)."""
    try:
        return raw.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return raw.decode("latin-1")


def _kib(size: int | float) -> str:
    return f"{int(size / 1024)}KB"


# A run of pair separators: the empty pairs between them are no fields (python-multipart skips
# them), so one separator stands for the run.
_SEPARATOR_RUN = re.compile(rb"&&+")


class FormParser:
    """Parses an ``application/x-www-form-urlencoded`` body into :class:`FormData`.

    ``max_fields`` bounds the number of ``name=value`` pairs, ``max_part_size`` the bytes of one
    pair. A name or value is percent-decoded to bytes and read as UTF-8, a sequence that is not
    UTF-8 as U+FFFD (the WHATWG URL standard's ``application/x-www-form-urlencoded`` parsing):
    what Starlette's parser and the query string give for escaped bytes, and raw UTF-8 is kept.
    """

    def __init__(
        self,
        headers: Headers,
        stream: AsyncGenerator[bytes, None],
        *,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> None:
        self.headers = headers
        self.stream = stream
        self.max_fields = max_fields
        self.max_part_size = max_part_size
        self._fields = 0
        self._field_size = 0
        self._name = bytearray()
        self._value = bytearray()
        self._items: list[tuple[str, str | UploadFile]] = []

    def _grow(self, target: bytearray, data: bytes, start: int, end: int) -> None:
        self._field_size += end - start
        if self._field_size > self.max_part_size:
            raise MultiPartException(f"Field exceeded maximum size of {_kib(self.max_part_size)}.")
        target += data[start:end]

    def on_field_start(self) -> None:
        self._field_size = 0
        self._name = bytearray()
        self._value = bytearray()

    def on_field_name(self, data: bytes, start: int, end: int) -> None:
        self._grow(self._name, data, start, end)

    def on_field_data(self, data: bytes, start: int, end: int) -> None:
        self._grow(self._value, data, start, end)

    def on_field_end(self) -> None:
        self._fields += 1
        if self._fields > self.max_fields:
            raise MultiPartException(f"Too many fields. Maximum number of fields is {self.max_fields}.")
        self._items.append((self._unquote(self._name), self._unquote(self._value)))

    @staticmethod
    def _unquote(raw: bytearray) -> str:
        return unquote_to_bytes(bytes(raw).replace(b"+", b" ")).decode("utf-8", "replace")

    async def parse(self) -> FormData:
        parser = python_multipart.QuerystringParser(
            {
                "on_field_start": self.on_field_start,
                "on_field_name": self.on_field_name,
                "on_field_data": self.on_field_data,
                "on_field_end": self.on_field_end,
            }
        )
        try:
            async for chunk in self.stream:
                if b"&&" in chunk:
                    # The parser skips an empty pair a byte at a time, in Python, with a debug
                    # log call for each: 10 MB of '&' held the event loop for 3 s, and no limit
                    # counts them (they reach no callback). A run is one separator here.
                    chunk = _SEPARATOR_RUN.sub(b"&", chunk)
                parser.write(chunk)
            parser.finalize()
        except FormParserError as exc:
            raise MultiPartException("Invalid form data.") from exc
        return FormData(self._items)


@dataclass
class _Part:
    """The part of a multipart body being parsed."""

    content_disposition: bytes | None = None
    field_name: str = ""
    data: bytearray = field(default_factory=bytearray)
    file: UploadFile | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    header_size: int = 0


class MultiPartParser:
    """Parses a ``multipart/form-data`` body into :class:`FormData` of ``str`` and :class:`UploadFile`.

    Parts with a ``filename`` become files (at most ``max_files``), spooled to memory and then
    disk; the others become text fields (at most ``max_fields``, each at most ``max_part_size``
    bytes). A body that stops before its closing boundary is rejected rather than returned
    half-parsed.
    """

    spool_max_size = 1024 * 1024
    """Bytes of one uploaded file kept in memory before it moves to a temporary file on disk."""
    max_part_size = 1024 * 1024
    """Bytes of one non-file part (the ``max_part_size`` argument overrides it per parser)."""
    max_part_header_size = 16 * 1024
    """Bytes of one part's header block (names and values together)."""

    def __init__(
        self,
        headers: Headers,
        stream: AsyncGenerator[bytes, None],
        *,
        max_files: int | float = 1000,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> None:
        self.headers = headers
        self.stream = stream
        self.max_files = max_files
        self.max_fields = max_fields
        self.max_part_size = max_part_size
        self.items: list[tuple[str, str | UploadFile]] = []
        self._files = 0
        self._fields = 0
        self._charset = "utf-8"
        self._part = _Part()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._ended = False
        # File bytes the callbacks saw in the current chunk: written (awaiting) after the chunk,
        # because the parser's callbacks are synchronous.
        self._pending_writes: list[tuple[UploadFile, bytes]] = []
        self._pending_rewinds: list[UploadFile] = []
        self._spools: list[SpooledTemporaryFile[bytes]] = []

    # python-multipart callbacks --------------------------------------------------------------

    def on_part_begin(self) -> None:
        self._part = _Part()

    def _count_header_bytes(self, size: int) -> None:
        self._part.header_size += size
        if self._part.header_size > self.max_part_header_size:
            raise MultiPartException(f"Part headers exceeded maximum size of {_kib(self.max_part_header_size)}.")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header_bytes(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header_bytes(end - start)
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        name, value = bytes(self._header_name).lower(), bytes(self._header_value)
        if name == b"content-disposition":
            self._part.content_disposition = value
        self._part.headers.append((name, value))
        self._header_name = bytearray()
        self._header_value = bytearray()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._part.content_disposition)
        if b"name" not in options:
            raise MultiPartException('The Content-Disposition header field "name" must be provided.')
        self._part.field_name = _decode(options[b"name"], self._charset)
        if b"filename" in options:
            self._files += 1
            if self._files > self.max_files:
                raise MultiPartException(f"Too many files. Maximum number of files is {self.max_files}.")
            spool: SpooledTemporaryFile[bytes] = SpooledTemporaryFile(max_size=self.spool_max_size)
            self._spools.append(spool)
            self._part.file = UploadFile(
                file=spool,  # type: ignore[arg-type]
                size=0,
                filename=_decode(options[b"filename"], self._charset),
                headers=Headers(raw=self._part.headers),
            )
        else:
            self._fields += 1
            if self._fields > self.max_fields:
                raise MultiPartException(f"Too many fields. Maximum number of fields is {self.max_fields}.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part.file is not None:
            self._pending_writes.append((part.file, data[start:end]))
            return
        if len(part.data) + (end - start) > self.max_part_size:
            raise MultiPartException(f"Part exceeded maximum size of {_kib(self.max_part_size)}.")
        part.data += data[start:end]

    def on_part_end(self) -> None:
        part = self._part
        if part.file is None:
            self.items.append((part.field_name, _decode(part.data, self._charset)))
        else:
            # Listed now, complete once the pending writes and the rewind below have run.
            self._pending_rewinds.append(part.file)
            self.items.append((part.field_name, part.file))

    def on_end(self) -> None:
        self._ended = True

    # driver ----------------------------------------------------------------------------------

    def _read_content_type(self) -> bytes:
        _, params = parse_content_type(self.headers.get("content-type", ""))
        try:
            self._charset = codecs.lookup(params.get("charset", "utf-8")).name
        except LookupError:
            self._charset = "latin-1"
        boundary = params.get("boundary", "")
        if not boundary:
            raise MultiPartException("Missing boundary in multipart.")
        return boundary.encode("latin-1")

    async def _flush_files(self) -> None:
        for upload, data in self._pending_writes:
            await upload.write(data)
        for upload in self._pending_rewinds:
            await upload.seek(0)
        self._pending_writes.clear()
        self._pending_rewinds.clear()

    def _parser_for(self, boundary: bytes) -> python_multipart.MultipartParser:
        return python_multipart.MultipartParser(
            boundary,
            {
                "on_part_begin": self.on_part_begin,
                "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end,
                "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value,
                "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished,
                "on_end": self.on_end,
            },
        )

    async def parse(self) -> FormData:
        boundary = self._read_content_type()
        try:
            parser = self._parser_for(boundary)
        except FormParserError as exc:  # python-multipart refuses a boundary it cannot take
            raise MultiPartException("Invalid multipart data.") from exc  # Starlette's words for it
        received = 0
        try:
            async for chunk in self.stream:
                received += len(chunk)
                parser.write(chunk)
                await self._flush_files()
            parser.finalize()
            if received and not self._ended:
                raise MultiPartException("Incomplete multipart body: the closing boundary is missing.")
        except BaseException as exc:
            # Whatever went wrong (bad data, a limit, a disconnect, cancellation), no spooled
            # file outlives the failed parse.
            for spool in self._spools:
                spool.close()
            if isinstance(exc, FormParserError):
                raise MultiPartException("Invalid multipart data.") from exc
            raise
        return FormData(self.items)
