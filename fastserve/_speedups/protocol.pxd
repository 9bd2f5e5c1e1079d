# The HTTP/1.1 connection: reading requests (scanner or httptools), the order answers go out
# in, flow control and timeouts. Static answers come from staticanswer, file bodies go out
# through filesender, ASGI exchanges are asgi_cycle's; all three are Jobs when queued.
from fastserve._speedups.counters cimport Counters
from fastserve._speedups.filecache cimport FileCache, OpenFile
from fastserve._speedups.filesender cimport WritableWatch
from fastserve._speedups.readhub cimport HubMember, ReadHub
from fastserve._speedups.requesthead cimport FieldSpan, RequestHead
from fastserve._speedups.staticanswer cimport WireAnswer

# The transport pauses our writing past this many buffered bytes (and resumes when it is empty).
# An answer from memory or an app's body piece larger than this goes to the socket itself, and
# what it does not take (under TLS, all of it) through a FileSender, a chunk at a time: a client
# that does not read holds one buffer of it in the transport, not a copy of the whole.
cdef enum:
    WRITE_HIGH_WATER = 64 * 1024

# The status the access log and the metrics record for a request whose connection ended before
# any byte of its answer left (the client went away while an app was working on it, while the
# request waited behind others or for its body, or before a WebSocket handshake was answered):
# nginx's 499, "client closed request", with 0 bytes.
cdef enum:
    CLIENT_CLOSED_REQUEST = 499


cdef class ServerState:
    cdef public object app
    cdef public FileCache cache
    cdef public bint static_only
    cdef public object asgi_bridge
    cdef public Py_ssize_t max_header_bytes
    cdef public Py_ssize_t max_header_count
    cdef public Py_ssize_t max_url_length
    cdef public Py_ssize_t max_body_size
    cdef public Py_ssize_t max_pipeline
    cdef public Py_ssize_t max_response_buffer
    cdef public Py_ssize_t max_connections
    cdef public double header_timeout
    cdef public double body_timeout
    cdef public double keepalive_timeout
    cdef public double send_timeout
    cdef public int max_ranges
    cdef public object access_logger
    cdef public dict connections           # the open ones, as keys (a dict: about a third of a set's table)
    cdef public double now
    cdef public bint shutting_down         # shutdown() was called: no connection is kept alive
    cdef public long long refused_connections  # answered 503 at --max-connections (the worker reports them)
    cdef public bint keeps_none            # shutting down, or --keepalive-timeout 0: each answer is its connection's last
    cdef public object on_drained          # called once the last connection closes after shutdown()
    cdef public bint draining              # SIGTERM came: health answers 503 (the listener may still be open)
    cdef public object admin               # fastserve.server.admin.Admin, or None
    cdef public bytes admin_prefix         # its prefix + "/", checked before static lookups
    cdef WireAnswer answer   # refilled for each static request of any connection of this worker
    cdef public bint scan_heads   # plain GET/HEAD heads are read by the scanner (False: httptools reads all)
    cdef public Counters counters          # --metrics: this worker's slot, or None
    cdef public long long requests         # requests answered by this worker
    cdef public long long request_limit    # --limit-max-requests (0: none); on_limit() is called at it
    cdef public object on_limit
    cdef public bint log_agents            # the access log wants User-Agent and Referer
    cdef public object tracer              # --log-level trace: fastserve.server.trace.ConnectionTrace, else None
    cdef public object proxy               # ProxyTrust: whose X-Forwarded-For names the client an access log shows; None: no one's
    cdef public int accept_ceiling         # a new connection's descriptor at or above it pauses accepting (0: never)
    cdef public object acceptor            # the worker's listener: pause() -> bool, resume(); None: not watched
    cdef public bint accept_paused         # paused at the ceiling: the next closed connection resumes it
    cdef public ReadHub read_hub           # reads the plain-TCP connections of a static root; None: their transports do
    cdef RequestHead spare_head            # held by no connection: the next request is read into it
    cdef RequestHead take_head(self)
    cdef void give_head(self, RequestHead head)


cdef inline bint records_requests(ServerState state):
    """Whether this worker records each request (``--metrics``, ``--access-log``)."""
    return state.counters is not None or state.access_logger is not None


