"""What a stop logs, and that it ends: requests cancelled at ``--graceful-timeout`` are reported
once, as a warning with their number, not as app errors with a ``CancelledError`` traceback; a
lifespan that hangs in its startup or shutdown does not hold the process; a send refused because
the client left is no app error either. An app that really fails is still logged as an error."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import signal
import socket
import textwrap
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import pytest

from server_helpers import CliProcess, RawConnection, port_from_url, running_server
from test_server_process import wait_for

HANGING_APP = '''
import asyncio
import os
import signal
import time


def sleep_in_a_thread(line):
    # Said from the thread itself: a stop that comes before the thread runs finds none to name.
    os.write(1, line)
    time.sleep(3600)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                hang = os.environ.get("HANG", "")
                if hang.startswith("startup") and hang != "startup-thread":
                    os.write(1, b"starting up\\n")  # one write: workers starting together print at once
                if hang == "startup":
                    await asyncio.sleep(3600)
                elif hang == "startup-blocking":  # a synchronous call: the event loop gets no turn
                    time.sleep(3600)
                elif hang == "startup-deaf":  # code no signal reaches
                    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
                    time.sleep(3600)
                elif hang == "startup-thread":  # a synchronous call in a thread, which no stop cancels
                    await asyncio.to_thread(sleep_in_a_thread, b"starting up\\n")
                await send({"type": "lifespan.startup.complete"})
            else:
                if os.environ.get("HANG") == "shutdown":
                    await asyncio.sleep(3600)
                elif os.environ.get("HANG") == "shutdown-blocking":  # a synchronous call: the loop gets no turn
                    os.write(1, b"shutting down\\n")
                    time.sleep(3600)
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
    elif scope["path"] == "/fail":
        raise RuntimeError("a real failure")
    elif scope["path"] == "/blocking":  # a synchronous call on the event loop: it hears no signal meanwhile
        os.write(1, b"blocking\\n")
        time.sleep(float(os.environ.get("BLOCK_FOR", "3600")))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    elif scope["path"] == "/thread":  # a synchronous endpoint, run in a thread pool
        await asyncio.get_running_loop().run_in_executor(None, sleep_in_a_thread, b"in a thread\\n")
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


def start_hanging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hang: str, flags: List[str], workers: int):
    """A server whose app's lifespan startup hangs as ``hang`` says, once each of its
    ``workers`` has begun that startup."""
    from server_helpers import ServerProcess

    (tmp_path / "hanging.py").write_text(textwrap.dedent(HANGING_APP))
    monkeypatch.setenv("HANG", hang)
    srv = ServerProcess(Path("hanging:app"), ["--lifespan", "on", *flags], log_path=tmp_path / "log", cwd=tmp_path)
    assert wait_for(lambda: srv.output().count("starting up\n") == workers, 10.0), srv.output()
    return srv


def stop_timed(srv, stop: Callable[[], None], timeout: float) -> Tuple[Optional[int], float, str]:
    """``stop()`` (signals to ``srv``), then its exit: the exit code (None: it was still running
    ``timeout`` s later, and was killed), the seconds from ``stop()`` to the exit, the output."""
    try:
        started = time.monotonic()
        stop()
        code = srv.wait_exit(timeout)
        took = time.monotonic() - started
    finally:
        if srv.alive():
            srv.kill_all()
    return code, took, srv.output()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("signum", [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")])
def test_a_startup_blocking_the_event_loop_is_stopped_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             workers: int, signum: int) -> None:
    """A startup in a synchronous call (time.sleep, a blocking client, a model loaded) gives the
    event loop no turn to hear the stop: the signal's handler cancels it where it runs. It used
    to hold a lone server until the call returned (SIGTERM and Ctrl+C alike), and workers until
    the supervisor killed them after twice --graceful-timeout."""
    srv = start_hanging(tmp_path, monkeypatch, "startup-blocking", ["--workers", str(workers), "--graceful-timeout",
                                                                     "5"], workers)
    code, took, output = stop_timed(srv, lambda: srv.proc.send_signal(signum), 8.0)  # (workers were killed at 12 s)
    assert code == 0 and took < 8.0, (code, took, output)
    assert output.count("stopped before the app's lifespan startup finished") == workers, output
    assert " ERROR " not in output and "Traceback" not in output and "startup complete" not in output, output


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("by", ["graceful-timeout", "SIGINT"])
def test_a_shutdown_blocking_the_event_loop_ends_at_the_graceful_timeout_or_sigint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int, by: str) -> None:
    """The lifespan shutdown held in a synchronous call hears neither its --graceful-timeout nor
    the SIGINT that cuts it short: a lone server never ended, and workers were killed after
    twice --graceful-timeout plus 2 s. SIGALRM at the timeout, and the SIGINT, cancel it where
    it runs."""
    from server_helpers import ServerProcess

    (tmp_path / "hanging.py").write_text(textwrap.dedent(HANGING_APP))
    monkeypatch.setenv("HANG", "shutdown-blocking")
    timeout = "2" if by == "graceful-timeout" else "30"
    srv = ServerProcess(Path("hanging:app"), ["--lifespan", "on", "--workers", str(workers), "--graceful-timeout",
                                              timeout], log_path=tmp_path / "log", cwd=tmp_path)
    def stop() -> None:
        srv.terminate()
        assert wait_for(lambda: srv.output().count("shutting down\n") == workers, 10.0), srv.output()
        if by == "SIGINT":
            srv.proc.send_signal(signal.SIGINT)  # passed on to the workers by their supervisor

    try:
        srv.wait_ready()
        assert wait_for(lambda: srv.output().count("Application startup complete.") == workers, 10.0), srv.output()
    except BaseException:
        srv.kill_all()
        raise
    code, took, output = stop_timed(srv, stop, 10.0)
    assert code == 0 and took < 5.0, (code, took, output)  # (2 x 2 + 2 = 6 s for workers, never alone)
    assert output.count("WARNING the app's lifespan shutdown was cancelled where it held the event loop "
                        f"(--graceful-timeout {timeout} s passed, or SIGINT came)") == workers, output
    assert " ERROR " not in output and "Traceback" not in output, output


def test_a_starting_worker_no_signal_reaches_is_killed_after_the_graceful_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = start_hanging(tmp_path, monkeypatch, "startup-deaf", ["--workers", "2", "--graceful-timeout", "2"], 2)
    workers = srv.children()
    code, took, output = stop_timed(srv, srv.terminate, 10.0)
    # --graceful-timeout and a second: not the 2 x 2 + 2 s a serving worker gets to drain.
    assert code == 0 and 2.9 < took < 5.5, (code, took, output)
    for pid in workers:
        assert (f"ERROR worker {pid} has not stopped 3 s after SIGTERM while its app's lifespan startup ran: "
                "killing it") in output, output


def test_a_worker_still_starting_is_reported_and_left_to_start(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor says which workers are still starting after --timeout-worker-healthcheck,
    then after twice and four times as long...; it does not kill them (a startup may load for
    minutes), and it used to say nothing at all."""
    srv = start_hanging(tmp_path, monkeypatch, "startup",
                        ["--workers", "2", "--timeout-worker-healthcheck", "0.5", "--graceful-timeout", "1"], 2)
    workers = srv.children()
    try:
        def reports(pid: int) -> List[float]:
            return [float(after) for after in re.findall(
                f"WARNING worker {pid} is still starting after ([0-9.]+) s: its app's lifespan startup has not "
                "finished, and the connections it is given wait until it does", srv.output())]

        assert wait_for(lambda: all(len(reports(pid)) >= 2 for pid in workers), 10.0), srv.output()
        assert srv.children() == workers
        for pid in workers:
            first, second = reports(pid)[:2]
            assert 0.5 <= first < second and second >= 2 * first - 0.1, srv.output()
    finally:
        code = srv.stop(5.0)
    assert code == 0, srv.output()


