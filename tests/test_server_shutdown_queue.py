"""SIGTERM with connections already waiting in the kernel's accept queue (``--workers 2``).

Each worker's event loop is held busy by a request whose app blocks it, so the connections
that arrive meanwhile are completed by the kernel but not yet accepted; SIGTERM arrives while
they wait. Every one of them must get a whole response (``Connection: close``), never a reset.
"""
from __future__ import annotations

import socket
import textwrap
import time
from pathlib import Path

from server_helpers import ConnectionClosed, RawConnection, running_server

APP = '''
import time


async def app(scope, receive, send):
    assert scope["type"] in ("http", "websocket")  # no lifespan: the server's "auto" runs without it
    if scope["path"] == "/block":
        time.sleep(0.4)  # holds the worker's loop: new connections wait in the accept queue
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
'''


def open_and_ask(port: int, target: str) -> RawConnection:
    conn = RawConnection(port, timeout=10.0)
    conn.send(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return conn


def test_connections_in_the_accept_queue_are_answered_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "queue_app.py").write_text(textwrap.dedent(APP))
    with running_server(Path("queue_app:app"), ["--workers", "2", "--graceful-timeout", "5"],
                        log_path=tmp_path / "server.log", cwd=tmp_path) as srv:
        # Blocking requests on several connections, so both workers (SO_REUSEPORT spreads
        # connections by address) are very likely held; the rest queue up behind them.
        blockers = [open_and_ask(srv.port, "/block") for _ in range(6)]
        time.sleep(0.2)
        queued = [open_and_ask(srv.port, "/fast") for _ in range(40)]
        srv.terminate()
        answered = reset = 0
        for conn in blockers + queued:
            try:
                response = conn.read_response()
            except (ConnectionClosed, ConnectionResetError, socket.timeout) as exc:
                reset += 1
                print("no response:", type(exc).__name__)
            else:
                assert response.status in (200, 503)
                assert response.body in (b"ok", b"Service Unavailable", b"")
                answered += 1
            finally:
                conn.close()
        assert srv.wait_exit(10) == 0, srv.output()
    assert reset == 0, f"{reset} of {len(blockers) + len(queued)} connections got no response"
