"""One HTTP request/response exchange between a connection and an ASGI app.

The per-request part of the ASGI bridge (``fastserve.server.asgi``): the scope, the body
handed to the app as it arrives, and the ``receive``/``send`` callables. It runs for every
request an app answers, so it is compiled; the rules are the same as in pure Python.
"""
import logging
import os
import sys
from stat import S_ISREG
from asyncio import CancelledError, Task, sleep
from contextvars import Context, copy_context

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memchr

from fastserve._speedups.charclass cimport equals_lowercase
from fastserve._speedups.clock cimport monotonic
from fastserve._speedups.headers cimport current_http_date, reason_phrase, serialize_headers
from fastserve._speedups.pathlookup cimport origin_form, percent_decode, raw_path_prefix
from fastserve._speedups.filecache cimport OpenFile, open_to_send
from fastserve._speedups.filesender cimport FileSender
from fastserve._speedups.forwarded cimport resolve_forwarded
from fastserve._speedups.job cimport Job
from fastserve._speedups.protocol cimport WRITE_HIGH_WATER, HttpProtocol, records_requests
from fastserve._speedups.requesthead cimport RequestHead
from fastserve._speedups.wire cimport connection_pair, continue_response

logger = logging.getLogger("fastserve")

# Python 3.12+ can start a task eagerly: its first step runs in the constructor, as that task.
cdef bint EAGER_TASKS = sys.version_info >= (3, 12)
# Every exchange's task has this name: asyncio would otherwise format a new "Task-N" for each.
cdef str TASK_NAME = "fastserve-http"
cdef frozenset NO_BODY_STATUSES = frozenset({204, 304})
# Body bytes buffered for an app before the connection stops reading from the client.
cdef Py_ssize_t BODY_HIGH_WATER = 256 * 1024
# Body pieces shorter than this are gathered into one buffer while they wait for the app: held
# one object each (~40 bytes apiece), a body chunked two bytes at a time held 20 times the
# bytes BODY_HIGH_WATER counts.
cdef Py_ssize_t SMALL_PIECE = 1024
# Offered to apps only with --pathsend: a middleware between the response and the server that
# rewrites bodies (GZipMiddleware) or knows nothing of these messages would otherwise answer
# differently than under uvicorn, which offers neither.
cdef dict FILE_EXTENSIONS = {"http.response.pathsend": {}, "http.response.zerocopysend": {}}


class ClientDisconnected(OSError):
    """``send`` after the client went away (ASGI 2.4: an ``OSError``, so apps stop sending).

    Raised by HTTP cycles here and by WebSocket sessions (``fastserve.server.websocket``).
    """


cpdef int final_status(object status, str message) except -1:
    """The status of the final response an app starts (``http.response.start``, or a WebSocket
    denial's ``websocket.http.response.start``, named by ``message``): an int from 200 to 599.

    Raises ``ValueError`` for any other, which the caller answers 500 for the app. A 1xx there
    is read by the client as an interim answer and what follows as the final head (RFC 9110
    section 15.2); a number outside 100..599 is no status code at all (section 15: a client may
    read it as its class's x00, or drop the connection). ``TypeError`` for what is no int.
    """
    if type(status) is not int and not isinstance(status, int):
        raise TypeError(f"'status' in {message} must be an int, not {type(status).__name__}")
    if not 200 <= status <= 599:
        raise ValueError(f"invalid status code {status!r} in {message} (RFC 9110 section 15: "
                         f"{'1xx is interim' if 100 <= status < 200 else 'a final status is 200 to 599'})")
    return status


cdef long long _file_slice(int fd, object start, object count) except -1:
    """The byte count of a ``http.response.zerocopysend`` slice of the open file ``fd``: from
    ``start`` (its offset, or the file's position), ``count`` bytes (``None``: to the end).

    Raises ``ValueError`` for a slice the file does not hold (a negative offset or count, or one
    that ends past the end of the file) or a file that is no regular file, and ``TypeError``
    for an offset or count that is no int: each was framed and then cut off where sendfile
    found no byte, the connection dropped with nothing logged. Raised before the head is
    framed, an app that sends the slice first is answered 500.
    """
    st = os.fstat(fd)
    if not S_ISREG(st.st_mode):
        raise ValueError("http.response.zerocopysend: the file is not a regular file")
    if type(start) is not int and not isinstance(start, int):
        raise TypeError(f"'offset' in http.response.zerocopysend must be an int, not {type(start).__name__}")
    if count is None:
        count = st.st_size - start
    elif type(count) is not int and not isinstance(count, int):
        raise TypeError(f"'count' in http.response.zerocopysend must be an int, not {type(count).__name__}")
    if start < 0 or count < 0 or start + count > st.st_size:
        raise ValueError(f"http.response.zerocopysend: {count} bytes from offset {start} of a file of "
                         f"{st.st_size} bytes")
    return count


