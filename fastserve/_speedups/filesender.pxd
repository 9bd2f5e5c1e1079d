# Moving file bytes to a socket: os.sendfile while the transport is empty, a watch on a
# duplicate descriptor while the socket is full, a copied chunk when neither can be used.
from fastserve._speedups.filecache cimport OpenFile
from fastserve._speedups.job cimport Job


cdef class FileSender(Job):
    cdef object conn     # the connection: transport, sock_fd, writing_paused, watch_writable, job_finished
    cdef object owner    # keeps the descriptor open (an OpenFile, a file object)
    cdef int file_fd
    cdef list segments   # bytes, or (offset, count) tuples
    cdef object on_done  # called after the last byte; None: the connection's next response
    cdef Py_ssize_t index
    cdef long long offset    # in the current segment: a file offset, or a position in the bytes
    cdef long long remaining
    cdef bint finished
    cdef bint continuing # a continuation is scheduled on the loop
    cdef public long long sent   # bytes the socket (or, where it had to be used, the transport) took
    cdef public object record    # (method, url, protocol, status, started, user_agent, referer, client) to account with sent; None: not its to account
    cdef OpenFile guard  # the file sent, checked for a change before each piece of it (None: not checked)
    cdef object held     # the response's last byte, held back until the file is checked once more:
                         # bytes, or its offset in the file; None when nothing is held
    cpdef resume(self)
    cdef void taken(self, long long count)
    cdef void run(self)
    cdef void _record(self)
    cdef bint _more_follows(self)
    cdef void _hold_last_byte(self)
    cdef bint _release_held(self)
    cdef void _cut(self)


cdef class WritableWatch:
    cdef object loop
    cdef int sock_fd
    cdef int watch_fd    # a duplicate of the socket, watched for room
    cdef bint watching   # a writer is registered on watch_fd
    cdef object on_writable
    cdef bint start(self)
    cdef void stop(self)
    cdef void close(self)
