from cpython.bytes cimport PyBytes_FromStringAndSize

# A scanner for the plainest request heads (GET/HEAD, no body), so the connection can
# read them without a parser callback per header. Anything else is left to httptools.

cdef enum:
    FIELD_IF_MATCH = 0
    FIELD_IF_NONE_MATCH = 1
    FIELD_IF_MODIFIED_SINCE = 2
    FIELD_IF_UNMODIFIED_SINCE = 3
    FIELD_RANGE = 4
    FIELD_IF_RANGE = 5
    FIELD_ACCEPT_ENCODING = 6
    FIELD_USER_AGENT = 7    # for access logs
    FIELD_REFERER = 8
    FIELD_ACCEPT = 9        # for directory listings (HTML or JSON)
    FIELD_FORWARDED_FOR = 10  # X-Forwarded-For, for access logs behind a trusted proxy
    FIELD_COUNT = 11

cdef enum:
    CONNECTION_DEFAULT = 0
    CONNECTION_KEEP_ALIVE = 1
    CONNECTION_CLOSE = 2

cdef enum:
    SCAN_INCOMPLETE = 0   # no complete head in the buffer (so far it was simple)
    SCAN_OTHER = -1       # not a simple head: the full parser decides

cdef struct Span:
    Py_ssize_t start      # -1 when absent
    Py_ssize_t length

cdef struct FieldSpan:    # one header line, for callers that want them all
    Span name
    Span value

cdef struct SimpleHead:
    bint is_head          # HEAD rather than GET
    bint http10
    unsigned char minor   # the HTTP/1 minor version the request line names (0-9)
    int connection
    Span target
    Span fields[11]       # indexed by FIELD_*
    Py_ssize_t line_count # header lines read
    int host_count        # Host fields seen (the connection wants exactly one in HTTP/1.1)

# Where the request line httptools is about to read stands (follow_request_line).
cdef enum:
    LINE_DONE = 0      # past its CR LF, or no head begun
    LINE_START = 1     # at the method's first byte
    LINE_METHOD = 2    # in the method
    LINE_GAP = 3       # in the SP after the method
    LINE_TARGET = 4    # in the request-target
    LINE_VERSION = 5   # in the SP after the target, or LINE_VERSION + 1 + i: i bytes into "HTTP/d.d" CR LF

# How a request of a given HTTP-version is served (served_version).
cdef enum:
    VERSION_REFUSED = 0   # another major version than 1: 505 (RFC 9110 section 15.6.6)
    VERSION_10 = 1        # HTTP/1.0
    VERSION_11 = 2        # HTTP/1.1, and HTTP/1.2 to 1.9 read as it (RFC 9112 section 2.3)


cdef inline int served_version(int major, int minor) noexcept nogil:
    """How a request whose line names ``HTTP/major.minor`` (one digit each) is served: the
    one version rule both request readers ask. RFC 9112 section 2.3: a higher minor version of
    HTTP/1 is processed as the highest one implemented, HTTP/1.1; RFC 9110 section 15.6.6: a
    major version not implemented (0, 2, 3, ...) is refused, 505."""
    if major != 1:
        return VERSION_REFUSED
    return VERSION_10 if minor == 0 else VERSION_11


cdef bytes protocol_text(int major, int minor)
cdef int protocol_served(bytes protocol)


cdef int follow_request_line(unsigned char* state, const unsigned char* buf, Py_ssize_t pos,
                             Py_ssize_t end) noexcept nogil

cdef Py_ssize_t scan_simple_head(const unsigned char* buf, Py_ssize_t start, Py_ssize_t end,
                                 Py_ssize_t max_head, Py_ssize_t max_target, Py_ssize_t max_fields,
                                 SimpleHead* head, FieldSpan* lines=*, Py_ssize_t max_lines=*) noexcept nogil


cdef class RequestHead:
    # What one request's head says, filled by the scanner or by httptools' callbacks alike.
    cdef public bytes method
    cdef public bint is_get                # method is GET ...
    cdef public bint is_head               # ... or HEAD (the methods a static file answers)
    cdef public bytes target
    cdef public bint http10                # served as HTTP/1.0 (else as HTTP/1.1: served_version)
    cdef public bytes protocol             # the HTTP-version as the request line names it (b"HTTP/1.2"), None until read
    cdef bytes line_read                   # the first bytes of its request line while httptools reads it (for the access log)
    cdef public bint keep_alive
    cdef public list headers               # (lowercase name, value) pairs, for ASGI requests
    cdef public long long declared_length  # Content-Length, -1 when absent or invalid
    # the fields the static path reads (STATIC_FIELDS), None when absent
    cdef public bytes if_match
    cdef public bytes if_none_match
    cdef public bytes if_modified_since
    cdef public bytes if_unmodified_since
    cdef public bytes range_value
    cdef public bytes if_range
    cdef public bytes accept_encoding
    cdef public bytes user_agent           # read by the scanner only for access logs that write them
    cdef public bytes referer
    cdef public bytes accept               # read by the scanner only when directories are listed
    cdef public bytes forwarded_for        # X-Forwarded-For, read by the scanner only for access logs
    cdef void clear_fields(self)
    cdef void reset(self)
    cdef void set_field(self, int index, bytes value)


