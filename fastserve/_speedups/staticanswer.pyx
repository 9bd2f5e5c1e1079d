"""The static fast path's answers: from a cache entry and a request's fields to wire bytes.

``answer_static`` looks the target up in the ``FileCache``, picks the representation
(precompressed siblings), evaluates the preconditions and the Range, and fills a
``WireAnswer``: either the whole answer as one bytes object, or a head and the file slices
a ``FileSender`` moves with ``os.sendfile``. The connection decides when to write it.
"""
import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memchr, memcmp

from fastserve._speedups.conditional cimport evaluate_preconditions, evaluate_range
from fastserve._speedups.filecache cimport (
    CacheEntry,
    choose_representation,
    ENTRY_FILE,
    ENTRY_MISSING,
    ENTRY_REDIRECT,
)
from fastserve._speedups.headers cimport byteranges_layout, current_http_date
from fastserve._speedups.pathlookup cimport origin_form, percent_decode
from fastserve._speedups.wire cimport head_start, plain_answer, response_head

cdef bytes GET = b"GET"
cdef bytes HEAD = b"HEAD"
cdef bytes CRLF = b"\r\n"
cdef bytes ALLOW = b"Allow: GET, HEAD\r\n"


cdef inline bint _is_method(bytes method, const char* name, Py_ssize_t size):
    return PyBytes_GET_SIZE(method) == size and memcmp(PyBytes_AS_STRING(method), name, size) == 0


cdef class WireAnswer:
    """One static answer on its way to the wire; refilled by ``answer_static`` for each request."""


cdef inline void _refresh_memo(CacheEntry entry, bytes date):
    """Forget an entry's pre-built responses once the Date they carry has passed."""
    if entry.memo_date is not date:
        entry.memo_date = date
        entry.memo_ok = None
        entry.memo_not_modified = None


cdef inline void _ready(WireAnswer out, int status, bytes data):
    out.status = status
    out.data = data
    out.file = None
    out.segments = None


cdef inline void _transfer(WireAnswer out, int status, CacheEntry entry, list segments):
    out.status = status
    out.data = None
    out.file = entry.file
    out.segments = segments


cdef void answer_static(
    WireAnswer out, FileCache cache, int max_ranges, bytes method, bytes url, bint keep_alive, bint http10,
    bytes if_match, bytes if_none_match, bytes if_modified_since, bytes if_unmodified_since,
    bytes range_value, bytes if_range, bytes accept_encoding,
):
    """Fill ``out`` with the answer to ``method`` (bytes) on the request-target ``url``.

    Other methods get 405 with ``Allow``; an unusable target 400; then 304/412 (RFC 9110
    section 13.2.2), 206/416 for a Range on a GET (section 14), 200, 307 to a directory's
    slash form, 404.
    """
    cdef CacheEntry entry
    cdef int status
    cdef bytes raw = url
    cdef Py_ssize_t q
    cdef bint head = _is_method(method, b"HEAD", 4)
    if not head and not _is_method(method, b"GET", 3):
        _ready(out, 405, plain_answer(405, b"Method Not Allowed", ALLOW, keep_alive, http10, head))
        return
    if raw is None or len(raw) == 0 or (<const char*>raw)[0] != b"/":
        raw = origin_form(raw or b"")
        if raw is None:
            _ready(out, 400, plain_answer(400, b"Bad Request", b"", keep_alive, http10, head))
            return
    cdef const char* start = raw
    cdef const char* mark = <const char*>memchr(start, b"?", len(raw))
    q = -1 if mark == NULL else mark - start
    cdef bytes raw_path = raw if q < 0 else raw[:q]
    path = percent_decode(raw_path)  # starts with "/", as raw does
    if path is None:
        _ready(out, 400, plain_answer(400, b"Bad Request", b"", keep_alive, http10, head))
        return
    entry = cache.lookup(path)
    if entry.variants is not None and accept_encoding is not None:
        entry = choose_representation(entry, accept_encoding)
    if entry.kind == ENTRY_FILE:
        status = evaluate_preconditions(
            method, if_match, if_unmodified_since, if_none_match, if_modified_since, entry.etag, entry.mtime,
        )
        if status == 304:
            _not_modified(out, entry, keep_alive, http10)
        elif status == 412:
            _ready(out, 412, plain_answer(412, b"Precondition Failed", b"", keep_alive, http10, head))
        elif range_value is not None and not head:
            _range(out, entry, range_value, if_range, max_ranges, keep_alive, http10)
        else:
            _file(out, entry, 200, head, keep_alive, http10)
    elif entry.kind == ENTRY_REDIRECT:
        _redirect(out, raw_path, raw[q:] if q >= 0 else b"", head, keep_alive, http10)
    elif entry.kind == ENTRY_MISSING and entry.file is not None:
        _file(out, entry, 404, head, keep_alive, http10)   # a large 404.html
    else:
        _head_body(out, entry.status, entry.fields, entry.body, head, keep_alive, http10)


