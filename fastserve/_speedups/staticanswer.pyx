"""Which answer a GET/HEAD for a cached file gets, decided once for every face of fastserve.

``decide`` takes a cache entry, the method and the request's conditional, Range and
Accept-Encoding fields and returns a ``StaticAnswer``: the status, one list of header fields,
and the body (bytes in memory) or the file slices to send. The server's fast path renders it
as wire bytes (``answer_static``), ``StaticFiles`` as ASGI messages; both therefore answer
every request the same way.

Order (RFC 9110): the representation is chosen first (``headers.negotiate_coding`` over the
precompressed siblings, or over the codings a compressible file is compressed into on the fly:
an encoding not made yet is asked for, off the event loop, and the file is sent unencoded
meanwhile), then the preconditions (section 13.2.2: 412, 304), then Range (section 14: 206,
416, or 200 when If-Range does not match). An encoded representation is always sent whole:
a Range on it is ignored, as nginx's gzip_static does, because a slice of a gzip stream
cannot be decoded on its own and clients that resume downloads stitch decoded bytes, so
the encoded representations do not advertise ``Accept-Ranges`` either. A client that refuses
the unencoded representation (``identity;q=0``, or ``*;q=0`` without ``identity``) and accepts
none of the file's codings gets 406 (RFC 9110 sections 12.5.3 and 15.5.7); one that refuses it
while its coding is still being made waits for it (``StaticAnswer.waiting``). A file with only
one representation (not compressible, too small) is sent as it is, whatever the client says.
"""
import os

from libc.string cimport memchr

from fastserve._speedups.conditional cimport evaluate_preconditions, evaluate_range
from fastserve._speedups.filecache cimport encoded_entry, ENTRY_FILE, ENTRY_LISTING, ENTRY_REDIRECT
from fastserve._speedups.headers cimport (
    byteranges_layout,
    CODING_IDENTITY,
    CODING_NONE,
    current_http_date,
    etag_matches,
    negotiate_coding,
    reason_phrase,
)
from fastserve._speedups.pathlookup cimport (
    directory_path, has_dot_segment, origin_form, percent_decode, raw_path_prefix, split_url_path, without_fragment,
)
from fastserve._speedups.requesthead cimport RequestHead
from fastserve._speedups.wire cimport head_start, plain_answer, render_fields, response_head, whole_response

cdef bytes GET = b"GET"
cdef bytes CRLF = b"\r\n"
cdef bytes CONTENT_TYPE = b"content-type"
cdef bytes CONTENT_LENGTH = b"content-length"
cdef bytes CONTENT_RANGE = b"content-range"
cdef bytes PLAIN_TEXT = b"text/plain; charset=utf-8"
cdef bytes METHOD_NOT_ALLOWED = reason_phrase(405)
cdef list METHOD_NOT_ALLOWED_FIELDS = [
    (CONTENT_TYPE, PLAIN_TEXT), (CONTENT_LENGTH, b"%d" % len(METHOD_NOT_ALLOWED)), (b"allow", b"GET, HEAD"),
]
cdef bytes WIRE_METHOD_NOT_ALLOWED = render_fields(METHOD_NOT_ALLOWED_FIELDS)
cdef bytes PRECONDITION_FAILED = reason_phrase(412)
cdef list PRECONDITION_FAILED_FIELDS = [
    (CONTENT_TYPE, PLAIN_TEXT), (CONTENT_LENGTH, b"%d" % len(PRECONDITION_FAILED)),
]
cdef list PRECONDITION_FAILED_VARY_FIELDS = PRECONDITION_FAILED_FIELDS + [(b"vary", b"Accept-Encoding")]
cdef bytes NOT_ACCEPTABLE = reason_phrase(406)
cdef list NOT_ACCEPTABLE_FIELDS = [
    (CONTENT_TYPE, PLAIN_TEXT), (CONTENT_LENGTH, b"%d" % len(NOT_ACCEPTABLE)), (b"vary", b"Accept-Encoding"),
]
cdef bytes NOTHING = b""
# --root-path (set_root_path): the prefix a proxy takes off before the fast path sees a request,
# put back in front of a redirect's Location, as an app's raw_path carries it.
cdef str _ROOT_PATH = ""
cdef bytes _ROOT_RAW = b""
# What makes an answer storable by a cache (RFC 9111 section 4.2.1): a file's 200, 206 and 304 carry them.
cdef tuple FRESHNESS_FIELDS = (b"cache-control", b"expires")
cdef bytes NO_ETAG = b""  # a file sent without an ETag (--etag off): only "*" matches it

