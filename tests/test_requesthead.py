"""``requesthead.scan_simple_head``: which heads it reads itself, and what it reads from them."""
from __future__ import annotations

import random

import httptools
import pytest

from fastserve._speedups.protocol import request_parser
from fastserve._speedups.requesthead import scan_head, valid_host, version_served

SCAN_INCOMPLETE = 0
SCAN_OTHER = -1

PLAIN = b"GET /small.txt HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"


def test_plain_get_is_read_to_its_end() -> None:
    end, fields = scan_head(PLAIN)
    assert end == len(PLAIN)
    assert fields == {
        "method": b"GET", "target": b"/small.txt", "http10": False, "protocol": b"HTTP/1.1", "connection": "default",
        "lines": [(b"Host", b"localhost:8080")],
    }


def test_head_and_http10() -> None:
    data = b"HEAD /a/b?c=d HTTP/1.0\r\n\r\n"
    assert scan_head(data) == (len(data), {
        "method": b"HEAD", "target": b"/a/b?c=d", "http10": True, "protocol": b"HTTP/1.0", "connection": "default",
        "lines": [],
    })


def test_every_field_the_static_path_reads() -> None:
    data = (
        b"GET /f HTTP/1.1\r\nHost: x\r\n"
        b"If-Match: \"a\"\r\nIf-None-Match: \"b\", W/\"c\"\r\n"
        b"If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        b"If-Unmodified-Since: Mon, 07 Nov 1994 08:49:37 GMT\r\n"
        b"Range: bytes=0-9\r\nIf-Range: \"d\"\r\nAccept-Encoding: gzip, br;q=0.5\r\n"
        b"User-Agent: test\r\n\r\n"
    )
    end, fields = scan_head(data)
    assert end == len(data)
    assert fields["if_match"] == b'"a"'
    assert fields["if_none_match"] == b'"b", W/"c"'
    assert fields["if_modified_since"] == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert fields["if_unmodified_since"] == b"Mon, 07 Nov 1994 08:49:37 GMT"
    assert fields["range"] == b"bytes=0-9"
    assert fields["if_range"] == b'"d"'
    assert fields["accept_encoding"] == b"gzip, br;q=0.5"


@pytest.mark.parametrize("name", [b"if-none-match", b"IF-NONE-MATCH", b"iF-nOnE-mAtCh"])
def test_field_names_are_case_insensitive(name: bytes) -> None:
    data = b"GET / HTTP/1.1\r\n" + name + b": \"x\"\r\n\r\n"
    assert scan_head(data)[1]["if_none_match"] == b'"x"'


def test_values_lose_surrounding_whitespace_only() -> None:
    data = b"GET / HTTP/1.1\r\nRange:\t bytes=1-2 \t\r\nIf-Range:   a  b  \r\n\r\n"
    fields = scan_head(data)[1]
    assert fields["range"] == b"bytes=1-2"
    assert fields["if_range"] == b"a  b"


def test_empty_value_is_present_and_empty() -> None:
    assert scan_head(b"GET / HTTP/1.1\r\nIf-None-Match:\r\n\r\n")[1]["if_none_match"] == b""


@pytest.mark.parametrize("name", [b"Range", b"If-None-Match", b"accept-encoding", b"X-Forwarded-For"])
def test_a_repeated_static_field_is_left_to_httptools(name: bytes) -> None:
    """Its lines are joined (RFC 9110 section 5.3) by ``RequestHead.set_field``, which the
    httptools reader calls per line; the scanner keeps one span per field."""
    data = b"GET / HTTP/1.1\r\n" + name + b": a\r\nHost: x\r\n" + name + b": b\r\n\r\n"
    assert scan_head(data) == (SCAN_OTHER, None)


def test_a_repeated_field_that_the_static_path_does_not_read_stays_simple() -> None:
    data = b"GET / HTTP/1.1\r\nX-A: 1\r\nX-A: 2\r\nCookie: a\r\nCookie: b\r\n\r\n"
    assert scan_head(data)[0] == len(data)


def test_names_that_only_share_a_length_are_ignored() -> None:
    data = b"GET / HTTP/1.1\r\nIf-None-Matcx: a\r\nRangf: b\r\nUpgradx: c\r\nContent-Lengtx: 4\r\n\r\n"
    end, fields = scan_head(data)
    assert end == len(data)
    assert set(fields) == {"method", "target", "http10", "protocol", "connection", "lines"}
    assert [name for name, _ in fields["lines"]] == [b"If-None-Matcx", b"Rangf", b"Upgradx", b"Content-Lengtx"]


