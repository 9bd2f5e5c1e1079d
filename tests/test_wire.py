"""``wire.render_fields``: a field list as header lines, with the usual spellings of the names
fastserve writes itself (names are case-insensitive, RFC 9110 section 5.1)."""
from fastserve._speedups.wire import render_fields


def test_known_names_get_their_usual_spelling() -> None:
    fields = [
        (b"content-type", b"text/css"), (b"content-length", b"12"), (b"etag", b'"a-1"'),
        (b"last-modified", b"Mon, 30 Nov 2026 10:00:00 GMT"), (b"cache-control", b"no-cache"),
        (b"vary", b"Accept-Encoding"), (b"content-encoding", b"br"),
    ]
    assert render_fields(fields) == (
        b"Content-Type: text/css\r\nContent-Length: 12\r\nETag: \"a-1\"\r\n"
        b"Last-Modified: Mon, 30 Nov 2026 10:00:00 GMT\r\nCache-Control: no-cache\r\n"
        b"Vary: Accept-Encoding\r\nContent-Encoding: br\r\n"
    )


def test_other_names_are_written_as_given_in_order() -> None:
    fields = [(b"x-frame-options", b"DENY"), (b"X-Custom", b"1"), (b"x-frame-options", b"SAMEORIGIN")]
    assert render_fields(fields) == b"x-frame-options: DENY\r\nX-Custom: 1\r\nx-frame-options: SAMEORIGIN\r\n"
    assert render_fields([]) == b""
