import os
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple, Union

KIND_FILE: int
KIND_MISSING: int
KIND_REDIRECT: int
KIND_FORBIDDEN: int
KIND_LISTING: int
NOT_MODIFIED_FIELDS: FrozenSet[bytes]

class OpenFile:
    fd: int
    path: str
    def __init__(self, path: str) -> None: ...
    def fileno(self) -> int: ...
    def unchanged(self) -> bool: ...
    def content_unchanged(self) -> bool: ...

def descriptor_unchanged(fd: int, size: int, mtime_ns: int, ctime_ns: int = -1) -> bool: ...
def open_to_send(path: str) -> OpenFile: ...

class CacheEntry:
    kind: int
    status: int
    path: Optional[str]
    stat: Optional[os.stat_result]
    size: int
    mtime: int
    etag: Optional[bytes]
    last_modified: Optional[bytes]
    content_type: Optional[bytes]
    coding: Optional[bytes]
    cache_control: Optional[bytes]
    representations: Optional[List[Optional["CacheEntry"]]]
    offered: int
    encoder: Optional[Any]
    used: bool
    saved: int
    modified_since_exact: bool
    fields: List[Tuple[bytes, bytes]]
    not_modified_fields: List[Tuple[bytes, bytes]]
    wire_fields: bytes
    wire_not_modified: bytes
    body: Optional[bytes]
    file: Optional[OpenFile]
    variants: Optional[Tuple[Tuple[str, "CacheEntry"], ...]]
    memo_date: Optional[bytes]
    memo_whole: Optional[bytes]
    memo_not_modified: Optional[bytes]

def choose_representation(entry: CacheEntry, accept_encoding: Optional[bytes]) -> CacheEntry: ...
def described_file(
    path: str, stat_result: os.stat_result, fields: List[Tuple[bytes, bytes]], status: int = ...
) -> CacheEntry: ...
def encoded_entry(entry: CacheEntry, index: int, body: bytes) -> CacheEntry: ...

class FileCache:
    roots: Tuple[str, ...]
    configured_roots: Tuple[str, ...]
    html: bool
    follow_symlink: bool
    valid_for: float
    max_entries: int
    max_bytes: int
    max_body: int
    held_bytes: int
    precompressed: bool
    dotfiles: bool
    etag: bool
    modified_since_exact: bool
    spa: bool
    error_pages: Dict[int, str]
    listing: bool
    file_slash: bool
    cache_policy: Optional[Callable[[str, bytes], Optional[bytes]]]
    encoder: Optional[Any]
    hits: int
    misses: int
    evictions: int
    def __init__(
        self,
        roots: Iterable[Union[str, "os.PathLike[str]"]],
        *,
        html: bool = ...,
        follow_symlink: bool = ...,
        valid_for: float = ...,
        max_entries: int = ...,
        max_bytes: int = ...,
        max_body: int = ...,
        precompressed: bool = ...,
        dotfiles: bool = ...,
        cache_policy: Optional[Callable[[str, bytes], Optional[bytes]]] = ...,
        etag: bool = ...,
        modified_since_exact: bool = ...,
        spa: bool = ...,
        error_pages: Optional[Mapping[int, str]] = ...,
        encoder: Optional[Any] = ...,
        listing: bool = ...,
        file_slash: bool = ...,
    ) -> None: ...
    def __len__(self) -> int: ...
    def clear(self) -> None: ...
    def lookup(self, path: str) -> CacheEntry: ...
