# Reading a static origin's connections from an epoll set of fastserve's own (see readhub.pyx).
from libc.stdint cimport uint32_t

cdef enum:
    HUB_BUFFER_SIZE = 256 * 1024  # one read's most (uvloop reads up to this much too)
    READS_PER_TURN = 4            # buffers read from one member before the loop's other work


cdef class HubMember:
    """A connection a ReadHub may read (HttpProtocol): told when its descriptor is readable."""
    cdef uint32_t hub_serial   # its registration in the hub; 0: its transport reads it
    cdef int hub_readable(self, ReadHub hub, bint to_end) except -1


cdef class ReadHub:
    cdef int epoll_fd
    cdef uint32_t last_serial
    cdef list members          # indexed by descriptor: the member registered with it, or None
    cdef dict ended            # members end() aborted, and the error, until their connection_lost asks
    cdef object loop
    cdef char* buffer          # one read's bytes, shared by every member (one thread reads)
    cdef bint join(self, HubMember member, int fd)
    cdef void leave(self, HubMember member, int fd)
    cdef void drop(self, HubMember member, int fd)
    cdef Py_ssize_t receive(self, int fd) noexcept
    cdef void end(self, HubMember member, int fd, object error)
    cdef object why_ended(self, HubMember member)
    cdef void read(self, HubMember member, int fd, bint to_end)