# GET answers whose body was encoded on the fly, and the bytes that saved (this process's).
cdef long long encoded_answers = 0
cdef long long encoded_saved_bytes = 0


def set_root_path(str root_path) -> None:
    """The ``--root-path`` the fast path's redirects name their target below (``""``: none)."""
    global _ROOT_PATH, _ROOT_RAW
    _ROOT_PATH = root_path
    _ROOT_RAW = raw_path_prefix(root_path)


def compression_totals() -> tuple:
    """``(answers, bytes saved)``: GET answers (200) sent in an encoding made on the fly by this
    process, and the bytes those encodings saved over the files (``--metrics``)."""
    return encoded_answers, encoded_saved_bytes


cdef class StaticAnswer:
    """The whole answer to one static request; see ``decide``.

    ``fields`` is what an ASGI ``http.response.start`` carries; ``body`` is the content when
    it is in memory (``b""`` when there is none to send, as for HEAD), otherwise ``segments``
    lists bytes and ``(offset, count)`` slices of ``file`` (an ``OpenFile``), in order.
    """

    def __repr__(self):
        return f"<StaticAnswer {self.status} {self.fields!r}>"


cdef inline void _set(StaticAnswer out, int status, list fields, bytes body):
    out.status = status
    out.fields = fields
    out.body = body
    if out.segments is not None:
        out.segments = None
        out.file = None


cdef inline void _set_slices(StaticAnswer out, int status, list fields, list segments):
    out.status = status
    out.fields = fields
    out.body = None
    out.segments = segments
    out.file = out.entry.file


# What _choose found; _fill turns it into a StaticAnswer, the fast path may use a memo instead.
cdef enum:
    ANSWER_WHOLE = 0                # the entry's own status, fields and content
    ANSWER_NOT_MODIFIED = 1         # 304
    ANSWER_PRECONDITION_FAILED = 2  # 412
    ANSWER_RANGE = 3                # a Range to evaluate: 206, 416, or 200 when If-Range does not match
    ANSWER_REDIRECT = 4             # 301 to the directory's slash form
    ANSWER_METHOD_NOT_ALLOWED = 5   # 405
    ANSWER_NOT_ACCEPTABLE = 6       # 406: no representation the client accepts
    ANSWER_WAIT = 7                 # the one the client accepts is being encoded: wait for it


cpdef StaticAnswer decide(CacheEntry entry, RequestHead request, int max_ranges=16):
    """The answer to ``request`` (its method and ``STATIC_FIELDS``) on ``entry`` (a ``FileCache.lookup`` result).

    405 for a method other than GET/HEAD; for a file 412/304 (RFC 9110 section 13.2.2), then
    206/416 for a Range on a GET or HEAD (section 14, at most ``max_ranges`` ranges), else 200; for
    the other entries their own status (404, 401; 301 with no fields: the caller knows the
    target to redirect to).
    """
    cdef int kind
    cdef StaticAnswer out = StaticAnswer()
    entry = _choose(entry, request, &kind)
    _fill(out, entry, kind, request, max_ranges)
    return out