@pytest.mark.parametrize("where", ["startup", "request"])
def test_threads_the_app_left_running_do_not_hold_the_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           where: str) -> None:
    """A synchronous call in a thread (asyncio.to_thread, an executor, a framework's thread pool
    for a sync endpoint) goes on after its request or startup is cancelled; Python waited for
    it at exit, so the server never ended after "fastserve stopped"."""
    if where == "startup":
        srv = start_hanging(tmp_path, monkeypatch, "startup-thread", ["--graceful-timeout", "0.5"], 1)
    else:
        from server_helpers import ServerProcess

        (tmp_path / "hanging.py").write_text(textwrap.dedent(HANGING_APP))
        srv = ServerProcess(Path("hanging:app"), ["--graceful-timeout", "0.5"], log_path=tmp_path / "log", cwd=tmp_path)
        srv.wait_ready()
        client = RawConnection(srv.port)
        client.request("GET", "/thread")
        assert wait_for(lambda: "in a thread" in srv.output(), 5.0), srv.output()
    try:
        srv.terminate()
        code = srv.wait_exit(5.0)
    finally:
        if srv.alive():
            srv.kill_all()
    output = srv.output()
    assert code == 0, output
    assert "INFO fastserve stopped" in output and "WARNING 1 thread the app started still runs (" in output, output


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


def test_a_thread_the_app_module_started_does_not_hold_a_failed_start(tmp_path: Path) -> None:
    """The app's module starts a thread at import (a scheduler, a client's pool) and the port is
    taken: the start failed in one line, and then the process never ended, waiting for the
    thread. The fastserve command ends with exit code 3; main() called in a program returns."""
    from server_helpers import run_cli

    (tmp_path / "threaded.py").write_text(textwrap.dedent('''
        import threading
        import time

        threading.Thread(target=time.sleep, args=(3600,), name="scheduler").start()


        async def app(scope, receive, send):
            pass
    '''))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli(["threaded:app", "--port", str(taken.getsockname()[1])], cwd=tmp_path, timeout=15.0)
    assert result.returncode == 3, result
    assert "address already in use" in result.stderr
    assert "1 thread the app started still runs (scheduler): exiting without waiting for it" in result.stderr


