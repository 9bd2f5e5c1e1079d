"""The access-log line of a request refused before its head was read whole names the request as
its request line came, as nginx's ``$request`` does: the method, target and HTTP-version as sent
(``HTTP/1.2``, ``HTTP/2.0``), as much of a line cut short as came, a line that is no request line
as its bytes (escaped), and ``-`` for what never came. It named every such request
``"- - HTTP/1.1"`` (or an earlier request's method), and a 505 as HTTP/1.1.

In-process with both request readers and the real access logger (``AccessLog.format_line``, the
formats ``--access-log-format`` writes), bytes in, in one read and byte by byte.
"""
from __future__ import annotations

import json
from typing import Any, List

import pytest


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = scope["http_version"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


LONG = b"/" + b"a" * 3000

# (bytes sent, status, the request as the common format writes it)
REFUSALS = [
    (b"GET /a.txt HTTP/1.2\r\nHost: x\r\n\r\n", 200, "GET /a.txt HTTP/1.2"),            # served as HTTP/1.1
    (b"GET /a.txt HTTP/2.0\r\nHost: x\r\n\r\n", 505, "GET /a.txt HTTP/2.0"),
    (b"GET /a.txt HTTP/3.0\r\nHost: x\r\n\r\n", 505, "GET /a.txt HTTP/3.0"),
    (b"GET /a.txt HTTP/0.9\r\nHost: x\r\n\r\n", 505, "GET /a.txt HTTP/0.9"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "PRI * HTTP/2.0"),
    (b"GET /a.txt\r\n", 400, "GET /a.txt"),                                           # no version
    (b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX: " + b"b" * 5000 + b"\r\n\r\n", 431, "GET /a.txt HTTP/1.1"),
    (b"GET " + LONG + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "GET " + LONG.decode() + " HTTP/1.1"),
    (b"GET " + LONG + LONG, 414, "GET " + (LONG + LONG).decode()),                     # a line not ended
    (b"POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", 413, "POST /a.txt HTTP/1.1"),
    (b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "GET /a\\x01b HTTP/1.1"),
    (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "G(T / HTTP/1.1"),
    (b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", 501, "FOO / HTTP/1.1"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: x\r\n\r\n", 400, "GET / HTTP/1.1"),
    (b"GET / HTTP/1.1\r\n\r\n", 400, "GET / HTTP/1.1"),                                 # no Host
    (b"GET / HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n", 400, "GET / HTTP/1.0"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "GET / HTTP/1.1"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "GET / HTTP/1.1"),
    (b"GET / FOO/1.1\r\nHost: x\r\n\r\n", 400, "GET / FOO/1.1"),
    (b"GET / HTTP/1.1x\r\nHost: x\r\n\r\n", 400, "GET / HTTP/1.1x"),
    (b"\x16\x03\x01\x00\x05hello\r\n\r\n", 400, "\\x16\\x03\\x01\\x00\\x05hello"),        # TLS on the plain port
]


def common_requests(server: Any) -> List[tuple]:
    """(request, status) of each access line written so far, as the common format writes them."""
    log = server.state.access_logger
    out = []
    for facts in log.pending:
        line = log.format_line(*facts)
        request = line.split('] "', 1)[1].rsplit('" ', 1)[0]
        out.append((request, int(line.rsplit(" ", 2)[1])))
    return out


@pytest.mark.parametrize("sent, status, named", REFUSALS, ids=[
    "http12", "http2", "http3", "http09", "h2-preface", "no-version", "431", "414", "414-unended", "413",
    "ctl-in-target", "bad-method", "unknown-method", "bad-field-name", "no-host", "two-hosts-10", "two-lengths",
    "gzip-coding", "not-http", "version-suffix", "tls"])
@pytest.mark.parametrize("face", ["static", "asgi"])
@pytest.mark.parametrize("bytewise", [False, True])
def test_a_refused_request_is_logged_as_its_line_came(site, serve, sent, status, named, face, bytewise):
    server = serve(site if face == "static" else app, access_log=True, max_body_size=50,
                   max_header_bytes=4096, max_url_length=2048)
    client = server.open()
    for piece in ([sent[i:i + 1] for i in range(len(sent))] if bytewise else [sent]):
        if client.closed:
            break
        client.send(piece)
    server.settle()
    (logged, logged_status), = common_requests(server)
    assert logged_status == status
    if bytewise:  # refused as soon as a byte says so: the line as far as it came by then
        assert logged and named.startswith(logged), (logged, named)
    else:
        assert logged == named


@pytest.mark.parametrize("face", ["static", "asgi"])
def test_a_refusal_after_other_requests_names_its_own_line_and_version(site, serve, face):
    """Each line carries its own request's version, not the connection's latest: a request
    of HTTP/1.0 kept alive, then one of HTTP/1.2, then one refused in its head."""
    server = serve(site if face == "static" else app, access_log=True, max_header_bytes=4096)
    client = server.open()
    client.send(b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                b"GET /a.txt HTTP/1.2\r\nHost: x\r\n\r\n"
                b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nX: " + b"b" * 5000 + b"\r\n\r\n")
    server.settle()
    assert common_requests(server) == [
        ("GET /a.txt HTTP/1.0", 200), ("GET /a.txt HTTP/1.2", 200), ("HEAD /a.txt HTTP/1.1", 431)]
    assert bytes(client.transport.data).endswith(b"\r\n\r\n")  # the HEAD's refusal: no text


def test_a_head_timed_out_names_what_came_of_its_line(site, serve):
    server = serve(site, access_log=True, header_timeout=2.0)
    client = server.open()
    client.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    client.send(b"GET /par")
    server.tick(3.0)
    assert common_requests(server) == [("GET /a.txt HTTP/1.1", 200), ("GET /par", 408)]


def test_what_is_kept_of_a_line_is_bounded(site, serve):
    """A long line cut by a bad byte is named by its first 8 KiB, however it was sent."""
    server = serve(site, access_log=True, max_header_bytes=65536, max_url_length=65536)
    client = server.open()
    line = b"GET /" + b"c" * 30000 + b"\x01 HTTP/1.1\r\n"
    for i in range(0, len(line), 1000):
        client.send(line[i:i + 1000])
    (request, status), = common_requests(server)
    assert status == 400 and request == "GET /" + "c" * (8192 - 5)


@pytest.mark.parametrize("sent, expected", [
    (b"GET /a.txt?q=1 HTTP/2.0\r\nHost: x\r\n\r\n", ("GET", "/a.txt", "q=1", "2.0", 505)),
    (b"GET /a.txt HTTP/1.2\r\nHost: x\r\n\r\n", ("GET", "/a.txt", "", "1.2", 200)),
    (b"GET /a.txt\r\n", ("GET", "/a.txt", "", "-", 400)),
    (b"GET / FOO/1.1\r\nHost: x\r\n\r\n", ("GET", "/", "", "FOO/1.1", 400)),
    (b"\x16\x03\x01\x00\x05hello\r\n\r\n", ("\x16\x03\x01\x00\x05hello", "-", "", "-", 400)),
    # what follows the target is the client's bytes: a quote or a backslash in them stays in the field
    (b'GET / HTTP/1.1","status":1,"x":"\\\r\nHost: x\r\n\r\n', ("GET", "/", "", '1.1","status":1,"x":"\\', 400)),
])
def test_json_lines_name_the_same_parts(site, serve, sent, expected):
    server = serve(site, access_log=True, access_log_format="json")
    server.open().send(sent)
    server.settle()
    log = server.state.access_logger
    (record,) = [json.loads(log.format_line(*facts)) for facts in log.pending]
    assert (record["method"], record["path"], record["query"], record["version"], record["status"]) == expected