cdef CacheEntry _representation(CacheEntry entry, RequestHead request, int* kind):
    """The representation of file ``entry`` the client's Accept-Encoding picks; sets ``kind`` to
    ANSWER_NOT_ACCEPTABLE or ANSWER_WAIT when it cannot be sent now (see the module's notes).

    An encoding not made yet still has its validators (the file's, with the coding's suffix):
    a request whose If-None-Match names it gets them, for its 304, without waiting.
    """
    cdef bytes accept_encoding = request.accept_encoding
    cdef CacheEntry validators
    cdef int index = negotiate_coding(accept_encoding, entry.offered)
    if index == CODING_IDENTITY:
        return entry
    if index == CODING_NONE:
        kind[0] = ANSWER_NOT_ACCEPTABLE
        return entry
    chosen = entry.representations[index]
    if chosen is None and entry.encoder is not None:
        entry.encoder.want(entry, index)  # may finish at once (no event loop: made here)
        chosen = entry.representations[index]
        if chosen is None:
            if request.if_none_match is not None and entry.etag is not None:
                validators = encoded_entry(entry, index, NOTHING)
                if etag_matches(request.if_none_match, validators.etag, True):
                    return validators  # its preconditions answer: 304 (or 412), never its body
            if negotiate_coding(accept_encoding, 0) == CODING_NONE:
                kind[0] = ANSWER_WAIT
            return entry
    if chosen is entry or chosen is None:  # not worth encoding
        if negotiate_coding(accept_encoding, 0) == CODING_NONE:
            kind[0] = ANSWER_NOT_ACCEPTABLE
        return entry
    (<CacheEntry>chosen).used = True
    return <CacheEntry>chosen


cdef CacheEntry _choose(CacheEntry entry, RequestHead request, int* kind):
    """The representation that answers ``request``, and (in ``kind``) which answer it gets."""
    cdef int status
    if not request.is_get and not request.is_head:
        kind[0] = ANSWER_METHOD_NOT_ALLOWED
        return entry
    if entry.representations is not None and request.accept_encoding is not None:
        kind[0] = ANSWER_WHOLE
        entry = _representation(entry, request, kind)
        if kind[0] != ANSWER_WHOLE:
            return entry
    if entry.kind == ENTRY_FILE:
        status = evaluate_preconditions(
            request.method, request.if_match, request.if_unmodified_since, request.if_none_match,
            request.if_modified_since, entry.etag or NO_ETAG, entry.mtime, entry.modified_since_exact,
        )
        if status == 304:
            kind[0] = ANSWER_NOT_MODIFIED
        elif status == 412:
            kind[0] = ANSWER_PRECONDITION_FAILED
        elif request.range_value is not None and entry.coding is None:  # GET or HEAD (RFC 9110 section 9.3.2)
            kind[0] = ANSWER_RANGE
        else:
            kind[0] = ANSWER_WHOLE
            if entry.saved != 0 and request.is_get:
                global encoded_answers, encoded_saved_bytes
                encoded_answers += 1
                encoded_saved_bytes += entry.saved
    elif entry.kind == ENTRY_REDIRECT:
        kind[0] = ANSWER_REDIRECT
    else:
        kind[0] = ANSWER_WHOLE
    return entry


cdef void _fill(StaticAnswer out, CacheEntry entry, int kind, RequestHead request, int max_ranges):
    out.entry = entry
    if kind == ANSWER_WHOLE:
        _whole(out, entry, request.is_head)
    elif kind == ANSWER_NOT_MODIFIED:
        _set(out, 304, entry.not_modified_fields, NOTHING)
    elif kind == ANSWER_PRECONDITION_FAILED:
        # A file with encoded representations says on every answer that the choice depends on Accept-Encoding.
        fields = PRECONDITION_FAILED_FIELDS
        if entry.coding is not None or entry.representations is not None:
            fields = PRECONDITION_FAILED_VARY_FIELDS
        _set(out, 412, fields, NOTHING if request.is_head else PRECONDITION_FAILED)
    elif kind == ANSWER_RANGE:
        _range(out, entry, request.range_value, request.if_range, max_ranges, request.is_head)
    elif kind == ANSWER_REDIRECT:
        _set(out, 301, [], NOTHING)
    elif kind == ANSWER_NOT_ACCEPTABLE:
        _set(out, 406, NOT_ACCEPTABLE_FIELDS, NOTHING if request.is_head else NOT_ACCEPTABLE)
    elif kind == ANSWER_WAIT:
        _set(out, 0, [], NOTHING)
        out.waiting = entry.encoder.waiter(entry, negotiate_coding(request.accept_encoding, entry.offered))
        return
    else:
        _set(out, 405, METHOD_NOT_ALLOWED_FIELDS, METHOD_NOT_ALLOWED)