cpdef int connection_option(bytes value)


cdef inline bint keeps_alive(bint http10, int connection, bint keeps_none) noexcept:
    """Whether the connection stays open after this request (RFC 9112 section 9.3): HTTP/1.1
    unless the client said close, HTTP/1.0 only if it asked for keep-alive; never when the
    server keeps none (it is shutting down, or runs with --keepalive-timeout 0)."""
    if keeps_none:
        return False
    if http10:
        return connection == CONNECTION_KEEP_ALIVE
    return connection != CONNECTION_CLOSE


cdef inline bint _name_is(const unsigned char* s, const char* lower, Py_ssize_t n) noexcept nogil:
    """Case-insensitive compare of a token against a lowercase name of letters and '-'.

    ``c | 0x20`` lowercases a letter and leaves '-' alone; no other token character maps onto a
    letter or '-', so the compare is exact for the names both readers pass on (the scanner
    checks every byte, httptools refuses a name that is no token).
    """
    cdef Py_ssize_t i
    for i in range(n):
        if (s[i] | 0x20) != <unsigned char>lower[i]:
            return False
    return True


# field_index answers, besides FIELD_*:
cdef enum:
    IGNORED = -1        # a header the static path does not read
    NOT_SIMPLE = -2     # a header that takes the request outside the scanner's subset (a body, an upgrade)
    IS_CONNECTION = -3
    IS_HOST = -4
    IS_CONTENT_LENGTH = -5  # a body too: outside the subset, and the httptools reader reads its length
    IS_EXPECT = -6      # read by the httptools reader only (a request that expects 100 has a body)


cdef inline int field_index(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """Which header a name (a token) of ``n`` bytes is, in any case, as FIELD_* or one of the
    codes above: the one classification both request readers make of a field name."""
    if n == 4:
        return IS_HOST if _name_is(s, b"host", 4) else IGNORED
    if n == 6:
        if _name_is(s, b"accept", 6):
            return FIELD_ACCEPT
        return IS_EXPECT if _name_is(s, b"expect", 6) else IGNORED
    if n == 5:
        return FIELD_RANGE if _name_is(s, b"range", 5) else IGNORED
    if n == 7:
        if _name_is(s, b"referer", 7):
            return FIELD_REFERER
        return NOT_SIMPLE if _name_is(s, b"upgrade", 7) else IGNORED
    if n == 10:
        if _name_is(s, b"user-agent", 10):
            return FIELD_USER_AGENT
        return IS_CONNECTION if _name_is(s, b"connection", 10) else IGNORED
    if n == 8:
        if _name_is(s, b"if-match", 8):
            return FIELD_IF_MATCH
        return FIELD_IF_RANGE if _name_is(s, b"if-range", 8) else IGNORED
    if n == 13:
        return FIELD_IF_NONE_MATCH if _name_is(s, b"if-none-match", 13) else IGNORED
    if n == 14:
        return IS_CONTENT_LENGTH if _name_is(s, b"content-length", 14) else IGNORED
    if n == 15:
        if _name_is(s, b"accept-encoding", 15):
            return FIELD_ACCEPT_ENCODING
        return FIELD_FORWARDED_FOR if _name_is(s, b"x-forwarded-for", 15) else IGNORED
    if n == 17:
        if _name_is(s, b"if-modified-since", 17):
            return FIELD_IF_MODIFIED_SINCE
        return NOT_SIMPLE if _name_is(s, b"transfer-encoding", 17) else IGNORED
    if n == 19:
        return FIELD_IF_UNMODIFIED_SINCE if _name_is(s, b"if-unmodified-since", 19) else IGNORED
    return IGNORED


cdef bint host_value_valid(const unsigned char* s, Py_ssize_t n) noexcept nogil


cdef inline int host_field_weight(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """What one Host field line adds to a request's ``host_count``: 1, or 2 when its value is not
    a valid ``uri-host [":" port]``, so that ``host_fields_valid`` refuses the request (400) as it
    refuses two Host fields (RFC 9112 section 3.2: both MUST be answered 400)."""
    return 1 if host_value_valid(s, n) else 2


cdef inline bint host_fields_valid(int host_count, bint http10) noexcept:
    """Whether a request's Host fields are as RFC 9112 section 3.2 requires: exactly one in
    HTTP/1.1, at most one in HTTP/1.0. Both request readers ask this; 400 when not."""
    return host_count == 1 or (host_count == 0 and http10)


cdef inline bytes span_bytes(const char* data, Span span):
    """The bytes a span of ``data`` covers; None for an absent field."""
    if span.start < 0:
        return None
    return PyBytes_FromStringAndSize(data + span.start, span.length)
