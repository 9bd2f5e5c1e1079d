"""Lifespan under ``python -m fastserve module:app``: state, shutdown, and failing startups."""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import httpx2
import pytest

from server_helpers import child_pids

APP = '''
import asyncio, contextlib, os
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

MARKER = os.environ["LIFESPAN_MARKER"]

@contextlib.asynccontextmanager
async def lifespan(app):
    if os.environ.get("FAIL_STARTUP"):
        raise RuntimeError("no database")
    yield {"greeting": "hello from startup"}
    with open(MARKER, "w") as f:
        f.write("shutdown ran")

async def home(request):
    return PlainTextResponse(request.state.greeting)

async def slow(request):
    open(MARKER + ".slow", "w").close()
    await asyncio.sleep(float(request.query_params["s"]))
    return PlainTextResponse("slept")

app = Starlette(routes=[Route("/", home), Route("/slow", slow)], lifespan=lifespan)

async def no_lifespan(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"plain"})

async def ignores_lifespan(scope, receive, send):
    if scope["type"] != "http":
        return  # neither raises nor replies
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"plain"})
'''


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(tmp_path, target, *flags, fail=False):
    (tmp_path / "lifespan_app.py").write_text(textwrap.dedent(APP))
    env = {"LIFESPAN_MARKER": str(tmp_path / "marker"), "PATH": "/usr/bin:/bin"}
    if fail:
        env["FAIL_STARTUP"] = "1"
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastserve", target, "--port", str(port), *flags],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    return proc, port


def wait_accepting(proc, port):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.05)
    pytest.fail("server did not start")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_startup_state_reaches_requests_and_shutdown_runs(tmp_path, workers):
    proc, port = launch(tmp_path, "lifespan_app:app", "--workers", workers)
    wait_accepting(proc, port)
    assert httpx2.get(f"http://127.0.0.1:{port}/", timeout=5).text == "hello from startup"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert (tmp_path / "marker").read_text() == "shutdown ran"
    # uvicorn's lines, once per worker, in order: deploy scripts and health checks wait for them
    lines = [line.split(" INFO ", 1)[-1] for line in proc.stdout.read().decode().splitlines()
             if line.endswith(("application startup.", "Application startup complete.",
                               "application shutdown.", "Application shutdown complete."))]
    assert sorted(lines) == sorted(["Waiting for application startup.", "Application startup complete.",
                                    "Waiting for application shutdown.", "Application shutdown complete."]
                                   * int(workers)), lines
    if workers == "1":
        assert lines == ["Waiting for application startup.", "Application startup complete.",
                         "Waiting for application shutdown.", "Application shutdown complete."]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_failed_startup_exits_non_zero_without_serving(tmp_path, workers):
    proc, port = launch(tmp_path, "lifespan_app:app", "--workers", workers, fail=True)
    assert proc.wait(15) == 3  # no endless restarts of workers that cannot start
    output = proc.stdout.read().decode()
    assert "startup failed" in output and "no database" in output
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5)