@contextlib.contextmanager
def blocked_server(tmp_path: Path, flags: List[str]) -> Iterator[Tuple[CliProcess, RawConnection]]:
    """A server whose app holds the event loop in ``time.sleep`` (``BLOCK_FOR`` s, an hour
    unless set) for a request under way: the server and that request's client, both ended
    at the block's exit (the server killed if it still runs). On --port 0: a port picked
    before the server binds it may be taken meanwhile on a busy machine."""
    (tmp_path / "hanging.py").write_text(textwrap.dedent(HANGING_APP))
    srv = CliProcess(["hanging:app", "--port", "0", *flags], log_path=tmp_path / "log", cwd=tmp_path)
    try:
        port = port_from_url(srv.wait_listening())
        with RawConnection(port, timeout=10.0) as client:
            client.request("GET", "/blocking")
            assert wait_for(lambda: "\nblocking\n" in srv.output(), 5.0), srv.output()
            yield srv, client
    finally:
        if srv.alive():
            srv.kill_all()


FORCED = "again, and the event loop has not run since the first stop signal"


@pytest.mark.parametrize("second", [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")])
def test_a_second_stop_signal_ends_a_lone_server_whose_app_holds_the_event_loop(tmp_path: Path, second: int) -> None:
    """The first SIGTERM waits for the event loop, which the app's synchronous call holds (a
    lone server ignored SIGTERM and Ctrl+C for as long as the call ran); a second stop signal
    ends the process by that signal, with a warning that says why."""
    with blocked_server(tmp_path, ["--graceful-timeout", "30"]) as (srv, _):
        srv.terminate()
        time.sleep(0.5)
        assert srv.alive(), srv.output()  # the loop has not heard it: no stop can begin
        code, took, output = stop_timed(srv, lambda: srv.proc.send_signal(second), 5.0)
    assert code == -second and took < 5.0, (code, took, output)
    assert f"WARNING worker {srv.pid}: {signal.Signals(second).name} {FORCED}" in output, output


def test_a_second_ctrl_c_ends_a_worker_whose_app_holds_the_event_loop(tmp_path: Path) -> None:
    """With workers: SIGTERM to the supervisor, then SIGINT to it alone (passed on to the
    workers, as a second Ctrl+C): the blocked worker ends at once, and the supervisor with it,
    where it waited twice --graceful-timeout and killed the worker."""
    with blocked_server(tmp_path, ["--workers", "2", "--graceful-timeout", "30"]) as (srv, _):
        srv.terminate()
        assert wait_for(lambda: "shutting down" in srv.output(), 5.0), srv.output()  # the other worker heard it
        time.sleep(0.3)
        code, took, output = stop_timed(srv, lambda: srv.proc.send_signal(signal.SIGINT), 5.0)
    assert code == 0 and took < 5.0, (code, took, output)
    assert output.count(f"SIGINT {FORCED}") == 1, output


def test_one_ctrl_c_as_sigterm_and_sigint_together_waits_for_the_blocked_loop(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM and a SIGINT together are one press (a reloader's SIGTERM and the terminal's
    SIGINT): the stop waits for the loop, then drains as ever; the request is answered."""
    monkeypatch.setenv("BLOCK_FOR", "1.5")
    with blocked_server(tmp_path, ["--graceful-timeout", "30"]) as (srv, client):
        srv.terminate()
        srv.proc.send_signal(signal.SIGINT)
        response = client.read_response()
        assert srv.wait_exit(5.0) == 0, srv.output()
    assert (response.status, response.body) == (200, b"ok")
    assert FORCED not in srv.output(), srv.output()


def test_a_second_sigterm_once_the_loop_heard_the_first_leaves_the_drain_alone(tmp_path: Path) -> None:
    """Once the stop has begun, a second SIGTERM changes nothing: the request gets its
    --graceful-timeout and the process ends cleanly."""
    (tmp_path / "hanging.py").write_text(textwrap.dedent(HANGING_APP))
    with running_server(Path("hanging:app"), ["--graceful-timeout", "1.5"], log_path=tmp_path / "log",
                        cwd=tmp_path) as srv:
        client = RawConnection(srv.port)
        client.request("GET", "/hang")
        assert wait_for(lambda: "running http" in srv.output(), 5.0), srv.output()
        srv.terminate()
        assert wait_for(lambda: "shutting down" in srv.output(), 5.0), srv.output()
        srv.terminate()
        assert srv.wait_exit(10.0) == 0, srv.output()
        client.close()
    output = srv.output()
    assert FORCED not in output and "graceful timeout (1.5 s): closing 1 connection" in output, output
