"""On-the-fly compression of static files, computed once per file version.

A compressible file (text, JavaScript, JSON, XML, SVG, wasm, uncompressed fonts) above
``min_size`` and at most ``max_file`` bytes is given encoded representations in the codings
whose libraries are installed: ``br`` (``brotli``), ``zstd`` (``compression.zstd`` of the
standard library where present, else ``zstandard``) and ``gzip`` (``zlib``). Which one a
request gets is ``headers.negotiate_coding``'s choice, made in ``staticanswer.decide``.

The encoded bytes are made once per file version (path, device, inode, size, modification
time) in one worker thread, off the event loop, and kept in an ``EncodedCache`` bounded in
bytes; requests that come while an encoding is made are answered unencoded. An encoding not
at least 1/16 smaller than the file, or larger than the whole budget, is not kept: the file is
sent unencoded (that decision is remembered for the version too). When the cache is full the
encodings not answered since the last sweep go first (a clock, nearly LRU).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import os
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Tuple

from fastserve._speedups.filecache import CacheEntry, encoded_entry
from fastserve._speedups.headers import CODINGS

logger = logging.getLogger("fastserve")

PIP_HINT = "pip install 'fastserve[compress]'"
DEFAULT_MIN_SIZE = 1024  # files of at most this many bytes are sent as they are
DEFAULT_MAX_FILE = 8 * 1024 * 1024  # --compress-max-file
DEFAULT_MAX_BYTES = 32 * 1024 * 1024  # --compress-bytes
# Files up to this size get each library's strongest level; larger ones a faster level.
STRONG_LEVEL_UP_TO = 1024 * 1024
# What a remembered "not worth it" costs the budget, so those decisions are bounded too.
DECLINED_COST = 256

_COMPRESSIBLE_TYPES = frozenset((
    b"application/javascript", b"application/x-javascript", b"application/ecmascript", b"application/json",
    b"application/ld+json", b"application/manifest+json", b"application/xml", b"application/xhtml+xml",
    b"application/rss+xml", b"application/atom+xml", b"application/wasm", b"application/vnd.ms-fontobject",
    b"application/x-font-ttf", b"application/x-font-otf", b"application/geo+json", b"application/x-sh",
    b"application/vnd.apple.mpegurl",
    b"image/svg+xml", b"image/x-icon", b"image/vnd.microsoft.icon", b"image/bmp",
    b"font/ttf", b"font/otf", b"font/collection", b"font/sfnt",
))


def is_compressible(content_type: bytes) -> bool:
    """Whether a file of this ``Content-Type`` (``b"text/css; charset=utf-8"``) is worth
    compressing: text, JavaScript, JSON, XML, SVG, wasm, uncompressed fonts and the images
    stored uncompressed (``ico``, ``bmp``) are; other images, audio, video, archives and
    ``woff``/``woff2`` fonts (compressed already) are not."""
    media = content_type.split(b";", 1)[0].strip().lower()
    return (
        media.startswith(b"text/") or media in _COMPRESSIBLE_TYPES
        or media.endswith((b"+json", b"+xml"))
    )


Encoder = Callable[[bytes, bool], bytes]  # (content, strong level) -> encoded content


def _brotli() -> Encoder:
    brotli = importlib.import_module("brotli")
    return lambda data, strong: brotli.compress(data, quality=11 if strong else 9)


def _zstd() -> Encoder:
    try:
        zstd = importlib.import_module("compression.zstd")  # Python 3.14+
        return lambda data, strong: zstd.compress(data, level=19 if strong else 12)
    except ImportError:
        zstandard = importlib.import_module("zstandard")
        return lambda data, strong: zstandard.ZstdCompressor(level=19 if strong else 12).compress(data)


def _gzip() -> Encoder:
    zlib = importlib.import_module("zlib")

    def encode(data: bytes, strong: bool) -> bytes:
        # A gzip stream with no name and modification time 0, so the bytes depend on the content only.
        compressor = zlib.compressobj(9 if strong else 6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush()

    return encode


# coding -> (how to load its encoder, the package that provides it)
_LOADERS: Dict[str, Tuple[Callable[[], Encoder], str]] = {
    "br": (_brotli, "brotli"),
    "zstd": (_zstd, "zstandard"),
    "gzip": (_gzip, "zlib"),
}


def available_encoders() -> Tuple[Dict[int, Encoder], List[Tuple[str, str]]]:
    """The encoders that can be loaded, by coding index (``headers.CODINGS``), and the
    ``(coding, package)`` pairs that cannot (their library is not installed)."""
    encoders: Dict[int, Encoder] = {}
    missing: List[Tuple[str, str]] = []
    for index, coding in enumerate(CODINGS):
        load, package = _LOADERS[coding]
        try:
            encoders[index] = load()
        except ImportError:
            missing.append((coding, package))
    return encoders, missing


_reported = False


def report_missing(missing: List[Tuple[str, str]]) -> None:
    """Say once per process which codings are not offered, and how to get them."""
    global _reported
    if missing and not _reported:
        _reported = True
        names = ", ".join(f"{coding} ({package})" for coding, package in missing)
        logger.warning("compression: %s not installed, not offered; %s", names, PIP_HINT)


def _read_content(entry: CacheEntry) -> Optional[bytes]:
    """The file's bytes, from memory or its open descriptor; None when the file changed since
    its entry was made (``OpenFile.content_unchanged``, asked after the read): an encoding of
    other bytes would go out under an ETag made from this version's."""
    if entry.body is not None:
        return entry.body
    assert entry.file is not None
    data = os.pread(entry.file.fd, entry.size, 0)
    return data if len(data) == entry.size and entry.file.content_unchanged() else None


