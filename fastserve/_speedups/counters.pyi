from typing import List, Tuple

METHODS: Tuple[str, ...]
STATUS_CLASSES: Tuple[str, ...]
LATENCY_BOUNDS: Tuple[float, ...]
REQUESTS: int
BYTES_SENT: int
LATENCY: int
LATENCY_SUM_NS: int
CONNECTIONS: int
CACHE_HITS: int
CACHE_MISSES: int
CACHE_EVICTIONS: int
COMPRESSED_ANSWERS: int
COMPRESSION_SAVED_BYTES: int
WORKER_RESTARTS: int
REFUSED_CONNECTIONS: int
OWNER_PID: int
SLOT_VALUES: int
SLOT_BYTES: int

class Counters:
    def __init__(self, buffer: memoryview) -> None: ...
    def set(self, index: int, value: int) -> None: ...
    def snapshot(self) -> List[int]: ...
    def count(self, method: str, status: int, sent: int, seconds: float) -> None: ...