cdef inline void _whole(StaticAnswer out, CacheEntry entry, bint head):
    if head:
        _set(out, entry.status, entry.fields, NOTHING)
    elif entry.body is not None:
        _set(out, entry.status, entry.fields, entry.body)
    else:
        _set_slices(out, entry.status, entry.fields, [(0, entry.size)])


cdef list _with_fields(list fields, bytes content_type, long long length, bytes content_range):
    """``fields`` with Content-Length (and Content-Type, when given) replaced in place and
    Content-Range added last, as Starlette's FileResponse orders them."""
    cdef list out = []
    for pair in fields:
        name = pair[0]
        if name == CONTENT_LENGTH:
            out.append((CONTENT_LENGTH, b"%d" % length))
        elif name == CONTENT_TYPE and content_type is not None:
            out.append((CONTENT_TYPE, content_type))
        else:
            out.append(pair)
    if content_range is not None:
        out.append((CONTENT_RANGE, content_range))
    return out


cdef void _range(StaticAnswer out, CacheEntry entry, bytes range_value, bytes if_range, int max_ranges, bint head):
    """206 or 416 for ``range_value`` (200 when it is ignored); a HEAD gets the fields a GET
    would, without the body (RFC 9110 section 9.3.2), as nginx and Starlette answer it."""
    cdef int status
    cdef list segments
    cdef long long first, last
    status, ranges = evaluate_range(GET, range_value, if_range, entry.etag, entry.mtime, entry.size, max_ranges)
    if status == 200:
        _whole(out, entry, head)
        return
    if status == 416:
        # It names the representation the range missed (ETag, Last-Modified, Vary), but gives no
        # freshness: a 416 is no answer a cache may hand to the next request for the URL.
        _set(out, 416, [
            (CONTENT_RANGE, b"bytes */%d" % entry.size), (CONTENT_LENGTH, b"0"),
        ] + [pair for pair in entry.not_modified_fields if pair[0] not in FRESHNESS_FIELDS], NOTHING)
        return
    if len(ranges) == 1:
        first, last = ranges[0]
        fields = _with_fields(entry.fields, None, last - first + 1, b"bytes %d-%d/%d" % (first, last, entry.size))
        if head:
            _set(out, 206, fields, NOTHING)
        elif entry.body is not None:
            _set(out, 206, fields, entry.body[first:last + 1])
        else:
            _set_slices(out, 206, fields, [(first, last - first + 1)])
        return
    boundary = os.urandom(13).hex().encode()  # 26 hex digits, as long as Starlette's
    heads, tail, length = byteranges_layout(ranges, entry.content_type, entry.size, boundary)
    fields = _with_fields(entry.fields, b"multipart/byteranges; boundary=" + boundary, length, None)
    if head:
        _set(out, 206, fields, NOTHING)
        return
    segments = []
    for i in range(len(ranges)):
        first, last = ranges[i]
        segments.append(heads[i])
        if entry.body is not None:
            segments.append(entry.body[first:last + 1])
        else:
            segments.append((first, last - first + 1))
    segments.append(tail)
    if entry.body is not None:
        _set(out, 206, fields, b"".join(segments))
    else:
        _set_slices(out, 206, fields, segments)


# -- the wire rendering (the server's fast path) ---------------------------------------------


