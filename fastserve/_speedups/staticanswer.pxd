# The static answer: which response a GET/HEAD for a cached file gets (decide), and its
# wire rendering for the fast path (answer_static).
from fastserve._speedups.filecache cimport CacheEntry, FileCache
from fastserve._speedups.requesthead cimport RequestHead


cdef class StaticAnswer:
    cdef readonly int status
    cdef readonly list fields        # (lowercase name, value) pairs: the ASGI rendering
    cdef readonly bytes body         # the content, when it is in memory (b"" for none, HEAD) ...
    cdef readonly list segments      # ... or: bytes and (offset, count) slices of file
    cdef readonly object file        # the OpenFile the slices are read from
    cdef readonly CacheEntry entry   # the representation answered (a precompressed sibling, maybe)
    cdef readonly object waiting     # status 0: an asyncio future to await, then decide again


cpdef StaticAnswer decide(CacheEntry entry, RequestHead request, int max_ranges=*)


cdef enum:
    STATUS_LISTING = -1   # WireAnswer.status of a directory to list: the ASGI bridge answers it


cdef class WireAnswer:
    cdef readonly int status   # 0: see waiting; STATUS_LISTING: not answered here
    cdef bytes data      # the whole answer (head, and body when there is one to send) ...
    cdef object file     # ... or a transfer from this OpenFile: data is the head, and either
    cdef list segments   # bytes and (offset, count) slices of file follow it (multipart), or,
    cdef long long offset  # when segments is None, the one slice (offset, count)
    cdef long long count
    cdef public object waiting  # status 0: an asyncio future to wait for, then answer again (taken by the connection)
    cdef StaticAnswer decision   # reused for each request


cdef void answer_static(WireAnswer out, FileCache cache, int max_ranges, RequestHead request)
cdef bytes method_not_allowed(bint keep_alive, bint http10)
