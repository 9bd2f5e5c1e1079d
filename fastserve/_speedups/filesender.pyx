"""File bodies sent zero-copy: ``os.sendfile`` on the socket, in request order.

uvloop implements neither ``loop.sendfile`` nor writers on a transport's own descriptor, so
the sender calls ``os.sendfile`` on the socket's descriptor itself, only while the
transport holds nothing (its bytes would otherwise come after ours). When the socket is
full, a ``WritableWatch`` on a duplicate descriptor tells the connection when it has room;
when no descriptor is left for the duplicate, or the transport holds bytes, a chunk is
copied through the transport instead, which then tells the connection when it drained.
"""
import logging
import os

from libc.errno cimport EAGAIN, EINTR, errno
cdef extern from "<sys/socket.h>" nogil:
    Py_ssize_t send(int fd, const void* buf, size_t n, int flags)
    int MSG_NOSIGNAL
    int MSG_DONTWAIT
    int MSG_MORE

from fastserve._speedups.filecache cimport OpenFile

cdef object _sendfile = os.sendfile
cdef object _pread = os.pread

# Largest slice handed to one sendfile call, and the copy made when the socket is full
# (the copy goes through the transport, which then tells us when it has drained).
cdef Py_ssize_t SENDFILE_CHUNK = 2 * 1024 * 1024
cdef Py_ssize_t COPY_CHUNK = 128 * 1024
# Bytes moved per event-loop turn for one connection before letting others run.
cdef Py_ssize_t TURN_BUDGET = 8 * 1024 * 1024
logger = logging.getLogger("fastserve")


