"""The HTTP/1.1 connection: reading requests, answers in request order, flow control, timeouts.

One ``HttpProtocol`` per connection. Plain GET/HEAD heads are read by
``requesthead.scan_simple_head``; every other request is parsed by httptools. Every complete
request produces exactly one response, in request order:

* a static GET/HEAD is answered from the ``FileCache`` as soon as its head is read (by the
  scanner, or in ``on_message_complete``): preconditions, ranges, then one pre-built bytes
  object (headers + body for small files);
* a larger file's body goes out by ``sendfile`` behind its head (sent with ``MSG_MORE``) when
  nothing is ahead of it; what the socket does not take, or a body that must wait its turn,
  becomes a ``FileSender`` that moves the bytes with ``os.sendfile``;
* anything else is handed to the ASGI bridge (``fastserve.server.asgi``) as a job.

Ready responses are gathered and written once per ``data_received``; a response that
cannot finish at once (a file transfer, an ASGI app) holds the ones behind it in a queue.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.errno cimport EAGAIN, errno
from libc.string cimport memchr, memcmp
cdef extern from "<sys/socket.h>" nogil:
    Py_ssize_t send(int fd, const void* buf, size_t n, int flags)
    Py_ssize_t recv(int fd, void* buf, size_t n, int flags)
    int MSG_NOSIGNAL
    int MSG_DONTWAIT
    int MSG_MORE
    int MSG_PEEK
from posix.types cimport off_t
cdef extern from "<sys/sendfile.h>" nogil:
    Py_ssize_t sendfile(int out_fd, int in_fd, off_t* offset, size_t count)

import os
import socket
import struct

from httptools import HttpRequestParser
from httptools import HttpParserError, HttpParserInvalidMethodError, HttpParserUpgrade

from fastserve._speedups.clock cimport monotonic
from fastserve._speedups.filecache cimport FileCache, OpenFile
from fastserve._speedups.charclass cimport hex_value, is_ows, lower_ascii
from fastserve._speedups.filesender cimport FileSender, WritableWatch
from fastserve._speedups.forwarded cimport resolve_fields
from fastserve._speedups.job cimport Job
from fastserve._speedups.readhub cimport HUB_BUFFER_SIZE, READS_PER_TURN, ReadHub
from fastserve._speedups.requesthead cimport (
    CONNECTION_CLOSE as HEAD_CONNECTION_CLOSE,
    CONNECTION_DEFAULT as HEAD_CONNECTION_DEFAULT,
    RequestHead,
    connection_option,
    host_field_weight,
    host_fields_valid,
    keeps_alive,
    field_index,
    IS_CONNECTION,
    IS_CONTENT_LENGTH,
    IS_EXPECT,
    IS_HOST,
    NOT_SIMPLE,
    FIELD_ACCEPT,
    FIELD_ACCEPT_ENCODING,
    FIELD_FORWARDED_FOR,
    FIELD_IF_MATCH,
    FIELD_IF_MODIFIED_SINCE,
    FIELD_IF_NONE_MATCH,
    FIELD_IF_RANGE,
    FIELD_IF_UNMODIFIED_SINCE,
    FIELD_RANGE,
    FIELD_REFERER,
    FIELD_USER_AGENT,
    FieldSpan,
    LINE_DONE,
    LINE_START,
    SimpleHead,
    Span,
    VERSION_10,
    VERSION_REFUSED,
    follow_request_line,
    protocol_served,
    protocol_text,
    served_version,
    scan_simple_head,
    span_bytes,
)
from fastserve._speedups.requesthead import split_request_line
from fastserve._speedups.staticanswer cimport STATUS_LISTING, WireAnswer, answer_static, method_not_allowed
from fastserve._speedups.wire cimport continue_response, plain_answer, response_head, status_line

cdef bytes GET = b"GET"
cdef bytes RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # struct linger: on, 0 s (close sends RST)
# What ``_chunked_end`` returns for a chunked body past the head's limits (an end is >= -1).
cdef enum:
    CHUNK_LINE_TOO_LONG = -2
    TRAILERS_TOO_LARGE = -3
cdef bytes CONNECT = b"CONNECT"
cdef bytes HEAD = b"HEAD"

# Header lines the scanner lists for an ASGI request; a head with more goes to httptools.
cdef enum:
    MAX_LISTED_LINES = 64
# A body sent to a static file is read and dropped (keeping the connection) up to this size.
cdef long long DISCARD_LIMIT = 64 * 1024
# The length a Content-Length of 19 or more significant digits is taken for: more than any
# --max-body-size, so it is refused (413) as any declared length over the limit is.
cdef long long DECLARED_TOO_LARGE = 1LL << 62
# What the connection keeps of a request line being read by httptools, for the access log of a
# request refused before its head was read whole: its first bytes, up to this many.
cdef Py_ssize_t LINE_KEPT = 8 * 1024

# Where the bytes fed to httptools end in a chunked body (RFC 9112 §7.1): only to know where it ends.
cdef enum:
    CHUNK_NONE       # no chunked body begun
    CHUNK_SIZE       # in a chunk-size
    CHUNK_EXT        # past it, up to the LF that ends its line
    CHUNK_DATA       # in chunk-data or the CR LF after it (body_left bytes to go)
    CHUNK_TRAILERS   # past the last chunk: up to the empty line that ends the request
# What a head read by httptools says beyond the fields RequestHead keeps (head_flags).
cdef enum:
    HEAD_EXPECTS_CONTINUE = 1   # Expect: 100-continue, to a static root (the ASGI exchange answers its own)
    HEAD_TRANSFER_CODED = 2     # a Transfer-Encoding field
    HEAD_OTHER_CODING = 4       # a transfer coding besides chunked
    HEAD_CHUNKED_LAST = 8       # the last Transfer-Encoding line ends in chunked
    HEAD_BODY_QUEUED = 16       # its exchange waits behind others: its body is not read meanwhile
    HEAD_UPGRADE = 32           # an Upgrade field
    HEAD_METHOD_REFUSED = 64    # httptools does not know the method: 501 once the request line ends well
    HEAD_UPGRADE_BODY = 128     # an Upgrade not taken, on a request to an app with a body: read by a _BodyReader
# Seconds a connection that sent its last answer keeps reading (and dropping) what the client
# still sends before it closes, when the client does not close first (_close_after_answers).
cdef double LINGER = 5.0


def monotonic_time() -> float:
    """The clock request durations are measured with (seconds, CLOCK_MONOTONIC)."""
    return monotonic()


cdef class ServerState:
    """What every connection of one worker shares: limits, the cache, the app, a clock.

    ``now`` is a coarse clock advanced by the server's ticker; connections stamp it
    instead of reading the time on every request.
    """

    def __init__(self, config, *, app=None, FileCache cache=None, object asgi_bridge=None, object access_logger=None):
        """``config`` is a ``fastserve.config.Config``: its limits are copied into C fields."""
        self.app = app
        self.cache = cache
        self.static_only = cache is not None
        self.asgi_bridge = asgi_bridge
        self.max_header_bytes = config.max_header_bytes
        self.max_header_count = config.max_header_count
        self.max_url_length = config.max_url_length
        self.max_body_size = config.max_body_size
        self.max_pipeline = config.max_pipeline
        self.max_response_buffer = config.max_response_buffer
        self.max_connections = config.max_connections
        self.header_timeout = config.header_timeout
        self.body_timeout = config.body_timeout
        self.keepalive_timeout = config.keepalive_timeout
        self.send_timeout = config.send_timeout
        self.max_ranges = config.max_ranges
        self.access_logger = access_logger
        self.connections = {}
        self.now = 0.0
        self.shutting_down = False
        # --keepalive-timeout 0 keeps no connection (nginx's keepalive_timeout 0): every answer
        # says Connection: close, where one promising keep-alive was cut at the next tick, under
        # a client that may be sending its next request on it.
        self.keeps_none = config.keepalive_timeout <= 0
        self.refused_connections = 0
        self.scan_heads = True
        self.draining = False
        self.on_drained = None
        self.answer = WireAnswer()
        self.requests = 0
        self.request_limit = 0
        self.log_agents = False
        self.proxy = None
        self.tracer = None

    def set_admin(self, admin) -> None:
        """Answer the admin paths of ``admin`` (``fastserve.server.admin.Admin``) on the static path."""
        self.admin = admin
        self.admin_prefix = admin.prefix + b"/"
        admin.state = self

    def tick(self, double now) -> None:
        """Advance the clock and close connections that overstayed a timeout."""
        cdef HttpProtocol conn
        self.now = now
        for conn in list(self.connections):
            conn.check_timeouts(now)

    cdef RequestHead take_head(self):
        """A head for a connection whose next request begins: the spare, or a new one."""
        cdef RequestHead head = self.spare_head
        if head is None:
            return RequestHead()
        self.spare_head = None
        return head

    cdef void give_head(self, RequestHead head):
        """A connection between requests gives its head back: thousands of idle keep-alive
        connections then hold no head (and none of the bytes its last request left in it)."""
        head.reset()
        if self.spare_head is None:
            self.spare_head = head

    def descriptors_short(self) -> None:
        """A connection got a descriptor at ``accept_ceiling``: stop accepting until one closes."""
        if self.acceptor is not None and not self.accept_paused and not self.shutting_down:
            self.accept_paused = self.acceptor.pause()

    def shutdown(self) -> None:
        """Stop keeping connections alive: every response from now on carries ``Connection:
        close`` and is its connection's last; WebSocket sessions are sent a close frame.

        Idle connections stay open until ``close_idle``, so a request a client is sending at
        this moment (the next one on a kept-alive connection, the first on one just accepted)
        is answered instead of meeting a closed connection.
        """
        cdef HttpProtocol conn
        self.shutting_down = True
        self.keeps_none = True
        for conn in list(self.connections):
            conn.stop_keeping_alive()

    def close_idle(self, double idle_for=0.0) -> None:
        """After ``shutdown``: close the connections with no request begun and nothing owed that
        have been so for ``idle_for`` seconds of the clock (the others close after their answer)."""
        cdef HttpProtocol conn
        for conn in list(self.connections):
            conn.close_when_idle(idle_for)


cdef bytes _lowercase(const char* data, Span span):
    """A header name in lowercase, as ASGI scopes carry them."""
    cdef bytes name = PyBytes_FromStringAndSize(NULL, span.length)
    cdef unsigned char* out = <unsigned char*>PyBytes_AS_STRING(name)
    cdef const unsigned char* source = <const unsigned char*>data + span.start
    cdef Py_ssize_t i
    for i in range(span.length):
        out[i] = lower_ascii(source[i])
    return name


cdef bint _unknown_method(error):
    """Whether httptools refused a request for its method: one llhttp does not know, or one it
    knows only for RTSP (``DESCRIBE``, ``PLAY``, ...), which it refuses after the line."""
    return isinstance(error, HttpParserInvalidMethodError) or str(error).startswith("Invalid method")


def request_parser(callbacks):
    """The httptools parser the connection reads requests with, calling ``callbacks``' methods.

    Which HTTP-versions are served is decided by ``requesthead.served_version`` (in
    ``on_headers_complete``), not by llhttp, which refuses HTTP/1.2 (RFC 9112 section 2.3: read
    as HTTP/1.1) and a major version it does not know as if the line were malformed (400 where
    RFC 9110 section 15.6.6 asks 505): its version check is turned off. The version's shape
    (``HTTP/d.d`` CR LF) is held by ``follow_request_line`` all the same."""
    parser = HttpRequestParser(callbacks)
    parser.set_dangerous_leniencies(lenient_version=True)
    return parser


cdef inline bint _socket_is_next(HttpProtocol conn):
    """Whether a connection's bytes may go to its socket itself now: the socket is ours (not
    TLS), writing is not paused, and the transport holds nothing that must go out first."""
    if conn.transport_holds_data:  # ask the transport only after it was handed something
        conn.transport_holds_data = conn.transport.get_write_buffer_size() > 0
    return conn.sock_fd >= 0 and not conn.writing_paused and not conn.transport_holds_data


cdef class HttpProtocol:
    """One HTTP/1.1 connection (an asyncio protocol, for uvloop's ``create_server``).

    ``sock_fd``: the connection's descriptor when the caller accepted it (-1: asked of the
    transport, which then makes and keeps a socket object for it).
    """

    def __init__(self, ServerState state, loop, int sock_fd=-1):
        self.state = state
        self.loop = loop
        self.transport = None
        self.sock_fd = sock_fd
        self.writing_paused = False
        self.reading_paused = False
        self.in_head = False
        # An idle connection holds as little as it can: no request head, no queue, no httptools
        # parser and no addresses until a request needs them.
        self.head = None
        self.out = None
        self.queue = None
        self.current_job = None
        self.closing = False
        self.body_job = None

    @property
    def keep_alive(self) -> bool:
        """Whether the connection stays open after the request being answered (False between requests)."""
        return self.head is not None and self.head.keep_alive

    @property
    def http10(self) -> bool:
        return self.head is not None and self.head.http10

    @property
    def protocol(self) -> bytes:
        """The HTTP-version the request being answered named (``b"HTTP/1.1"``), None if not read."""
        return None if self.head is None else self.head.protocol

    @property
    def declared_length(self) -> int:
        """The request's Content-Length; -1 when absent or invalid."""
        return -1 if self.head is None else self.head.declared_length

    # -- asyncio protocol -------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.idle_since = self.state.now
        # Under TLS every byte must go through the transport: no send(), no sendfile.
        self.tls = transport.get_extra_info("sslcontext") is not None
        if self.state.tracer is not None:
            self.state.tracer.connection_made(self)
        if len(self.state.connections) >= self.state.max_connections:
            transport.write(
                status_line(503) + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            transport.close()
            self.transport = None
            # No request was read, so no access line: the worker's warning and --metrics say it.
            self.state.refused_connections += 1
            if self.state.counters is not None:
                self.state.counters.refused()
            return
        self.state.connections[self] = None
        cdef int fd = self.sock_fd
        if fd < 0:
            sock = transport.get_extra_info("socket")
            fd = sock.fileno() if sock is not None else -1
        if fd >= 0 and self.state.accept_ceiling and fd >= self.state.accept_ceiling:
            self.state.descriptors_short()
        self.sock_fd = -1 if self.tls else fd
        # Resume only when the buffer is empty, so file transfers can go back to sendfile.
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=0)

    @property
    def client(self):
        """The peer's ``(host, port)``; None for a unix socket (the ASGI scope's ``client``)."""
        self._read_addresses()
        return self._client

    @property
    def server(self):
        """Our ``(host, port)``, or ``(path, None)`` for a unix socket (the ASGI scope's ``server``)."""
        self._read_addresses()
        return self._server

    cdef void _read_addresses(self):
        # Asked of the transport when first needed (an ASGI scope, an access log line), not for
        # every connection: a static origin's idle connections then hold no address objects.
        if self.addresses_read or self.transport is None:
            return
        self.addresses_read = True
        client = self.transport.get_extra_info("peername")
        server = self.transport.get_extra_info("sockname")
        # ASGI's [host, port]: an IPv6 address's flow info and scope id are left out, as uvicorn does.
        self._client = (client if len(<tuple>client) == 2 else client[:2]) if type(client) is tuple else None
        self._server = (server, None) if type(server) is str else (
            server[:2] if type(server) is tuple and len(<tuple>server) > 2 else server)

    def connection_lost(self, exc):
        if exc is None and self.hub_took:
            exc = self.state.read_hub.why_ended(self)  # a reset (or an error) the read hub met
        if self.state.tracer is not None:
            self.state.tracer.connection_lost(self, exc)
        self.state.connections.pop(self, None)
        if self.hub_serial:
            self.state.read_hub.drop(self, self.sock_fd)
        if self.state.shutting_down and not self.state.connections and self.state.on_drained is not None:
            self.state.on_drained()
        if self.state.accept_paused:  # a descriptor is free again
            self.state.accept_paused = False
            self.state.acceptor.resume()
        unanswered = self.in_message and not self.in_head and not self.closing and self.body_job is None \
            and self.upgrade_request is None  # a static request whose body was still arriving
        if self.current_job is not None or self.queue or unanswered:
            # An ASGI exchange not yet running makes its scope from them; an access-log line for
            # a request never answered names the peer.
            self._read_addresses()
        self.transport = None
        self.held_input = None
        self._close_watch()
        if self.upgraded is not None:
            self.upgraded.connection_lost(exc)
            return
        job = self.current_job
        queue = self.queue
        self.current_job = None
        self.queue = None
        self.queued_bytes = self.deferred = 0
        if job is not None:
            (<Job>job).connection_lost()
        if queue is not None:
            # Each request waiting for its turn is recorded, with no byte sent: a transfer that
            # never began, an ASGI exchange never run, a static request kept as its head.
            for item in queue:
                if type(item) is RequestHead:
                    self.account_unanswered(<RequestHead>item)
                elif type(item) is not bytes:  # (bytes: an answer recorded when it was made)
                    (<Job>item).connection_lost()
        if self.body_job is not None and self.body_job is not job:
            self.body_job.connection_lost()
        self.body_job = None
        if unanswered:
            self.account_unanswered(self.head)

    def eof_received(self):
        """The peer finished sending: answer what it asked, then close."""
        if self.upgraded is not None:
            return self.upgraded.eof_received()
        if self.held_input is not None and not self.closing:
            # The client asks nothing more: what it asked and was held back is read now.
            self.peer_finished = True
            data, self.held_input = self.held_input, None
            if self.head is None:
                self.head = self.state.take_head()
            self._receive(data)
        if self.body_job is not None:
            # Half-closed in the middle of a body: it will never be whole. The app sees
            # http.disconnect, the client (which may still read) a 400.
            self._fail_body(400)
        elif self.in_message and not self.closing:
            self._fail(400)  # the same for a body a static root was dropping
        self.closing = True
        self.peer_finished = True
        if self.head is not None:
            self.head.keep_alive = False
        if self.current_job is not None:
            (<Job>self.current_job).peer_finished_sending()
        if self.current_job is None and not self.queue:
            return False  # nothing owed: let the transport close
        return True  # keep our side open until the queued responses are out

    def pause_writing(self):
        self.writing_paused = True
        self.writing_paused_since = self.state.now
        if self.upgraded is not None:
            self.upgraded.pause_writing()
            return
        self._update_reading()

    def resume_writing(self):
        self.writing_paused = False
        if self.upgraded is not None:
            self.upgraded.resume_writing()
            return
        if self.current_job is not None:
            (<Job>self.current_job).resume_writing()
        elif self.queue:
            self._flush()  # answers held back while the client was not reading
        self._update_reading()

    def data_received(self, bytes data):
        cdef ReadHub hub = self.state.read_hub
        if hub is not None and not self.hub_took and self.sock_fd >= 0 and not self.reading_paused \
                and self.upgraded is None and self.pending_upgrade is None and not self.closing:
            # The connection's next bytes are read by the hub (readhub.pyx), not the transport.
            self.transport.pause_reading()
            self.hub_took = hub.join(self, self.sock_fd)
            if not self.hub_took:
                self.transport.resume_reading()
        self._take(data)

    cdef int hub_readable(self, ReadHub hub, bint to_end) except -1:
        """The read hub found the socket readable: read it as the transport would have, until it
        is empty (edge-triggered: the next bytes bring a new event; ``to_end``: until ``recv``
        finds nothing, a short read not taken as proof), reading is paused, or
        ``READS_PER_TURN`` buffers came (the rest on the loop's next turn)."""
        cdef Py_ssize_t got
        cdef int reads = 0, failure
        while not self.reading_paused:
            if self.transport is None:
                # Let go of (closed or aborted): nothing more is read. uvloop closes the
                # descriptor only after connection_lost, which forgets the member too.
                hub.drop(self, self.sock_fd)
                return 0
            if reads == READS_PER_TURN:
                self.loop.call_soon(self._hub_again)
                return 0
            got = hub.receive(self.sock_fd)
            if got > 0:
                self._take(PyBytes_FromStringAndSize(hub.buffer, got))
                if got < HUB_BUFFER_SIZE and not to_end:
                    return 0
                reads += 1
            elif got == 0:
                hub.drop(self, self.sock_fd)  # nothing more will come
                if not self.eof_received() and self.transport is not None:
                    self.transport.close()
                return 0
            elif errno == EAGAIN:
                return 0
            else:  # the peer reset the connection, or the like: ended as uvloop ends it, with the error
                failure = errno
                hub.end(self, self.sock_fd, OSError(failure, os.strerror(failure)))  # ConnectionResetError, ...
                return 0
        return 0

    def _hub_again(self):
        """``loop.call_soon`` target: read on (reading resumed, or a long read paused for a turn)."""
        if self.hub_serial and not self.reading_paused:
            self.state.read_hub.read(self, self.sock_fd, True)

    cdef void _transport_reading(self, bint on):
        """Start or stop reading the socket, through the read hub where it took reading over."""
        if self.hub_took:
            if self.upgraded is None and self.pending_upgrade is None:
                if on and self.hub_serial:
                    # Bytes that came while paused raised an edge nobody acted on: look now.
                    self.loop.call_soon(self._hub_again)
                return  # paused, hub_readable reads nothing; a member no more, nothing is read
            # A WebSocket session reads through the transport, and pauses it itself.
            self.state.read_hub.leave(self, self.sock_fd)
            self.hub_took = False
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    cdef void _take(self, bytes data):
        """What the client sent next (read by the transport or the read hub)."""
        if self.upgraded is not None:
            self.upgraded.data_received(data)
            return
        if self.pending_upgrade is not None:
            # Frames sent before the 101: keep them for the session, and stop reading for now.
            session, rest = self.pending_upgrade
            self.pending_upgrade = (session, rest + data)
            self._transport_reading(False)
            self.reading_paused = True
            return
        if self.closing:
            return
        if self.held_input is not None:
            self.held_input += data  # (reading is paused) after what already waits its turn
            return
        if self.head is None:
            self.head = self.state.take_head()
        self._receive(data)

    cdef bint _holds_back(self):
        """Whether the next request in a read waits unparsed: --max-pipeline requests wait
        already. Parsed, each would be held as a job or a head of ten to twenty times its
        bytes (one 256 KiB read of short GETs to an app: 9,700 exchanges, 5.7 MiB); kept as
        the bytes they came in, they cost what they are. A client that has sent its FIN is
        read to the end at once (it asks nothing more)."""
        return (self.queue is not None and len(self.queue) >= self.state.max_pipeline
                and not self.peer_finished)

    def _parse_held(self):
        """``loop.call_soon`` target: parse what was held back, now that fewer requests wait."""
        self.held_scheduled = False
        data = self.held_input
        self.held_input = None
        if data is None or self.transport is None or self.closing:
            return
        if self.head is None:
            self.head = self.state.take_head()
        self._receive(data)
        self._update_reading()

    cdef object _receive(self, bytes data):
        cdef Py_ssize_t done
        if not self.in_message and not self.awaiting_head:
            # The first byte after the previous head, whatever it is (an empty line too),
            # starts the header timeout.
            self.awaiting_head = True
            self.head_started = self.state.now
        if not self.in_message and self.state.scan_heads:
            done = self._read_simple_heads(data)
            if done == len(data) or self.closing or self.transport is None:
                self._flush()
                return
            if done:
                data = data[done:]
        self._feed_parser(data)

    cdef object _feed_parser(self, bytes data):
        """Feed ``data`` to httptools, in pieces that end where a head (or a body) ends.

        A head (the request line through the empty line that ends it; empty lines before a
        request not counted) over ``max_header_bytes`` is answered 431 before httptools reads
        its last piece, whatever the split into reads. httptools does not say where in the
        bytes a head or a request ends, so each piece ends where one does: a head just past
        CR LF CR LF (httptools takes no bare LF as a line end), a Content-Length body after its
        length, a chunked body where its framing, followed here, ends. The bytes after a piece
        then belong to what comes next, and are counted as such.
        """
        cdef const char* chars = data
        cdef Py_ssize_t pos = 0, start, end, size = len(data)
        cdef Py_ssize_t limit = self.state.max_header_bytes
        cdef const char* line_end
        cdef bint head_ends
        view = None
        if self.parser is None:  # most connections only ever send heads the scanner reads
            self.parser = request_parser(self)
        while pos < size and not self.closing and self.transport is not None:
            if not self.in_message and self._holds_back():
                self.held_input = data[pos:] if pos else data
                self.awaiting_head = False  # nothing is being read: no header timeout runs
                self._update_reading()
                break
            head_ends = False
            if not self.in_message or self.in_head:
                start = pos
                if self.raw_head_bytes == 0:  # empty lines before a request are not its head
                    while start < size and (chars[start] == 13 or chars[start] == 10):
                        start += 1
                    if start < size:
                        self.line_state = LINE_START
                        self.method_read = False  # a new request: its method is not read yet
                        self.head.line_read = None
                end = self._blank_line_end(chars, start, size)
                if self.line_state != LINE_DONE:
                    self._keep_line(chars, start, size if end < 0 else end)
                self.raw_head_bytes += (size if end < 0 else end) - start
                if self.raw_head_bytes > limit:
                    # A request line that has not ended by then, or that ends in this read longer
                    # than --max-url-length (every byte of the head before this read is its), holds
                    # a target longer than any the server reads: 414 (RFC 9112 section 3), as one
                    # read in smaller pieces gets; past a long enough line, the fields are 431.
                    line_end = NULL
                    if self.line_state != LINE_DONE:
                        line_end = <const char*>memchr(chars + start, 10, (size if end < 0 else end) - start)
                    self._fail(414 if self.line_state != LINE_DONE and (line_end == NULL or self.raw_head_bytes - (
                        (size if end < 0 else end) - start) + (line_end - (chars + start)) > self.state.max_url_length)
                        else 431)
                    return
                if end < 0:
                    end = size
                elif end > start:
                    self.raw_head_bytes = 0
                    head_ends = True
                # A request line httptools would wait on, or one it cannot read, is refused as
                # soon as its bytes say so (RFC 9112 section 3).
                if self.line_state != LINE_DONE and follow_request_line(
                        &self.line_state, <const unsigned char*>chars, start, end):
                    self._fail(400)
                    return
            elif self.chunk_state == CHUNK_NONE and self.body_left > 0:
                end = pos + self.body_left if self.body_left < size - pos else size
                self.body_left -= end - pos
            else:
                if self.chunk_state == CHUNK_NONE:
                    self.chunk_state = CHUNK_SIZE
                    self.body_left = 0
                end = self._chunked_end(chars, pos, size)
                if end == CHUNK_LINE_TOO_LONG:
                    self._fail_body(400)
                    return
                if end == TRAILERS_TOO_LARGE:
                    self._fail_body(431)
                    return
                if end < 0:
                    end = size
            if pos == 0 and end == size:
                piece = data
            elif end - pos <= 4096:  # a head or a short body: a copy costs less than a view
                piece = PyBytes_FromStringAndSize(chars + pos, end - pos)
            else:
                if view is None:
                    view = memoryview(data)
                piece = view[pos:end]
            try:
                if not self.head_flags & HEAD_METHOD_REFUSED:
                    self.parser.feed_data(piece)
            except HttpParserUpgrade as upgrade:
                if self.upgrade_request is not None:
                    self._begin_websocket(data[pos + upgrade.args[0]:])
                    return
                # Any other upgrade: answer the request as plain HTTP, then close.
                self.head.keep_alive = False
                if self.head_flags & HEAD_UPGRADE_BODY:
                    self._read_body_apart()  # its body comes next (this piece ended with the head)
                else:
                    self.closing = True
            except HttpParserError as error:
                if self.in_head and _unknown_method(error):
                    self.head_flags |= HEAD_METHOD_REFUSED
                elif not self.closing:  # after "Connection: close" the parser refuses more data: not an error
                    # A framing error in a body an app is reading ends that request too.
                    self._fail_body(400)
                    return
            if self.chunk_state == CHUNK_DATA and self.body_left - 2 > self.state.max_body_size:
                # A chunk whose size alone is over the limit (httptools took the number: it
                # fits in 64 bits) is refused now, as a Content-Length over it is, not read
                # up to the limit or waited on until a timeout.
                self._fail_body(413)
                return
            if self.head_flags & HEAD_METHOD_REFUSED and self.line_state == LINE_DONE:
                # RFC 9110 section 9.1: a method token the server does not recognise is 501 (a
                # method that is no token was refused above, 400), once its line has ended well.
                self._fail(501)
                return
            if head_ends and self.in_head and not self.closing:
                # httptools did not end the head at its empty line: it waits for the rest of
                # HTTP/2's connection preface after "PRI * HTTP/2.0" (RFC 9113 section 3.4),
                # whose bytes would otherwise be read as the next request. Refused as the line
                # names it: 505 for another major version, as any request line naming one.
                self._fail(505 if protocol_served(split_request_line(self.head.line_read)[2]) == VERSION_REFUSED else 400)
                return
            if self.head_flags & HEAD_EXPECTS_CONTINUE and not self.in_head:
                self.head_flags &= ~HEAD_EXPECTS_CONTINUE
                if self.in_message and end == size and not self.closing:
                    self._continue_static_body()  # the client waits for us before sending the body
            pos = end
        self._flush()

    cdef void _keep_line(self, const char* chars, Py_ssize_t start, Py_ssize_t stop):
        """Keep what ``chars[start:stop]`` holds of the request line being read (up to its LF,
        ``LINE_KEPT`` bytes in all), in the head being read (an idle connection holds none):
        what an access log line says of a request refused before its method, target and
        version were all read (``_fail``)."""
        cdef const char* line_end = <const char*>memchr(chars + start, 10, stop - start)
        cdef Py_ssize_t kept = 0 if self.head.line_read is None else len(self.head.line_read)
        if line_end != NULL:
            stop = line_end - chars
        if stop - start > LINE_KEPT - kept:
            stop = start + LINE_KEPT - kept
        if stop <= start and self.head.line_read is not None:
            return
        piece = PyBytes_FromStringAndSize(chars + start, stop - start if stop > start else 0)
        self.head.line_read = piece if self.head.line_read is None else self.head.line_read + piece

    cdef Py_ssize_t _blank_line_end(self, const char* chars, Py_ssize_t pos, Py_ssize_t size):
        """The offset just past the first CR LF CR LF that ends in ``chars[pos:size]``, counting
        the bytes before ``pos`` it began with (``blank_matched``); -1 if none does, and
        ``blank_matched`` says how much of one the bytes end with."""
        cdef int matched = self.blank_matched
        cdef const char* found
        cdef char c
        while pos < size:
            if matched == 0:
                found = <const char*>memchr(chars + pos, 13, size - pos)
                if found == NULL:
                    break
                pos = found - chars + 1
                matched = 1
                continue
            c = chars[pos]
            pos += 1
            if matched == 3 and c == 10:
                self.blank_matched = 0
                return pos
            if c == 13:
                matched = 3 if matched == 2 else 1
            elif c == 10 and matched == 1:
                matched = 2
            else:
                matched = 0
        self.blank_matched = matched
        return -1

    cdef Py_ssize_t _chunked_end(self, const char* chars, Py_ssize_t pos, Py_ssize_t size):
        """The offset just past the end of the chunked body ``chars[pos:size]`` goes on, or -1.

        Follows the framing only as far as finding its end needs: chunk-size, the rest of its
        line, chunk-data and its CR LF, and after the last chunk, the trailer section up to its
        empty line. httptools checks the framing itself (a bad one is answered 400), so a body
        it accepts ends here where it ends there.

        A chunk-size line (its extensions are never body progress) or the trailer section
        (which httptools joins piece by piece) longer than ``max_header_bytes`` returns
        ``CHUNK_LINE_TOO_LONG`` or ``TRAILERS_TOO_LARGE``; ``raw_head_bytes`` counts them.
        """
        cdef unsigned char c
        cdef long long n
        cdef Py_ssize_t end
        while pos < size:
            if self.chunk_state == CHUNK_DATA:
                n = size - pos if self.body_left > size - pos else self.body_left
                pos += n
                self.body_left -= n
                if self.body_left == 0:
                    self.chunk_state = CHUNK_SIZE
            elif self.chunk_state == CHUNK_TRAILERS:
                end = self._blank_line_end(chars, pos, size)
                self.raw_head_bytes += (size if end < 0 else end) - pos
                if self.raw_head_bytes > self.state.max_header_bytes:
                    return TRAILERS_TOO_LARGE
                if end >= 0:
                    self.raw_head_bytes = 0
                return end
            else:
                c = chars[pos]
                pos += 1
                self.raw_head_bytes += 1
                if self.raw_head_bytes > self.state.max_header_bytes:
                    return CHUNK_LINE_TOO_LONG
                if c == 10:  # the end of a chunk-size line
                    self.raw_head_bytes = 0
                    if self.body_left == 0:  # the last chunk: the trailer section follows
                        self.chunk_state = CHUNK_TRAILERS
                        self.blank_matched = 2  # its CR LF begins the empty line
                    else:
                        self.chunk_state = CHUNK_DATA
                        self.body_left += 2
                elif self.chunk_state == CHUNK_SIZE and hex_value(c) >= 0:
                    if self.body_left < (1LL << 56):  # more digits: httptools refuses it
                        self.body_left = self.body_left * 16 + hex_value(c)
                else:
                    self.chunk_state = CHUNK_EXT
        return -1

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self):
        self.in_message = True
        self.in_head = True
        self.method_read = False
        self.header_count = 0
        self.host_count = 0
        if not self.awaiting_head:
            self.awaiting_head = True
            self.head_started = self.state.now
        self.head.target = None
        self.connection = HEAD_CONNECTION_DEFAULT
        self.head.declared_length = -1
        self.static_body_bytes = 0
        self.head_flags = 0
        if not self.state.static_only:
            self.head.headers = []
        self.head.clear_fields()

    def on_url(self, bytes url):
        self.head.target = url if self.head.target is None else self.head.target + url
        if len(self.head.target) > self.state.max_url_length:
            self._fail(414)
            raise _Abort()

    def on_header(self, bytes name, bytes value):
        cdef Py_ssize_t n = len(name)
        cdef Py_ssize_t size = len(value)
        if size and is_ows((<const unsigned char*><const char*>value)[size - 1]):
            value = value.rstrip(b" \t")  # httptools keeps trailing whitespace; a field value has none
        self.header_count += 1
        if not self.in_head:
            # A trailer field (RFC 9110 section 6.5.1): never merged into the head the app or
            # the static answer reads; the section is held to the head's field count.
            if self.header_count > self.state.max_header_count:
                self._fail_body(431)
                raise _Abort()
            return
        if self.header_count > self.state.max_header_count:
            self._fail(431)
            raise _Abort()
        if not self.state.static_only:
            self.head.headers.append((name.lower(), value))
        cdef int index = field_index(<const unsigned char*><const char*>name, n)
        if index >= 0:
            self.head.set_field(index, value)
        elif index == IS_HOST:
            self.host_count += host_field_weight(<const unsigned char*><const char*>value, size)
        elif index == IS_CONNECTION:
            option = connection_option(value)
            if option == HEAD_CONNECTION_CLOSE or self.connection == HEAD_CONNECTION_DEFAULT:
                self.connection = option
        elif index == IS_CONTENT_LENGTH and value.isdigit():
            if size < 19:
                self.head.declared_length = int(value)
            else:  # leading zeros aside, 19 digits and more do not fit: past any limit
                value = value.lstrip(b"0")
                self.head.declared_length = int(value or b"0") if len(value) < 19 else DECLARED_TOO_LARGE
        elif index == IS_EXPECT:
            if self.state.static_only and value.lower() == b"100-continue":
                self.head_flags |= HEAD_EXPECTS_CONTINUE
        elif index == NOT_SIMPLE:
            if n == 17:  # Transfer-Encoding
                self._read_transfer_coding(value)
            else:  # Upgrade
                self.head_flags |= HEAD_UPGRADE

    cdef void _read_transfer_coding(self, bytes value):
        """Note what a Transfer-Encoding line says: whether it names a coding besides chunked
        (which only chunked's framing is known here), and whether it ends in chunked.

        An empty list member counts as a coding besides chunked: ``, chunked`` is refused (501,
        as nginx answers it), not read as chunked. RFC 9110 section 5.6.1.2 lets a recipient
        ignore empty members, and httptools frames the body as chunked, but h11 refuses the
        list and a proxy comparing the value whole reads no chunked framing in it: two readers
        of one message with two framings is what request smuggling needs (RFC 9112 section
        11.2)."""
        codings = [member.strip(b" \t").lower() for member in value.split(b",")]
        self.head_flags |= HEAD_TRANSFER_CODED
        if codings[len(codings) - 1] == b"chunked":
            self.head_flags |= HEAD_CHUNKED_LAST
        else:
            self.head_flags &= ~HEAD_CHUNKED_LAST
        if any(coding != b"chunked" for coding in codings):
            self.head_flags |= HEAD_OTHER_CODING

    def on_headers_complete(self):
        self.in_head = False
        self.header_count = 0  # trailer fields are counted from here
        self.body_left = self.head.declared_length
        self.chunk_state = CHUNK_NONE
        self.awaiting_head = False
        self.body_read_at = self.state.now
        parser = self.parser
        method = self.head.method = parser.get_method()
        self.method_read = True
        self.head.is_get = method == GET
        self.head.is_head = method == HEAD
        version = parser.get_http_version()  # "d.d": follow_request_line held the line to that shape
        major = ord(version[0]) - 48
        minor = ord(version[2]) - 48
        self.head.protocol = protocol_text(major, minor)
        served = served_version(major, minor)
        self.head.http10 = served == VERSION_10
        if served == VERSION_REFUSED:
            self._fail(505)  # HTTP/2.0, 3.0 or 0.9 in an HTTP/1 request line (RFC 9110 section 15.6.6)
            raise _Abort()
        if not host_fields_valid(self.host_count, self.head.http10):
            self._fail(400)
            raise _Abort()
        if self.head_flags & HEAD_OTHER_CODING:
            # RFC 9112 section 6.3: not ending in chunked, the body's length is unknown (400);
            # section 6.1: a coding not understood is 501. Either way the app never starts.
            self._fail(501 if self.head_flags & HEAD_CHUNKED_LAST else 400)
            raise _Abort()
        self.head.keep_alive = keeps_alive(self.head.http10, self.connection, self.state.keeps_none)
        if self.head_flags & HEAD_TRANSFER_CODED and self.head.http10:
            self.head.keep_alive = False  # RFC 9112 section 6.1: its framing cannot be trusted
        if (self.head_flags & HEAD_UPGRADE or method == CONNECT) and parser.should_upgrade():
            # httptools reads nothing past a request that switches protocols (or a CONNECT): one
            # not taken (all but a WebSocket's to an app) is answered as plain HTTP, and that
            # answer says the connection closes after it (RFC 9112 section 9.6). A body it has is
            # the request's all the same (RFC 9110 section 7.8: the Upgrade is ignored): read
            # apart from httptools, which stops at the head, so the app is not told it is empty.
            self.head.keep_alive = False
            if not self.state.static_only and (self.head.declared_length > 0 or self.head_flags & HEAD_TRANSFER_CODED):
                self.head_flags |= HEAD_UPGRADE_BODY
        if self.head.http10:
            self.head_flags &= ~HEAD_EXPECTS_CONTINUE  # no 100 to an HTTP/1.0 client (RFC 9110 section 10.1.1)
        if self.state.static_only:
            if self.head.declared_length > self.state.max_body_size:
                self._fail(413)
                raise _Abort()
            if self.head.declared_length > DISCARD_LIMIT and self.head.method != GET and self.head.method != HEAD:
                # No static file takes a body: a large one is refused unread, and the connection closed.
                self._fail(405, method_not_allowed(False, self.head.http10))
                raise _Abort()
        elif not self.head.http10 and parser.should_upgrade() and (b"upgrade", b"websocket") in [
            (name, value.lower()) for name, value in self.head.headers if name == b"upgrade"
        ]:
            # A WebSocket handshake (an HTTP/1.0 request's Upgrade is ignored, RFC 9110 section
            # 7.8: it is answered as plain HTTP). One with a body would have the body's bytes
            # read as the client's first frames, which a proxy in front takes for content: 400.
            if self.head.declared_length > 0 or self.head_flags & HEAD_TRANSFER_CODED:
                self._fail(400)
                raise _Abort()
            # The session takes the connection once the head is parsed.
            self.upgrade_request = (self.head.method, self.head.target, self.head.headers)
        else:
            job = self.state.asgi_bridge.begin(self, self.head.method, self.head.target, self.head.headers)
            if job.too_large and self.current_job is None and not self.queue:
                # A declared length over the limit: answer now, never read the body.
                self._fail(413)
                raise _Abort()
            # The app starts as soon as the responses ahead are done, while the body streams in;
            # a pipelined request's body waits unread until then (each exchange's own bound on
            # its body would otherwise add up, one per request queued).
            self.body_job = job
            self._enqueue_job(job)
            if self.current_job is not job:
                self.head_flags |= HEAD_BODY_QUEUED
                self._update_reading()

    def on_body(self, bytes body):
        self.body_read_at = self.state.now
        if self.body_job is not None:
            self.body_job.receive_body(body)
        elif self.state.static_only:
            # Static files take no body; one is read and dropped, up to the limit.
            self.static_body_bytes += len(body)
            if self.static_body_bytes > self.state.max_body_size:
                self._fail(413)
                raise _Abort()

    def on_message_complete(self):
        if self.head_flags & HEAD_UPGRADE_BODY:
            return  # httptools' word after the head: the body has not been read (_read_body_apart)
        self.in_message = False
        if self.upgrade_request is not None:
            return
        if self.body_job is not None:
            self.body_job.body_complete()
            self.body_job = None
            if self.head_flags & HEAD_BODY_QUEUED:
                self.head_flags &= ~HEAD_BODY_QUEUED
                self._update_reading()
        elif not self.closing:
            self._serve_static()
        if not self.head.keep_alive:
            self.closing = True

    cdef void _continue_static_body(self):
        """A static request whose client holds its body back for a ``100 (Continue)``
        (RFC 9110 section 10.1.1): a GET or HEAD gets it, in its place among the answers, and
        the body is read and dropped as any body sent to a static root; another method is
        answered 405 at once and the connection closed, the body never read."""
        if self.head.is_get or self.head.is_head:
            self._emit(continue_response())
        else:
            self._fail(405, method_not_allowed(False, self.head.http10))

    cdef void _read_body_apart(self):
        """The body of a request whose Upgrade is not taken (all but a WebSocket's to an app: an
        h2c upgrade on a POST): httptools reads nothing past such a head, so a parser of its own
        reads the body, framed as the head declared it; the connection's own following of
        the framing, its limits and timeouts are those of any body, and the exchange completes
        when it ends. The connection closes after the answer."""
        self.head_flags &= ~HEAD_UPGRADE_BODY
        self.parser = HttpRequestParser(_BodyReader(self))
        if self.head_flags & HEAD_TRANSFER_CODED:
            self.parser.feed_data(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        else:
            self.parser.feed_data(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % self.head.declared_length)

    cdef void _begin_websocket(self, bytes rest):
        method, url, headers = self.upgrade_request
        self.upgrade_request = None
        self.pending_upgrade = (self.state.asgi_bridge.websocket(self, method, url, headers), rest)
        self._flush()  # starts the session now, or once the responses ahead of it are out

    def set_body_backpressure(self, bint on):
        """The request body waiting for the app is large: stop reading until it is consumed."""
        self.body_backpressure = on
        self._update_reading()

    # -- the static fast path ----------------------------------------------------------

    cdef Py_ssize_t _read_simple_heads(self, bytes data):
        """Take the plain GET/HEAD heads at the front of ``data``; return the bytes they took.

        A static request is answered at once; an ASGI one becomes a job, as it would from
        httptools' callbacks. What is left (an unusual request, or a head not yet complete)
        goes to httptools. The limits are passed so that a head over one is left to
        httptools, which refuses it.
        """
        cdef SimpleHead head
        cdef FieldSpan lines[MAX_LISTED_LINES]
        cdef ServerState state = self.state
        cdef bint static_only = state.static_only
        cdef const char* chars = data
        cdef Py_ssize_t start = 0, end, size = len(data)
        while start < size and not self.closing and self.transport is not None:
            if self.queue is not None and self._holds_back():
                break  # _feed_parser holds the rest back (a plain GET with nothing waiting: one test)
            end = scan_simple_head(
                <const unsigned char*>chars, start, size, state.max_header_bytes,
                state.max_url_length, state.max_header_count, &head,
                NULL if static_only else lines, MAX_LISTED_LINES,
            )
            if end <= 0:
                break
            self.head.method = HEAD if head.is_head else GET
            self.method_read = True
            self.head.is_head = head.is_head
            self.head.is_get = not head.is_head
            self.head.target = span_bytes(chars, head.target)
            self.head.http10 = head.http10
            self.head.protocol = protocol_text(1, head.minor)
            self.head.keep_alive = keeps_alive(head.http10, head.connection, state.keeps_none)
            self.awaiting_head = False
            if not host_fields_valid(head.host_count, head.http10):
                self._fail(400)
                return end
            if static_only:
                self.head.if_match = span_bytes(chars, head.fields[FIELD_IF_MATCH])
                self.head.if_none_match = span_bytes(chars, head.fields[FIELD_IF_NONE_MATCH])
                self.head.if_modified_since = span_bytes(chars, head.fields[FIELD_IF_MODIFIED_SINCE])
                self.head.if_unmodified_since = span_bytes(chars, head.fields[FIELD_IF_UNMODIFIED_SINCE])
                self.head.range_value = span_bytes(chars, head.fields[FIELD_RANGE])
                self.head.if_range = span_bytes(chars, head.fields[FIELD_IF_RANGE])
                self.head.accept_encoding = span_bytes(chars, head.fields[FIELD_ACCEPT_ENCODING])
                if state.log_agents:
                    self.head.user_agent = span_bytes(chars, head.fields[FIELD_USER_AGENT])
                    self.head.referer = span_bytes(chars, head.fields[FIELD_REFERER])
                if state.proxy is not None:
                    self.head.forwarded_for = span_bytes(chars, head.fields[FIELD_FORWARDED_FOR])
                if state.asgi_bridge is not None:  # directories are listed: HTML or JSON
                    self.head.accept = span_bytes(chars, head.fields[FIELD_ACCEPT])
                self._serve_static()
            else:
                self._start_simple_job(chars, lines, head.line_count)
            if not self.head.keep_alive:
                self.closing = True
            start = end
        if start < size and not self.awaiting_head:  # the next head has begun
            self.awaiting_head = True
            self.head_started = state.now
        return start

    cdef void _start_simple_job(self, const char* chars, FieldSpan* lines, Py_ssize_t count):
        """What on_headers_complete and on_message_complete do for a request without a body."""
        cdef Py_ssize_t i
        self.head.headers = [
            (_lowercase(chars, lines[i].name), span_bytes(chars, lines[i].value)) for i in range(count)
        ]
        self.head.declared_length = -1
        job = self.state.asgi_bridge.begin(self, self.head.method, self.head.target, self.head.headers)
        job.body_complete()  # before it starts: an exchange may run at once (see HttpCycle.start)
        self._enqueue_job(job)

    cdef bint _serve_admin(self):
        """Answer an admin path (health, metrics) unless a file is there; False: not answered."""
        result = self.state.admin.static_answer(self.head.method, self.head.target)
        if result is None:
            return False
        status, content_type, body = result
        data = response_head(
            status, b"Content-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\n" % (content_type, len(body)),
            self.head.keep_alive, self.head.http10,
        )
        self.response_status = status
        data = data if self.head.is_head else data + body
        self._emit_answer(data, self.head.method, self.head.target, self.head.protocol, status, monotonic())
        return True

    cdef void _serve_static(self):
        cdef WireAnswer answer = self.state.answer
        cdef bytes prefix = self.state.admin_prefix
        cdef bytes target = self.head.target
        if (
            prefix is not None and target is not None and len(target) >= len(prefix)
            and memcmp(<const char*>target, <const char*>prefix, len(prefix)) == 0
            and self._serve_admin()
        ):
            return
        if self._over_buffer():
            # The client is not reading what it asked for already: keep this request as its
            # head (a few hundred bytes), answered once the client drains; stop reading.
            self._queue_append(self._hand_off_head())
            self.deferred += 1
            self._update_reading()
            return
        item = self._answer_deferred(self.head, self.current_job is None and not self.queue)
        if item is None:
            return  # sent already
        if type(item) is bytes:
            self._emit(<bytes>item)
        else:
            if type(item) is EncodingWait:  # it keeps this head: read the next into a new one
                self._hand_off_head()
            self._enqueue_job(item)

    cdef RequestHead _hand_off_head(self):
        """The request head just read, now kept by what answers it later; the next request is
        read into a new head, which carries this one's keep-alive and version until then (the
        caller of ``_serve_static`` reads them after it returns)."""
        cdef RequestHead kept = self.head
        self.head = self.state.take_head()
        self.head.keep_alive = kept.keep_alive
        self.head.http10 = kept.http10
        self.head.protocol = kept.protocol
        return kept

    cdef object _answer_deferred(self, RequestHead request, bint next_out):
        """The answer to a static request: bytes, or a FileSender to run; None when it went
        out already, which only a file answer that is ``next_out`` (no job or queued answer
        ahead of it) may do.

        What the access log and the metrics record for it is what the socket took (nginx's
        ``$bytes_sent``): an answer the socket took whole at once, at its size; any other
        (a file's body, bytes the socket did not take or that wait behind other answers) is
        sent by a FileSender, which records it when it is done or the client went away, with
        the bytes it sent (none, for one the client never let begin).
        """
        cdef WireAnswer answer = self.state.answer
        cdef bint recording = records_requests(self.state)
        cdef double started = monotonic() if recording else 0
        cdef long long sent = 0
        answer_static(answer, self.state.cache, self.state.max_ranges, request)
        if self.state.tracer is not None:
            self.state.tracer.static_answer(self, request.method, request.target, answer.status,
                                            answer.file is None, answer.segments is not None)
        if answer.status == 0:
            waiting = answer.waiting
            answer.waiting = None
            return EncodingWait(self, request, waiting)
        if answer.status == STATUS_LISTING:
            return self._listing_job(request)
        self.response_status = answer.status
        if answer.file is None:
            item = answer.data
            sent = len(answer.data)
            if recording or sent > WRITE_HIGH_WATER:
                item = self._bytes_answer(<bytes>item, next_out)
                if item is None:  # the socket took it whole
                    self._account(request.method, request.target, request.protocol, answer.status, sent, started,
                                  request.user_agent, request.referer, self._forwarded_client(request))
                    return None
        elif answer.segments is None:
            sent = len(answer.data) + answer.count
            if next_out:
                item = self._send_slice_now(answer.data, <OpenFile>answer.file, answer.offset, answer.count)
            else:
                item = FileSender(self, answer.file, answer.file.fd, [answer.data, (answer.offset, answer.count)])
        else:
            item = FileSender(self, answer.file, answer.file.fd, [answer.data] + answer.segments)
        if recording and type(item) is FileSender:
            self._read_addresses()  # while the socket still has its peer: the line names it
            (<FileSender>item).record = (request.method, request.target, request.protocol, answer.status, started,
                                         request.user_agent, request.referer, self._forwarded_client(request))
            return item
        self._account(request.method, request.target, request.protocol, answer.status, sent, started,
                      request.user_agent, request.referer, self._forwarded_client(request))
        return item

    cdef object _bytes_answer(self, bytes data, bint next_out):
        """An answer from memory that is recorded (``--access-log``, ``--metrics``) with what
        the socket took of it (nginx's ``$bytes_sent``), or larger than the transport's
        high-water mark: None when the socket took it whole now (only an answer that is
        ``next_out``), else the FileSender that sends the rest, or all of it in its place
        behind the answers ahead, counting what it sent (a sender the client never let begin
        counts 0) and holding no copy of it: a client that does not read holds one buffer
        of it in the transport, not the whole answer. Under TLS the transport is the socket:
        a small answer next out is handed to it as it is (bytes), a larger one a chunk at a time."""
        cdef Py_ssize_t size = len(data)
        cdef Py_ssize_t sent = -1
        cdef FileSender rest
        if next_out and self.transport is not None:
            if self.sock_fd < 0:
                return data if size <= WRITE_HIGH_WATER else FileSender(self, None, -1, [data])
            sent = self.send_now(data)
            if sent == size:
                return None
        rest = FileSender(self, None, -1, [data])
        if sent > 0:
            rest.taken(sent)
        return rest

    cdef void _emit_answer(self, bytes data, bytes method, bytes target, bytes protocol, int status, double started):
        """Send an answer of the connection's own (an error, an admin path) in its place,
        recorded with what the socket took of it as ``_answer_deferred``'s are, under the
        request line's ``method``, ``target`` and ``protocol`` as far as they were read."""
        cdef RequestHead head = self.head
        if self.transport is not None and records_requests(self.state):
            item = self._bytes_answer(data, self.current_job is None and not self.queue)
            if type(item) is FileSender:
                (<FileSender>item).record = (method, target, protocol, status, started, head.user_agent, head.referer,
                                             None)
                self._enqueue_job(item)
                return
            if item is not None:
                self._emit(data)
        elif self.transport is not None:
            self._emit(data)
        self._account(method, target, protocol, status, len(data) if self.transport is not None else 0, started,
                      head.user_agent, head.referer)

    cdef object _listing_job(self, RequestHead request):
        """A directory listing: the ``StaticFiles`` app renders it through the ASGI bridge (the
        file-system work runs in a thread), seeing the fields it reads; it logs its own access."""
        headers = [(name, value) for name, value in (
            (b"accept", request.accept), (b"accept-encoding", request.accept_encoding),
            (b"if-none-match", request.if_none_match), (b"if-match", request.if_match),
            (b"user-agent", request.user_agent), (b"referer", request.referer),
        ) if value is not None]
        current = self.head
        self.head = request  # the exchange keeps this request's keep-alive and version
        try:
            job = self.state.asgi_bridge.begin(self, request.method, request.target, headers)
        finally:
            self.head = current
        job.body_complete()
        return job

    cdef bint _over_buffer(self):
        """Whether the response bytes held for this client (ready, queued, and in the
        transport's buffer) are past ``max_response_buffer``."""
        cdef Py_ssize_t held = self.out_bytes + self.queued_bytes
        if not self.writing_paused and held + WRITE_HIGH_WATER <= self.state.max_response_buffer:
            return False  # a transport that has not paused us holds at most its high-water mark
        if self.transport_holds_data and self.transport is not None:
            held += self.transport.get_write_buffer_size()
        return held > self.state.max_response_buffer

    cdef void _account(self, bytes method, bytes url, bytes protocol, int status, long long sent, double started,
                       bytes user_agent, bytes referer, object client=None):
        """One request answered: count it, and give it to the metrics and the access log
        (``protocol``: the HTTP-version its line named, ``b"HTTP/1.1"``, None if not read;
        ``client``: the scope's, when a trusted proxy named another than the peer). One of
        which no byte left (``sent`` 0; ``status`` 0: none was begun) is recorded as
        ``CLIENT_CLOSED_REQUEST``: the connection ended before its answer began."""
        cdef ServerState state = self.state
        cdef double seconds
        state.requests += 1
        if status <= 0 or sent <= 0:  # no byte of an answer left: the connection ended first
            status = CLIENT_CLOSED_REQUEST
        if records_requests(state):
            seconds = monotonic() - started
            if state.counters is not None:
                state.counters.record(method, status, sent, seconds)
            if state.access_logger is not None:
                state.access_logger(self, method, url, protocol, status, sent, seconds, user_agent, referer, client)
        if state.requests == state.request_limit:
            state.on_limit()

    cdef void account_unanswered(self, RequestHead request):
        """``request`` ends with its connection before any answer to it began: recorded as
        ``CLIENT_CLOSED_REQUEST``, no bytes sent (its duration: none, it never began)."""
        self._account(request.method, request.target, request.protocol, 0, 0, monotonic(), request.user_agent,
                      request.referer,
                      self._forwarded_client(request))

    cdef object _forwarded_client(self, RequestHead request):
        """The client a static request's access-log line names: what a trusted proxy's
        X-Forwarded-For says (as an app's scope would), None for the peer itself."""
        if request.forwarded_for is None or self.state.proxy is None:
            return None
        return resolve_fields(self.state.proxy, self.client, request.forwarded_for, None, "http")[0]

    cpdef void account(self, bytes method, bytes url, bytes protocol, int status, long long sent, double started,
                       bytes user_agent=None, bytes referer=None, object client=None):
        """For responses made outside the connection (ASGI, WebSocket handshakes): ``started``
        is ``monotonic_time()`` when the head was read, ``sent`` the bytes of the response,
        ``client`` the scope's (None: the peer's); ``status`` 0 for none begun (see ``_account``)."""
        self._account(method, url, protocol, status, sent, started, user_agent, referer, client)

    # -- ordered output -----------------------------------------------------------------

    cdef void _queue_append(self, object item):
        if self.queue is None:
            self.queue = []
        self.queue.append(item)

    cdef inline void _emit(self, bytes data):
        if self.current_job is None and not self.queue:
            self._hold(data)
        else:
            self._queue_append(data)
            self.queued_bytes += len(data)

    cdef void _enqueue_job(self, job):
        self._queue_append(job)
        self._update_reading()
        if self.current_job is None:
            self._flush()

    cdef void _flush(self):
        """Write what is ready; start the next job when the one before it is done."""
        cdef object transport = self.transport
        if transport is None:
            self.out = None
            self.out_bytes = 0
            return
        while self.current_job is None and self.queue:
            item = self.queue[0]
            if type(item) is RequestHead:
                # A deferred request is answered only while the client keeps up: at most
                # about one buffer's worth waits for it at a time.
                if self.out_bytes > self.state.max_response_buffer:
                    self._write_out()
                if self.writing_paused or self.transport is None:
                    break  # resume_writing comes back here
                self.queue.pop(0)
                self.deferred -= 1
                item = self._answer_deferred(<RequestHead>item, True)
                if item is None:
                    continue  # sent already
            else:
                self.queue.pop(0)
                if type(item) is bytes:
                    self.queued_bytes -= len(<bytes>item)
            if type(item) is bytes:
                self._hold(<bytes>item)
                continue
            self._write_out()
            self.current_job = item
            if item is self.body_job:
                self.head_flags &= ~HEAD_BODY_QUEUED  # its body is read from now on (below)
            (<Job>item).start()
            if self.transport is None:
                return
        self._write_out()
        if self.current_job is None and not self.queue:
            self.queue = None
            self.idle_since = self.state.now
            if self.pending_upgrade is not None:
                session, rest = self.pending_upgrade
                self.pending_upgrade = None
                self.upgraded = session
                if self.reading_paused or self.hub_took:
                    self.reading_paused = False
                    self._transport_reading(True)  # through the transport from now on
                session.start(rest)
                return
            if self.closing:
                self._close_after_answers()
                return
        self._update_reading()

    cdef void _close_after_answers(self):
        """Close once the last answer is out, without a reset taking it from the client.

        Closing a socket with unread bytes in it, or with bytes still arriving, makes the kernel
        answer with a reset, and the client drops what it had not read yet of our answer (the
        tail of a large file; a 400 or 413 sent while the client still sends). So the connection
        shuts down its sending side after the answers (FIN), reads on and drops what comes, and
        closes at the client's own close or ``LINGER`` seconds later (nginx's lingering close).
        Under TLS, or once the client has shut its own side, the transport just closes. Either
        way the transport first sends what it still holds: ``check_timeouts`` drops a client
        that does not take it within the send timeout.
        """
        if self.lingering:
            return
        self.lingering = True
        self.linger_since = self.state.now
        if self.sock_fd < 0 or self.peer_finished or not self.transport.can_write_eof():
            # TLS, or a client that has sent all it will: nothing can arrive to cause a reset
            self.transport.close()  # kept until connection_lost: check_timeouts may abort it
            return
        self.transport.write_eof()  # once what the transport holds has gone out
        if self.reading_paused:
            self.reading_paused = False
            self._transport_reading(True)

    cdef inline void _hold(self, bytes data):
        """Add ``data`` to the answers ready to be written together."""
        cdef object out = self.out
        if out is None:
            self.out = data  # the usual case: one answer per read, written as it is
        elif type(out) is bytes:
            self.out = [out, data]
        else:
            (<list>out).append(data)
        self.out_bytes += len(data)

    cdef inline void _write_out(self):
        cdef object out = self.out
        if out is not None:
            self.out = None
            self.out_bytes = 0
            self._write(<bytes>out if type(out) is bytes else b"".join(<list>out))

    cpdef void write(self, bytes data):
        """Write response bytes for the current job (the ASGI bridge writes through here)."""
        if self.transport is not None:
            self._write(data)

    cpdef Py_ssize_t send_now(self, bytes data):
        """For the current job, or an answer with nothing ahead of it: send ``data`` on the
        socket itself, now, after what the connection holds (``_write_out``); returns how many
        bytes it took (the rest is the caller's to send, a ``FileSender`` counting what leaves),
        or -1 when the bytes must go through the transport (TLS, bytes it holds, a socket
        error), which the caller then uses with ``write``."""
        cdef Py_ssize_t sent
        if self.transport is None:
            return 0
        self._write_out()
        if not _socket_is_next(self):
            return -1
        sent = send(self.sock_fd, <const char*>data, len(data), MSG_NOSIGNAL | MSG_DONTWAIT)
        if sent < 0:
            return 0 if errno == EAGAIN else -1
        return sent

    cdef void _write(self, bytes data):
        """Write ``data`` in order after what the transport holds.

        While the transport holds nothing, one ``send`` on the socket usually takes it all
        and skips the transport's bookkeeping; whatever the socket does not take (or any
        error) goes through the transport, which then owns ordering, flow control and errors.
        """
        cdef Py_ssize_t sent = -1
        cdef Py_ssize_t size = len(data)
        cdef const char* buf = data
        if _socket_is_next(self):
            sent = send(self.sock_fd, buf, size, MSG_NOSIGNAL | MSG_DONTWAIT)
        if sent == size:
            return
        self.transport_holds_data = True
        if sent <= 0:
            self.transport.write(data)
        else:
            self.transport.write(data[sent:])

    cdef object _send_slice_now(self, bytes head, OpenFile file, long long offset, long long count):
        """Send ``head`` and ``count`` bytes of ``file`` from ``offset`` now, when the socket
        takes them: None when it did, else the FileSender that sends the rest.

        The head goes out with ``MSG_MORE`` so that it leaves in the same packet as the start
        of the body, and the body by ``sendfile`` (no copy through user memory); whatever the
        socket does not take, and every error, is the sender's to deal with. Only for an
        answer with nothing ahead of it.
        """
        cdef int fd = self.sock_fd
        cdef Py_ssize_t size = len(head)
        cdef Py_ssize_t sent = -1
        cdef Py_ssize_t body_sent = 0
        cdef off_t position = offset
        self._write_out()  # the answers before this one
        if count > 0 and _socket_is_next(self):
            sent = send(fd, <const char*>head, size, MSG_NOSIGNAL | MSG_DONTWAIT | MSG_MORE)
        if sent == size:
            body_sent = sendfile(fd, file.fd, &position, count)
            if body_sent == count:
                return None
            if body_sent < 0:
                body_sent = 0
            segments = [(offset + body_sent, count - body_sent)]
        else:
            if sent < 0:
                sent = 0
            segments = [head[sent:] if sent else head, (offset, count)]
        cdef FileSender rest = FileSender(self, file, file.fd, segments)
        rest.sent = sent + body_sent  # what the socket took already, for the access log and metrics
        return rest

    def watch_writable(self) -> bool:
        """Sendfile found the socket full: pause until it has room, then resume.

        The pause and the resume are the transport's own (``pause_writing`` and
        ``resume_writing``, which runs the file sender again): reading stops and the send
        timeout runs meanwhile. False when no descriptor is left to watch: the sender then
        copies a chunk through the transport.
        """
        if self.watch is None:
            self.watch = WritableWatch(self.loop, self.sock_fd, self.resume_writing)
        if not self.watch.start():
            return False
        self.pause_writing()
        return True

    cdef void _close_watch(self):
        if self.watch is not None:
            self.watch.close()

    cdef void _answer_again(self, RequestHead request):
        """Answer ``request`` next, as a deferred request (its ``EncodingWait`` is over)."""
        if self.queue is None:
            self.queue = []
        self.queue.insert(0, request)
        self.deferred += 1
        self.job_finished()

    cpdef void job_finished(self, bint close=False):
        """A job (file transfer or ASGI response) wrote its last byte; ``close`` ends the connection."""
        self.current_job = None
        if close:
            self.closing = True
            self.queue = None
            self.queued_bytes = self.deferred = 0
        self._flush()

    # -- errors, timeouts, shutdown ------------------------------------------------------

    cdef void _fail(self, int status, bytes data=None):
        """Answer a request we refuse to parse further (``data``: the whole answer, else the
        plain one for ``status``, without its text for a HEAD request: RFC 9110 section 9.3.2),
        then close."""
        if self.closing:
            return
        self.closing = True
        if self.head is None:
            self.head = self.state.take_head()
        self.head.keep_alive = False
        cdef bytes method, target, protocol
        if self.method_read:
            method, target, protocol = self.head.method, self.head.target, self.head.protocol
        else:
            # Refused before its head was read whole (the head holds none of it, or an earlier
            # request's fields): the access log names its request line as far as it came, as
            # nginx's does, and "-" for what never came.
            method, target, protocol = split_request_line(self.head.line_read)
        cdef bint head_request = method == HEAD and (self.method_read or self.head.line_read.startswith(b"HEAD "))
        self.head.method = GET
        self.head.is_get = True
        self.head.is_head = False
        self.response_status = status
        if self.state.tracer is not None:
            self.state.tracer.refused(self, method, target, status)
        if data is None:
            data = plain_answer(status, b"", False, self.head.http10, head_request)
        self._emit_answer(data, method, target, protocol, status, monotonic())
        self._flush()

    cdef void _fail_body(self, int status):
        """A request's body broke off after its head (bad framing, a half-close, a stall).

        An app reading it gets ``http.disconnect`` and the client ``status`` unless the app
        had already begun its response; either way the connection closes after it.
        """
        job = self.body_job
        if job is None:
            self._fail(status)
            return
        self.body_job = None
        self.in_message = False
        self.closing = True
        self.head.keep_alive = False
        job.body_failed(status)
        self._flush()

    def check_timeouts(self, double now):
        if self.transport is None or self.upgraded is not None:
            return  # a WebSocket session keeps its own time (pings)
        if self.lingering:
            if self.transport_holds_data:
                if self.transport.get_write_buffer_size() > 0:
                    # The answers are not all out: the client has the send timeout to take them
                    # (a transport asked to close would otherwise wait for it for ever).
                    if now - (self.writing_paused_since if self.writing_paused else self.linger_since) > self.state.send_timeout:
                        self.abort()
                    return
                self.transport_holds_data = False
                self.linger_since = now  # they are out: the linger begins
            if now - self.linger_since > LINGER:
                self.transport.close()  # nothing waits unread
                self.transport = None
            return
        if self.writing_paused and now - self.writing_paused_since > self.state.send_timeout:
            self.abort()  # the client stopped reading what it asked for
            return
        if self.reading_paused:
            pass  # we stopped reading: the client is not late
        elif self.in_head or self.awaiting_head:
            if now - self.head_started > self.state.header_timeout:
                self._fail(408)
                return
        elif self.in_message and self.upgrade_request is None and self.pending_upgrade is None:
            # A static root reads a body only to drop it: the whole request must come within
            # the header timeout, so a body that trickles in cannot hold the connection.
            if now - self.body_read_at > self.state.body_timeout or (
                self.state.static_only and now - self.head_started > self.state.header_timeout
            ):
                self._fail_body(408)
                return
        if self.in_head or self.awaiting_head or self.in_message:
            return
        if self.current_job is None and not self.queue and self.out is None and self.held_input is None:
            # Idle: the head goes back to the worker at the first tick, not after every
            # request, so a client sending one request per read does not pay for it each time
            # (see ServerState.give_head). A pending upgrade still needs its head.
            if self.head is not None and self.upgrade_request is None and self.pending_upgrade is None:
                self.state.give_head(self.head)
                self.head = None
            if now - self.idle_since > self.state.keepalive_timeout:
                self.transport.close()
                self.transport = None

    def stop_keeping_alive(self) -> bool:
        """The answer owed (or the request arriving) is the connection's last; returns whether
        the connection is idle: open, no request begun, nothing owed, no byte waiting unread."""
        if self.head is not None:
            self.head.keep_alive = False
        if self.transport is None:
            return False
        if self.upgraded is not None:
            self.upgraded.shutdown()  # a close frame: 1012 "service restart"
            return False
        if self.in_head or self.in_message:
            return False  # a request is arriving: answer it (with Connection: close), then close
        if self.current_job is not None or self.queue:
            # The last answer owed says Connection: close when its head is still to be made, and
            # the connection closes after it. One whose head promised keep-alive already is
            # followed by the idle grace instead, as an idle connection is: a request the client
            # sends on the strength of that promise is answered, not met with a closed socket.
            if self._last_answer_says_close():
                self.closing = True
            return False
        return not self._unread_bytes()

    cdef bint _last_answer_says_close(self):
        last = self.queue[len(self.queue) - 1] if self.queue else self.current_job
        if type(last) is RequestHead:  # a static answer deferred: made when its turn comes
            (<RequestHead>last).keep_alive = False
            return True
        if isinstance(last, Job):
            return (<Job>last).stop_keeping_alive()
        return False  # bytes made already

    def close_when_idle(self, double idle_for=0.0):
        """Close now if idle (for ``idle_for`` seconds of the clock at least); otherwise after the
        answer owed (or the request arriving)."""
        if self.stop_keeping_alive() and self.state.now - self.idle_since >= idle_for:
            self.closing = True
            self.transport.close()
            self.transport = None

    cdef bint _unread_bytes(self):
        """Whether the client's next request has reached the socket but not yet been read: closing
        then would discard it (and the kernel answer it with a reset)."""
        cdef char byte
        if self.held_input is not None:
            return True  # read, and held back unparsed
        return self.sock_fd >= 0 and recv(self.sock_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0

    def reset(self):
        """Abort with a TCP reset (SO_LINGER 0) instead of a FIN: for a response cut short whose
        end the client could not otherwise tell from a whole one (a body the close delimits)."""
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
                except OSError:
                    pass  # the socket is gone already
        self.abort()

    def abort(self):
        self._close_watch()  # the duplicate would keep the socket open after the transport's close
        if self.transport is not None:
            self.transport.abort()
            self.transport = None

    cdef void _update_reading(self):
        """Read only while the client is reading us, the queue is short and bodies are consumed."""
        if self.held_input is not None and not self.held_scheduled and not self._holds_back():
            self.held_scheduled = True
            self.loop.call_soon(self._parse_held)
        cdef bint pause = not self.lingering and (  # lingering, what comes is dropped as it comes
            self.writing_paused or self.body_backpressure or self.deferred > 0
            or self.head_flags & HEAD_BODY_QUEUED or self.held_input is not None
            or (self.queue is not None and len(self.queue) >= self.state.max_pipeline)
        )
        if self.transport is None or pause == self.reading_paused:
            return
        self.reading_paused = pause
        if not pause:
            # The clocks of a head or body in progress restart: we were the ones not reading.
            self.head_started = self.body_read_at = self.state.now
        self._transport_reading(not pause)


cdef class _BodyReader:
    """httptools' callbacks for a body read apart from its head (``_read_body_apart``): the
    body's pieces and its end go to the connection, as those of any body do."""
    cdef HttpProtocol conn

    def __cinit__(self, HttpProtocol conn):
        self.conn = conn

    def on_body(self, bytes body):
        self.conn.on_body(body)

    def on_message_complete(self):
        self.conn.on_message_complete()


class _Abort(Exception):
    """Raised from a parser callback to stop parsing a request we already refused."""


cdef class EncodingWait(Job):
    """A static request whose client accepts only an encoding of the file that is still being
    made (``identity;q=0``): it holds its place in the connection's order until the encoding is
    ready, then is answered like any deferred request."""

    cdef HttpProtocol conn
    cdef RequestHead request
    cdef object waiting

    def __cinit__(self, HttpProtocol conn, RequestHead request, object waiting):
        self.conn = conn
        self.request = request
        self.waiting = waiting

    cpdef start(self):
        self.waiting.add_done_callback(self._ready)

    def _ready(self, future):
        cdef HttpProtocol conn = self.conn
        if conn is None or conn.transport is None or conn.current_job is not self:
            return
        conn._answer_again(self.request)

    cpdef connection_lost(self):
        if self.conn is not None:
            self.conn.account_unanswered(self.request)
        self.conn = None
