"""SIGTERM with connections already waiting in the kernel's accept queue (``--workers 2``).

Each worker's event loop is held busy by a request whose app blocks it (until the test says), so the connections
that arrive meanwhile are completed by the kernel but not yet accepted; SIGTERM arrives while
they wait. Every one of them must get a whole response (``Connection: close``), never a reset.
"""
from __future__ import annotations

import socket
import textwrap
import time
from pathlib import Path
from typing import List

from server_helpers import ConnectionClosed, RawConnection, running_server

APP = '''
import os
import time


async def app(scope, receive, send):
    assert scope["type"] in ("http", "websocket")  # no lifespan: the server's "auto" runs without it
    if scope["path"] == "/block":
        # Hold the worker's loop until the test has queued connections and sent SIGTERM:
        # new connections wait in the accept queue meanwhile. The line the test looks for is
        # one write: print() writes "blocking", " ", the pid and "\\n" as four, and the two
        # workers, held by connections that arrive together, printed at once into the shared
        # log ("blockingblocking  12341235"), a line the test never found.
        os.write(1, f"blocking {os.getpid()}\\n".encode())
        deadline = time.monotonic() + 10
        while not os.path.exists(os.environ["RELEASE_FILE"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
'''


def open_and_ask(port: int, target: str) -> RawConnection:
    conn = RawConnection(port, timeout=10.0)
    conn.send(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return conn


def blocked_workers(srv) -> set:
    return {line.split()[1] for line in srv.output().splitlines() if line.startswith("blocking ")}


def test_connections_in_the_accept_queue_are_answered_on_sigterm(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "queue_app.py").write_text(textwrap.dedent(APP))
    release = tmp_path / "release"
    monkeypatch.setenv("RELEASE_FILE", str(release))
    with running_server(Path("queue_app:app"), ["--workers", "2", "--graceful-timeout", "5"],
                        log_path=tmp_path / "server.log", cwd=tmp_path) as srv:
        # Blocking requests until both workers are held (SO_REUSEPORT spreads connections by
        # address, so more are opened until each worker has taken one); the rest queue up.
        blockers: List[RawConnection] = []
        deadline = time.monotonic() + 10
        while len(blocked_workers(srv)) < 2 and time.monotonic() < deadline:
            if len(blockers) < 30:
                blockers += [open_and_ask(srv.port, "/block") for _ in range(3)]
            time.sleep(0.05)
        assert len(blocked_workers(srv)) == 2, srv.output()
        queued = [open_and_ask(srv.port, "/fast") for _ in range(40)]
        srv.terminate()
        time.sleep(0.3)  # room for the stop to reach both workers while they are held
        release.touch()
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
