"""Workers replaced or stopping lose no connection (real processes, loopback).

* The supervisor holds one listening socket per worker slot; a worker that retires
  (``--limit-max-requests``), stops or dies closes only its copy, so the connections the kernel
  queued on it are taken by the slot's next worker instead of being reset with the socket.
* A stopping worker keeps its idle connections open a moment: a request a client is sending as
  the stop begins (the next on a kept-alive connection, the first on a new one) is answered
  with ``Connection: close``.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Iterator, List, Set, Tuple

from server_helpers import (
    ConnectionClosed,
    DocRoot,
    RawConnection,
    ServerProcess,
    child_pids,
    held_sockets,
    running_server,
)
from test_server_process import wait_for

BLOCKING_APP = '''
import os
import time


async def app(scope, receive, send):
    assert scope["type"] == "http"
    if scope["path"] == "/block":
        # Hold the worker's loop: connections that arrive meanwhile wait in the kernel's queue.
        os.write(1, f"blocking {os.getpid()}\\n".encode())  # one write: no other process's line inside it
        time.sleep(10)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
'''


def listening_sockets(port: int) -> Set[str]:
    """The ``socket:[inode]`` names of the TCP sockets listening on 127.0.0.1:``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            found.add(f"socket:[{inode}]")
    return found


def test_a_killed_workers_queued_connections_are_answered_by_its_replacement(tmp_path: Path) -> None:
    (tmp_path / "blocking_app.py").write_text(textwrap.dedent(BLOCKING_APP))
    # One slot (--limit-max-requests puts it under the supervisor): every connection queues
    # on the one socket while its worker is held.
    flags = ["--workers", "1", "--limit-max-requests", "1000"]
    with running_server(Path("blocking_app:app"), flags, log_path=tmp_path / "server.log", cwd=tmp_path) as srv:
        blocker = RawConnection(srv.port, timeout=10.0)
        blocker.request("GET", "/block")
        assert wait_for(lambda: "\nblocking " in srv.output(), 5.0), srv.output()
        [worker] = srv.children()
        queued: List[RawConnection] = []
        for _ in range(5):
            conn = RawConnection(srv.port, timeout=10.0)
            conn.request("GET", "/queued")
            queued.append(conn)
        os.kill(worker, signal.SIGKILL)
        answered = 0
        for conn in queued:
            try:
                response = conn.read_response()
            except (ConnectionClosed, ConnectionResetError, socket.timeout) as exc:
                print("no response:", queued.index(conn), type(exc).__name__)
            else:
                assert (response.status, response.body) == (200, b"ok")
                answered += 1
            finally:
                conn.close()
        blocker.close()
        assert answered == len(queued), f"{len(queued) - answered} queued connections were lost with their worker"


def test_workers_retiring_under_load_lose_no_request(docroot: DocRoot, tmp_path: Path) -> None:
    """Clients opening a connection per request and clients keeping theirs alive, while workers
    retire every few requests: each request gets its answer."""
    flags = ["--workers", "2", "--limit-max-requests", "5"]
    with running_server(docroot.root, flags, log_path=tmp_path / "server.log") as srv:
        assert wait_for(lambda: len(srv.children()) == 2, 5.0)
        held = listening_sockets(srv.port)
        assert len(held) == 2 and held <= held_sockets(srv.pid), "the supervisor holds one listener per slot"
        outcomes: Counter = Counter()
        lock = threading.Lock()
        enough = threading.Event()  # set once several workers have handed over

        def client(keep_alive: bool) -> None:
            conn = None
            while not enough.is_set():
                try:
                    if conn is None:
                        conn = RawConnection(srv.port, timeout=10.0)
                    headers = [] if keep_alive else [("Connection", "close")]
                    response = conn.exchange("GET", "/small.txt", headers)
                    outcome = "answered" if (response.status, response.body) == (200, docroot.small) else "wrong"
                    if response.header("connection") == "close":
                        conn.close()
                        conn = None
                except (ConnectionClosed, OSError) as exc:
                    outcome = type(exc).__name__
                    if conn is not None:
                        conn.close()
                    conn = None
                with lock:
                    outcomes[outcome] += 1
            if conn is not None:
                conn.close()

        threads = [threading.Thread(target=client, args=(index % 2 == 0,)) for index in range(6)]
        for thread in threads:
            thread.start()
        try:
            retired = wait_for(lambda: srv.output().count("retired (--limit-max-requests)") >= 6, 30.0)
        finally:
            enough.set()
            for thread in threads:
                thread.join(15)
        assert retired, srv.output()[-3000:]
        assert set(outcomes) == {"answered"}, f"{outcomes}\n{srv.output()[-3000:]}"
        # Replacements took over the slots' sockets: the same two listen, none was reopened.
        assert wait_for(lambda: len(srv.children()) == 2, 5.0)
        assert listening_sockets(srv.port) == held
        for pid in child_pids(srv.pid):
            assert held_sockets(pid) & held, "a worker without its slot's listener"


