# Per-worker request counters in shared memory, written on the request path, read when scraped.

cdef class Counters:
    cdef object buffer
    cdef long long* values
    cdef void record(self, bytes method, int status, long long sent, double seconds) noexcept
    cdef void refused(self) noexcept
