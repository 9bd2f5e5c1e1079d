"""Response heads on the wire (RFC 9112 section 4): what every answer the connection writes starts with.

``fields`` arguments are header lines already serialised (``b"Name: value\\r\\n"`` each); the
head adds the status line, ``Server``, ``Date``, the ``Connection`` field and the blank line.
"""
from fastserve._speedups.headers cimport current_http_date, reason_phrase

cdef bytes CRLF = b"\r\n"
cdef bytes SERVER_DATE = b"Server: fastserve\r\nDate: "
cdef bytes CONNECTION_CLOSE = b"Connection: close\r\n"
cdef bytes CONNECTION_KEEP_ALIVE = b"Connection: keep-alive\r\n"
cdef dict _STATUS_LINES = {}


cdef bytes status_line(int status):
    """``HTTP/1.1 <status> <reason>\\r\\n``, built once per status."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status))
    return line


cdef bytes connection_field(bint keep_alive, bint http10):
    """The Connection field an answer needs: ``close`` when the connection ends after it,
    ``keep-alive`` for an HTTP/1.0 client that asked to keep it, nothing otherwise."""
    if not keep_alive:
        return CONNECTION_CLOSE
    if http10:
        return CONNECTION_KEEP_ALIVE
    return b""


cdef bytes response_head(int status, bytes fields, bint keep_alive, bint http10):
    return b"".join((
        status_line(status), SERVER_DATE, current_http_date(), CRLF, fields,
        connection_field(keep_alive, http10), CRLF,
    ))


cdef bytes plain_answer(int status, bytes text, bytes extra, bint keep_alive, bint http10, bint head):
    """A ``text/plain`` answer with ``text`` as its body (none for HEAD); ``extra``: more fields."""
    cdef bytes start = response_head(
        status,
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%s" % (len(text), extra),
        keep_alive, http10,
    )
    if head or not text:
        return start
    return start + text
