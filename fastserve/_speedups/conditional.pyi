from typing import List, Optional, Tuple

def evaluate_preconditions(
    method: bytes, if_match: Optional[bytes], if_unmodified_since: Optional[bytes],
    if_none_match: Optional[bytes], if_modified_since: Optional[bytes], etag: Optional[bytes], last_modified: int,
    modified_since_exact: bool = ...,
) -> int: ...
def if_range_allows(if_range: Optional[bytes], etag: Optional[bytes], last_modified: int) -> bool: ...
def evaluate_range(
    method: bytes, range_value: Optional[bytes], if_range: Optional[bytes], etag: Optional[bytes],
    last_modified: int, size: int, max_ranges: int = ...,
) -> Tuple[int, Optional[List[Tuple[int, int]]]]: ...