class _Encoding:
    """One encoding of one file version: its bytes (None: not worth it), and the cache entries
    (one per URL path serving that version) whose slot holds it, referred to weakly: an entry
    the open-file cache let go is not kept alive (with its body) by its encoding."""

    __slots__ = ("body", "owners")

    def __init__(self, body: Optional[bytes]) -> None:
        self.body = body
        self.owners: List["weakref.ref[CacheEntry]"] = []

    def live_owners(self) -> List[CacheEntry]:
        owners = [owner for owner in (ref() for ref in self.owners) if owner is not None]
        if len(owners) != len(self.owners):
            self.owners = [weakref.ref(owner) for owner in owners]
        return owners

    @property
    def cost(self) -> int:
        return len(self.body) if self.body is not None else DECLINED_COST


Key = Tuple[Any, ...]


class EncodedCache:
    """The encoded representations of compressible files, made once per file version and kept
    within ``max_bytes`` (their bytes; a declined encoding counts ``DECLINED_COST``).

    ``min_size`` < file size <= ``max_file`` (bytes) are compressed; ``codings`` restricts the
    codings offered (names from ``headers.CODINGS``; default: every one whose library is
    installed; ``ValueError`` for an unknown name). The open-file cache (``FileCache(encoder=)``)
    calls ``encodable`` and ``adopt`` when it builds an entry, ``staticanswer.decide`` calls
    ``want`` for an encoding a request picks that is not made yet (and ``waiter`` when the
    request accepts nothing else). Encodings are made in one worker thread when an asyncio
    event loop runs, else at once (a synchronous caller, or trio).
    """

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_file: int = DEFAULT_MAX_FILE,
        min_size: int = DEFAULT_MIN_SIZE,
        codings: Optional[Tuple[str, ...]] = None,
    ) -> None:
        encoders, missing = available_encoders()
        if codings is not None:
            unknown = set(codings) - set(CODINGS)
            if unknown:
                raise ValueError(f"unknown content codings {sorted(unknown)!r}; known: {CODINGS!r}")
            encoders = {index: enc for index, enc in encoders.items() if CODINGS[index] in codings}
            missing = [(coding, package) for coding, package in missing if coding in codings]
        self.encoders = encoders
        self.missing = missing
        self.offered = sum(1 << index for index in encoders)
        self.max_bytes = max_bytes
        self.max_file = max_file
        self.min_size = min_size
        self.held_bytes = 0
        self.encoded = 0  # encodings made (declined ones too)
        self.evictions = 0
        # The store, the pending encodings and the entries' slots change in the worker thread
        # as well as on the event loop: under this lock (a slot is read without it, a list
        # item being read or written whole).
        self._lock = threading.Lock()
        self._store: "OrderedDict[Key, _Encoding]" = OrderedDict()
        self._pending: Dict[Key, "concurrent.futures.Future[None]"] = {}
        self._pending_owners: Dict[Key, List[CacheEntry]] = {}
        self._executor: Optional[ThreadPoolExecutor] = None
        self._executor_pid = 0

    def __len__(self) -> int:
        return len(self._store)

    def encodable(self, content_type: bytes, size: int) -> bool:
        """Whether a file of this type and size is compressed on the fly."""
        return bool(self.offered) and self.min_size < size <= self.max_file and is_compressible(content_type)

    @staticmethod
    def _key(entry: CacheEntry, index: int) -> Key:
        st = entry.stat
        assert st is not None
        return (entry.path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, index)

    def adopt(self, entry: CacheEntry) -> None:
        """Fill a new entry's slots with the encodings already made for its file version."""
        with self._lock:
            for index in self.encoders:
                found = self._store.get(self._key(entry, index))
                if found is not None:
                    self._attach(found, entry, index)

    def _attach(self, found: _Encoding, entry: CacheEntry, index: int) -> None:
        assert entry.representations is not None
        entry.representations[index] = entry if found.body is None else encoded_entry(entry, index, found.body)
        if entry not in found.live_owners():
            found.owners.append(weakref.ref(entry))

    def want(self, entry: CacheEntry, index: int) -> None:
        """Have ``entry``'s encoding ``index`` made and put in its slot: in the worker thread when
        an asyncio event loop runs (the slot stays empty meanwhile), else at once, here."""
        key = self._key(entry, index)
        with self._lock:
            found = self._store.get(key)
            if found is not None:
                self._attach(found, entry, index)
                return
            if key in self._pending:
                if entry not in self._pending_owners[key]:
                    self._pending_owners[key].append(entry)
                return
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                self._pending[key] = self._worker().submit(self._make, key, entry, index)
                self._pending_owners[key] = [entry]
                return
        self._make(key, entry, index)

    def waiter(self, entry: CacheEntry, index: int) -> "asyncio.Future[None]":
        """An asyncio future of the running loop that finishes once ``entry``'s encoding
        ``index`` is in its slot (or declined); ``want`` first."""
        self.want(entry, index)
        with self._lock:
            pending = self._pending.get(self._key(entry, index))
        if pending is None:  # made meanwhile
            done: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return asyncio.wrap_future(pending)

    def _worker(self) -> ThreadPoolExecutor:
        # One thread per process, made after any fork (a thread does not survive one).
        if self._executor is None or self._executor_pid != os.getpid():
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastserve-compress")
            self._executor_pid = os.getpid()
        return self._executor

    def _make(self, key: Key, entry: CacheEntry, index: int) -> None:
        """Encode and keep the result (in the worker thread, or at once without an event loop)."""
        try:
            body = self._encode(entry, index)
        except Exception as exc:  # a failed encoding is a declined one: the file goes unencoded
            logger.error("compression: %s of %s failed: %r", CODINGS[index], key[0], exc)
            body = None
        with self._lock:
            self._pending.pop(key, None)
            owners = self._pending_owners.pop(key, [entry])
            self._install(key, body, owners, index)

    def _encode(self, entry: CacheEntry, index: int) -> Optional[bytes]:
        """The encoded bytes, or None when they would not save at least 1/16 of the file."""
        content = _read_content(entry)
        if content is None:
            return None
        body = self.encoders[index](content, len(content) <= STRONG_LEVEL_UP_TO)
        return body if len(body) <= len(content) - len(content) // 16 else None

    def _install(self, key: Key, body: Optional[bytes], owners: List[CacheEntry], index: int) -> None:
        found = _Encoding(body if body is None or len(body) <= self.max_bytes else None)
        self.encoded += 1
        self._evict(found.cost)
        self._store[key] = found
        self.held_bytes += found.cost
        for entry in owners:
            self._attach(found, entry, index)

    def _evict(self, room: int) -> None:
        """Make ``room`` bytes: encodings answered since the last sweep get a second chance."""
        store = self._store
        while store and self.held_bytes + room > self.max_bytes:
            key, found = next(iter(store.items()))
            index = key[-1]
            used = False
            for owner in found.live_owners():
                slot = owner.representations[index] if owner.representations is not None else None
                if slot is not None and slot is not owner and slot.used:
                    slot.used = False
                    used = True
            if used:
                store.move_to_end(key)
                continue
            del store[key]
            self.held_bytes -= found.cost
            self.evictions += 1
            for owner in found.live_owners():
                if owner.representations is not None:
                    owner.representations[index] = None
