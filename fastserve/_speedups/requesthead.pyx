"""A strict scanner for the plainest request heads, the common case of a busy server.

Most requests a static origin (or an API's read side) sees are a GET or HEAD of an
origin-form target, HTTP/1.1 or HTTP/1.0, with a few well-formed header lines and no body.
``scan_simple_head`` reads such a head in one pass over the buffer, recording where the
fields the static path uses begin and end (and, when asked, every header line, for an ASGI
scope): no parser callback and no object per header. It accepts a deliberately small subset of
HTTP/1.1; whatever falls outside it (another method, a body, an upgrade, obs-fold, bytes
outside the visible ASCII range, a head over a limit) is reported as ``SCAN_OTHER`` and
the connection hands the bytes to httptools, which answers as it would anyway.
"""
from libc.stdint cimport uint64_t
from libc.string cimport memcmp, memcpy

from fastserve._speedups.charclass cimport hex_value, is_ows, is_tchar


cdef inline bint _is_value_char(unsigned char c) noexcept nogil:
    """The field-value characters accepted here: HTAB, SP and VCHAR (no obs-text)."""
    return c == 9 or 32 <= c <= 126


cdef extern from *:
    """
    /* Which byte of a word loaded with memcpy holds its lowest set flag (flags != 0): on a
       little-endian machine the first in memory. Elsewhere 0, and the caller's per-byte loop
       reads the word. */
    static inline Py_ssize_t fastserve_first_flagged_byte(uint64_t flags) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
        return __builtin_ctzll(flags) >> 3;
    #else
        return 0;
    #endif
    }
    """
    Py_ssize_t first_flagged_byte "fastserve_first_flagged_byte"(uint64_t flags) nogil


cdef inline Py_ssize_t _skip_printable(const unsigned char* buf, Py_ssize_t p, Py_ssize_t end,
                                       uint64_t lowest) noexcept nogil:
    """Skip the bytes of ``buf[p:end]`` in ``lowest``..0x7E, eight at a time; return where the
    first other byte is, or where a tail shorter than eight bytes begins.

    The caller's own per-byte loop reads on from there, so this only saves it bytes it would
    have accepted anyway: long field values (User-Agent, Cookie, forwarded-for lists) cost a
    few instructions per eight bytes instead of per byte. Per byte b of a word x (``lowest``
    <= 0x80): ``(x - lowest*0x01..01) & ~x`` has the high bit set in the first byte where
    b < ``lowest`` (no borrow reaches it from the bytes before), ``(x + 0x01..01) | x`` in the
    first byte where b >= 0x7F (a carry leaves only a byte 0xFF, itself flagged); a flag
    after the first may be spurious, the first never is.
    """
    cdef uint64_t word, flags
    cdef uint64_t ones = 0x0101010101010101ULL
    cdef uint64_t floor = lowest * ones
    while end - p >= 8:
        memcpy(&word, buf + p, 8)
        flags = (((word - floor) & ~word) | (word + ones) | word) & (0x80 * ones)
        if flags:
            return p + first_flagged_byte(flags)
        p += 8
    return p


cdef inline uint64_t _bytes_between(uint64_t seven_bit, unsigned char low, unsigned char high) noexcept nogil:
    """The high bit of each byte of ``seven_bit`` (bytes 0..0x7F) set where that byte is in low..high.

    Adding 0x80 - low to a byte sets its high bit exactly when it is >= low, adding 0x7F - high
    exactly when it is > high; neither sum passes 0xFF, so no carry crosses into the next byte.
    """
    cdef uint64_t ones = 0x0101010101010101ULL
    return (seven_bit + (0x80 - low) * ones) & ~(seven_bit + (0x7F - high) * ones) & (0x80 * ones)


cdef inline Py_ssize_t _skip_name_chars(const unsigned char* buf, Py_ssize_t p, Py_ssize_t end) noexcept nogil:
    """Skip the letters, digits and '-' (the tchars of nearly every real field name) of
    ``buf[p:end]``, eight at a time; return where the first other byte is, or where a tail
    shorter than eight bytes begins, for the caller's per-byte ``is_tchar`` loop to read on."""
    cdef uint64_t word, seven_bit, accepted, rejected
    cdef uint64_t highs = 0x8080808080808080ULL
    while end - p >= 8:
        memcpy(&word, buf + p, 8)
        seven_bit = word & ~highs
        accepted = (
            _bytes_between(seven_bit | 0x2020202020202020ULL, b"a", b"z")  # a letter in either case
            | _bytes_between(seven_bit, b"0", b"9")
            | _bytes_between(seven_bit, b"-", b"-")
        )
        rejected = (~accepted | word) & highs
        if rejected:
            return p + first_flagged_byte(rejected)
        p += 8
    return p


