# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Conditional request and Range decisions for a static file.

Both faces of fastserve (the ASGI ``StaticFiles`` and the protocol's fast path) ask these
functions what to answer, so 304/412/206/416 behave identically everywhere.
"""

from libc.time cimport time as c_time

from fastserve._speedups.headers cimport etag_matches, parse_http_date, parse_range

cdef tuple _FULL = (200, None)
cdef tuple _UNSATISFIABLE = (416, None)


cdef inline bint _is_get_or_head(bytes method):
    return method is not None and (method == b"GET" or method == b"HEAD")


cpdef int evaluate_preconditions(bytes method, bytes if_match, bytes if_unmodified_since,
                                 bytes if_none_match, bytes if_modified_since, bytes etag,
                                 long long last_modified, bint modified_since_exact=False):
    """0 to proceed, 304 (Not Modified) or 412 (Precondition Failed), in RFC 9110 13.2.2 order.

    ``last_modified`` is the file's mtime in whole seconds; absent headers are None; ``etag``
    None means there is no current representation, ``b""`` one sent without an entity-tag
    (``--etag off``: only ``*`` matches it, as in nginx). If-Modified-Since
    (section 13.1.3) gives 304 when ``last_modified`` is at or before its date, or, with
    ``modified_since_exact``, only when it is that date (nginx's ``if_modified_since exact``);
    a date later than now is ignored in both cases (a client's clock is no validator).
    """
    cdef long long date
    if if_match is not None:
        if not etag_matches(if_match, etag, False):
            return 412
    elif if_unmodified_since is not None:
        date = parse_http_date(if_unmodified_since)
        if date != -1 and last_modified > date:
            return 412
    if if_none_match is not None:
        if etag_matches(if_none_match, etag, True):
            return 304 if _is_get_or_head(method) else 412
    elif if_modified_since is not None and _is_get_or_head(method):
        date = parse_http_date(if_modified_since)
        if date == -1 or date > c_time(NULL):
            return 0
        if last_modified == date or (last_modified < date and not modified_since_exact):
            return 304
    return 0


cpdef bint if_range_allows(bytes if_range, bytes etag, long long last_modified):
    """Whether a Range may be honoured under this If-Range value.

    An entity-tag must strongly equal ``etag``; a date must equal ``last_modified`` exactly;
    anything else (a list, ``*``, garbage, empty) means "send the whole representation".
    """
    if if_range is None:
        return True
    cdef const unsigned char* s = <const unsigned char*>if_range
    cdef Py_ssize_t start = 0
    cdef Py_ssize_t end = len(if_range)
    while start < end and (s[start] == 32 or s[start] == 9):
        start += 1
    while end > start and (s[end - 1] == 32 or s[end - 1] == 9):
        end -= 1
    if start == end:
        return False
    if s[start] == 34 or (s[start] == 87 and end - start > 1 and s[start + 1] == 47):  # '"' or 'W/': an entity-tag
        # exactly one strong tag, byte-equal to ours; a weak tag on either side never matches
        if etag is None or s[start] != 34 or etag[:1] != b'"':
            return False
        return end - start == len(etag) and if_range[start:end] == etag
    cdef long long date = parse_http_date(if_range)
    return date != -1 and date == last_modified


cpdef tuple evaluate_range(bytes method, bytes range_value, bytes if_range, bytes etag,
                           long long last_modified, long long size, int max_ranges=16):
    """``(200, None)``, ``(206, ranges)`` or ``(416, None)`` for a request's Range/If-Range.

    Only GET honours Range; an ignored Range or a failed If-Range serves the full body. On an
    empty representation no 206 can carry a part of nothing, yet a suffix range (``bytes=-5``)
    is satisfiable there (RFC 9110 section 14.1.1): a range that would take the first byte of a
    one-byte representation (a suffix, or one from 0) gets the whole (empty) representation,
    others 416, as nginx answers.
    """
    if range_value is None or method is None or method != b"GET":
        return _FULL
    if not if_range_allows(if_range, etag, last_modified):
        return _FULL
    cdef object ranges = parse_range(range_value, size if size > 0 else 1, max_ranges)
    if size == 0 and ranges:
        return _FULL
    if ranges is None:
        return _FULL
    if not ranges:
        return _UNSATISFIABLE
    return (206, ranges)
