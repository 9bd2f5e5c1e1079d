"""Response heads on the wire (RFC 9112 section 4): what every answer the connection writes starts with.

``fields`` arguments are header lines already serialised (``b"Name: value\\r\\n"`` each); the
head adds the status line, ``Server``, ``--header`` fields and ``Date``, the ``Connection`` field
and the blank line. A server field whose name the answer's own ``fields`` carry is left out of
that answer's head, so no head carries one field twice (RFC 9110 section 5.3); an operator's
``Vary`` is merged into the answer's own instead (``render_fields``).
"""
from fastserve._speedups.headers cimport current_http_date, reason_phrase, vary_union

cdef bytes CRLF = b"\r\n"
cdef bytes DATE = b"Date: "
# What follows every status line: Server and --header fields (set_server_fields), then Date.
cdef bytes SERVER_FIELDS = b"Server: fastserve\r\n"
# The same fields one by one, as (b"\nname:", line, whether a 304 leaves it out) (names
# lowercased), when an answer may carry one of them itself (any --header field given); empty
# otherwise: Server alone is never an answer's own field, so its block needs no look at the answer.
cdef tuple _OWN_FIELDS = ()
cdef bint SEND_DATE = True
# The operator's --header Vary value, merged into an answer's own Vary (render_fields); None: none given.
cdef bytes _OPERATOR_VARY = None
cdef bytes CONNECTION_CLOSE = b"Connection: close\r\n"
cdef bytes CONNECTION_KEEP_ALIVE = b"Connection: keep-alive\r\n"
cdef dict _STATUS_LINES = {}
# How the fields fastserve writes itself are spelled on the wire (names are case-insensitive,
# RFC 9110 section 5.1; these are the spellings clients and logs are used to).
cdef dict _WIRE_NAMES = {
    b"content-type": b"Content-Type",
    b"content-length": b"Content-Length",
    b"content-range": b"Content-Range",
    b"content-encoding": b"Content-Encoding",
    b"last-modified": b"Last-Modified",
    b"etag": b"ETag",
    b"vary": b"Vary",
    b"cache-control": b"Cache-Control",
    b"accept-ranges": b"Accept-Ranges",
    b"allow": b"Allow",
    b"location": b"Location",
}


