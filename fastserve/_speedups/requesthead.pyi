from typing import Any, Dict, List, Mapping, Optional, Tuple

STATIC_FIELDS: Tuple[bytes, ...]

class RequestHead:
    method: bytes
    is_get: bool
    is_head: bool
    target: Optional[bytes]
    http10: bool
    protocol: Optional[bytes]
    keep_alive: bool
    headers: Optional[List[Tuple[bytes, bytes]]]
    declared_length: int
    if_match: Optional[bytes]
    if_none_match: Optional[bytes]
    if_modified_since: Optional[bytes]
    if_unmodified_since: Optional[bytes]
    range_value: Optional[bytes]
    if_range: Optional[bytes]
    accept_encoding: Optional[bytes]
    user_agent: Optional[bytes]
    referer: Optional[bytes]
    accept: Optional[bytes]
    forwarded_for: Optional[bytes]
    def __init__(self, method: bytes = ..., fields: Optional[Mapping[bytes, bytes]] = ...) -> None: ...
    def set(self, name: bytes, value: bytes) -> None: ...

def connection_option(value: bytes) -> int: ...
def valid_host(value: bytes) -> bool: ...
def version_served(version: str) -> int: ...
def split_request_line(line: Optional[bytes]) -> Tuple[Optional[bytes], Optional[bytes], Optional[bytes]]: ...
def scan_head(
    data: bytes, start: int = ..., max_head: int = ..., max_target: int = ..., max_fields: int = ..., max_lines: int = ...
) -> Tuple[int, Optional[Dict[str, Any]]]: ...