@pytest.mark.parametrize("value, expected", [
    (b"keep-alive", "keep-alive"), (b"Keep-Alive", "keep-alive"), (b"close", "close"), (b"CLOSE", "close"),
])
def test_connection_keep_alive_or_close(value: bytes, expected: str) -> None:
    data = b"GET / HTTP/1.0\r\nConnection: " + value + b"\r\n\r\n"
    assert scan_head(data)[1]["connection"] == expected


def test_every_line_is_listed_in_order_with_its_trimmed_value() -> None:
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX-A:\t 1 \r\nx-a: 2\r\nX-Empty:\r\nRange: bytes=0-1\r\n\r\n"
    assert scan_head(data)[1]["lines"] == [
        (b"Host", b"h"), (b"X-A", b"1"), (b"x-a", b"2"), (b"X-Empty", b""), (b"Range", b"bytes=0-1"),
    ]


def test_more_lines_than_can_be_listed_leave_the_head_to_the_parser() -> None:
    data = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(5)) + b"\r\n"
    assert len(scan_head(data, max_lines=5)[1]["lines"]) == 5
    assert scan_head(data, max_lines=4) == (SCAN_OTHER, None)


def test_second_head_is_read_from_its_offset() -> None:
    second = b"HEAD /two HTTP/1.1\r\n\r\n"
    end, fields = scan_head(PLAIN + second, start=len(PLAIN))
    assert end == len(PLAIN) + len(second)
    assert fields["target"] == b"/two"


@pytest.mark.parametrize("cut", range(1, len(PLAIN)))
def test_a_head_cut_short_is_incomplete_or_left_to_the_parser(cut: int) -> None:
    assert scan_head(PLAIN[:cut])[0] in (SCAN_INCOMPLETE, SCAN_OTHER)


def test_a_head_missing_only_the_last_line_is_incomplete() -> None:
    assert scan_head(PLAIN[:-2]) == (SCAN_INCOMPLETE, None)


@pytest.mark.parametrize("data", [
    b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",       # another method
    b"get / HTTP/1.1\r\n\r\n",                               # methods are case-sensitive
    b"GET http://x/ HTTP/1.1\r\n\r\n",                       # absolute form
    b"GET * HTTP/1.1\r\n\r\n",
    b"GET  / HTTP/1.1\r\n\r\n",                              # two spaces
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET / HTTP/1.1 \r\n\r\n",
    b"GET / HTTP/1.1\n\n",                                   # bare LF
    b"GET / HTTP/1.1\r\nHost: x\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\rx\r\n\r\n",                 # bare CR
    b"GET /a\x7fb HTTP/1.1\r\n\r\n",                         # DEL in the target
    b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n",                    # raw UTF-8 in the target
    b"GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n",             # obs-text in a value
    b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",                  # NUL in a value
    b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",                   # space before the colon
    b"GET / HTTP/1.1\r\n: x\r\n\r\n",                        # empty name
    b"GET / HTTP/1.1\r\nX(: y\r\n\r\n",                      # separator in a name
    b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",                 # obs-fold
    b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",          # any body framing
    b"GET / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello",
    b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: close\r\nConnection: close\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\n\r\n",                           # leading empty line
])
def test_anything_outside_the_subset_is_left_to_the_parser(data: bytes) -> None:
    assert scan_head(data) == (SCAN_OTHER, None)