cdef bytes status_line(int status):
    """``HTTP/1.1 <status> <reason>\\r\\n``, built once per status."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status))
    return line


cpdef bytes render_fields(list fields):
    """``[(lowercase name, value), ...]`` as header lines (``Name: value\\r\\n`` each).

    The wire rendering of a field list whose ASGI rendering is the list itself; a ``Vary``
    carries the operator's ``--header Vary`` members too (``headers.vary_union``), as an app's
    does on the ASGI face (``ServerHeaders.merged``), and the server's own line of it is then
    left out of the head.
    """
    cdef list lines = []
    for name, value in fields:
        if _OPERATOR_VARY is not None and name == b"vary":
            value = vary_union(value, _OPERATOR_VARY)  # a list: the operator's members join the answer's
        lines.append(_WIRE_NAMES.get(name, name))
        lines.append(b": ")
        lines.append(value)
        lines.append(CRLF)
    return b"".join(lines)


cdef tuple CLOSE_PAIR = (b"connection", b"close")
cdef tuple KEEP_ALIVE_PAIR = (b"connection", b"keep-alive")


cdef tuple connection_pair(bint keep_alive, bint http10):
    """The Connection field an answer needs (RFC 9112 section 9.6), for every answer fastserve
    writes (static or from an app): ``close`` when the connection ends after it, ``keep-alive``
    for an HTTP/1.0 client that asked to keep it, None otherwise."""
    if not keep_alive:
        return CLOSE_PAIR
    if http10:
        return KEEP_ALIVE_PAIR
    return None


cdef bytes connection_field(bint keep_alive, bint http10):
    """``connection_pair`` as a header line (b"" for none)."""
    pair = connection_pair(keep_alive, http10)
    if pair is None:
        return b""
    return CONNECTION_CLOSE if pair is CLOSE_PAIR else CONNECTION_KEEP_ALIVE


def set_server_fields(list fields, bint date, bytes vary=None) -> None:
    """Set what every head of this process carries after its status line.

    ``fields``: ``[(lowercased name, b"Name: value\\r\\n", whether a 304 leaves it out), ...]``
    in order (``fastserve.server.response_headers.ServerHeaders.static_fields``); one whose name
    an answer's own fields carry is left out of that answer's head. ``date``: whether a ``Date``
    field follows them (RFC 9110 section 6.6.1). ``vary``: the operator's ``Vary`` value
    (``ServerHeaders.vary``), merged into the ``Vary`` of each answer rendered from now on.
    """
    global SERVER_FIELDS, SEND_DATE, _block_date, _OWN_FIELDS, _OPERATOR_VARY
    SERVER_FIELDS = b"".join([each[1] for each in fields])
    SEND_DATE = date
    _OPERATOR_VARY = vary
    _block_date = None
    _OWN_FIELDS = ()
    if any(each[0] != b"server" for each in fields):
        _OWN_FIELDS = tuple([(b"\n" + name + b":", line, bool(not_on_304)) for name, line, not_on_304 in fields])


# SERVER_FIELDS and the Date line together, rebuilt when the date (a new object each second) changes.
cdef bytes _date_block = None
cdef object _block_date = None


cdef inline bytes _server_block(bytes date):
    """The server's fields and ``Date: <date>`` (when dates are sent), built once per date."""
    global _date_block, _block_date
    if not SEND_DATE:
        return SERVER_FIELDS
    if date is not _block_date:
        _date_block = b"".join((SERVER_FIELDS, DATE, date, CRLF))
        _block_date = date
    return _date_block


cdef bytes _block_for(int status, bytes fields, bytes date):
    """``_server_block``, less the server fields whose names ``fields`` (the answer's own lines)
    carry, and on a 304 those ``set_server_fields`` says it leaves out."""
    cdef list kept
    cdef bytes lowered
    cdef Py_ssize_t i
    if len(_OWN_FIELDS) == 0:
        return _server_block(date)
    lowered = b"\n" + fields.lower()  # each line starts after a LF: b"\nname:" finds a field by its name
    kept = None
    for i in range(len(_OWN_FIELDS)):
        needle, line, not_on_304 = _OWN_FIELDS[i]
        if needle in lowered or (status == 304 and not_on_304):
            if kept is None:
                kept = [each[1] for each in _OWN_FIELDS[:i]]
        elif kept is not None:
            kept.append(line)
    if kept is None:
        return _server_block(date)
    if SEND_DATE:
        kept += [DATE, date, CRLF]
    return b"".join(kept)


cdef bytes head_start(int status, bytes fields, bytes date):
    """The status line, the server's fields (less those ``fields`` carry) and ``Date: <date>``
    (when dates are sent); ``fields``, the answer's own lines, follow it."""
    return status_line(status) + _block_for(status, fields, date)


cdef bytes response_head(int status, bytes fields, bint keep_alive, bint http10):
    return whole_response(status, fields, keep_alive, http10, b"")


cdef bytes whole_response(int status, bytes fields, bint keep_alive, bint http10, bytes body):
    """The head (``fields`` are serialised lines) and ``body`` in one bytes object, copied once."""
    return b"".join((
        status_line(status), _block_for(status, fields, current_http_date()), fields,
        connection_field(keep_alive, http10),
        CRLF, body,
    ))


cdef bytes plain_answer(int status, bytes extra, bint keep_alive, bint http10, bint head):
    """A ``text/plain`` answer whose body is the reason phrase (none for HEAD); ``extra``: more fields."""
    cdef bytes text = reason_phrase(status)
    return whole_response(
        status,
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%s" % (len(text), extra),
        keep_alive, http10, b"" if head else text,
    )