cdef class HttpProtocol(HubMember):
    # Thousands of these are held by idle keep-alive clients: pointers first, then 8-byte
    # numbers, 4-byte ones, and one-byte flags last, so the object has no padding.
    cdef readonly ServerState state
    cdef public object loop
    cdef public object transport
    cdef object __weakref__                 # a TLS handshake under way is tracked weakly (worker.Handshakes)
    cdef object parser                      # httptools', made for the first head the scanner leaves
    cdef object _client                     # the peer's and our address, read on first use
    cdef object _server
    cdef WritableWatch watch                # made on the first sendfile that finds the socket full
    cdef RequestHead head      # the request being read; None between requests (the worker keeps a spare)
    cdef object body_job   # the ASGI job receiving this request's body, if any
    cdef object upgrade_request   # (method, url, headers) of a WebSocket handshake being parsed
    cdef object pending_upgrade   # (session, bytes after the head) waiting for earlier responses
    cdef public object upgraded   # the WebSocket session that owns this connection now
    # output, in request order
    cdef object out          # ready answers: None, one bytes, or a list of them (pipelined)
    cdef list queue          # bytes, Jobs and deferred RequestHeads behind the current job; None when none wait
    cdef object current_job
    cdef bytes held_input    # what a read brought past --max-pipeline waiting requests, parsed once they go down; None

    cdef double writing_paused_since
    cdef double body_read_at # when the body being read last made progress
    cdef double head_started
    cdef double idle_since
    cdef double linger_since       # when the last answer's FIN was asked for (lingering)
    cdef Py_ssize_t raw_head_bytes # bytes of the head httptools is reading, from its first byte past any empty lines
    cdef long long body_left       # body bytes not yet fed: Content-Length's, or a chunk's (its size, as read)
    cdef Py_ssize_t header_count
    cdef long long static_body_bytes
    cdef Py_ssize_t out_bytes      # bytes in out
    cdef Py_ssize_t queued_bytes   # bytes items in queue (answers behind a job)
    cdef Py_ssize_t deferred       # requests in queue kept as their heads, not yet answered

    cdef public int sock_fd
    cdef int host_count
    cdef int response_status
    cdef readonly bint tls                  # TLS transport: the socket is never written directly
    cdef public bint writing_paused
    cdef public bint transport_holds_data   # set whenever bytes went through transport.write

    cdef unsigned char addresses_read
    cdef unsigned char reading_paused
    cdef unsigned char body_backpressure
    cdef unsigned char in_message    # httptools has begun a request it has not finished
    cdef unsigned char in_head
    cdef unsigned char method_read   # head.method is the request now read's, not an earlier one's
    cdef unsigned char awaiting_head  # bytes came after the last complete head: the header timeout runs
    cdef unsigned char closing
    cdef readonly unsigned char peer_finished  # the client sent its FIN: it will ask nothing more
    cdef unsigned char lingering      # answered in full, sending side shut: reading and dropping until the client closes
    cdef unsigned char blank_matched  # how much of CR LF CR LF the bytes fed to httptools last ended with
    cdef unsigned char chunk_state    # where in a chunked body httptools is reading the fed bytes end (CHUNK_*)
    cdef unsigned char head_flags     # what the head httptools reads says beyond its fields (HEAD_*)
    cdef unsigned char line_state     # how far the request line httptools reads has come (requesthead.LINE_*)
    cdef unsigned char connection     # the Connection option httptools' request carried (requesthead.CONNECTION_*)
    cdef unsigned char held_scheduled # held_input is to be parsed on the next loop turn
    cdef unsigned char hub_took       # the read hub took reading over from the transport (and keeps it, member or not)

    cdef void _read_addresses(self)
    cdef void _take(self, bytes data)
    cdef void _transport_reading(self, bint on)
    cdef object _receive(self, bytes data)
    cdef void _keep_line(self, const char* chars, Py_ssize_t start, Py_ssize_t stop)
    cdef Py_ssize_t _blank_line_end(self, const char* chars, Py_ssize_t pos, Py_ssize_t size)
    cdef Py_ssize_t _chunked_end(self, const char* chars, Py_ssize_t pos, Py_ssize_t size)
    cdef object _feed_parser(self, bytes data)
    cdef void _read_body_apart(self)
    cdef void _begin_websocket(self, bytes rest)
    cdef Py_ssize_t _read_simple_heads(self, bytes data)
    cdef void _start_simple_job(self, const char* chars, FieldSpan* lines, Py_ssize_t count)
    cdef void _serve_static(self)
    cdef RequestHead _hand_off_head(self)
    cdef object _answer_deferred(self, RequestHead request, bint next_out)
    cdef object _bytes_answer(self, bytes data, bint next_out)
    cdef void _emit_answer(self, bytes data, bytes method, bytes target, bytes protocol, int status, double started)
    cdef object _send_slice_now(self, bytes head, OpenFile file, long long offset, long long count)
    cdef void _answer_again(self, RequestHead request)
    cdef object _listing_job(self, RequestHead request)
    cdef bint _over_buffer(self)
    cdef void _fail_body(self, int status)
    cdef void _close_after_answers(self)
    cdef void _continue_static_body(self)
    cdef void _read_transfer_coding(self, bytes value)
    cdef bint _serve_admin(self)
    cdef object _forwarded_client(self, RequestHead request)
    cdef void _queue_append(self, object item)
    cdef void _account(self, bytes method, bytes url, bytes protocol, int status, long long sent, double started,
                       bytes user_agent, bytes referer, object client=*)
    cdef void account_unanswered(self, RequestHead request)
    # what jobs call (C calls from the ASGI exchange, Python ones from the rest)
    cpdef void account(self, bytes method, bytes url, bytes protocol, int status, long long sent, double started,
                       bytes user_agent=*, bytes referer=*, object client=*)
    cpdef void write(self, bytes data)
    cpdef Py_ssize_t send_now(self, bytes data)
    cpdef void job_finished(self, bint close=*)
    cdef void _emit(self, bytes data)
    cdef void _hold(self, bytes data)
    cdef void _enqueue_job(self, object job)
    cdef void _flush(self)
    cdef void _write_out(self)
    cdef void _write(self, bytes data)
    cdef void _close_watch(self)
    cdef bint _unread_bytes(self)
    cdef bint _last_answer_says_close(self)
    cdef void _fail(self, int status, bytes data=*)
    cdef void _update_reading(self)
    cdef bint _holds_back(self)
