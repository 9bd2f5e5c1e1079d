"""The HTTP/1.1 connection: httptools callbacks, the static fast path, ordered output.

One ``HttpProtocol`` per connection. Plain GET/HEAD heads are read by
``requesthead.scan_simple_head``; every other request is parsed by httptools. Every complete
request produces exactly one response, in request order:

* a static GET/HEAD is answered from the ``FileCache`` as soon as its head is read (by the
  scanner, or in ``on_message_complete``): preconditions, ranges, then one pre-built bytes
  object (headers + body for small files);
* a large file body becomes a ``FileSender`` that moves bytes with ``os.sendfile``;
* anything else is handed to the ASGI bridge (``fastserve.server.asgi``) as a job.

Ready responses are gathered and written once per ``data_received``; a response that
cannot finish at once (a file transfer, an ASGI app) holds the ones behind it in a queue.
"""
import os
from collections import deque

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memchr
cdef extern from "<sys/socket.h>" nogil:
    Py_ssize_t send(int fd, const void* buf, size_t n, int flags)
    int MSG_NOSIGNAL
    int MSG_DONTWAIT

from httptools import HttpRequestParser
from httptools import HttpParserError, HttpParserUpgrade

from fastserve._speedups.headers cimport (
    byteranges_layout,
    current_http_date,
    reason_phrase,
)
from fastserve._speedups.conditional cimport evaluate_preconditions, evaluate_range
from fastserve._speedups.filecache cimport (
    CacheEntry,
    FileCache,
    OpenFile,
    choose_representation,
    ENTRY_FILE,
    ENTRY_MISSING,
    ENTRY_REDIRECT,
)
from fastserve._speedups.charclass cimport is_ows, lower_ascii
from fastserve._speedups.pathlookup cimport origin_form, percent_decode
from fastserve._speedups.requesthead cimport (
    CONNECTION_CLOSE as HEAD_CONNECTION_CLOSE,
    CONNECTION_KEEP_ALIVE as HEAD_CONNECTION_KEEP_ALIVE,
    FIELD_ACCEPT_ENCODING,
    FIELD_IF_MATCH,
    FIELD_IF_MODIFIED_SINCE,
    FIELD_IF_NONE_MATCH,
    FIELD_IF_RANGE,
    FIELD_IF_UNMODIFIED_SINCE,
    FIELD_RANGE,
    FieldSpan,
    SimpleHead,
    Span,
    scan_simple_head,
    span_bytes,
)

cdef object _sendfile = os.sendfile
cdef object _pread = os.pread

cdef bytes GET = b"GET"
cdef bytes HEAD = b"HEAD"
cdef bytes CRLF = b"\r\n"
cdef bytes SERVER_DATE = b"Server: fastserve\r\nDate: "
cdef bytes CONNECTION_CLOSE = b"Connection: close\r\n"
cdef bytes CONNECTION_KEEP_ALIVE = b"Connection: keep-alive\r\n"
cdef bytes ALLOW = b"Allow: GET, HEAD\r\n"

# Largest slice handed to one sendfile call, and the copy made when the socket is full
# (the copy goes through the transport, which then tells us when it has drained).
cdef Py_ssize_t SENDFILE_CHUNK = 2 * 1024 * 1024
cdef Py_ssize_t COPY_CHUNK = 128 * 1024
# Bytes moved per event-loop turn for one connection before letting others run.
cdef Py_ssize_t TURN_BUDGET = 8 * 1024 * 1024
# Header lines the scanner lists for an ASGI request; a head with more goes to httptools.
cdef enum:
    MAX_LISTED_LINES = 64
# A body sent to a static file is read and dropped (keeping the connection) up to this size.
cdef long long DISCARD_LIMIT = 64 * 1024