cdef class _Done:
    """A coroutine that is already complete: ``send`` returns it when its work is done, so an
    app's ``await send(...)`` costs no coroutine of its own (``asyncio.create_task`` takes it too)."""

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        raise StopIteration

    def send(self, value):
        raise StopIteration

    def throw(self, typ, val=None, tb=None):
        if val is None:
            raise typ
        raise val

    def close(self):
        pass


cdef _Done DONE = _Done()


cdef object _dropped(bint more):
    """What ``send`` returns for a message that wrote nothing and is not the response's last:
    a turn of the loop. An app streaming a body the server drops (the answer to a HEAD request,
    one refused on its behalf) was otherwise never suspended: ``await send(...)`` completed at
    once, the loop never ran, and an app streaming without end held the worker for good
    (every connection, the client's going away too, waited on it)."""
    return sleep(0) if more else DONE


cdef inline bint _named(object name, const char* lowered):
    """Whether the header name ``name`` (bytes, any case) is ``lowered`` (lowercase, NUL-terminated)."""
    return type(name) is bytes and equals_lowercase(
        <const unsigned char*>PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), lowered)


cdef inline bint _is_space(unsigned char c):
    """ASCII whitespace as ``bytes.strip`` sees it."""
    return c == 32 or (9 <= c <= 13)


cdef long long _declared_length(object value) except -2:
    """An app's Content-Length value (bytes, surrounding whitespace allowed) as a number; -1
    when it is not one. Up to 18 digits are read in C; anything else as Python reads it."""
    cdef const unsigned char* p
    cdef Py_ssize_t start = 0, end, i
    cdef long long length = 0
    if type(value) is bytes:
        p = <const unsigned char*>PyBytes_AS_STRING(value)
        end = PyBytes_GET_SIZE(value)
        while start < end and _is_space(p[start]):
            start += 1
        while end > start and _is_space(p[end - 1]):
            end -= 1
        if 0 < end - start <= 18:
            for i in range(start, end):
                if not 48 <= p[i] <= 57:
                    return -1
                length = length * 10 + (p[i] - 48)
            return length
    value = bytes(value).strip()
    return int(value) if value.isdigit() else -1


cdef class ServerFields:
    """The server's own fields (``Server``, ``Date``, ``--header``) for HTTP cycles' responses.

    ``ServerFields(rule)``: ``rule`` is the bridge's ``fastserve.server.response_headers.ServerHeaders``,
    which decides. For an app that sets none of those names, its answer is kept until ``Date``
    changes, so most responses neither lowercase the app's names nor call into Python for them.
    """

    cdef readonly object rule
    cdef frozenset extra_names
    cdef bint drops_on_304
    cdef readonly bint merges_vary  # the operator gave a Vary: an app's Vary takes its members (rule.merged)
    cdef bytes kept_date
    cdef list kept

    def __init__(self, rule):
        self.rule = rule
        self.extra_names = frozenset(rule.extra_names)
        self.drops_on_304 = len(rule.not_on_304) > 0
        self.merges_vary = rule.vary is not None

    cdef bint overridden_by(self, object name):
        """Whether an app field called ``name`` replaces one of the server's (RFC 9110 §5.1: any case)."""
        if _named(name, "server") or _named(name, "date"):
            return True
        return len(self.extra_names) > 0 and type(name) is bytes and (<bytes>name).lower() in self.extra_names

    cdef list for_app_fields(self, list app_fields, bint overridden, int status):
        """The fields to put before ``app_fields`` (``overridden``: some name in it is one of
        ours) in a ``status`` response."""
        cdef bytes date = current_http_date()
        if overridden or (status == 304 and self.drops_on_304):
            return self.rule.for_response([pair[0].lower() for pair in app_fields], date, status)
        if date is not self.kept_date:
            self.kept = self.rule.for_response((), date)
            self.kept_date = date
        return self.kept


# Every scope starts as a copy of one of these (a dict copy is one allocation; the keys the
# request decides are then replaced in place), in the order the scope has always had.
cdef dict HTTP_SCOPE = {
    "type": "http", "asgi": None, "http_version": "1.1", "server": None, "client": None, "scheme": "http",
    "root_path": "", "path": None, "raw_path": b"", "query_string": b"", "headers": None, "state": None,
}
cdef dict WEBSOCKET_SCOPE = dict(HTTP_SCOPE, type="websocket", scheme="ws")
cdef str _root_path_seen = None  # the --root-path last spelled as bytes, and its spelling
cdef bytes _root_path_bytes = b""


cdef inline bytes _raw_root_path(str root_path):
    """``root_path`` as a ``raw_path`` prefix: percent-encoded where it is not ASCII."""
    global _root_path_seen, _root_path_bytes
    if root_path is not _root_path_seen:
        _root_path_bytes = raw_path_prefix(root_path)
        _root_path_seen = root_path
    return _root_path_bytes