def test_a_request_arriving_as_the_server_stops_is_answered(docroot: DocRoot, tmp_path: Path) -> None:
    with running_server(docroot.root, ["--graceful-timeout", "5"], log_path=tmp_path / "server.log") as srv:
        kept = RawConnection(srv.port)
        assert kept.exchange("GET", "/small.txt").header("connection") is None
        fresh = RawConnection(srv.port)  # accepted, nothing sent yet
        srv.terminate()
        assert wait_for(lambda: "shutting down" in srv.output(), 5.0), srv.output()
        for conn in (kept, fresh):
            response = conn.exchange("GET", "/small.txt")
            assert (response.status, response.body) == (200, docroot.small)
            assert response.header("connection") == "close"
            assert conn.wait_closed(2.0)
            conn.close()
        assert srv.wait_exit(5.0) == 0


STARTING_APP = '''
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        if os.path.exists("crash-next"):  # the test's marker: the next worker dies starting up
            os.unlink("crash-next")
            os._exit(1)
        if os.path.exists("database-down"):  # the test's marker: startups fail while it exists
            await send({"type": "lifespan.startup.failed", "message": "database down"})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
'''


@contextlib.contextmanager
def retiring_with(tmp_path: Path, marker: str) -> Iterator[Tuple[ServerProcess, int]]:
    """A one-slot server whose worker retires after two requests, ``marker`` made between them
    (so the worker itself started, and its replacement meets the marker); yields the server and
    the retiring worker's pid."""
    (tmp_path / "starting.py").write_text(textwrap.dedent(STARTING_APP))
    flags = ["--workers", "1", "--limit-max-requests", "2"]
    with running_server(Path("starting:app"), flags, log_path=tmp_path / "server.log", cwd=tmp_path) as srv:
        with RawConnection(srv.port) as conn:
            assert conn.exchange("GET", "/").status == 200
            [retiring] = srv.children()
            (tmp_path / marker).touch()
            assert conn.exchange("GET", "/").status == 200
        yield srv, retiring


def test_a_retiring_worker_stops_once_the_successor_of_its_crashed_replacement_accepts(tmp_path: Path) -> None:
    with retiring_with(tmp_path, "crash-next") as (srv, retiring):
        assert wait_for(lambda: "starting a new one" in srv.output(), 10.0), srv.output()
        # The supervisor says so after it reaps the worker: waiting for the line (not for the
        # worker to leave /proc, which comes first) leaves no moment between the two to lose.
        assert wait_for(lambda: f"worker {retiring} retired (--limit-max-requests)" in srv.output(), 10.0), (
            f"the retiring worker {retiring} serves on beside {srv.children()}\n{srv.output()}")
        assert retiring not in srv.children() and len(srv.children()) == 1, srv.output()


def test_a_replacement_whose_app_fails_to_start_is_retried_while_the_old_worker_serves(tmp_path: Path) -> None:
    """A passing failure at a routine recycle (a database away while the replacement starts)
    must not stop a server that has been serving: the retiring worker serves on, the slot tries
    again later, and the hand-off completes once the app starts."""
    with retiring_with(tmp_path, "database-down") as (srv, retiring):
        assert wait_for(lambda: "startup failed; its slot tries again" in srv.output(), 10.0), srv.output()
        assert srv.alive(), srv.output()
        with RawConnection(srv.port) as conn:  # the retiring worker still serves
            assert conn.exchange("GET", "/").status == 200
        (tmp_path / "database-down").unlink()
        assert wait_for(lambda: retiring not in srv.children() and len(srv.children()) == 1, 10.0), srv.output()
        with RawConnection(srv.port) as conn:
            assert conn.exchange("GET", "/").status == 200


PAUSING_APP = '''
import asyncio
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    # The test's marker: the app waits, before (or after) its head, until the server stops.
    marker = scope["path"].strip("/")
    headers = [(b"content-length", b"2")]
    if marker == "head-first":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
    if marker:
        open(f"waiting-{marker}", "w").close()
    while marker and not os.path.exists("stopping"):
        await asyncio.sleep(0.01)
    if marker != "head-first":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})
'''


def test_an_app_answering_as_the_server_stops_says_connection_close_or_keeps_its_promise(tmp_path: Path) -> None:
    """A response an app is still making when the stop begins is the connection's last: its head
    says ``Connection: close``, so the client sends nothing more on it. One whose head promised
    keep-alive already is followed by the idle grace, so the request the client sends on that
    promise is answered (with ``Connection: close``) instead of meeting a closed connection."""
    (tmp_path / "pausing.py").write_text(textwrap.dedent(PAUSING_APP))
    with running_server(Path("pausing:app"), ["--graceful-timeout", "5"], log_path=tmp_path / "server.log",
                        cwd=tmp_path) as srv:
        before, after = RawConnection(srv.port), RawConnection(srv.port)
        before.send(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        after.send(b"GET /head-first HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_for(lambda: all((tmp_path / f"waiting-{name}").exists() for name in ("wait", "head-first")), 5.0)
        srv.terminate()
        assert wait_for(lambda: "shutting down" in srv.output(), 5.0), srv.output()
        (tmp_path / "stopping").touch()
        response = before.read_response()
        assert (response.status, response.body, response.header("connection")) == (200, b"ok", "close")
        assert before.wait_closed(2.0)
        response = after.read_response()
        assert (response.status, response.body, response.header("connection")) == (200, b"ok", None)
        following = after.exchange("GET", "/")
        assert (following.status, following.header("connection")) == (200, "close")
        assert after.wait_closed(2.0)
        for conn in (before, after):
            conn.close()
        assert srv.wait_exit(5.0) == 0
