"""--access-log for every request: static, apps, WebSocket handshakes, refused requests;
--access-log-format common|combined|json; lines through the buffer to fastserve.access."""
from __future__ import annotations

import json
import logging
import re
import textwrap
import time
from pathlib import Path
from typing import List

import pytest

from server_helpers import CliProcess, DocRoot, RawConnection, ServerProcess, build_request, port_from_url

CLF = re.compile(
    r'^(?P<client>\S+) - - \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000)\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+)(?: "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)")?$'
)

APP = textwrap.dedent('''
    import asyncio

    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})
            return
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            await asyncio.sleep(0.05)
        body = b"app body"
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
''')


def access_lines(srv: CliProcess, count: int, pattern: str = "") -> List[str]:
    """The first ``count`` access-log lines (waiting for the buffer to be written)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [line for line in srv.output().splitlines()
                 if (line.startswith("127.0.0.1 - - [") or line.startswith('{"time"')) and pattern in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_common_format_for_static_requests(docroot: DocRoot, tmp_path: Path) -> None:
    with CliProcess([str(docroot.root), "--port", "0", "--access-log"], log_path=tmp_path / "log") as srv:
        port = port_from_url(srv.wait_listening())
        sizes = []
        with RawConnection(port) as conn:
            for method, target, headers in [("GET", "/small.txt?x=1", []), ("GET", "/missing-page", []),
                                            ("HEAD", "/medium.bin", []), ("GET", "/small.txt", [("If-None-Match", "*")]),
                                            ("GET", "/large.bin", [])]:
                response = conn.exchange(method, target, headers)
                sizes.append(len(response.raw_head) + len(response.body))
            conn.send(b"GET /bad\x01target HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.read_response().status == 400
        lines = access_lines(srv, 6)
    assert len(lines) == 6, srv.output()
    parsed = [CLF.match(line) for line in lines]
    assert all(parsed), lines
    assert [m["request"] for m in parsed] == [
        "GET /small.txt?x=1 HTTP/1.1", "GET /missing-page HTTP/1.1", "HEAD /medium.bin HTTP/1.1",
        "GET /small.txt HTTP/1.1", "GET /large.bin HTTP/1.1", "GET /bad\\x01target HTTP/1.1",
    ]
    assert [m["status"] for m in parsed] == ["200", "404", "200", "304", "200", "400"]
    assert [int(m["bytes"]) for m in parsed[:5]] == sizes
    assert all(m["client"] == "127.0.0.1" and m["referer"] is None for m in parsed)


def test_combined_format_has_referer_and_user_agent(docroot: DocRoot, tmp_path: Path) -> None:
    args = [str(docroot.root), "--port", "0", "--access-log", "--access-log-format", "combined"]
    with CliProcess(args, log_path=tmp_path / "log") as srv:
        port = port_from_url(srv.wait_listening())
        with RawConnection(port) as conn:
            conn.exchange("GET", "/small.txt", [("User-Agent", 'curl/8 "quoted"'), ("Referer", "https://a.example/")])
            conn.exchange("GET", "/page.html")
            # a body takes the request past the head scanner, to httptools
            conn.send(b"POST /small.txt HTTP/1.1\r\nHost: x\r\nUser-Agent: poster\r\nContent-Length: 2\r\n\r\nhi")
            assert conn.read_response().status == 405
        assert srv.stop() == 0  # the buffer is written at shutdown (the test above waits for a tick)
        lines = access_lines(srv, 3)
    parsed = [CLF.match(line) for line in lines]
    assert all(parsed) and len(parsed) == 3, lines
    assert (parsed[0]["referer"], parsed[0]["agent"]) == ("https://a.example/", 'curl/8 \\"quoted\\"')
    assert (parsed[1]["referer"], parsed[1]["agent"]) == ("-", "-")
    assert (parsed[2]["request"], parsed[2]["agent"]) == ("POST /small.txt HTTP/1.1", "poster")


def test_json_format_for_apps_and_websocket_handshakes(tmp_path: Path) -> None:
    (tmp_path / "logapp.py").write_text(APP)
    args = ["logapp:app", "--port", "0", "--access-log", "--access-log-format", "json"]
    with CliProcess(args, log_path=tmp_path / "log", cwd=tmp_path) as srv:
        port = port_from_url(srv.wait_listening())
        with RawConnection(port) as conn:
            response = conn.exchange("GET", "/slow?q=1", [("User-Agent", "tester"), ("Referer", "/from")])
            assert response.status == 201
            # From a trusted proxy (127.0.0.1 by default), the line names the client it forwarded
            # for, as the app's scope does.
            assert conn.exchange("GET", "/fwd", [("X-Forwarded-For", "203.0.113.9")]).status == 201
            conn.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"X-Forwarded-For: 203.0.113.8\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            assert conn.read_head().status == 101
        assert srv.stop() == 0  # the buffer is written at shutdown
        records = [json.loads(line) for line in access_lines(srv, 3)]
    assert len(records) == 3, srv.output()
    http, forwarded, ws = records
    assert (forwarded["path"], forwarded["client"]) == ("/fwd", "203.0.113.9")
    assert ws["client"] == "203.0.113.8"
    assert {k: http[k] for k in ("client", "method", "path", "query", "version", "status", "user_agent",
                                 "referer", "worker")} == {
        "client": "127.0.0.1", "method": "GET", "path": "/slow", "query": "q=1", "version": "1.1",
        "status": 201, "user_agent": "tester", "referer": "/from", "worker": srv.pid,
    }
    assert http["bytes"] == len(response.raw_head) + len(response.body)
    assert 50_000 <= http["duration_us"] < 5_000_000
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", http["time"])
    assert (ws["method"], ws["path"], ws["status"]) == ("GET", "/ws", 101)


def test_access_log_through_a_log_config(docroot: DocRoot, tmp_path: Path) -> None:
    written = tmp_path / "access.log"
    config = tmp_path / "logging.json"
    config.write_text(json.dumps({
        "version": 1,
        "formatters": {"plain": {"format": "ACCESS %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(written), "formatter": "plain"}},
        "loggers": {"fastserve.access": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }))
    with ServerProcess(docroot.root, ["--access-log", "--log-config", str(config)], log_path=tmp_path / "log") as srv:
        srv.wait_ready()  # the config sends no banner to the output: wait for the port itself
        with RawConnection(srv.port) as conn:
            for _ in range(3):
                assert conn.exchange("GET", "/small.txt").status == 200
        assert srv.stop() == 0  # the buffer is written at shutdown at the latest
    lines = written.read_text().splitlines()
    assert len(lines) == 3 and all(line.startswith("ACCESS 127.0.0.1 - - [") for line in lines), lines


@pytest.mark.parametrize("flags", [[], ["--access-log-format", "json"]])
def test_no_access_log_without_the_flag(docroot: DocRoot, serve_cli, caplog, flags) -> None:
    # In-process, with the settings the CLI parses; a tick's flush (worker.observe) writes
    # whatever is buffered. The same request with --access-log shows the capture sees lines.
    from fastserve.server.worker import observe

    caplog.set_level(logging.INFO, logger="fastserve.access")
    for switch, lines in [([], 0), (["--access-log"], 1)]:
        caplog.clear()
        server = serve_cli(str(docroot.root), *flags, *switch)
        assert server.open().request("GET", "/small.txt").status == 200
        observe(server.state)
        written = [r for r in caplog.records if r.name == "fastserve.access" and "/small.txt" in r.getMessage()]
        assert len(written) == lines, (switch, caplog.text)


def test_lines_escape_what_would_break_them() -> None:
    from fastserve.server.access_log import AccessLog

    facts = (("10.0.0.1", 5), b"GET", b'/a"b\\c?x=\x01', b"HTTP/1.1", 200, 10, 0.0012345, b'ua "q"\n', None, 1.7e9)
    record = json.loads(AccessLog("json").format_line(*facts))
    assert (record["path"], record["query"], record["user_agent"], record["referer"]) == ('/a"b\\c', "x=\x01",
                                                                                         'ua "q"\n', None)
    assert (record["duration_us"], record["time"]) == (1234, "2023-11-14T22:13:20Z")
    line = AccessLog("combined").format_line(*facts)
    assert line == ('10.0.0.1 - - [14/Nov/2023:22:13:20 +0000] "GET /a\\"b\\\\c?x=\\x01 HTTP/1.1" 200 10 '
                    '"-" "ua \\"q\\"\\x0a"')
    assert "\n" not in line


@pytest.mark.parametrize("allow, client", [("127.0.0.1", "203.0.113.9"), ("10.0.0.1", None)])
def test_static_lines_name_the_client_a_trusted_proxy_forwarded_for(docroot: DocRoot, serve_cli, caplog,
                                                                   allow, client) -> None:
    """As an app's scope (and its access-log line) does; an untrusted peer's claim is ignored."""
    from fastserve.server.worker import observe

    caplog.set_level(logging.INFO, logger="fastserve.access")
    server = serve_cli(str(docroot.root), "--access-log", "--forwarded-allow-ips", allow)
    connection = server.open()
    peer = connection.conn.client[0]
    response = connection.request("GET", "/small.txt", [("X-Forwarded-For", "198.51.100.1, 203.0.113.9")])
    assert response.status == 200
    observe(server.state)
    [line] = [r.getMessage() for r in caplog.records if r.name == "fastserve.access"]
    assert line.startswith(f"{client or peer} - - ["), line


@pytest.mark.parametrize("hops", ["<script>alert(1)</script>", "unknown", "198.51.100.1, x" * 600,
                                  "203.0.113.9:99999", "[::1]:80x", "fe80::1%eth0"])
def test_a_forwarded_hop_that_is_no_address_never_names_the_client(docroot: DocRoot, serve, caplog, hops) -> None:
    """From a trusted proxy, an X-Forwarded-For whose walk meets a hop that is no IP address
    leaves the peer as the client: in the static path's access line, in an app's scope and in
    the app's access line alike; the value never reaches either as it came."""
    from fastserve.server.worker import observe

    seen = []

    async def app(scope, receive, send):
        seen.append(scope["client"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    caplog.set_level(logging.INFO, logger="fastserve.access")
    lines = []
    for target in (docroot.root, app):
        server = serve(target, access_log=True)
        connection = server.open()
        peer = connection.conn.client
        response = connection.request("GET", "/small.txt", [("X-Forwarded-For", hops)])
        assert response.status in (200, 204)
        # the same peer's address is what a trusted proxy's hop is taken from
        assert connection.request("GET", "/small.txt", [("X-Forwarded-For", "203.0.113.9")]).status in (200, 204)
        server.settle()
        observe(server.state)
        lines += [r.getMessage() for r in caplog.records if r.name == "fastserve.access"]
        caplog.clear()
    assert seen == [peer, ("203.0.113.9", 0)]
    assert len(lines) == 4 and [line.split(" ")[0] for line in lines] == [peer[0], "203.0.113.9"] * 2, lines


FILE_APP = textwrap.dedent('''
    from fastserve.responses import FileResponse

    async def app(scope, receive, send):
        await FileResponse("root/big.bin")(scope, receive, send)
''')


@pytest.mark.parametrize("target, flags", [
    ("root", []),                                    # the body goes out by sendfile
    ("root", ["--cache-max-file", str(32 << 20)]),   # the body is held in memory
    ("fileapp:app", []),                             # an app's FileResponse
], ids=["sendfile", "memory", "app"])
def test_a_transfer_the_client_resets_is_logged_with_the_bytes_the_socket_took(
        tmp_path: Path, target: str, flags: List[str]) -> None:
    """nginx's $bytes_sent: a client that reads part of a large answer and resets is logged, and
    counted in the metrics, with what the socket took, not with the size the head promised; the
    answers it asked for behind it, never begun, with none."""
    pytest.importorskip("prometheus_client")
    (tmp_path / "root").mkdir()
    size = 24 << 20
    (tmp_path / "root" / "big.bin").write_bytes(bytes(range(256)) * (size // 256))
    (tmp_path / "root" / "small.txt").write_bytes(b"small\n")
    (tmp_path / "fileapp.py").write_text(FILE_APP)
    args = [target, "--port", "0", "--access-log", "--access-log-format", "json", "--metrics", *flags]
    with CliProcess(args, log_path=tmp_path / "log", cwd=tmp_path) as srv:
        port = port_from_url(srv.wait_listening())
        conn = RawConnection(port, rcvbuf=4096)
        conn.send(build_request("GET", "/big.bin") + build_request("GET", "/small.txt") * 2)
        read = 0
        while read < 256 * 1024:
            read += len(conn.read_some())
        conn.reset()
        (line,) = access_lines(srv, 1, '"path":"/big.bin"')
        logged = json.loads(line)["bytes"]
        # logged with it, if the server read them before it stopped reading for the client
        behind = [json.loads(later)["bytes"] for later in access_lines(srv, 0, '"path":"/small.txt"')]
        with RawConnection(port) as admin:
            metrics = admin.exchange("GET", "/_fastserve/metrics").body.decode()
    assert json.loads(line)["status"] == 200 and json.loads(line)["client"] == "127.0.0.1"
    assert read <= logged < size // 2, (read, logged)  # the kernel's buffers hold a few MiB at most
    assert behind == [0] * len(behind)  # read before the reset, or not: never sent either way
    counted = next(float(sample.split()[-1]) for sample in metrics.splitlines()
                   if sample.startswith("fastserve_response_bytes_total"))
    assert counted == logged + sum(behind)


SLOW_APP = textwrap.dedent('''
    import asyncio

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await asyncio.sleep(0.3)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
''')


@pytest.mark.parametrize("face", ["static", "app"])
def test_a_client_that_resets_before_its_answer_is_logged_499(tmp_path: Path, face: str) -> None:
    """nginx's 499: a client that resets while the app works on its request (or while a static
    request's body is still arriving) is one line, status 499, 0 bytes; there was none."""
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "a.txt").write_bytes(b"a\n")
    (tmp_path / "slowapp.py").write_text(SLOW_APP)
    target = "root" if face == "static" else "slowapp:app"
    with CliProcess([target, "--port", "0", "--access-log", "--access-log-format", "json", "--lifespan", "off"],
                    log_path=tmp_path / "log", cwd=tmp_path) as srv:
        port = port_from_url(srv.wait_listening())
        conn = RawConnection(port)
        conn.send(build_request("GET", "/a.txt", [("Content-Length", "100")]) + b"part")
        time.sleep(0.1)
        conn.reset()
        (line,) = access_lines(srv, 1, '"path":"/a.txt"')
    assert (json.loads(line)["status"], json.loads(line)["bytes"]) == (499, 0), line