# 2.3, as uvicorn reports it: under 2.4 Starlette's StreamingResponse and FileResponse stop
# watching receive() for the client leaving, so a stream waiting on its next event (server-sent
# events) would run on after a disconnect until it next sends. (send() still raises
# ClientDisconnected after one, which 2.3 allows.)
cdef dict ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}


cpdef dict build_scope(str kind, object conn, bytes raw_url, list headers, str root_path, dict state, object proxy,
                       str method=None, bint http10=False, bint file_extensions=False):
    """The scope keys HTTP and WebSocket requests share; ``path`` is None if undecodable.
    ``OPTIONS *`` has the path ``*``, as under uvicorn.

    With ``method``, an HTTP request's whole scope (``method``, ``http_version`` from ``http10``,
    ``extensions``: ``http.response.pathsend`` and ``http.response.zerocopysend`` when
    ``file_extensions``, else none, as uvicorn offers).
    """
    target = origin_form(raw_url)
    cdef bytes raw_path = b""
    cdef bytes query = b""
    cdef const char* chars
    cdef const char* mark
    path = None
    if target is not None:
        chars = <bytes>target
        mark = <const char*>memchr(chars, b"?", len(<bytes>target))
        if mark == NULL:
            raw_path = <bytes>target
        else:
            raw_path = chars[:mark - chars]
            query = chars[mark - chars + 1:len(<bytes>target)]
        path = percent_decode(raw_path)
    elif method == "OPTIONS" and raw_url == b"*":  # asterisk-form (RFC 9112 §3.2.4): the server as a whole
        raw_path = raw_url
        path = "*"
    cdef HttpProtocol protocol
    cdef bint tls
    if type(conn) is HttpProtocol:  # the server's own connection: its fields, without attribute lookups
        protocol = <HttpProtocol>conn
        protocol._read_addresses()
        client, server, tls = protocol._client, protocol._server, protocol.tls
    else:
        client, server, tls = conn.client, conn.server, conn.tls
    cdef bint http = kind == "http"
    scheme = ("https" if tls else "http") if http else ("wss" if tls else "ws")
    if proxy is not None:
        client, scheme = resolve_forwarded(proxy, client, headers, scheme)
    cdef dict scope = (HTTP_SCOPE if http else WEBSOCKET_SCOPE).copy()
    scope["asgi"] = ASGI_VERSION.copy()
    if http10:
        scope["http_version"] = "1.0"
    scope["server"] = server
    scope["client"] = client
    scope["scheme"] = scheme
    if root_path:
        scope["root_path"] = root_path
    if path is not None:
        scope["path"] = root_path + path if root_path else path
    if root_path and raw_path != b"*":  # raw_path spells path, prefix included, as uvicorn's does
        raw_path = _raw_root_path(root_path) + raw_path
    scope["raw_path"] = raw_path
    scope["query_string"] = query
    scope["headers"] = headers
    scope["state"] = state.copy()
    if method is not None:
        scope["method"] = method
        scope["extensions"] = FILE_EXTENSIONS.copy() if file_extensions else {}
    return scope


cdef class Exchanges:
    """What every HTTP exchange of one worker's ASGI bridge shares, in C fields; ``begin`` makes
    the exchange for a request (the connection calls it for every request an app answers).

    ``Exchanges(loop, app, max_body_size, root_path, state, proxy, server_fields)``: ``state`` is
    the lifespan state (each scope gets a copy), ``proxy`` a ``ProxyTrust`` or None.
    """

    cdef readonly object loop
    cdef readonly object app
    cdef readonly Py_ssize_t max_body_size
    cdef readonly str root_path
    cdef readonly dict state
    cdef readonly object proxy
    cdef readonly ServerFields server_fields
    cdef public bytes admin_prefix   # requests below it go to admin_app instead (None: no admin paths)
    cdef public object admin_app
    cdef public bint reset_contextvars  # each exchange's task starts from an empty context
    cdef public bint file_extensions  # scopes offer http.response.pathsend and zerocopysend (--pathsend)

    def __init__(self, loop, app, Py_ssize_t max_body_size, str root_path, dict state, proxy,
                 ServerFields server_fields):
        self.loop = loop
        self.app = app
        self.max_body_size = max_body_size
        self.root_path = root_path
        self.state = state
        self.proxy = proxy
        self.server_fields = server_fields

    def begin(self, conn, bytes method, bytes raw_url, list headers) -> HttpCycle:
        """The exchange for the request whose head ``conn`` (an ``HttpProtocol``) just read."""
        cdef bytes prefix = self.admin_prefix
        if prefix is not None and raw_url.startswith(prefix):
            return HttpCycle(self, conn, method, raw_url, headers, self.admin_app)
        return HttpCycle(self, conn, method, raw_url, headers)