cdef class ServerState:
    """What every connection of one worker shares: limits, the cache, the app, a clock.

    ``now`` is a coarse clock advanced by the server's ticker; connections stamp it
    instead of reading the time on every request.
    """

    cdef public object app
    cdef public FileCache cache
    cdef public bint static_only
    cdef public object asgi_bridge
    cdef public Py_ssize_t max_header_bytes
    cdef public Py_ssize_t max_header_count
    cdef public Py_ssize_t max_url_length
    cdef public Py_ssize_t max_body_size
    cdef public Py_ssize_t max_pipeline
    cdef public Py_ssize_t max_connections
    cdef public double header_timeout
    cdef public double keepalive_timeout
    cdef public double send_timeout
    cdef public int max_ranges
    cdef public object access_logger
    cdef public set connections
    cdef public double now
    cdef public bint shutting_down

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
        self.max_connections = config.max_connections
        self.header_timeout = config.header_timeout
        self.keepalive_timeout = config.keepalive_timeout
        self.send_timeout = config.send_timeout
        self.max_ranges = config.max_ranges
        self.access_logger = access_logger
        self.connections = set()
        self.now = 0.0
        self.shutting_down = False

    def tick(self, double now) -> None:
        """Advance the clock and close connections that overstayed a timeout."""
        cdef HttpProtocol conn
        self.now = now
        for conn in list(self.connections):
            conn.check_timeouts(now)

    def shutdown(self) -> None:
        """Stop keeping connections alive: idle ones close now, busy ones after their response."""
        cdef HttpProtocol conn
        self.shutting_down = True
        for conn in list(self.connections):
            conn.close_when_idle()


cdef dict _STATUS_LINES = {}


cdef bytes _status_line(int status):
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status))
    return line


cdef bytes _lowercase(const char* data, Span span):
    """A header name in lowercase, as ASGI scopes carry them."""
    cdef bytes name = PyBytes_FromStringAndSize(NULL, span.length)
    cdef unsigned char* out = <unsigned char*>PyBytes_AS_STRING(name)
    cdef const unsigned char* source = <const unsigned char*>data + span.start
    cdef Py_ssize_t i
    for i in range(span.length):
        out[i] = lower_ascii(source[i])
    return name


cdef inline void _refresh_memo(CacheEntry entry, bytes date):
    """Forget an entry's pre-built responses once the Date they carry has passed."""
    if entry.memo_date is not date:
        entry.memo_date = date
        entry.memo_ok = None
        entry.memo_not_modified = None


cdef class FileSender:
    """Sends a response made of bytes and file slices, the slices by ``os.sendfile``.

    While the transport's buffer is empty, file bytes go straight from the page cache to
    the socket; when the socket is full, the connection waits until it has room and calls
    ``run`` again. Only while the transport itself holds bytes (a head it could not send at
    once) is a chunk of the file copied through it, to keep the order.
    """

    cdef HttpProtocol conn
    cdef object owner    # keeps the descriptor open (an OpenFile, a file object)
    cdef int file_fd
    cdef list segments   # bytes, or (offset, count) tuples
    cdef object on_done  # called after the last byte; None: the connection's next response
    cdef Py_ssize_t index
    cdef long long offset
    cdef long long remaining

    def __cinit__(self, HttpProtocol conn, object owner, int file_fd, list segments, object on_done=None):
        self.conn = conn
        self.owner = owner
        self.file_fd = file_fd
        self.segments = segments
        self.on_done = on_done
        self.index = -1
        self.remaining = 0

    def resume(self) -> None:
        """Go on sending (after the transport drained, or to begin)."""
        self.run()

    cdef void run(self):
        cdef object transport = self.conn.transport
        cdef Py_ssize_t budget = TURN_BUDGET
        cdef Py_ssize_t n
        cdef int sock_fd = self.conn.sock_fd
        cdef int file_fd = self.file_fd
        while True:
            if transport is None or self.conn.transport is None:
                return
            if self.remaining == 0:
                self.index += 1
                if self.index >= len(self.segments):
                    if self.on_done is None:
                        self.conn.job_finished()
                    else:
                        self.on_done()
                    return
                segment = self.segments[self.index]
                if type(segment) is bytes:
                    self.conn.transport_holds_data = True
                    transport.write(segment)
                    self.remaining = 0
                    continue
                self.offset, self.remaining = segment
                if self.remaining == 0:
                    continue
            if self.conn.writing_paused:
                return  # resume_writing calls run() again
            if budget <= 0:
                self.conn.loop.call_soon(self.conn.resume_job)
                return
            n = -1
            if sock_fd >= 0 and transport.get_write_buffer_size() == 0:
                try:
                    n = _sendfile(sock_fd, file_fd, self.offset, min(self.remaining, SENDFILE_CHUNK))
                except BlockingIOError:
                    if self.conn.watch_writable():
                        return  # run() again once the socket has room
                    n = -1
                except OSError:
                    self.conn.abort()
                    return
                if n == 0:  # the file shrank under us: the promised length cannot be sent
                    self.conn.abort()
                    return
            if n < 0:
                chunk = _pread(file_fd, min(self.remaining, COPY_CHUNK), self.offset)
                n = len(chunk)
                if n == 0:
                    self.conn.abort()
                    return
                self.conn.transport_holds_data = True
                transport.write(chunk)
            self.offset += n
            self.remaining -= n
            budget -= n


