from typing import Any, List, Optional, Tuple, Union

from fastserve._speedups.filecache import CacheEntry, OpenFile
from fastserve._speedups.requesthead import RequestHead

class StaticAnswer:
    status: int
    fields: List[Tuple[bytes, bytes]]
    body: Optional[bytes]
    segments: Optional[List[Union[bytes, Tuple[int, int]]]]
    file: Optional[OpenFile]
    entry: CacheEntry
    waiting: Optional[Any]  # status 0: an asyncio future to await, then decide again

def set_root_path(root_path: str) -> None: ...
def compression_totals() -> Tuple[int, int]: ...
def slash_location(raw_path: bytes, path: str, query: bytes) -> Optional[bytes]: ...
def decide(entry: CacheEntry, request: RequestHead, max_ranges: int = ...) -> StaticAnswer: ...