cdef void _head_body(WireAnswer out, int status, bytes fields, bytes body, bint head, bint keep_alive, bint http10):
    cdef bytes start = response_head(status, fields, keep_alive, http10)
    _ready(out, status, start if head or not body else start + body)


cdef void _file(WireAnswer out, CacheEntry entry, int status, bint head, bint keep_alive, bint http10):
    cdef bytes date
    if entry.body is not None:
        if status == 200 and not head and keep_alive and not http10:
            date = current_http_date()
            _refresh_memo(entry, date)
            if entry.memo_ok is None:
                entry.memo_ok = b"".join((head_start(200, date), entry.fields, CRLF, entry.body))
            _ready(out, 200, entry.memo_ok)
        else:
            _head_body(out, status, entry.fields, entry.body, head, keep_alive, http10)
        return
    start = response_head(status, entry.fields, keep_alive, http10)
    if head:
        _ready(out, status, start)
    else:
        _transfer(out, status, entry, [start, (0, entry.size)])


cdef void _not_modified(WireAnswer out, CacheEntry entry, bint keep_alive, bint http10):
    cdef bytes date
    if keep_alive and not http10:
        date = current_http_date()
        _refresh_memo(entry, date)
        if entry.memo_not_modified is None:
            entry.memo_not_modified = b"".join((head_start(304, date), entry.validator_fields, CRLF))
        _ready(out, 304, entry.memo_not_modified)
    else:
        _ready(out, 304, response_head(304, entry.validator_fields, keep_alive, http10))


cdef void _range(
    WireAnswer out, CacheEntry entry, bytes range_value, bytes if_range, int max_ranges, bint keep_alive, bint http10
):
    cdef int status
    cdef list parts
    cdef long long first, last
    status, ranges = evaluate_range(
        GET, range_value, if_range, entry.etag, entry.mtime, entry.size, max_ranges,
    )
    if status == 200:
        _file(out, entry, 200, False, keep_alive, http10)
        return
    if status == 416:
        _head_body(
            out, 416, b"Content-Range: bytes */%d\r\nContent-Length: 0\r\n" % entry.size, b"", False,
            keep_alive, http10,
        )
        return
    if len(ranges) == 1:
        first, last = ranges[0]
        fields = b"Content-Type: %s\r\nContent-Length: %d\r\nContent-Range: bytes %d-%d/%d\r\n%sAccept-Ranges: bytes\r\n" % (
            entry.content_type, last - first + 1, first, last, entry.size, entry.validator_fields
        )
        if entry.body is not None:
            _ready(out, 206, response_head(206, fields, keep_alive, http10) + entry.body[first:last + 1])
        else:
            _transfer(out, 206, entry, [response_head(206, fields, keep_alive, http10), (first, last - first + 1)])
        return
    boundary = os.urandom(12).hex().encode()
    heads, tail, length = byteranges_layout(ranges, entry.content_type, entry.size, boundary)
    fields = b"Content-Type: multipart/byteranges; boundary=%s\r\nContent-Length: %d\r\n%sAccept-Ranges: bytes\r\n" % (
        boundary, length, entry.validator_fields
    )
    if entry.body is not None:
        pieces = [response_head(206, fields, keep_alive, http10)]
        for i in range(len(ranges)):
            first, last = ranges[i]
            pieces.append(heads[i])
            pieces.append(entry.body[first:last + 1])
        pieces.append(tail)
        _ready(out, 206, b"".join(pieces))
        return
    parts = [response_head(206, fields, keep_alive, http10)]
    for i in range(len(ranges)):
        first, last = ranges[i]
        parts.append(heads[i])
        parts.append((first, last - first + 1))
    parts.append(tail)
    _transfer(out, 206, entry, parts)


cdef void _redirect(WireAnswer out, bytes raw_path, bytes query, bint head, bint keep_alive, bint http10):
    # Collapse leading slashes so "//host/dir" can never become a protocol-relative URL.
    location = b"/" + raw_path.lstrip(b"/") + b"/" + query
    for c in b"\r\n\x00":
        if c in location:
            _ready(out, 400, plain_answer(400, b"Bad Request", b"", keep_alive, http10, head))
            return
    _head_body(out, 307, b"Location: %s\r\nContent-Length: 0\r\n" % location, b"", head, keep_alive, http10)