cdef class HttpProtocol:
    """One HTTP/1.1 connection (an asyncio protocol, for uvloop's ``create_server``)."""

    cdef readonly ServerState state
    cdef public object loop
    cdef public object transport
    cdef object parser
    cdef public int sock_fd
    cdef public object client
    cdef public object server
    cdef public bint writing_paused
    cdef int watch_fd          # a duplicate of the socket, watched for room while sendfile waits
    cdef bint watching         # a writer is registered on watch_fd
    cdef public bint transport_holds_data   # set whenever bytes went through transport.write
    cdef double writing_paused_since
    cdef bint reading_paused
    cdef bint body_backpressure

    # the request being parsed
    cdef bint in_message    # httptools has begun a request it has not finished
    cdef bint in_head
    cdef Py_ssize_t head_bytes
    cdef Py_ssize_t raw_head_bytes
    cdef Py_ssize_t header_count
    cdef double head_started
    cdef bytes url
    cdef bint saw_connection
    cdef readonly long long declared_length   # Content-Length of the request, -1 when absent or invalid
    cdef long long static_body_bytes
    cdef list headers
    cdef bint keep_headers
    cdef bytes method
    cdef bytes if_match
    cdef bytes if_none_match
    cdef bytes if_modified_since
    cdef bytes if_unmodified_since
    cdef bytes range_value
    cdef bytes if_range
    cdef bytes accept_encoding
    cdef readonly bint keep_alive
    cdef readonly bint http10
    cdef object body_job   # the ASGI job receiving this request's body, if any
    cdef object upgrade_request   # (method, url, headers) of a WebSocket handshake being parsed
    cdef object pending_upgrade   # (session, bytes after the head) waiting for earlier responses
    cdef public object upgraded   # the WebSocket session that owns this connection now

    # output, in request order
    cdef list out
    cdef object queue
    cdef object current_job
    cdef bint closing
    cdef double idle_since
    cdef int response_status

    def __init__(self, ServerState state, loop):
        self.state = state
        self.loop = loop
        self.transport = None
        self.parser = HttpRequestParser(self)
        self.sock_fd = -1
        self.watch_fd = -1
        self.writing_paused = False
        self.reading_paused = False
        self.in_head = False
        self.url = None
        self.headers = []
        self.keep_headers = not state.static_only
        self.out = []
        self.queue = deque()
        self.current_job = None
        self.closing = False
        self.body_job = None

    # -- asyncio protocol -------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.idle_since = self.state.now
        if len(self.state.connections) >= self.state.max_connections or self.state.shutting_down:
            transport.write(
                _status_line(503) + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            transport.close()
            self.transport = None
            return
        self.state.connections.add(self)
        sock = transport.get_extra_info("socket")
        self.sock_fd = sock.fileno() if sock is not None else -1
        self.client = transport.get_extra_info("peername")
        self.server = transport.get_extra_info("sockname")
        # Resume only when the buffer is empty, so file transfers can go back to sendfile.
        transport.set_write_buffer_limits(high=64 * 1024, low=0)

    def connection_lost(self, exc):
        self.state.connections.discard(self)
        self.transport = None
        self._close_watch()
        if self.upgraded is not None:
            self.upgraded.connection_lost(exc)
            return
        job = self.current_job
        self.current_job = None
        self.queue.clear()
        if job is not None and type(job) is not FileSender:
            job.connection_lost()
        if self.body_job is not None and self.body_job is not job:
            self.body_job.connection_lost()
        self.body_job = None

    def eof_received(self):
        """The peer finished sending: answer what it asked, then close."""
        if self.upgraded is not None:
            return self.upgraded.eof_received()
        self.closing = True
        self.keep_alive = False
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
        if type(self.current_job) is FileSender:
            (<FileSender>self.current_job).run()
        elif self.current_job is not None:
            self.current_job.resume_writing()
        self._update_reading()

    def data_received(self, bytes data):
        if self.upgraded is not None:
            self.upgraded.data_received(data)
            return
        if self.pending_upgrade is not None:
            # Frames sent before the 101: keep them for the session, and stop reading for now.
            session, rest = self.pending_upgrade
            self.pending_upgrade = (session, rest + data)
            self.transport.pause_reading()
            self.reading_paused = True
            return
        if self.closing:
            return
        cdef Py_ssize_t done
        if not self.in_message:
            done = self._read_simple_heads(data)
            if done == len(data) or self.closing or self.transport is None:
                self._flush()
                return
            if done:
                data = data[done:]
        if self.in_head:
            self.raw_head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as upgrade:
            if self.upgrade_request is not None:
                self._begin_websocket(data[upgrade.args[0]:])
                return
            # Any other upgrade: answer the request as plain HTTP, then close.
            self.keep_alive = False
            self.closing = True
        except HttpParserError:
            if not self.closing:  # after "Connection: close" the parser refuses more data: not an error
                self._fail(400)
                return
        if self.in_head and not self.closing and (
            self.raw_head_bytes > self.state.max_header_bytes
            or self.head_bytes > self.state.max_header_bytes
        ):
            self._fail(431)
            return
        self._flush()

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self):
        self.in_message = True
        self.in_head = True
        self.head_bytes = 0
        self.raw_head_bytes = 0
        self.header_count = 0
        self.head_started = self.state.now
        self.url = None
        self.saw_connection = False
        self.declared_length = -1
        self.static_body_bytes = 0
        if self.keep_headers:
            self.headers = []
        self.if_match = None
        self.if_none_match = None
        self.if_modified_since = None
        self.if_unmodified_since = None
        self.range_value = None
        self.if_range = None
        self.accept_encoding = None

    def on_url(self, bytes url):
        self.url = url if self.url is None else self.url + url
        self.head_bytes += len(url)
        if len(self.url) > self.state.max_url_length:
            self._fail(414)
            raise _Abort()

    def on_header(self, bytes name, bytes value):
        cdef Py_ssize_t n = len(name)
        cdef Py_ssize_t size = len(value)
        self.head_bytes += n + size + 4
        if size and is_ows((<const unsigned char*><const char*>value)[size - 1]):
            value = value.rstrip(b" \t")  # httptools keeps trailing whitespace; a field value has none
        self.header_count += 1
        if self.header_count > self.state.max_header_count or self.head_bytes > self.state.max_header_bytes:
            self._fail(431)
            raise _Abort()
        lower = None
        if self.keep_headers:
            lower = name.lower()
            self.headers.append((lower, value))
        if n == 5 or n == 8 or n == 10 or n == 13 or n == 14 or n == 15 or n == 17 or n == 19:
            if lower is None:
                lower = name.lower()
            if lower == b"if-none-match":
                self.if_none_match = value
            elif lower == b"if-modified-since":
                self.if_modified_since = value
            elif lower == b"range":
                self.range_value = value
            elif lower == b"if-range":
                self.if_range = value
            elif lower == b"if-match":
                self.if_match = value
            elif lower == b"if-unmodified-since":
                self.if_unmodified_since = value
            elif lower == b"connection":
                self.saw_connection = True
            elif lower == b"accept-encoding":
                self.accept_encoding = value
            elif lower == b"content-length" and value.isdigit() and len(value) < 19:
                self.declared_length = int(value)

    def on_headers_complete(self):
        self.in_head = False
        parser = self.parser
        self.method = parser.get_method()
        self.keep_alive = parser.should_keep_alive() and not self.state.shutting_down
        # The static path needs the version only to tell an HTTP/1.0 client "Connection: keep-alive",
        # and such a client sends a Connection header: read the version only then. ASGI apps need it always.
        self.http10 = (
            (self.saw_connection and self.keep_alive) or not self.state.static_only
        ) and parser.get_http_version() == "1.0"
        if self.state.static_only:
            if self.declared_length > self.state.max_body_size:
                self._fail(413)
                raise _Abort()
            if self.declared_length > DISCARD_LIMIT and self.method != GET and self.method != HEAD:
                # No static file takes a body: a large one is refused unread, and the connection closed.
                self._fail(405, ALLOW)
                raise _Abort()
        elif parser.should_upgrade() and (b"upgrade", b"websocket") in [
            (name, value.lower()) for name, value in self.headers if name == b"upgrade"
        ]:
            # A WebSocket handshake: the session takes the connection once the head is parsed.
            self.upgrade_request = (self.method, self.url, self.headers)
        else:
            job = self.state.asgi_bridge.begin(self, self.method, self.url, self.headers)
            if job.too_large and self.current_job is None and not self.queue:
                # A declared length over the limit: answer now, never read the body.
                self._fail(413)
                raise _Abort()
            # The app starts as soon as the responses ahead are done, while the body streams in.
            self.body_job = job
            self._enqueue_job(job)

    def on_body(self, bytes body):
        if self.body_job is not None:
            self.body_job.receive_body(body)
        elif self.state.static_only:
            # Static files take no body; one is read and dropped, up to the limit.
            self.static_body_bytes += len(body)
            if self.static_body_bytes > self.state.max_body_size:
                self._fail(413)
                raise _Abort()

    def on_message_complete(self):
        self.in_message = False
        if self.upgrade_request is not None:
            return
        if self.body_job is not None:
            self.body_job.body_complete()
            self.body_job = None
        elif not self.closing:
            self._serve_static()
        if not self.keep_alive:
            self.closing = True

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
            end = scan_simple_head(
                <const unsigned char*>chars, start, size, state.max_header_bytes,
                state.max_url_length, state.max_header_count, &head,
                NULL if static_only else lines, MAX_LISTED_LINES,
            )
            if end <= 0:
                break
            self.method = HEAD if head.is_head else GET
            self.url = span_bytes(chars, head.target)
            self.http10 = head.http10
            if head.http10:
                self.keep_alive = head.connection == HEAD_CONNECTION_KEEP_ALIVE
            else:
                self.keep_alive = head.connection != HEAD_CONNECTION_CLOSE
            if state.shutting_down:
                self.keep_alive = False
            if static_only:
                self.if_match = span_bytes(chars, head.fields[FIELD_IF_MATCH])
                self.if_none_match = span_bytes(chars, head.fields[FIELD_IF_NONE_MATCH])
                self.if_modified_since = span_bytes(chars, head.fields[FIELD_IF_MODIFIED_SINCE])
                self.if_unmodified_since = span_bytes(chars, head.fields[FIELD_IF_UNMODIFIED_SINCE])
                self.range_value = span_bytes(chars, head.fields[FIELD_RANGE])
                self.if_range = span_bytes(chars, head.fields[FIELD_IF_RANGE])
                self.accept_encoding = span_bytes(chars, head.fields[FIELD_ACCEPT_ENCODING])
                self._serve_static()
            else:
                self._start_simple_job(chars, lines, head.line_count)
            if not self.keep_alive:
                self.closing = True
            start = end
        return start

    cdef void _start_simple_job(self, const char* chars, FieldSpan* lines, Py_ssize_t count):
        """What on_headers_complete and on_message_complete do for a request without a body."""
        cdef Py_ssize_t i
        self.headers = [
            (_lowercase(chars, lines[i].name), span_bytes(chars, lines[i].value)) for i in range(count)
        ]
        self.declared_length = -1
        job = self.state.asgi_bridge.begin(self, self.method, self.url, self.headers)
        self._enqueue_job(job)
        job.body_complete()

    cdef void _serve_static(self):
        cdef bytes method = self.method
        cdef CacheEntry entry
        cdef int status
        cdef bytes raw = self.url
        cdef Py_ssize_t q
        if method != GET and method != HEAD:
            self._emit_simple(405, b"Method Not Allowed", ALLOW)
            return
        if raw is None or len(raw) == 0 or (<const char*>raw)[0] != b"/":
            raw = origin_form(raw or b"")
            if raw is None:
                self._emit_simple(400, b"Bad Request", b"")
                return
        cdef const char* start = raw
        cdef const char* mark = <const char*>memchr(start, b"?", len(raw))
        q = -1 if mark == NULL else mark - start
        cdef bytes raw_path = raw if q < 0 else raw[:q]
        path = percent_decode(raw_path)  # starts with "/", as raw does
        if path is None:
            self._emit_simple(400, b"Bad Request", b"")
            return
        entry = self.state.cache.lookup(path)
        if entry.variants is not None and self.accept_encoding is not None:
            entry = choose_representation(entry, self.accept_encoding)
        if entry.kind == ENTRY_FILE:
            status = evaluate_preconditions(
                method, self.if_match, self.if_unmodified_since, self.if_none_match,
                self.if_modified_since, entry.etag, entry.mtime,
            )
            if status == 304:
                self._emit_not_modified(entry)
            elif status == 412:
                self._emit_simple(412, b"Precondition Failed", b"")
            elif self.range_value is not None and method == GET:
                self._emit_range(entry)
            else:
                self._emit_file(entry, 200, entry.fields)
        elif entry.kind == ENTRY_REDIRECT:
            self._emit_redirect(raw_path, raw[q:] if q >= 0 else b"")
        elif entry.kind == ENTRY_MISSING and entry.file is not None:
            self._emit_file(entry, 404, entry.fields)   # a large 404.html
        else:
            self._emit_head_body(entry.status, entry.fields, entry.body)
        if self.state.access_logger is not None:
            self.state.access_logger(self.client, method, raw, self.response_status)

    cdef inline bytes _head(self, int status, bytes fields):
        cdef bytes connection = b""
        self.response_status = status
        if not self.keep_alive:
            connection = CONNECTION_CLOSE
        elif self.http10:
            connection = CONNECTION_KEEP_ALIVE
        return b"".join((
            _status_line(status), SERVER_DATE, current_http_date(), CRLF, fields, connection, CRLF
        ))

    cdef inline bint _plain_keep_alive(self):
        return self.keep_alive and not self.http10

    cdef void _emit_file(self, CacheEntry entry, int status, bytes fields):
        cdef bytes date
        if entry.body is not None:
            if status == 200 and self.method == GET and self._plain_keep_alive():
                date = current_http_date()
                _refresh_memo(entry, date)
                if entry.memo_ok is None:
                    entry.memo_ok = b"".join((
                        _status_line(200), SERVER_DATE, date, CRLF, fields, CRLF, entry.body
                    ))
                self.response_status = 200
                self._emit(entry.memo_ok)
            else:
                self._emit_head_body(status, fields, entry.body)
            return
        head = self._head(status, fields)
        if self.method == HEAD:
            self._emit(head)
        else:
            self._enqueue_job(FileSender(self, entry.file, entry.file.fd, [head, (0, entry.size)]))

    cdef void _emit_not_modified(self, CacheEntry entry):
        cdef bytes date
        if self._plain_keep_alive():
            date = current_http_date()
            _refresh_memo(entry, date)
            if entry.memo_not_modified is None:
                entry.memo_not_modified = b"".join((
                    _status_line(304), SERVER_DATE, date, CRLF, entry.validator_fields, CRLF
                ))
            self.response_status = 304
            self._emit(entry.memo_not_modified)
        else:
            self._emit(self._head(304, entry.validator_fields))

    cdef void _emit_range(self, CacheEntry entry):
        cdef int status
        cdef list parts
        cdef long long first, last
        status, ranges = evaluate_range(
            self.method, self.range_value, self.if_range, entry.etag, entry.mtime,
            entry.size, self.state.max_ranges,
        )
        if status == 200:
            self._emit_file(entry, 200, entry.fields)
            return
        if status == 416:
            self._emit_head_body(
                416, b"Content-Range: bytes */%d\r\nContent-Length: 0\r\n" % entry.size, b""
            )
            return
        if len(ranges) == 1:
            first, last = ranges[0]
            fields = b"Content-Type: %s\r\nContent-Length: %d\r\nContent-Range: bytes %d-%d/%d\r\n%sAccept-Ranges: bytes\r\n" % (
                entry.content_type, last - first + 1, first, last, entry.size, entry.validator_fields
            )
            if entry.body is not None:
                self._emit(self._head(206, fields) + entry.body[first:last + 1])
            else:
                self._enqueue_job(FileSender(
                    self, entry.file, entry.file.fd, [self._head(206, fields), (first, last - first + 1)]
                ))
            return
        boundary = os.urandom(12).hex().encode()
        heads, tail, length = byteranges_layout(ranges, entry.content_type, entry.size, boundary)
        fields = b"Content-Type: multipart/byteranges; boundary=%s\r\nContent-Length: %d\r\n%sAccept-Ranges: bytes\r\n" % (
            boundary, length, entry.validator_fields
        )
        if entry.body is not None:
            pieces = [self._head(206, fields)]
            for i in range(len(ranges)):
                first, last = ranges[i]
                pieces.append(heads[i])
                pieces.append(entry.body[first:last + 1])
            pieces.append(tail)
            self._emit(b"".join(pieces))
            return
        parts = [self._head(206, fields)]
        for i in range(len(ranges)):
            first, last = ranges[i]
            parts.append(heads[i])
            parts.append((first, last - first + 1))
        parts.append(tail)
        self._enqueue_job(FileSender(self, entry.file, entry.file.fd, parts))

    cdef void _emit_redirect(self, bytes raw_path, bytes query):
        # Collapse leading slashes so "//host/dir" can never become a protocol-relative URL.
        location = b"/" + raw_path.lstrip(b"/") + b"/" + query
        for c in b"\r\n\x00":
            if c in location:
                self._emit_simple(400, b"Bad Request", b"")
                return
        self._emit_head_body(307, b"Location: %s\r\nContent-Length: 0\r\n" % location, b"")

    cdef void _emit_simple(self, int status, bytes text, bytes extra):
        self._emit_head_body(
            status,
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%s" % (len(text), extra),
            text,
        )

    cdef void _emit_head_body(self, int status, bytes fields, bytes body):
        head = self._head(status, fields)
        if self.method == HEAD or not body:
            self._emit(head)
        else:
            self._emit(head + body)

    # -- ordered output -----------------------------------------------------------------

    cdef inline void _emit(self, bytes data):
        if self.current_job is None and not self.queue:
            self.out.append(data)
        else:
            self.queue.append(data)

    cdef void _enqueue_job(self, job):
        self.queue.append(job)
        self._update_reading()
        if self.current_job is None:
            self._flush()

    cdef void _flush(self):
        """Write what is ready; start the next job when the one before it is done."""
        cdef object transport = self.transport
        if transport is None:
            self.out.clear()
            return
        while self.current_job is None and self.queue:
            item = self.queue.popleft()
            if type(item) is bytes:
                self.out.append(item)
                continue
            self._write_out()
            self.current_job = item
            if type(item) is FileSender:
                (<FileSender>item).run()
            else:
                item.start()
            if self.transport is None:
                return
        self._write_out()
        if self.current_job is None and not self.queue:
            self.idle_since = self.state.now
            if self.pending_upgrade is not None:
                session, rest = self.pending_upgrade
                self.pending_upgrade = None
                self.upgraded = session
                if self.reading_paused:
                    self.reading_paused = False
                    self.transport.resume_reading()
                session.start(rest)
                return
            if self.closing:
                self.transport.close()
                self.transport = None
                return
        self._update_reading()

    cdef inline void _write_out(self):
        cdef list out = self.out
        cdef bytes data
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self._write(data)

    def write(self, bytes data) -> None:
        """Write response bytes for the current job (the ASGI bridge writes through here)."""
        if self.transport is not None:
            self._write(data)

    cdef void _write(self, bytes data):
        """Write ``data`` in order after what the transport holds.

        While the transport holds nothing, one ``send`` on the socket usually takes it all
        and skips the transport's bookkeeping; whatever the socket does not take (or any
        error) goes through the transport, which then owns ordering, flow control and errors.
        """
        cdef Py_ssize_t sent = -1
        cdef Py_ssize_t size = len(data)
        cdef const char* buf = data
        cdef int fd = self.sock_fd
        if self.transport_holds_data:  # ask the transport only after it was handed something
            self.transport_holds_data = self.transport.get_write_buffer_size() > 0
        if fd >= 0 and not self.writing_paused and not self.transport_holds_data:
            sent = send(fd, buf, size, MSG_NOSIGNAL | MSG_DONTWAIT)
        if sent == size:
            return
        self.transport_holds_data = True
        if sent <= 0:
            self.transport.write(data)
        else:
            self.transport.write(data[sent:])

    cdef bint watch_writable(self):
        """Sendfile found the socket full: pause until it has room, then resume.

        The pause and the resume are the transport's own (``pause_writing`` and
        ``resume_writing``, which runs the file sender again): reading stops and the send
        timeout runs meanwhile. uvloop lets nobody else watch a transport's descriptor, so
        the watch is on a duplicate of it. False when no descriptor is left for the
        duplicate: the sender then copies a chunk through the transport.
        """
        if self.watch_fd < 0:
            try:
                self.watch_fd = os.dup(self.sock_fd)
            except OSError:
                return False
        self.loop.add_writer(self.watch_fd, self._writable)
        self.watching = True
        self.pause_writing()
        return True

    def _writable(self):
        self._stop_watching()
        self.resume_writing()

    cdef void _stop_watching(self):
        if self.watching:
            self.watching = False
            self.loop.remove_writer(self.watch_fd)

    cdef void _close_watch(self):
        self._stop_watching()
        if self.watch_fd >= 0:
            os.close(self.watch_fd)
            self.watch_fd = -1

    def job_finished(self, bint close=False):
        """A job (file transfer or ASGI response) wrote its last byte; ``close`` ends the connection."""
        self.current_job = None
        if close:
            self.closing = True
            self.queue.clear()
        self._flush()

    def resume_job(self):
        if type(self.current_job) is FileSender and not self.writing_paused:
            (<FileSender>self.current_job).run()

    # -- errors, timeouts, shutdown ------------------------------------------------------

    cdef void _fail(self, int status, bytes extra=b""):
        """Answer a request we refuse to parse further, then close."""
        if self.closing:
            return
        self.closing = True
        self.keep_alive = False
        self.method = GET
        reason = reason_phrase(status)
        self._emit_simple(status, reason, extra)
        self._flush()

    def check_timeouts(self, double now):
        if self.transport is None or self.upgraded is not None:
            return  # a WebSocket session keeps its own time (pings)
        if self.writing_paused and now - self.writing_paused_since > self.state.send_timeout:
            self.abort()  # the client stopped reading what it asked for
            return
        if self.in_head:
            if now - self.head_started > self.state.header_timeout:
                self._fail(408)
        elif self.current_job is None and not self.queue and not self.out:
            if now - self.idle_since > self.state.keepalive_timeout:
                self.transport.close()
                self.transport = None

    def close_when_idle(self):
        """Close now if idle; otherwise after the responses already owed."""
        self.keep_alive = False
        if self.transport is None:
            return
        if self.upgraded is not None:
            self.upgraded.shutdown()  # a close frame: 1012 "service restart"
            return
        if self.in_head:
            return  # a request is arriving: answer it (with Connection: close), then close
        self.closing = True
        if self.current_job is None and not self.queue:
            self.transport.close()
            self.transport = None

    def abort(self):
        self._close_watch()  # the duplicate would keep the socket open after the transport's close
        if self.transport is not None:
            self.transport.abort()
            self.transport = None

    cdef void _update_reading(self):
        """Read only while the client is reading us, the queue is short and bodies are consumed."""
        cdef bint pause = (
            self.writing_paused or self.body_backpressure or len(self.queue) >= self.state.max_pipeline
        )
        if self.transport is None or pause == self.reading_paused:
            return
        self.reading_paused = pause
        if pause:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()


class _Abort(Exception):
    """Raised from a parser callback to stop parsing a request we already refused."""