cdef inline int _connection_option(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    if n == 10 and _name_is(s, b"keep-alive", 10):
        return CONNECTION_KEEP_ALIVE
    if n == 5 and _name_is(s, b"close", 5):
        return CONNECTION_CLOSE
    return -1


cdef Py_ssize_t scan_simple_head(const unsigned char* buf, Py_ssize_t start, Py_ssize_t end,
                                 Py_ssize_t max_head, Py_ssize_t max_target, Py_ssize_t max_fields,
                                 SimpleHead* head, FieldSpan* lines=NULL, Py_ssize_t max_lines=0) noexcept nogil:
    """Scan the head starting at ``buf[start]``; return the offset just past it.

    With ``lines``, every header line's name and value spans are stored there too, in
    order (``head.line_count`` of them); a head with more than ``max_lines`` lines is then
    left to httptools.

    Returns ``SCAN_INCOMPLETE`` when the buffer ends first and ``SCAN_OTHER`` when the
    head is not a simple one or exceeds a limit (``max_head`` bytes in all, ``max_target``
    bytes of target, ``max_fields`` header lines). Field spans exclude surrounding
    whitespace; a head that repeats a field the static path reads is left to httptools
    (``RequestHead.set_field`` joins the lines). ``Connection`` may appear once,
    as ``keep-alive`` or ``close``.
    """
    cdef Py_ssize_t p = start
    cdef Py_ssize_t name_start, name_length, value_start, value_end, count = 0
    cdef int index, option
    cdef unsigned char c
    for index in range(FIELD_COUNT):
        head.fields[index].start = -1
        head.fields[index].length = 0
    head.connection = CONNECTION_DEFAULT
    head.line_count = 0
    head.host_count = 0

    # request line: method SP origin-form SP HTTP/1.x CRLF
    if end - p < 5:
        return SCAN_INCOMPLETE
    if memcmp(buf + p, b"GET ", 4) == 0:
        head.is_head = False
        p += 4
    elif memcmp(buf + p, b"HEAD ", 5) == 0:
        head.is_head = True
        p += 5
    else:
        return SCAN_OTHER
    head.target.start = p
    if p < end and buf[p] != b"/":
        return SCAN_OTHER
    p = _skip_printable(buf, p, end, 0x21)
    while p < end and buf[p] != b" ":
        c = buf[p]
        if c < 0x21 or c > 0x7E:
            return SCAN_OTHER
        p += 1
    head.target.length = p - head.target.start
    if head.target.length > max_target:
        return SCAN_OTHER
    if end - p < 11:
        return SCAN_INCOMPLETE
    if memcmp(buf + p, b" HTTP/1.", 8) != 0 or buf[p + 9] != b"\r" or buf[p + 10] != b"\n":
        return SCAN_OTHER
    if not b"0" <= buf[p + 8] <= b"9":
        return SCAN_OTHER
    head.minor = buf[p + 8] - 48  # its digit
    head.http10 = served_version(1, head.minor) == VERSION_10
    p += 11

    # header lines: token ":" OWS value OWS CRLF, up to the empty line
    while True:
        if p - start > max_head:
            return SCAN_OTHER
        if end - p < 2:
            return SCAN_INCOMPLETE
        if buf[p] == b"\r":
            if buf[p + 1] != b"\n":
                return SCAN_OTHER
            p += 2
            return SCAN_OTHER if p - start > max_head else p
        name_start = p
        p = _skip_name_chars(buf, p, end)
        while p < end and is_tchar(buf[p]):
            p += 1
        if p == end:
            return SCAN_INCOMPLETE
        if buf[p] != b":" or p == name_start:
            return SCAN_OTHER
        name_length = p - name_start
        index = field_index(buf + name_start, name_length)
        p += 1
        while p < end and is_ows(buf[p]):
            p += 1
        value_start = p
        p = _skip_printable(buf, p, end, 0x20)
        while p < end and _is_value_char(buf[p]):
            p += 1
        if end - p < 2:
            return SCAN_INCOMPLETE
        if buf[p] != b"\r" or buf[p + 1] != b"\n":
            return SCAN_OTHER
        value_end = p
        while value_end > value_start and is_ows(buf[value_end - 1]):
            value_end -= 1
        p += 2
        count += 1
        if count > max_fields or index == NOT_SIMPLE or index == IS_CONTENT_LENGTH:
            return SCAN_OTHER
        if lines != NULL:
            if count > max_lines:
                return SCAN_OTHER
            lines[count - 1].name.start = name_start
            lines[count - 1].name.length = name_length
            lines[count - 1].value.start = value_start
            lines[count - 1].value.length = value_end - value_start
            head.line_count = count
        if index >= 0:
            if head.fields[index].start >= 0:
                return SCAN_OTHER  # a field repeated: httptools' reader combines its lines
            head.fields[index].start = value_start
            head.fields[index].length = value_end - value_start
        elif index == IS_HOST:
            head.host_count += host_field_weight(buf + value_start, value_end - value_start)
        elif index == IS_CONNECTION:
            if head.connection != CONNECTION_DEFAULT:
                return SCAN_OTHER
            option = _connection_option(buf + value_start, value_end - value_start)
            if option < 0:
                return SCAN_OTHER
            head.connection = option


# b"HTTP/1.0" to b"HTTP/1.9": what the request line of a request served as HTTP/1 names, made once
cdef tuple HTTP1_PROTOCOLS = tuple(b"HTTP/1.%d" % minor for minor in range(10))


cdef bytes protocol_text(int major, int minor):
    """The HTTP-version ``HTTP/major.minor`` names, as bytes (made once for HTTP/1)."""
    if major == 1 and 0 <= minor <= 9:
        return <bytes>HTTP1_PROTOCOLS[minor]
    return b"HTTP/%d.%d" % (major, minor)


cdef int protocol_served(bytes protocol):
    """``served_version`` of a request line's protocol as it was read (``b"HTTP/2.0"``); -1 for
    one that is not ``HTTP/d.d``."""
    if protocol is None or len(protocol) != 8 or not protocol.startswith(b"HTTP/") or protocol[6] != 46:
        return -1
    if not (48 <= protocol[5] <= 57 and 48 <= protocol[7] <= 57):
        return -1
    return served_version(protocol[5] - 48, protocol[7] - 48)


def version_served(str version) -> int:
    """Python view of ``served_version`` for a version written ``"1.1"``: VERSION_10 (1),
    VERSION_11 (2) or VERSION_REFUSED (0, answered 505)."""
    if len(version) != 3 or version[1] != "." or not version[0].isdigit() or not version[2].isdigit():
        raise ValueError(f"not an HTTP-version: {version!r}")
    return served_version(ord(version[0]) - 48, ord(version[2]) - 48)


def split_request_line(bytes line):
    """``(method, target, protocol)`` of a request line as far as it was read (``line``: its
    bytes up to its CR LF, or to where reading stopped), each None where the line did not
    reach it: the words it holds, split at their runs of SP as RFC 9112 section 3 reads them;
    the protocol is all after the target's SP (``HTTP/1.1``, or whatever the client put
    there). What an access log line says of a request refused before its head was read."""
    if line is None:
        return None, None, None
    if line.endswith(b"\r"):
        line = line[:len(line) - 1]
    method, gap, rest = line.partition(b" ")
    rest = rest.lstrip(b" ")
    target, gap, protocol = rest.partition(b" ")
    protocol = protocol.lstrip(b" ")
    return method or None, target or None, protocol or None


cdef const char* VERSION_SHAPE = b"HTTP/0.0\r\n"   # 0: any digit


cdef int follow_request_line(unsigned char* state, const unsigned char* buf, Py_ssize_t pos,
                             Py_ssize_t end) noexcept nogil:
    """Follow a request line (RFC 9112 section 3: method SP request-target SP HTTP-version
    CR LF) through ``buf[pos:end]``, from and into ``*state`` (``LINE_*``); returns 400 when
    what came cannot begin one, else 0 (``*state`` is ``LINE_DONE`` once it ended well).

    Refused: a method that is empty or holds a byte that is no tchar (RFC 9110 section 9.1);
    a line that ends (CR or LF) before the target's SP, as an HTTP/0.9 request (``GET /path``)
    does, which httptools would take as the start of a head and wait on; an HTTP-version not
    of the shape ``HTTP/d.d`` or not followed by CR LF. Which versions are served, and the
    target's own bytes, are for httptools and the connection to judge. One pass over the
    line's bytes, once per request httptools reads.
    """
    cdef unsigned char c, expected
    cdef unsigned char at = state[0]
    while pos < end and at != LINE_DONE:
        c = buf[pos]
        pos += 1
        if at == LINE_TARGET:
            if c == b" ":
                at = LINE_VERSION
            elif c == b"\r" or c == b"\n":
                return 400
        elif at >= LINE_VERSION:
            if at == LINE_VERSION and c == b" ":
                continue  # httptools takes more than one SP here
            expected = VERSION_SHAPE[at - LINE_VERSION]
            if c != expected and not (expected == b"0" and b"0" <= c <= b"9"):
                return 400
            at = LINE_DONE if expected == b"\n" else at + 1
        elif at == LINE_GAP:
            if c == b"\r" or c == b"\n":
                return 400
            if c != b" ":
                at = LINE_TARGET
        elif c == b" " and at == LINE_METHOD:
            at = LINE_GAP
        elif is_tchar(c):
            at = LINE_METHOD
        else:
            return 400
    state[0] = at
    return 0


# unreserved / sub-delims of RFC 3986 (a reg-name's characters besides pct-encoded), as a table
# indexed by byte value (tests check all 256 values).
cdef unsigned char HOST_CHAR[256]
for _byte in range(256):
    HOST_CHAR[_byte] = _byte in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;="


cdef bint host_value_valid(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """Whether a Host field value is ``uri-host [":" port]`` (RFC 9110 section 7.2, RFC 3986
    section 3.2.2), or empty (a target without an authority). A bracketed IP literal is taken
    as brackets around unreserved, sub-delims, ':' and pct-encoded characters (IPv6 with a zone,
    IPvFuture); a reg-name or IPv4 address as unreserved, sub-delims and pct-encoded ones; a
    port as digits."""
    cdef Py_ssize_t i = 0
    cdef bint bracketed = n > 0 and s[0] == b"["
    cdef unsigned char host_end = b"]" if bracketed else b":"
    if bracketed:
        i = 1
    while i < n:
        if HOST_CHAR[s[i]]:
            i += 1
            continue
        if s[i] == b"%":
            if i + 2 >= n or hex_value(s[i + 1]) < 0 or hex_value(s[i + 2]) < 0:
                return False
            i += 3
            continue
        if s[i] == host_end:
            break
        if not (bracketed and s[i] == b":"):
            return False
        i += 1
    if bracketed:
        if i == n:
            return False  # no closing bracket
        i += 1
    if i == n:
        return True
    if s[i] != b":":
        return False
    i += 1
    while i < n:
        if not 48 <= s[i] <= 57:
            return False
        i += 1
    return True


def valid_host(bytes value) -> bool:
    """Python view of ``host_value_valid``: whether ``value`` may be a Host field's value."""
    return host_value_valid(<const unsigned char*><const char*>value, len(value))


# The request fields the static path reads, indexed by FIELD_* (requesthead.pxd): the one list
# the scanner, the httptools callbacks and StaticFiles take them from.
STATIC_FIELDS = (
    b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since",
    b"range", b"if-range", b"accept-encoding", b"user-agent", b"referer", b"accept", b"x-forwarded-for",
)
cdef dict _STATIC_FIELD_INDEX = {name: index for index, name in enumerate(STATIC_FIELDS)}


cdef inline bytes _joined(bytes before, bytes value):
    """A field's value with one more line of it (RFC 9110 section 5.3)."""
    return value if before is None else before + b", " + value


cdef class RequestHead:
    """One request's head, as both request readers fill it (and ``StaticFiles`` from a scope).

    ``RequestHead(method, fields)``: ``fields`` maps lowercase names of ``STATIC_FIELDS`` to values.
    """

    def __init__(self, bytes method=b"GET", fields=None):
        self.method = method
        self.is_get = method == b"GET"
        self.is_head = method == b"HEAD"
        self.declared_length = -1
        if fields:
            for name, value in fields.items():
                index = _STATIC_FIELD_INDEX.get(name)
                if index is not None:
                    self.set_field(index, value)

    cdef void clear_fields(self):
        self.if_match = self.if_none_match = self.if_modified_since = self.if_unmodified_since = None
        self.range_value = self.if_range = self.accept_encoding = None
        self.user_agent = self.referer = self.accept = self.forwarded_for = None

    cdef void reset(self):
        """Back to what ``RequestHead()`` is: a GET with no target, fields or headers."""
        self.method = b"GET"
        self.is_get = True
        self.is_head = self.http10 = self.keep_alive = False
        self.target = self.protocol = self.line_read = None
        self.headers = None
        self.declared_length = -1
        self.clear_fields()

    cdef void set_field(self, int index, bytes value):
        """Record a line of a static field; a later line of the same name is joined to what
        came before with ", " (RFC 9110 section 5.3), so a list field (If-None-Match,
        Accept-Encoding) holds every member and a repeated singleton (If-Modified-Since, Range)
        becomes a value its field's own rules ignore as invalid."""
        if index == FIELD_IF_MATCH:
            self.if_match = _joined(self.if_match, value)
        elif index == FIELD_IF_NONE_MATCH:
            self.if_none_match = _joined(self.if_none_match, value)
        elif index == FIELD_IF_MODIFIED_SINCE:
            self.if_modified_since = _joined(self.if_modified_since, value)
        elif index == FIELD_IF_UNMODIFIED_SINCE:
            self.if_unmodified_since = _joined(self.if_unmodified_since, value)
        elif index == FIELD_RANGE:
            self.range_value = _joined(self.range_value, value)
        elif index == FIELD_IF_RANGE:
            self.if_range = _joined(self.if_range, value)
        elif index == FIELD_ACCEPT_ENCODING:
            self.accept_encoding = _joined(self.accept_encoding, value)
        elif index == FIELD_USER_AGENT:
            self.user_agent = _joined(self.user_agent, value)
        elif index == FIELD_REFERER:
            self.referer = _joined(self.referer, value)
        elif index == FIELD_ACCEPT:
            self.accept = _joined(self.accept, value)
        elif index == FIELD_FORWARDED_FOR:
            self.forwarded_for = _joined(self.forwarded_for, value)

    def set(self, bytes name, bytes value):
        """Record a header line (lowercase ``name``) if it is one of ``STATIC_FIELDS``; as with
        both request readers, a later line of the same name is joined to the earlier ones."""
        index = _STATIC_FIELD_INDEX.get(name)
        if index is not None:
            self.set_field(index, value)


cpdef int connection_option(bytes value):
    """The Connection option a value carries (RFC 9110 section 7.6.1): CONNECTION_CLOSE if any
    token is ``close``, else CONNECTION_KEEP_ALIVE if one is ``keep-alive``, else CONNECTION_DEFAULT."""
    cdef int found = CONNECTION_DEFAULT
    for token in value.split(b","):
        token = token.strip(b" \t").lower()
        if token == b"close":
            return CONNECTION_CLOSE
        if token == b"keep-alive":
            found = CONNECTION_KEEP_ALIVE
    return found


def scan_head(bytes data, Py_ssize_t start=0, Py_ssize_t max_head=65536,
              Py_ssize_t max_target=65536, Py_ssize_t max_fields=100, Py_ssize_t max_lines=64):
    """Python view of ``scan_simple_head``: ``(end, fields)`` for a simple head, where
    ``fields`` holds method, target, http10, protocol, connection, the fields present and ``lines``
    (every header line as a (name, value) pair); or ``(SCAN_INCOMPLETE or SCAN_OTHER, None)``."""
    cdef SimpleHead head
    cdef FieldSpan lines[64]
    cdef const char* chars = data
    if not 0 <= start <= len(data):
        raise ValueError("start is outside the data")
    if not 0 <= max_lines <= 64:
        raise ValueError("max_lines is 0 to 64")
    cdef Py_ssize_t end = scan_simple_head(
        <const unsigned char*>chars, start, len(data), max_head, max_target, max_fields, &head,
        lines, max_lines,
    )
    if end <= 0:
        return end, None
    fields = {
        "method": b"HEAD" if head.is_head else b"GET",
        "target": span_bytes(chars, head.target),
        "http10": bool(head.http10),
        "protocol": protocol_text(1, head.minor),
        "connection": ("default", "keep-alive", "close")[head.connection],
    }
    for index in range(FIELD_COUNT):
        if head.fields[index].start >= 0:
            fields[STATIC_FIELDS[index].decode().replace("-", "_")] = span_bytes(chars, head.fields[index])
    fields["lines"] = [
        (span_bytes(chars, lines[index].name), span_bytes(chars, lines[index].value))
        for index in range(head.line_count)
    ]
    return end, fields