TCHAR = set(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&'*+-.^_`|~")


@pytest.mark.parametrize("byte", range(256))
def test_header_names_are_rfc9110_tokens_and_values_visible_ascii(byte: int) -> None:
    name_head = b"GET / HTTP/1.1\r\nX" + bytes([byte]) + b"Y: v\r\n\r\n"
    # a colon ends the name there: "X:Y: v" is the field X with the value "Y: v"
    assert (scan_head(name_head)[0] > 0) == (byte in TCHAR or byte == ord(":"))
    value_head = b"GET / HTTP/1.1\r\nX: a" + bytes([byte]) + b"b\r\n\r\n"
    assert (scan_head(value_head)[0] > 0) == (byte == 9 or 32 <= byte <= 126)


def test_every_byte_at_every_offset_of_long_names_values_and_targets() -> None:
    """Long names, values and targets are read eight bytes at a time: a byte must be judged
    alike wherever it falls in a word, and the spans must end where the per-byte rule ends them."""
    name_chars = b"Abcdefghijklmnopqrstuvwxyz-0123456789"
    for offset in range(17):
        for byte in range(256):
            name = name_chars[:offset] + bytes([byte]) + name_chars[offset:]
            end, fields = scan_head(b"GET / HTTP/1.1\r\n" + name + b": v\r\n\r\n")
            if byte == ord(":") and offset == 0:  # an empty name
                assert end < 0
            elif byte == ord(":"):  # the name ends there; the rest joins the value
                assert fields["lines"] == [(name_chars[:offset], name_chars[offset:] + b": v")]
            else:
                assert (end > 0) == (byte in TCHAR), (offset, byte)
                if end > 0:
                    assert fields["lines"] == [(name, b"v")]
            value = b"x" * offset + bytes([byte]) + b"y" * 17
            end, fields = scan_head(b"GET / HTTP/1.1\r\nX: " + value + b"\r\n\r\n")
            assert (end > 0) == (byte == 9 or 32 <= byte <= 126), (offset, byte)
            if end > 0:
                assert fields["lines"] == [(b"X", value.strip(b" \t"))]
            target = b"/" + b"t" * offset + bytes([byte]) + b"u" * 17
            end, fields = scan_head(b"GET " + target + b" HTTP/1.1\r\n\r\n")
            if byte == 32:  # the target ends there, and the request line is malformed
                assert end < 0
            else:
                assert (end > 0) == (33 <= byte <= 126), (offset, byte)
                if end > 0:
                    assert fields["target"] == target


def test_limits_leave_the_head_to_the_parser() -> None:
    data = b"GET /" + b"a" * 99 + b" HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
    assert scan_head(data, max_target=100)[0] == len(data)
    assert scan_head(data, max_target=99) == (SCAN_OTHER, None)
    assert scan_head(data, max_fields=3)[0] == len(data)
    assert scan_head(data, max_fields=2) == (SCAN_OTHER, None)
    assert scan_head(data, max_head=len(data))[0] == len(data)
    assert scan_head(data, max_head=len(data) - 1) == (SCAN_OTHER, None)


class _Recorder:
    """Collects what httptools reports, for comparison with the scanner."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: dict = {}
        self.lines: list = []
        self.complete = False
        self.parser: httptools.HttpRequestParser | None = None
        self.keep_alive: bool | None = None

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # asked when the protocol asks it

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value
        self.lines.append((name, value))

    def on_message_complete(self) -> None:
        self.complete = True


@pytest.mark.parametrize("data", [
    PLAIN,
    b"HEAD /x?y=%20 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"e\"\r\nRange: bytes=1-\r\nAccept-Encoding: br\r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET /v HTTP/1.2\r\nHost: h\r\n\r\n",  # a higher HTTP/1 minor version: served as HTTP/1.1
    b"HEAD /v HTTP/1.9\r\n\r\n",
])
def test_what_it_accepts_httptools_reads_the_same_way(data: bytes) -> None:
    recorder = _Recorder()
    parser = recorder.parser = request_parser(recorder)
    parser.feed_data(data)
    end, fields = scan_head(data)
    assert end == len(data) and recorder.complete
    assert fields["method"] == parser.get_method()
    assert fields["target"] == recorder.url
    assert fields["http10"] == (version_served(parser.get_http_version()) == 1)
    assert fields["protocol"] == b"HTTP/" + parser.get_http_version().encode()
    keep_alive = {"default": not fields["http10"], "keep-alive": True, "close": False}[fields["connection"]]
    assert keep_alive == recorder.keep_alive
    for key, name in [("if_none_match", b"if-none-match"), ("range", b"range"), ("accept_encoding", b"accept-encoding")]:
        if name in recorder.headers:
            assert fields[key] == recorder.headers[name].strip()


@pytest.mark.parametrize("start", [-1, len(PLAIN) + 1])
def test_a_start_outside_the_data_is_refused(start: int) -> None:
    with pytest.raises(ValueError):
        scan_head(PLAIN, start=start)


def test_a_start_at_the_end_finds_nothing_yet() -> None:
    assert scan_head(PLAIN, start=len(PLAIN)) == (SCAN_INCOMPLETE, None)


_BASES = [
    PLAIN,
    b"HEAD /a/b.txt?x=1&y=%41 HTTP/1.0\r\nConnection: keep-alive\r\nAccept-Encoding: gzip\r\n\r\n",
    b"GET /f HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"e-1\"\r\nRange: bytes=0-9\r\nIf-Range: \"e-1\"\r\n\r\n",
    b"GET /x HTTP/1.1\r\nHost: h\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
    # what a browser sends through a CDN: long names and values, read eight bytes at a time
    b"GET /assets/app.3f9a1c.css?v=20261201 HTTP/1.1\r\nHost: static.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n"
    b"Sec-Fetch-Dest: style\r\nX-Forwarded-For: 203.0.113.7, 198.51.100.20\r\n"
    b"If-None-Match: \"18ecfa28fb1db662-400\"\r\n\r\n",
]
_NOISE = b"\r\n \t:\x00\x7f\x80\xffaG/%\"{<|\\-;,=?#"


def _mutations(count: int, seed: int):
    rng = random.Random(seed)
    for _ in range(count):
        data = bytearray(rng.choice(_BASES))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data))
            action = rng.randrange(3)
            if action == 0:
                data[at] = rng.choice(_NOISE)
            elif action == 1:
                data.insert(at, rng.choice(_NOISE))
            else:
                del data[at]
        yield bytes(data)


def assert_httptools_reads_alike(head: bytes, fields: dict) -> None:
    """``head`` is what the scanner accepted, read as ``fields``: httptools must read the same."""
    recorder = _Recorder()
    parser = recorder.parser = request_parser(recorder)  # as the connection reads with it
    try:
        parser.feed_data(head)
    except httptools.HttpParserError as exc:  # pragma: no cover - the failure being guarded
        pytest.fail(f"scanner accepted {head!r}, httptools refused it: {exc}")
    assert recorder.complete, head
    assert fields["method"] == parser.get_method(), head
    assert fields["target"] == recorder.url, head
    assert fields["http10"] == (version_served(parser.get_http_version()) == 1), head
    assert fields["protocol"] == b"HTTP/" + parser.get_http_version().encode(), head
    keep_alive = {"default": not fields["http10"], "keep-alive": True, "close": False}[fields["connection"]]
    assert keep_alive == recorder.keep_alive, head
    for key, name in [("if_none_match", b"if-none-match"), ("range", b"range"),
                      ("accept_encoding", b"accept-encoding"), ("if_range", b"if-range"),
                      ("if_modified_since", b"if-modified-since")]:
        assert fields.get(key) == (recorder.headers[name].strip(b" \t") if name in recorder.headers else None), head
    assert fields["lines"] == [(name, value.strip(b" \t")) for name, value in recorder.lines], head


def test_any_head_it_accepts_httptools_accepts_and_reads_alike() -> None:
    """Differential check over thousands of mangled heads: the scanner may leave more to
    httptools than it needs to, but never accept a head httptools would read differently."""
    accepted = 0
    for data in _mutations(4000, seed=2026):
        end, fields = scan_head(data)
        if end <= 0:
            continue
        accepted += 1
        assert_httptools_reads_alike(data[:end], fields)
    assert accepted > 500  # the mutations left plenty of simple heads to compare


@pytest.mark.parametrize("value, valid", [
    (b"", True), (b"localhost", True), (b"localhost:8000", True), (b"127.0.0.1:8080", True),
    (b"[::1]:8000", True), (b"[fe80::1%25eth0]", True), (b"my_host.example.", True),
    (b"x,y", True), (b"ex%41mple", True), (b"EXAMPLE.com:", True), (b"xn--bcher-kva.example", True),
    (b"a b", False), (b"x/y", False), (b"[::1", False), (b"x:abc", False), (b"x:80:90", False),
    (b"%zz", False), (b"%4", False), (b"[::1]x", False), (b"::1", False), (b"h\x80", False),
    (b"x@y", False), (b"[::1]/", False), (b"h\t", False),
])
def test_host_values_are_uri_host_and_port(value: bytes, valid: bool) -> None:
    """RFC 9110 section 7.2 / RFC 3986 section 3.2.2; ``host_value_valid`` on both readers."""
    assert valid_host(value) is valid


HOST_CHARS = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=")


@pytest.mark.parametrize("byte", range(256))
def test_a_host_name_is_unreserved_and_sub_delims(byte: int) -> None:
    assert valid_host(b"a" + bytes([byte]) + b"b") is (byte in HOST_CHARS)
