"""What a stop logs, and that it ends: requests cancelled at ``--graceful-timeout`` are reported
once, as a warning with their number, not as app errors with a ``CancelledError`` traceback; a
lifespan that hangs in its startup or shutdown does not hold the process; a send refused because
the client left is no app error either. An app that really fails is still logged as an error."""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import textwrap
import time
from pathlib import Path

import pytest

from server_helpers import RawConnection, running_server
from test_server_process import wait_for

HANGING_APP = '''
import asyncio
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if os.environ.get("HANG") == "startup":
                    print("starting up", flush=True)
                    await asyncio.sleep(3600)
                await send({"type": "lifespan.startup.complete"})
            else:
                if os.environ.get("HANG") == "shutdown":
                    await asyncio.sleep(3600)
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
    elif scope["path"] == "/fail":
        raise RuntimeError("a real failure")
    print("running", scope["type"], flush=True)
    await asyncio.sleep(3600)
'''


def upgrade(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert sock.recv(100).startswith(b"HTTP/1.1 101 ")
    return sock


def test_requests_cancelled_at_the_graceful_timeout_are_one_warning(tmp_path: Path) -> None:
    (tmp_path / "hanging.py").write_text(textwrap.dedent(HANGING_APP))
    with running_server(Path("hanging:app"), ["--graceful-timeout", "0.3"], log_path=tmp_path / "log",
                        cwd=tmp_path) as srv:
        failing = RawConnection(srv.port)
        assert failing.exchange("GET", "/fail").status == 500
        hung = RawConnection(srv.port)
        hung.request("GET", "/hang")
        session = upgrade(srv.port)
        assert wait_for(lambda: srv.output().count("\nrunning ") == 2, 5.0), srv.output()
        started = time.monotonic()
        srv.terminate()
        assert srv.wait_exit(5.0) == 0, srv.output()
        assert time.monotonic() - started < 3.0
        hung.close()
        session.close()
        failing.close()
    output = srv.output()
    # The app's real failure: an error, with its traceback.
    assert "ERROR Exception in ASGI application" in output and "RuntimeError: a real failure" in output
    assert output.count("Traceback") == 1 and output.count(" ERROR ") == 1, output
    assert "CancelledError" not in output, output
    assert "WARNING worker %d: graceful timeout (0.3 s): closing 2 connections, cancelling 2 requests still " \
           "running" % srv.pid in output, output


@pytest.mark.parametrize("phase", ["startup", "shutdown"])
def test_a_hanging_lifespan_does_not_hold_a_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  phase: str) -> None:
    (tmp_path / "hanging.py").write_text(textwrap.dedent(HANGING_APP))
    monkeypatch.setenv("HANG", phase)
    from server_helpers import ServerProcess

    srv = ServerProcess(Path("hanging:app"), ["--lifespan", "on", "--graceful-timeout", "0.3"],
                        log_path=tmp_path / "log", cwd=tmp_path)
    try:
        if phase == "startup":
            assert wait_for(lambda: "starting up" in srv.output(), 10.0), srv.output()
        else:
            srv.wait_ready()
        srv.terminate()
        code = srv.wait_exit(5.0)
    finally:
        if srv.alive():
            srv.kill_all()
    assert code == 0, srv.output()
    output = srv.output()
    assert " ERROR " not in output and "Traceback" not in output, output
    if phase == "startup":
        assert "stopped before the app's lifespan startup finished" in output
    else:
        assert "WARNING the app's lifespan shutdown did not finish within 0.3 s (--graceful-timeout)" in output


async def never_answers(scope, receive, send):
    if scope["type"] == "http":
        await asyncio.sleep(3600)


def hung_request(serve):
    """A server, a client, and the task of the client's request, which never answers."""
    server = serve(never_answers)
    client = server.open()
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    [task] = [task for task in asyncio.all_tasks(server.loop) if task.get_name() == "fastserve-http"]
    return server, client, task


def test_an_app_cancelled_after_its_client_left_is_no_app_error(serve, caplog) -> None:
    server, client, task = hung_request(serve)
    with caplog.at_level(logging.ERROR, logger="fastserve"):
        client.transport.abort()
        server.settle()
        task.cancel()
        server.settle()
    assert task.done()
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text


def test_an_app_cancelled_while_its_client_waits_is_an_app_error(serve, caplog) -> None:
    """No server cancels a request whose client is still there: such a CancelledError is the app's."""
    server, client, task = hung_request(serve)
    with caplog.at_level(logging.ERROR, logger="fastserve"):
        task.cancel()
        [response] = client.wait_for(1)
    assert response.status == 500
    assert "Exception in ASGI application" in caplog.text


def test_a_send_refused_after_the_client_left_is_no_app_error(serve, caplog) -> None:
    """A client leaving in the middle of a streamed body is ordinary: the app's next send raises
    (ASGI's OSError) and, if the app lets it through, nothing is logged as an app error."""
    from fastserve._speedups.asgi_cycle import ClientDisconnected

    go_on = asyncio.Event()
    raised = []

    async def streams(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await go_on.wait()
        try:
            await send({"type": "http.response.body", "body": b"second", "more_body": True})
        except BaseException as exc:
            raised.append(exc)
            raise

    server = serve(streams)
    client = server.open()
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"first" in bytes(client.transport.data)
    with caplog.at_level(logging.DEBUG, logger="fastserve"):
        client.transport.abort()
        server.settle()
        go_on.set()
        server.settle()
    assert [type(exc) for exc in raised] == [ClientDisconnected]
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING], caplog.text
