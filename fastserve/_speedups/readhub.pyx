"""Reading a static origin's connections from an epoll set of fastserve's own.

uvloop reads each connection through a libuv callback, and libuv calls it with the GIL
released: every read takes the GIL and drops it again, enters the protocol's context and
calls ``data_received`` as a Python method. For a static origin's requests (a 304 or a small
file, one read each) that is about a quarter of the work done in user space per request
(bench/README, "What an I/O loop of fastserve's own could save"). A ``ReadHub`` takes that
part over for plain-TCP connections of a static root: once a connection's first request came
through uvloop, its transport stops reading and the connection's descriptor joins the hub's
own epoll set (edge-triggered). uvloop watches that one set's descriptor, so a loop turn that
finds many connections readable costs one callback, and the hub reads each with ``recv`` into
one buffer and hands the bytes to the connection in C. Writing, closing, timeouts, TLS and
shutdown stay the transport's and the loop's.

Edge-triggered, a member is read until ``recv`` returns less than the buffer holds (the
socket is empty then, and more bytes bring a new edge), or until ``recv`` finds nothing when
the event says the peer's FIN (``EPOLLRDHUP``) or an error came too, since no edge follows
those; at most ``READS_PER_TURN`` buffers before the loop's other work gets a turn. A member
whose reading is paused is not read; its connection reads to the end when it resumes
(``HttpProtocol._hub_again``), the edges that came meanwhile having gone unanswered. An event carries the
member's descriptor and serial. uvloop closes a descriptor only after the connection's
``connection_lost``, where the member leaves the hub (and the duplicate a full socket's watch
holds is closed), so no event of a closed connection can reach another given the same number;
the serial would tell them apart if that ever changed.
"""
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.errno cimport EINTR, errno
from libc.stdint cimport uint32_t, uint64_t
from posix.unistd cimport close

import os

cdef extern from "sys/epoll.h" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    enum:
        EPOLLIN
        EPOLLRDHUP
        EPOLLHUP
        EPOLLERR
        EPOLLET
        EPOLL_CTL_ADD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC

cdef extern from "sys/socket.h" nogil:
    ssize_t recv(int fd, void* buf, size_t n, int flags)

cdef enum:
    EVENTS_PER_TURN = 256  # events taken per loop turn (more wait for the next)


cdef class HubMember:
    """A connection a ``ReadHub`` may read; ``hub_readable`` is called when its descriptor is."""

    cdef int hub_readable(self, ReadHub hub, bint to_end) except -1:
        return 0


