"""Request counters one worker keeps in its slot of a shared memory block.

The supervisor maps the block before it forks, one slot per worker; a worker (and the one that
replaces it) adds to its slot with plain C increments on the request path, and whichever worker
answers a scrape reads every slot (``fastserve.server.metrics``). A slot is ``SLOT_VALUES``
signed 64-bit integers laid out as the constants below say.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcmp

# HTTP methods counted by name; anything else counts as "other" (the last).
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other")
# Status classes 1xx..5xx.
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Upper bounds of the latency histogram's buckets, in seconds (the last bucket is +Inf).
LATENCY_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

cdef enum:
    N_METHODS = 8
    N_CLASSES = 5
    N_BOUNDS = 16

# offsets into a slot
REQUESTS = 0                                   # [class * N_METHODS + method]
BYTES_SENT = N_CLASSES * N_METHODS             # response bytes the socket took
LATENCY = BYTES_SENT + 1                       # N_BOUNDS + 1 bucket counts (not cumulative)
LATENCY_SUM_NS = LATENCY + N_BOUNDS + 1        # total latency, nanoseconds
CONNECTIONS = LATENCY_SUM_NS + 1               # open connections (set on each tick)
CACHE_HITS = CONNECTIONS + 1                   # open-file cache figures (set on each tick)
CACHE_MISSES = CACHE_HITS + 1
CACHE_EVICTIONS = CACHE_MISSES + 1
COMPRESSED_ANSWERS = CACHE_EVICTIONS + 1       # on-the-fly compression (set on each tick)
COMPRESSION_SAVED_BYTES = COMPRESSED_ANSWERS + 1
WORKER_RESTARTS = COMPRESSION_SAVED_BYTES + 1  # the slot's workers replaced after dying (the supervisor adds)
REFUSED_CONNECTIONS = WORKER_RESTARTS + 1      # connections answered 503 at --max-connections
OWNER_PID = REFUSED_CONNECTIONS + 1            # the worker now writing the slot
SLOT_VALUES = OWNER_PID + 1
SLOT_BYTES = SLOT_VALUES * 8

cdef double[N_BOUNDS] _BOUNDS
for _i in range(N_BOUNDS):
    _BOUNDS[_i] = LATENCY_BOUNDS[_i]


cdef inline int _method_index(bytes method) noexcept:
    cdef const char* m = PyBytes_AS_STRING(method)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(method)
    if n == 3:
        if memcmp(m, b"GET", 3) == 0:
            return 0
        if memcmp(m, b"PUT", 3) == 0:
            return 3
    elif n == 4:
        if memcmp(m, b"HEAD", 4) == 0:
            return 1
        if memcmp(m, b"POST", 4) == 0:
            return 2
    elif n == 6 and memcmp(m, b"DELETE", 6) == 0:
        return 4
    elif n == 5 and memcmp(m, b"PATCH", 5) == 0:
        return 5
    elif n == 7 and memcmp(m, b"OPTIONS", 7) == 0:
        return 6
    return 7


cdef class Counters:
    """One worker's view of its slot: ``buffer`` is a writable buffer of ``SLOT_BYTES`` bytes."""

    def __cinit__(self, buffer):
        cdef unsigned char[::1] view = buffer
        if view.shape[0] < SLOT_BYTES:
            raise ValueError(f"a counter slot needs {SLOT_BYTES} bytes")
        self.buffer = buffer
        self.values = <long long*>&view[0]

    cdef void record(self, bytes method, int status, long long sent, double seconds) noexcept:
        """Count one answered request: its method, status class, bytes sent and latency."""
        cdef int klass = status // 100 - 1
        cdef int bucket = 0
        if klass < 0 or klass >= N_CLASSES:
            klass = N_CLASSES - 1
        self.values[klass * N_METHODS + (_method_index(method) if method is not None else 7)] += 1
        self.values[BYTES_SENT] += sent
        while bucket < N_BOUNDS and seconds > _BOUNDS[bucket]:
            bucket += 1
        self.values[LATENCY + bucket] += 1
        self.values[LATENCY_SUM_NS] += <long long>(seconds * 1e9)

    cdef void refused(self) noexcept:
        """Count one connection answered 503 and closed at --max-connections."""
        self.values[REFUSED_CONNECTIONS] += 1

    def set(self, int index, long long value) -> None:
        """Set one value (gauges and cache figures, on the ticker)."""
        if not 0 <= index < SLOT_VALUES:
            raise IndexError(index)
        self.values[index] = value

    def snapshot(self) -> list:
        """The slot's values, as a list of ``SLOT_VALUES`` ints."""
        return [self.values[i] for i in range(SLOT_VALUES)]

    def count(self, str method, int status, long long sent, double seconds) -> None:
        """``record`` for callers in Python (tests, and requests the connection does not see)."""
        self.record(method.encode("latin-1"), status, sent, seconds)