cdef class FileSender(Job):
    """Sends a response made of bytes and file slices, the slices by ``os.sendfile``.

    ``conn`` is the connection (``protocol.HttpProtocol``): the sender writes through its
    socket (bytes by ``send``, slices by ``sendfile``) while its transport holds nothing, else
    through the transport; it asks the connection to ``watch_writable`` when the socket is
    full, and calls its ``job_finished`` (or ``on_done``) after the last byte. ``segments``
    are bytes, or ``(offset, count)`` slices of the file open as ``file_fd`` (kept open by
    ``owner``). ``sent`` counts the bytes the socket took (or the transport, where it must be
    used); with ``record`` set (the connection's ``account`` arguments but the byte count), the
    sender accounts its response once, with that count, when it has sent the last byte or the
    client went away.

    A file sent as an ``OpenFile`` (``owner``) is checked for a change of its bytes
    (``OpenFile.content_unchanged``) before each piece of it, and its answer's last byte is held back
    until the file has been checked once more after every other byte left (read before that
    check): a file written in place while it is sent (same size or not) resets the connection,
    so no client takes bytes of two versions for a whole answer under one ETag. (What the
    kernel still holds of the answer is sent from the page cache, without a copy: a change in
    the moment after that last check can still reach those bytes.)
    """

    def __cinit__(self, object conn, object owner, int file_fd, list segments, object on_done=None):
        self.conn = conn
        self.owner = owner
        self.file_fd = file_fd
        self.segments = segments
        self.on_done = on_done
        self.index = -1
        self.remaining = 0
        if file_fd >= 0 and isinstance(owner, OpenFile):
            self._hold_last_byte()

    cdef void _hold_last_byte(self):
        """Guard the transfer when it sends bytes of the file: take the answer's last byte out
        of its segments into ``held``."""
        cdef Py_ssize_t last = -1
        cdef bint sends_file = False
        cdef Py_ssize_t i
        for i in range(len(self.segments)):
            segment = self.segments[i]
            if type(segment) is bytes:
                if len(<bytes>segment) > 0:
                    last = i
            elif (<tuple>segment)[1] > 0:
                last = i
                sends_file = True
        if not sends_file:
            return
        self.guard = <OpenFile>self.owner
        self.segments = list(self.segments)
        segment = self.segments[last]
        if type(segment) is bytes:
            self.held = (<bytes>segment)[len(<bytes>segment) - 1:]
            self.segments[last] = (<bytes>segment)[:len(<bytes>segment) - 1]
        else:
            offset, count = segment
            self.held = offset + count - 1
            self.segments[last] = (offset, count - 1)

    cdef bint _release_held(self):
        """Read the held byte (from the file, or as it was held), check the file, and put the
        byte last among the segments; on a change, cut the answer (False)."""
        held = self.held
        self.held = None
        if type(held) is not bytes:
            try:
                held = _pread(self.file_fd, 1, held)
            except OSError:
                held = b""
        if len(<bytes>held) != 1 or not self.guard.content_unchanged():
            self._cut()
            return False
        self.segments.append(held)
        return True

    cdef void _cut(self):
        """The file changed while it was sent: reset the connection (what the kernel still holds
        of the answer is dropped, and the client sees it end short of its length)."""
        logger.warning(
            "%s changed while it was sent (written in place): connection reset after %d bytes; a file "
            "replaced by a rename is never cut", self.guard.path, self.sent,
        )
        self.conn.reset()

    cpdef start(self):
        self.run()

    cdef void taken(self, long long count):
        """The socket took ``count`` bytes of the first segment (bytes) before the sender
        began: it sends the rest of it, and counts them as sent, without a copy of the rest."""
        segment = self.segments[0]
        self.index = 0
        self.offset = count
        self.remaining = len(<bytes>segment) - count
        self.sent += count

    cpdef resume_writing(self):
        self.run()

    cpdef resume(self):
        """Go on sending (after the transport drained, or to begin)."""
        self.run()

    cpdef connection_lost(self):
        self.finished = True
        self._record()

    cdef void _record(self):
        """Account the response, with the bytes sent so far, if it is this sender's to account."""
        record = self.record
        if record is not None:
            self.record = None
            method, url, protocol, status, started, user_agent, referer, client = record
            self.conn.account(method, url, protocol, status, self.sent, started, user_agent, referer, client)

    cdef bint _more_follows(self):
        """Whether a segment after the current one has bytes: only then is a send told
        ``MSG_MORE`` (the kernel would otherwise hold the last bytes back for a while)."""
        cdef Py_ssize_t i
        for i in range(self.index + 1, len(self.segments)):
            segment = self.segments[i]
            if (len(<bytes>segment) if type(segment) is bytes else (<tuple>segment)[1]) > 0:
                return True
        return False

    def _continue(self):
        self.continuing = False
        if not self.conn.writing_paused:
            self.run()

    cdef void run(self):
        cdef object conn = self.conn
        cdef object transport = conn.transport
        cdef Py_ssize_t budget = TURN_BUDGET
        cdef Py_ssize_t n
        cdef int sock_fd = conn.sock_fd
        cdef int file_fd = self.file_fd
        cdef bytes data
        if self.finished:
            return
        while True:
            if transport is None or conn.transport is None:
                return
            if self.remaining == 0:
                self.index += 1
                if self.index >= len(self.segments) and self.held is not None and not self._release_held():
                    return
                if self.index >= len(self.segments):
                    self.finished = True
                    self._record()
                    if self.on_done is None:
                        conn.job_finished()
                    else:
                        self.on_done()
                    return
                segment = self.segments[self.index]
                if type(segment) is bytes:
                    self.offset, self.remaining = 0, len(<bytes>segment)
                else:
                    self.offset, self.remaining = segment
                if self.remaining == 0:
                    continue
            if conn.writing_paused:
                return  # resume_writing calls run() again
            if budget <= 0:
                if not self.continuing:
                    self.continuing = True
                    conn.loop.call_soon(self._continue)
                return
            segment = self.segments[self.index]
            if self.guard is not None and type(segment) is not bytes and not self.guard.content_unchanged():
                self._cut()
                return
            n = -1
            if sock_fd >= 0 and transport.get_write_buffer_size() == 0:
                if type(segment) is bytes:
                    data = <bytes>segment
                    n = send(sock_fd, <const char*>data + self.offset, self.remaining, MSG_NOSIGNAL | MSG_DONTWAIT
                             | (MSG_MORE if self._more_follows() else 0))
                    if n < 0:
                        if errno == EINTR:
                            continue
                        if errno != EAGAIN:  # EWOULDBLOCK on Linux
                            conn.abort()
                            return
                        if conn.watch_writable():
                            return  # run() again once the socket has room
                else:
                    try:
                        n = _sendfile(sock_fd, file_fd, self.offset, min(self.remaining, SENDFILE_CHUNK))
                    except BlockingIOError:
                        if conn.watch_writable():
                            return  # run() again once the socket has room
                        n = -1
                    except OSError:
                        conn.abort()
                        return
                    if n == 0:  # the file shrank under us: the promised length cannot be sent
                        conn.abort()
                        return
            if n < 0:
                if type(segment) is bytes:
                    # A chunk at a time, as a file's: the transport holds at most one beyond
                    # its high-water mark (a copy of the rest would sit in it whole), and what
                    # counts as sent is what it was handed.
                    if self.offset == 0 and self.remaining <= COPY_CHUNK:
                        chunk = segment
                    else:
                        chunk = (<bytes>segment)[self.offset:self.offset + min(self.remaining, COPY_CHUNK)]
                else:
                    chunk = _pread(file_fd, min(self.remaining, COPY_CHUNK), self.offset)
                n = len(chunk)
                if n == 0:
                    conn.abort()
                    return
                conn.transport_holds_data = True
                transport.write(chunk)
            self.offset += n
            self.remaining -= n
            self.sent += n
            budget -= n


cdef class WritableWatch:
    """Tells ``on_writable`` once a full socket has room again.

    uvloop lets nobody else watch a transport's descriptor, so the watch is on a duplicate
    of it, made on first use and kept until ``close`` (the connection's end: the duplicate
    would otherwise keep the socket open after the transport closed it).
    """

    def __cinit__(self, object loop, int sock_fd, object on_writable):
        self.loop = loop
        self.sock_fd = sock_fd
        self.watch_fd = -1
        self.on_writable = on_writable

    cdef bint start(self):
        """Watch for room; False when no descriptor is left for the duplicate."""
        if self.watch_fd < 0:
            try:
                self.watch_fd = os.dup(self.sock_fd)
            except OSError:
                return False
        self.loop.add_writer(self.watch_fd, self._writable)
        self.watching = True
        return True

    def _writable(self):
        self.stop()
        self.on_writable()

    cdef void stop(self):
        if self.watching:
            self.watching = False
            self.loop.remove_writer(self.watch_fd)

    cdef void close(self):
        self.stop()
        if self.watch_fd >= 0:
            os.close(self.watch_fd)
            self.watch_fd = -1
