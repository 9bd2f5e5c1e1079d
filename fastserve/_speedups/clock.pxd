# CLOCK_MONOTONIC read in C, without a Python call (time.monotonic() reads the same clock): what
# request durations and the file cache's revalidation ages are measured with.
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC


cdef inline double monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9