cdef class ReadHub:
    """One worker's epoll set for its plain-TCP static connections, watched by ``loop``.

    Raises ``OSError`` when the set cannot be made (out of descriptors).
    """

    def __cinit__(self):
        self.epoll_fd = -1
        self.buffer = NULL

    def __init__(self, loop):
        self.epoll_fd = epoll_create1(EPOLL_CLOEXEC)
        if self.epoll_fd < 0:
            raise OSError(errno, os.strerror(errno))
        self.buffer = <char*>PyMem_Malloc(HUB_BUFFER_SIZE)
        if self.buffer == NULL:
            raise MemoryError()
        self.members = []
        self.ended = {}
        self.last_serial = 0
        self.loop = loop
        loop.add_reader(self.epoll_fd, self.ready)

    def __dealloc__(self):
        if self.epoll_fd >= 0:
            close(self.epoll_fd)
        PyMem_Free(self.buffer)

    def close(self) -> None:
        """Stop watching and close the set (its members' transports read them no more)."""
        if self.epoll_fd >= 0:
            self.loop.remove_reader(self.epoll_fd)
            close(self.epoll_fd)
            self.epoll_fd = -1
        self.members = []
        self.ended = {}

    @property
    def member_count(self) -> int:
        """Connections the hub reads now."""
        return sum(1 for member in self.members if member is not None)

    cdef bint join(self, HubMember member, int fd):
        """Read ``member`` (descriptor ``fd``) from now on; False when epoll refused it."""
        cdef epoll_event event
        self.last_serial += 1
        if self.last_serial == 0:
            self.last_serial = 1  # 0 means "not a member"
        event.events = EPOLLIN | EPOLLRDHUP | EPOLLET
        event.data.u64 = (<uint64_t>self.last_serial << 32) | <uint32_t>fd
        if self.epoll_fd < 0 or epoll_ctl(self.epoll_fd, EPOLL_CTL_ADD, fd, &event) < 0:
            return False
        while len(self.members) <= fd:
            self.members.extend([None] * (len(self.members) + 64))
        self.members[fd] = member
        member.hub_serial = self.last_serial
        return True

    cdef void leave(self, HubMember member, int fd):
        """Stop reading ``member``, whose transport still owns descriptor ``fd``: it is taken
        out of the set (the caller's transport may read it again)."""
        if member.hub_serial == 0:
            return
        if self.epoll_fd >= 0:
            epoll_ctl(self.epoll_fd, EPOLL_CTL_DEL, fd, NULL)
        self.drop(member, fd)

    cdef void drop(self, HubMember member, int fd):
        """Forget ``member`` without touching ``fd``, which may be closed (and reused) by now:
        its registration ends with the descriptor, and an event that comes before that is
        told from a new member's by the serial."""
        if member.hub_serial == 0:
            return
        member.hub_serial = 0
        if fd < len(self.members) and self.members[fd] is member:
            self.members[fd] = None

    cdef Py_ssize_t receive(self, int fd) noexcept:
        """``recv`` into the shared buffer: the byte count, 0 at the peer's end, -1 (errno)."""
        cdef Py_ssize_t got
        while True:
            got = recv(fd, self.buffer, HUB_BUFFER_SIZE, 0)
            if got >= 0 or errno != EINTR:
                return got

    @property
    def buffer_size(self) -> int:
        return HUB_BUFFER_SIZE

    def ready(self) -> None:
        """The loop's reader callback: read every member that became readable."""
        cdef epoll_event events[EVENTS_PER_TURN]
        cdef int count, i, fd
        cdef uint32_t serial
        cdef uint64_t key
        cdef object member
        if self.epoll_fd < 0:
            return
        count = epoll_wait(self.epoll_fd, events, EVENTS_PER_TURN, 0)
        for i in range(count):
            key = events[i].data.u64
            fd = <int><uint32_t>key
            serial = <uint32_t>(key >> 32)
            if fd >= len(self.members):
                continue
            member = self.members[fd]
            if member is None or (<HubMember>member).hub_serial != serial:
                continue  # a registration outliving its member (see drop)
            # The peer's FIN (or an error) may have come with the bytes: read to the end then.
            self.read(<HubMember>member, fd, events[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR) != 0)

    cdef void end(self, HubMember member, int fd, object error):
        """End ``member`` (descriptor ``fd``) for ``error``, an ``OSError`` its ``recv`` met (the
        peer's reset) or what reading raised: it is forgotten and aborted, and its
        ``connection_lost`` is given ``error`` (``why_ended``), as a transport that failed gives
        it its error (uvloop's abort() alone would give None)."""
        self.drop(member, fd)
        self.ended[member] = error
        member.abort()

    cdef object why_ended(self, HubMember member):
        """The error ``end`` ended ``member`` for (forgotten now), or None."""
        if not self.ended:
            return None
        return self.ended.pop(member, None)

    cdef void read(self, HubMember member, int fd, bint to_end):
        """Let ``member`` (descriptor ``fd``) read, until ``recv`` finds nothing when ``to_end``;
        if it raises, report it as uvloop reports a failed ``data_received`` and end that
        connection with it."""
        try:
            member.hub_readable(self, to_end)
        except Exception as error:
            transport = getattr(member, "transport", None)
            self.loop.call_exception_handler({
                "message": "Fatal error on transport" + ("" if transport is None else " " + type(transport).__name__),
                "exception": error,
                "transport": transport,
                "protocol": member,
            })
            self.end(member, fd, error)