cdef class WireAnswer:
    """One static answer on its way to the wire; refilled by ``answer_static`` for each request."""

    def __cinit__(self):
        self.decision = StaticAnswer()


cdef inline void _ready(WireAnswer out, int status, bytes data):
    out.status = status
    out.data = data
    if out.file is not None:
        out.file = None
        out.segments = None


cdef inline void _ready_slice(WireAnswer out, int status, bytes head, object file, long long offset, long long count):
    """``head``, then ``count`` bytes of ``file`` from ``offset``."""
    out.status = status
    out.data = head
    out.file = file
    out.segments = None
    out.offset = offset
    out.count = count


cdef inline void _refresh_memo(CacheEntry entry, bytes date):
    """Forget an entry's pre-built responses once the Date they carry has passed."""
    if entry.memo_date is not date:
        entry.memo_date = date
        entry.memo_whole = None
        entry.memo_not_modified = None


cdef void answer_static(WireAnswer out, FileCache cache, int max_ranges, RequestHead request):
    """Fill ``out`` with the wire answer to ``request``.

    An unusable target gets 400, a directory asked for without its slash 301 to the slash
    form; a directory to list is left to the caller (``out.status`` ``STATUS_LISTING``: rendered
    off the event loop, by ``fastserve.listing``); everything else is ``decide``'s answer for
    the cache entry.
    """
    cdef CacheEntry entry
    cdef StaticAnswer answer = out.decision
    cdef bytes raw = request.target
    cdef Py_ssize_t q
    cdef bint head = request.is_head
    cdef int kind
    cdef bint keep_alive = request.keep_alive
    cdef bint http10 = request.http10
    cdef bytes date
    if not head and not request.is_get:
        _ready(out, 405, method_not_allowed(keep_alive, http10))
        return
    if raw is None or len(raw) == 0 or (<const char*>raw)[0] != b"/":
        raw = origin_form(raw or b"")
        if raw is None:
            _ready(out, 400, plain_answer(400, b"", keep_alive, http10, head))
            return
    else:
        raw = without_fragment(raw)
    cdef const char* start = raw
    cdef const char* mark = <const char*>memchr(start, b"?", len(raw))
    q = -1 if mark == NULL else mark - start
    cdef bytes raw_path = raw if q < 0 else raw[:q]
    path = percent_decode(raw_path)  # starts with "/", as raw does
    if path is None:
        _ready(out, 400, plain_answer(400, b"", keep_alive, http10, head))
        return
    entry = cache.lookup(path)
    if entry.kind == ENTRY_REDIRECT:
        if _ROOT_PATH:
            raw_path, path = _ROOT_RAW + raw_path, _ROOT_PATH + path
        _redirect(out, slash_location(raw_path, path, raw[q:] if q >= 0 else b""), head, keep_alive, http10)
        return
    if entry.kind == ENTRY_LISTING:
        _ready(out, STATUS_LISTING, None)
        return
    entry = _choose(entry, request, &kind)
    if keep_alive and not http10:
        # The answers most requests get (an entry's whole answer from memory: a file's 200, a 404
        # or 403 page; and a 304) are kept whole on the entry, for as long as their Date holds.
        if kind == ANSWER_WHOLE and entry.body is not None and not head:
            date = current_http_date()
            _refresh_memo(entry, date)
            if entry.memo_whole is None:
                entry.memo_whole = b"".join((head_start(entry.status, entry.wire_fields, date), entry.wire_fields, CRLF, entry.body))
            _ready(out, entry.status, entry.memo_whole)
            return
        if kind == ANSWER_WHOLE and entry.body is None and not head:
            # A file sent from its descriptor: the memo is the head alone.
            date = current_http_date()
            _refresh_memo(entry, date)
            if entry.memo_whole is None:
                entry.memo_whole = b"".join((head_start(entry.status, entry.wire_fields, date), entry.wire_fields, CRLF))
            _ready_slice(out, entry.status, entry.memo_whole, entry.file, 0, entry.size)
            return
        if kind == ANSWER_NOT_MODIFIED:
            date = current_http_date()
            _refresh_memo(entry, date)
            if entry.memo_not_modified is None:
                entry.memo_not_modified = b"".join((head_start(304, entry.wire_not_modified, date), entry.wire_not_modified, CRLF))
            _ready(out, 304, entry.memo_not_modified)
            return
    _fill(answer, entry, kind, request, max_ranges)
    render_wire(out, answer, keep_alive, http10)