@pytest.mark.parametrize("target", ["lifespan_app:no_lifespan", "lifespan_app:ignores_lifespan"])
def test_app_without_lifespan_is_served(tmp_path, monkeypatch, serve_cli, target):
    # Skipping the lifespan is the ASGI bridge's decision, the same in a worker as in-process;
    # the bridge's shutdown runs when the fixture closes the server.
    (tmp_path / "lifespan_app.py").write_text(textwrap.dedent(APP))
    monkeypatch.setenv("LIFESPAN_MARKER", str(tmp_path / "marker"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lifespan_app", raising=False)
    assert serve_cli(target).open().request("GET", "/").body == b"plain"


def press_ctrl_c(proc):
    """SIGINT to the server and its workers, as a terminal sends it to the foreground group
    (the supervisor first, so its SIGTERM may reach a worker before the worker's own SIGINT)."""
    for pid in [proc.pid, *child_pids(proc.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)


def slow_request_in_flight(tmp_path, port, seconds):
    """Start ``GET /slow?s=seconds`` in a thread; returns its result holder once the app runs it."""
    result = {}

    def get():
        try:
            result["response"] = httpx2.get(f"http://127.0.0.1:{port}/slow?s={seconds}", timeout=40)
        except httpx2.HTTPError as exc:
            result["error"] = exc

    thread = threading.Thread(target=get, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not (tmp_path / "marker.slow").exists():
        assert time.monotonic() < deadline, "the slow request never reached the app"
        time.sleep(0.02)
    return thread, result


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_once_lets_requests_finish_and_twice_stops_now(tmp_path, workers):
    """Ctrl+C waits for in-flight responses (the supervisor's SIGTERM to its workers is not a
    second press); pressed again it stops at once, as with uvicorn, and the app's lifespan
    shutdown still runs."""
    proc, port = launch(tmp_path, "lifespan_app:app", "--workers", workers, "--graceful-timeout", "30")
    wait_accepting(proc, port)
    thread, result = slow_request_in_flight(tmp_path, port, 1.5)
    press_ctrl_c(proc)
    thread.join(10)
    assert result["response"].text == "slept"
    assert proc.wait(10) == 0
    assert (tmp_path / "marker").read_text() == "shutdown ran"

    (tmp_path / "marker").unlink()
    (tmp_path / "marker.slow").unlink()
    proc, port = launch(tmp_path, "lifespan_app:app", "--workers", workers, "--graceful-timeout", "30")
    wait_accepting(proc, port)
    thread, result = slow_request_in_flight(tmp_path, port, 30)
    press_ctrl_c(proc)
    time.sleep(1.0)  # a second press, not the first one's signals arriving late (worker.SAME_PRESS)
    started = time.monotonic()
    press_ctrl_c(proc)
    assert proc.wait(10) == 0
    assert time.monotonic() - started < 5
    assert (tmp_path / "marker").read_text() == "shutdown ran"
    output = proc.stdout.read().decode()
    assert "SIGINT again: closing 1 connection, cancelling 1 request still running" in output
    thread.join(5)
    assert "response" not in result


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("flags", [["--workers", "2"], ["--reload"]], ids=["workers", "reload"])
def test_sigint_to_the_supervisor_alone_after_a_stop_stops_its_workers_now(tmp_path, first, flags):
    """``kill -INT`` to the server's pid (a container runtime signals its pid 1 only): with
    workers (or under the reloader), a SIGINT after the stop began (by SIGINT or SIGTERM) is the
    second Ctrl+C it is for one process, passed on to the server processes; the supervisor (and
    the reloader) used to take it for the stop it already was, and the workers waited out
    --graceful-timeout."""
    if "--reload" in flags:
        pytest.importorskip("watchfiles")
    proc, port = launch(tmp_path, "lifespan_app:app", *flags, "--graceful-timeout", "30")
    wait_accepting(proc, port)
    thread, result = slow_request_in_flight(tmp_path, port, 30)
    proc.send_signal(first)
    time.sleep(1.0)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    assert time.monotonic() - started < 5
    assert (tmp_path / "marker").read_text() == "shutdown ran"
    assert "SIGINT again: closing 1 connection, cancelling 1 request still running" in proc.stdout.read().decode()
    thread.join(5)
    assert "response" not in result


def lifespan_raising_at(phase):
    """A raw ASGI app that runs the lifespan protocol and raises at ``phase`` ('startup' before
    any reply, or 'shutdown' after its startup completed)."""
    async def app(scope, receive, send):
        assert scope["type"] == "lifespan"
        await receive()
        if phase == "startup":
            raise RuntimeError("boom at startup")
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise RuntimeError("boom at shutdown")
    return app


def run_lifespan(app, lifespan="auto"):
    import asyncio

    from fastserve.config import Config
    from fastserve.server.asgi import AsgiBridge

    async def main():
        bridge = AsgiBridge(app, Config(target=app, lifespan=lifespan), asyncio.get_running_loop())
        await bridge.startup()
        await bridge.shutdown()

    asyncio.run(main())


def test_an_exception_in_a_lifespan_shutdown_is_logged_as_an_error(caplog):
    # The app speaks the protocol (its startup completed): its failure at shutdown is its own
    # error, not a sign that it does not do lifespan, so it is logged with its traceback.
    run_lifespan(lifespan_raising_at("shutdown"))
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "shutdown" in record.getMessage() and "boom at shutdown" in str(record.exc_info[1])


def test_an_app_raising_before_its_first_lifespan_reply_is_served_and_says_so(caplog):
    # --lifespan auto, as uvicorn: taken for an app without lifespan, said once at INFO.
    caplog.set_level("INFO", logger="fastserve")
    run_lifespan(lifespan_raising_at("startup"))
    [record] = [r for r in caplog.records if "lifespan" in r.getMessage()]
    assert record.levelname == "INFO" and "boom at startup" in record.getMessage()


def test_a_startup_that_says_it_failed_then_raises_is_reported_once(caplog):
    # Starlette's way: lifespan.startup.failed, then the exception; the failure is what is said.
    from fastserve.server.asgi import LifespanFailure

    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        raise RuntimeError("no database")

    caplog.set_level("INFO", logger="fastserve")
    with pytest.raises(LifespanFailure, match="no database"):
        run_lifespan(app)
    said = [r.getMessage() for r in caplog.records if r.levelno >= 20]
    assert said == ["Waiting for application startup."], said  # (uvicorn's line before it begins)
