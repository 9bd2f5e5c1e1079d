# The static answer: which response a GET/HEAD for a cached file gets, as wire bytes.
from fastserve._speedups.filecache cimport FileCache


cdef class WireAnswer:
    cdef readonly int status
    cdef bytes data      # the whole answer (head, and body when there is one to send) ...
    cdef object file     # ... or a transfer: the OpenFile and the segments to send from it
    cdef list segments   # bytes, or (offset, count) slices of file


cdef void answer_static(
    WireAnswer out, FileCache cache, int max_ranges, bytes method, bytes url, bint keep_alive, bint http10,
    bytes if_match, bytes if_none_match, bytes if_modified_since, bytes if_unmodified_since,
    bytes range_value, bytes if_range, bytes accept_encoding,
)