cdef bytes method_not_allowed(bint keep_alive, bint http10):
    """``decide``'s 405 on the wire, answered before any lookup (no file takes another method)."""
    return whole_response(405, WIRE_METHOD_NOT_ALLOWED, keep_alive, http10, METHOD_NOT_ALLOWED)


cdef void render_wire(WireAnswer out, StaticAnswer answer, bint keep_alive, bint http10):
    """``answer`` as wire bytes: the head (with the connection's fields) and the body or slices."""
    cdef CacheEntry entry = answer.entry
    cdef list fields = answer.fields
    cdef bytes wire_fields
    if answer.status == 0:  # the connection waits for ``waiting``, then answers again
        out.status = 0
        out.data = None
        out.waiting = answer.waiting
        answer.waiting = None
        return
    if entry is not None and fields is entry.fields:
        wire_fields = entry.wire_fields
    elif entry is not None and fields is entry.not_modified_fields:
        wire_fields = entry.wire_not_modified
    elif fields is METHOD_NOT_ALLOWED_FIELDS:
        wire_fields = WIRE_METHOD_NOT_ALLOWED
    else:
        wire_fields = render_fields(fields)
    if answer.segments is not None:
        head = response_head(answer.status, wire_fields, keep_alive, http10)
        if len(answer.segments) == 1:  # one slice: a whole file, or a single range
            offset, count = answer.segments[0]
            _ready_slice(out, answer.status, head, answer.file, offset, count)
        else:
            out.status = answer.status
            out.data = head
            out.file = answer.file
            out.segments = answer.segments
    else:
        _ready(out, answer.status, whole_response(answer.status, wire_fields, keep_alive, http10, answer.body or b""))


cpdef bytes slash_location(bytes raw_path, str path, bytes query):
    """The ``Location`` of the 301 that sends a directory asked for without its slash to its
    slash form, or None when it cannot be written (a CR, LF or NUL in it: the caller answers 400).

    ``raw_path``: the path as the client spelled it (percent-encoding kept; for an app below a
    mount or ``--root-path``, the whole path, prefix included, as ASGI's ``raw_path``), ``path``
    the same decoded, ``query`` ``b""`` or ``b"?"`` and the query as sent. The answer is a
    path (RFC 9110 section 10.2.2 allows a relative reference), the same on the fast path and
    ``StaticFiles(answers="static")``: the raw path with one slash added, leading slashes
    collapsed so ``//host/dir`` never becomes a protocol-relative URL, or, when the path has dot
    segments, the directory they lead to (RFC 3986 section 5.2.4), not a path through them.
    """
    if has_dot_segment(path):
        raw_path = directory_path(split_url_path(path)).encode("ascii")
    location = b"/" + raw_path.strip(b"/") + b"/" + query
    for c in b"\r\n\x00":
        if c in location:
            return None
    return location


cdef void _redirect(WireAnswer out, bytes location, bint head, bint keep_alive, bint http10):
    if location is None:
        _ready(out, 400, plain_answer(400, b"", keep_alive, http10, head))
        return
    # 301, as nginx and Apache answer it: the slash form is the directory's one URL, so a CDN or
    # browser may keep the redirect (RFC 9111 section 4.2.2); only GET and HEAD come here.
    _ready(out, 301, response_head(301, b"Location: %s\r\nContent-Length: 0\r\n" % location, keep_alive, http10))