cdef class HttpCycle(Job):
    """One request/response exchange between a connection and the app (a queued ``Job``)."""

    cdef Exchanges shared
    cdef HttpProtocol conn
    cdef object loop
    cdef object app
    cdef readonly dict scope      # None until the exchange runs
    cdef list headers             # the request's fields (names lowercased), as the scope gets them
    cdef readonly bint too_large
    cdef bint head_request
    cdef bint keep_alive
    cdef bint http10
    cdef bytes protocol  # the HTTP-version the request line named, for the access log (b"HTTP/1.2")
    cdef bint bad_request
    cdef bint more_body
    cdef bint expect_continue
    cdef bint disconnected
    cdef bint refused
    cdef bint started
    cdef bint complete
    cdef bint chunked
    cdef int status
    cdef int failed_status        # the request body broke off: the status the client gets
    cdef long long declared       # the response's Content-Length, -1 when it has none
    cdef long long body_sent      # body bytes sent against it
    cdef bint overran             # the app sent more than it declared (logged once)
    cdef Py_ssize_t body_size
    cdef Py_ssize_t buffered
    cdef Py_ssize_t max_body_size
    cdef list body           # body pieces the app has not received yet, None when there are none:
                             # bytes, the last one a bytearray while small ones are gathered (_hold)
    cdef bytes pending_head
    cdef object waiter
    cdef object drain
    cdef FileSender sender
    cdef object sending
    cdef object task
    cdef object context
    cdef bytes method
    cdef bytes raw_url
    cdef long long sent      # response bytes written, for metrics and the access log
    cdef bint counted        # sent is recorded (--access-log, --metrics): count what the socket took
    cdef double head_read_at
    cdef bint released       # the connection has gone on to its next request (_release)

    def __init__(self, Exchanges shared, conn, bytes method, bytes raw_url, list headers, object app=None):
        """``app``: the ASGI app that answers (default: the bridge's)."""
        self.shared = shared
        self.conn = conn
        self.loop = shared.loop
        self.app = shared.app if app is None else app
        self.method = method
        self.raw_url = raw_url
        self.head_read_at = monotonic()  # the clock the connection measures durations with
        self.counted = records_requests(conn.state)
        # The context the app runs in: the connection's as the request arrived (an empty one
        # with --reset-contextvars). A pipelined request starts from the one before it, whose
        # context must not leak into it.
        self.context = Context() if shared.reset_contextvars else copy_context()
        self.head_request = method == b"HEAD"
        cdef RequestHead head = self.conn.head  # the request being begun
        if head is None:  # (the connection begins exchanges only while it holds a head)
            raise RuntimeError("no request is being read on this connection")
        self.keep_alive = head.keep_alive
        self.http10 = head.http10
        self.protocol = head.protocol
        self.max_body_size = shared.max_body_size
        self.headers = headers
        for name, value in headers:
            # No 100 to an HTTP/1.0 client: it cannot know one, and the expectation is ignored
            # (RFC 9110 sections 10.1.1 and 15.2), as the static path does.
            if name == b"expect" and value.lower() == b"100-continue" and not self.http10:
                self.expect_continue = True
        self.more_body = True
        self.too_large = head.declared_length > self.max_body_size  # parsed once, by the connection

    # -- called by the connection ------------------------------------------------------

    def receive_body(self, bytes chunk):
        self.body_size += len(chunk)
        if self.complete or self.too_large:
            return  # nobody will read it: drop it
        if self.body_size > self.max_body_size:
            # Stop reading and answer 413 ourselves if the app has not answered yet; the app
            # sees a disconnect, whatever it sends next is dropped, and the connection closes.
            # A cycle still queued behind earlier responses answers when its turn comes (run()).
            self.too_large = True
            self.keep_alive = False
            self.body = None
            self.conn.set_body_backpressure(True)
            if self.task is not None and not self.started:
                self._refuse(413)
        else:
            self._hold(chunk)
            self.buffered += len(chunk)
            if self.buffered > BODY_HIGH_WATER:
                self.conn.set_body_backpressure(True)
        self._wake()

    cdef void _hold(self, bytes chunk):
        """Keep ``chunk`` for the app: as it is, or gathered with the small pieces before it
        into a bytearray (``body``'s last piece, the only one that is not bytes), so what
        waits costs about the bytes counted toward BODY_HIGH_WATER, however finely the client
        cut its chunked body."""
        if self.body is None:
            self.body = [chunk]
            return
        cdef Py_ssize_t last = len(self.body) - 1  # (no negative indexes here)
        gathered = self.body[last]
        if PyBytes_GET_SIZE(chunk) >= SMALL_PIECE:
            self.body.append(chunk)
        elif type(gathered) is bytearray:
            gathered += chunk
        elif PyBytes_GET_SIZE(gathered) < SMALL_PIECE:
            gathered = bytearray(gathered)
            gathered += chunk
            self.body[last] = gathered
        else:
            self.body.append(chunk)

    def body_complete(self):
        self.more_body = False
        self._wake()

    def body_failed(self, int status):
        """The request body broke off after the head (a framing error, a half-close: 400; a
        stall: 408). The app sees ``http.disconnect``; the client gets ``status`` unless the
        response had begun; the connection closes after this exchange."""
        self.failed_status = status
        self.more_body = False
        self.keep_alive = False
        self.body = None
        if self.buffered > BODY_HIGH_WATER:
            self.conn.set_body_backpressure(False)
        self.buffered = 0
        if self.task is not None and not self.started:
            self._refuse(status)  # the app is running: answer now, drop what it sends
        self._wake()

    cdef void _refuse(self, int status):
        """Answer ``status`` on the app's behalf; whatever the app sends afterwards is dropped.
        The answer is complete: the connection closes on the next loop turn, as after an app's
        own last piece, without waiting for the app (whose sends fail once the client is gone)."""
        self.started = self.refused = True
        self.keep_alive = False
        text = reason_phrase(status)
        self._write(self._build_head(status, [
            (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(text))
        ]) + (b"" if self.head_request else text))  # a HEAD's answer has no content (RFC 9110 section 9.3.2)
        self.complete = True
        self._release_soon()

    cpdef start(self):
        if self.loop.get_task_factory() is None:
            if EAGER_TASKS and not self.more_body:
                # The app runs now, inside the task, up to its first wait: an app that never
                # waits is answered before the connection reads on, holding nothing for later.
                # Only for a request read whole: one whose body is still arriving may yet
                # turn out unreadable, and then the app is never called.
                self.task = Task(self.run(), loop=self.loop, name=TASK_NAME, context=self.context, eager_start=True)
            else:  # what create_task makes, named
                self.task = Task(self.run(), loop=self.loop, name=TASK_NAME, context=self.context)
        else:
            self.task = self.loop.create_task(self.run(), name=TASK_NAME, context=self.context)

    cpdef resume_writing(self):
        if self.sender is not None:
            self.sender.resume()
        elif self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    cpdef peer_finished_sending(self):
        self._wake()  # an app waiting in receive() hears http.disconnect

    cpdef bint stop_keeping_alive(self):
        if self.started:
            return False  # the head (keep-alive) is made already
        self.keep_alive = False
        return True

    cpdef connection_lost(self):
        if self.task is None and not self.disconnected:
            self.disconnected = True
            self._account()  # its turn never came: recorded as unanswered (no byte sent)
        self.disconnected = True
        self.sender = None
        self._wake()
        for future in (self.drain, self.sending):
            if future is not None and not future.done():
                future.set_result(None)

    cdef void _wake(self):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # -- the app's side ----------------------------------------------------------------

    async def run(self):
        cdef Exchanges shared = self.shared
        try:
            # Made when the app's turn comes, not when the head is read: the exchanges of one read
            # batch then do not all hold a scope at once (see bench/README.md).
            self.scope = build_scope("http", self.conn, self.raw_url, self.headers, shared.root_path, shared.state,
                                     shared.proxy, self.method.decode("ascii"), self.http10, shared.file_extensions)
            self.bad_request = self.scope["path"] is None
            if self.bad_request:
                await self._send_plain(400)
            elif self.too_large:
                await self._send_plain(413)
            elif self.failed_status:
                await self._send_plain(self.failed_status)
            else:
                await self.app(self.scope, self.receive, self.send)
                if not self.started and not self.disconnected:
                    logger.error("ASGI callable returned without starting response.")
                    await self._send_plain(500)
                elif not self.complete and not self.disconnected:
                    logger.error("ASGI callable returned without completing response.")
                    if self._nothing_sent():
                        await self._send_plain(500, replacing=True)
                    else:
                        self._cut_short()
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if not (self.disconnected and isinstance(exc, (CancelledError, ClientDisconnected))):
                # With its client gone, a send refused (ASGI's OSError) is the client's doing, and
                # a cancellation the stopping worker's, which says so: neither is an app error.
                logger.error("Exception in ASGI application", exc_info=exc)
            if not self.disconnected and (not self.started or self._nothing_sent()):
                await self._send_plain(500, replacing=True)
            elif not self.complete:
                self._cut_short()
        finally:
            self._release()

    cdef void _cut_short(self):
        """The app's response broke off before its end (it raised, or returned without its
        last body message): the connection cannot go on, and the client must not take the
        bytes so far for the whole body. A body framed by ``Content-Length`` or chunked says so
        itself when the connection closes before its end (RFC 9112 section 8: the length not
        reached, no last chunk), so the connection closes after writing what the app sent, with
        a FIN, as uvicorn and nginx end it: the client keeps every byte already on its way (a
        stream's last events, a download's part to resume from) and its HTTP library reports
        the message incomplete. Only a body the close delimits (HTTP/1.0 without a length) ends
        in a reset, which a client cannot take for its end; a reset also discards what the
        kernel has not sent yet."""
        if self._sends_body() and not self.chunked and self.declared < 0:
            self.conn.reset()
        else:
            self.keep_alive = False  # _release closes the connection once the rest is written

    cdef void _release(self):
        """Hand the connection back: this exchange is recorded (access log, metrics) and the
        connection goes on to its next request, or closes. Once, when the app returns or, as
        under uvicorn, on the loop turn after its response is complete (``_release_soon``): an
        app still running then (Starlette's background tasks) holds neither the next request
        nor, for a last response, the close."""
        if self.released:
            return
        self.released = True
        if self._body_held_back():
            self.keep_alive = False
        if self.buffered > BODY_HIGH_WATER:
            # A body the app never read held reading paused: drop it, and read on (the
            # rest of it is dropped as it comes, then the next request is read).
            self.conn.set_body_backpressure(False)
        self.body = None
        self.buffered = 0
        self._account()
        self.conn.job_finished(not self.keep_alive)

    cdef void _release_soon(self):
        """The response is complete (the app's last piece, or a refusal on its behalf): release
        the connection now when nothing waits behind this exchange and the connection goes on
        (the usual kept-alive request: releasing then starts nothing), else on the next loop
        turn, not inside the app's send, so the next request's app never starts nested in this
        one's call and a close never happens under it."""
        if self.released:
            return
        if self.keep_alive and self.conn.queue is None and self.conn.pending_upgrade is None:
            self._release()
        else:
            self.loop.call_soon(self._release_after_response)

    def _release_after_response(self):
        """``loop.call_soon`` target: an app that returns in the same turn as its last send
        has released the connection already, and this does nothing."""
        self._release()

    cdef inline bint _body_held_back(self):
        """Whether the client may still be holding back a body nobody asked for (it expects
        a 100, or the body is over the limit): the connection cannot carry another request."""
        return self.more_body and (self.expect_continue or self.too_large)

    cdef bint _nothing_sent(self):
        """Whether the app began its response but no byte of it left: the head waits for the
        first body piece, so an app failing in between (a file gone before it was opened) can
        still be answered."""
        return self.pending_head is not None and self.sent == 0

    async def _send_plain(self, int status, bint replacing=False):
        """A text/plain answer the server gives on the app's behalf: the reason phrase as its body
        (``replacing``: instead of a response the app began and never sent a byte of)."""
        cdef bytes text = reason_phrase(status)
        if replacing:
            self.started = False
            self.pending_head = None
        self.keep_alive = self.keep_alive and status < 500 and status != 413
        await self.send({
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(text))],
        })
        await self.send({"type": "http.response.body", "body": text})

    async def receive(self):
        if self.expect_continue and self.more_body and not self.started and not self.disconnected:
            self.expect_continue = False  # the app wants the body: tell the client to send it
            self._write(continue_response())
        while not self.body and self.more_body and not self.disconnected and not self.too_large:
            self.waiter = self.loop.create_future()
            await self.waiter
        if self.disconnected or self.too_large or self.failed_status or (self.complete and not self.body):
            return {"type": "http.disconnect"}
        if self.body:
            chunk = self.body[0] if len(self.body) == 1 and type(self.body[0]) is bytes else b"".join(self.body)
            self.body = None
            if self.buffered > BODY_HIGH_WATER:
                self.conn.set_body_backpressure(False)
            self.buffered = 0
            if not self.more_body:
                self.body_size = -1  # this was the final message: the next receive waits
            return {"type": "http.request", "body": chunk, "more_body": self.more_body}
        if not self.more_body and self.body_size >= 0:
            self.body_size = -1  # the final empty message is sent once
            return {"type": "http.request", "body": b"", "more_body": False}
        # Body done and delivered: wait until the response completes or the client leaves. A
        # client that sent its FIN has left as far as the app can know (as under uvicorn, and
        # nginx before a proxied app): an app polling is_disconnected() stops its work. Its
        # response is still written, for a client that only half-closed and reads on.
        while not self.disconnected and not self.complete and not self.conn.peer_finished:
            self.waiter = self.loop.create_future()
            await self.waiter
        return {"type": "http.disconnect"}

    def send(self, dict message):
        """ASGI ``send``: what can be done at once is done in the call, and the awaitable
        returned is already complete; it waits only while the client is not reading, or for a file."""
        cdef bint more
        kind = message["type"]
        if self.disconnected:
            raise ClientDisconnected("the client closed the connection")
        if self.refused:
            # Already answered (413) on the app's behalf: what the app sends is dropped.
            return _dropped(message.get("more_body", False))
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            # Started only once the head is built: an app whose fields are refused (not bytes,
            # a bad name, CR/LF in a value) has sent nothing yet, so it is answered 500.
            self.pending_head = self._build_head(final_status(message["status"], "http.response.start"),
                                                 list(message.get("headers", ())))
            self.started = True
            return DONE
        if not self.started:
            raise RuntimeError(f"{kind} sent before http.response.start")
        if self.complete:
            raise RuntimeError(f"{kind} sent after the response completed")
        if kind == "http.response.body":
            more = message.get("more_body", False)
            body = message.get("body", b"")
            if type(body) is not bytes:
                if not isinstance(body, (bytearray, memoryview)):
                    # Refused before the head held back is framed with it: a first piece that
                    # is no bytes (a str) still leaves the head unsent, so the app gets its 500.
                    raise TypeError(f"'body' in http.response.body must be bytes, not {type(body).__name__}")
                # A buffer is taken as its bytes, copied now: the framing, the writes and a
                # FileSender holding a large piece handle bytes alone (a bytearray piece failed
                # at the write or left the response hanging), and the app may refill its buffer
                # once send() returns. len() of a memoryview counts items, not bytes.
                body = bytes(body)
            if not self._sends_body():
                body = b""
            elif self.declared >= 0:
                body = body[:self._within_declared(len(body))]
            head, tail = self._framing(len(body), more)
            if len(body) > WRITE_HIGH_WATER:  # the socket, then a FileSender: no copy held (protocol.pxd)
                return self._send_pieces([head, body, tail], more)
            data = head + body + tail if tail else (head + body if head else body)
            if data:
                if self.counted:
                    return self._send_counted(data, more)
                self._write(data)
            elif more:
                # Nothing written (a HEAD answer's body, a 204's, an empty piece): no client
                # backpressure will ever make the app wait, so give the loop a turn; and no
                # write will ever fail, so a client that has sent its FIN has left for good.
                if self.conn.peer_finished:
                    self.disconnected = True  # (the app's stopping there is no app error)
                    raise ClientDisconnected("the client closed the connection")
                return _dropped(True)
            if self._piece_sent(more):
                return self._wait_drain()
            return DONE
        if kind == "http.response.pathsend" or kind == "http.response.zerocopysend":
            return self._send_extension(message)
        raise RuntimeError(f"unexpected ASGI message type {kind!r}")

    async def _send_extension(self, dict message):
        kind = message["type"]
        cdef OpenFile opened
        if kind == "http.response.pathsend":
            # On the event loop: opened without waiting on a FIFO, and only a regular file is
            # sent (a FIFO or device put in the place of the file the app checked fails here,
            # before any byte left: a 500).
            opened = open_to_send(os.fsdecode(message["path"]))
            await self._send_file(opened, 0, opened.size, more=False)
        else:
            file = message["file"]
            fd = file.fileno()
            offset = message.get("offset")
            start = os.lseek(fd, 0, os.SEEK_CUR) if offset is None else offset
            count = message.get("count")
            count = _file_slice(fd, start, count)
            await self._send_file(file, start, count, more=message.get("more_body", False))
            if offset is None:  # the extension moves the file position when it was used
                os.lseek(fd, start + count, os.SEEK_SET)

    cdef inline bint _sends_body(self):
        return not self.head_request and self.status not in NO_BODY_STATUSES

    cdef tuple _framing(self, Py_ssize_t length, bint more):
        """Bytes before and after a body piece of ``length``: the head once, chunk framing."""
        cdef bytes head = self.pending_head or b""
        cdef bytes tail
        self.pending_head = None
        tail = b""
        if self._sends_body() and self.chunked:
            if length:
                head += b"%x\r\n" % length
                tail = b"\r\n"
            if not more:
                tail += b"0\r\n\r\n"
        return head, tail

    cdef long long _within_declared(self, long long length):
        """How much of ``length`` more body bytes fit in the declared Content-Length; an app
        that sends more is cut there, logged, and its connection closed afterwards."""
        cdef long long room = self.declared - self.body_sent
        if length > room:
            if not self.overran:
                self.overran = True
                logger.error(
                    "ASGI app sent more body than its content-length (%d): cut at the declared length",
                    self.declared,
                )
            self.keep_alive = False
            length = room
        self.body_sent += length
        return length

    cdef bint _piece_sent(self, bint more):
        """After a body piece: the last one completes the response (checked against the declared
        length). Returns whether the app must wait for the client to read before it goes on."""
        if more:
            return self.conn.writing_paused
        if self.declared >= 0 and self.body_sent < self.declared and self._sends_body():
            # The client would wait for bytes that never come, or read the next response as them.
            logger.error(
                "ASGI app sent %d body bytes for a content-length of %d: closing the connection",
                self.body_sent, self.declared,
            )
            self.keep_alive = False
        self.complete = True
        self._wake()
        self._release_soon()
        return False

    cdef object _send_counted(self, bytes data, bint more):
        """Send a small piece when what the socket takes is recorded (``--access-log``,
        ``--metrics``): what it does not take at once goes out through a FileSender, which
        counts what leaves before the client goes away (nginx's ``$bytes_sent``); the app waits
        for it as it would for the transport to drain. Under TLS the transport stands for the
        socket. (A piece over ``WRITE_HIGH_WATER`` always goes through a FileSender.)"""
        cdef Py_ssize_t taken = self.conn.send_now(data)
        if taken < 0:
            self._write(data)
        else:
            self.sent += taken
            if taken < len(data) and self.conn.transport is not None:
                return self._send_pieces([data[taken:]], more)
        if self._piece_sent(more):
            return self._wait_drain()
        return DONE

    async def _send_pieces(self, list pieces, bint more):
        """Send ``pieces`` (bytes) through a FileSender: on the socket itself while it takes
        them, no copy made, and under TLS a chunk at a time."""
        await self._send_by_sender(None, -1, pieces)
        if not self.disconnected and self._piece_sent(more):
            await self._wait_drain()

    async def _send_by_sender(self, owner, int fd, list segments):
        """Send ``segments`` (bytes, or slices of the file ``fd``) through a FileSender, counting
        what the socket took."""
        done = self.sending = self.loop.create_future()
        sender = self.sender = FileSender(self.conn, owner, fd, segments, lambda: done.done() or done.set_result(None))
        try:
            sender.resume()
            if not done.done():
                await done  # set by the sender, or by connection_lost
        finally:
            self.sent += sender.sent  # what the socket took: less than framed when the client went away
        self.sender = None

    async def _wait_drain(self):
        self.drain = self.loop.create_future()
        await self.drain

    async def _send_file(self, file, long long offset, long long count, bint more):
        """Send ``count`` bytes of ``file`` from ``offset`` with ``os.sendfile``, framed."""
        if not self._sends_body():
            count = 0
        elif self.declared >= 0:
            count = self._within_declared(count)
        head, tail = self._framing(count, more)
        await self._send_by_sender(file, file.fileno(), [head, (offset, count), tail])
        if not self.disconnected and self._piece_sent(more):
            await self._wait_drain()

    cdef void _write(self, bytes data):
        self.sent += len(data)
        self.conn.write(data)

    cdef void _account(self):
        """Tell the connection this exchange is over: its status, bytes and the time it took."""
        cdef bytes agent = None
        cdef bytes referer = None
        if self.conn.state.log_agents:
            for name, value in self.headers:
                if name == b"user-agent":
                    agent = value
                elif name == b"referer":
                    referer = value
        self.conn.account(self.method, self.raw_url, self.protocol, self.status, self.sent, self.head_read_at, agent, referer,
                          None if self.scope is None else self.scope["client"])

    cdef bytes _build_head(self, int status, list headers):
        cdef bint has_length = False
        cdef bint overridden = False
        cdef bint no_body = status in NO_BODY_STATUSES
        cdef ServerFields server_fields = self.shared.server_fields
        cdef list kept = []
        self.status = status
        self.declared = -1
        self.chunked = False
        for pair in headers:
            name = pair[0]
            if _named(name, "content-length"):
                if no_body:
                    continue  # a 204/304 has no body, so no length of one on the wire
                length = _declared_length(pair[1])
                if length < 0 or (has_length and length != self.declared):
                    raise ValueError(f"invalid content-length {pair[1]!r} (RFC 9110 §8.6)")
                if has_length:
                    continue  # the same length twice: sent once
                has_length = True
                self.declared = length
            elif _named(name, "transfer-encoding"):
                continue  # the server frames the body itself (Content-Length or chunked)
            elif _named(name, "connection") and type(pair[1]) is bytes:
                # The server says whether the connection stays open (the field below), and it
                # does as the app asks: "close" ends the connection after this response
                # (RFC 9112 §9.6), as under uvicorn.
                if b"close" in [token.strip() for token in (<bytes>pair[1]).lower().split(b",")]:
                    self.keep_alive = False
                continue
            elif not overridden:
                overridden = server_fields.overridden_by(name)
            kept.append(pair)
        if overridden and server_fields.merges_vary:
            kept = server_fields.rule.merged(kept)
        cdef list fields = server_fields.for_app_fields(kept, overridden, status) + kept
        if not has_length and not no_body:
            if self.http10:
                self.keep_alive = False  # the end of the body is the end of the connection
            else:
                self.chunked = True
                fields.append((b"transfer-encoding", b"chunked"))
        if self._body_held_back():
            # Answered before its body was asked for: this answer ends the connection, and
            # says so (RFC 9110 section 10.1.1).
            self.keep_alive = False
        connection = connection_pair(self.keep_alive, self.http10)
        if connection is not None:
            fields.append(connection)
        return serialize_headers(status, fields)
