"""The supervisor of ``--workers N`` sleeps until a signal or a worker's exit wakes it."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from server_helpers import DocRoot, fetch


def context_switches(pid: int) -> int:
    """How many times process ``pid`` gave up the CPU to wait (``voluntary_ctxt_switches``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches for {pid}")


def test_an_idle_supervisor_does_not_poll(start_server, docroot: DocRoot) -> None:
    srv = start_server(docroot.root, "--workers", "2")
    assert fetch(srv.port, "/small.txt").status == 200
    before = context_switches(srv.pid)
    time.sleep(0.6)
    woke = context_switches(srv.pid) - before
    # A supervisor polling every 0.1 s wakes 6 times here. One sleeping in select() until
    # something happens wakes at most for the second worker's "ready" (it may still be starting)
    # and its 1-s safety net; one more is allowed for a loaded machine.
    assert woke <= 3, f"the supervisor woke {woke} times in 0.6 s while nothing happened"
    assert srv.stop() == 0


def test_workers_stop_when_their_supervisor_is_killed(start_server, docroot: DocRoot) -> None:
    """SIGKILL to the supervisor (an OOM kill, a crash) must not leave its workers serving on,
    unreachable by a stop to the supervisor's pid: each notices at its next tick and drains."""
    from test_server_process import has_exited, wait_for

    srv = start_server(docroot.root, "--workers", "2")
    assert wait_for(lambda: len(srv.children()) == 2, 5.0)
    workers = srv.children()
    srv.proc.kill()
    srv.proc.wait(5)
    assert wait_for(lambda: all(has_exited(pid) for pid in workers), 5.0), "workers outlived their supervisor"
    assert "its supervisor (pid %d) is gone; stopping" % srv.pid in srv.output()


BROKEN_WORKER_APP = '''
import os

import uvloop

SUPERVISOR = os.getpid()  # the app is imported once, before the workers fork
_new_event_loop = uvloop.new_event_loop


def _no_loop_in_workers():
    if os.getpid() != SUPERVISOR:
        raise RuntimeError("this worker cannot start its event loop")
    return _new_event_loop()


uvloop.new_event_loop = _no_loop_in_workers


async def app(scope, receive, send):
    pass
'''


def test_workers_that_fail_before_accepting_stop_the_server_instead_of_restarting_in_a_loop(tmp_path: Path) -> None:
    """A worker that cannot start (here: its event loop) exits as a failed start, as a failed
    lifespan startup does: with nothing ever served the server stops with exit code 3 after one
    try per slot, rather than replacing its workers ten times a second for ever."""
    (tmp_path / "broken_worker.py").write_text(BROKEN_WORKER_APP)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastserve", "broken_worker:app", "--port", "0", "--workers", "2",
         "--lifespan", "off"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert proc.wait(15) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read().decode()
    assert output.count(" failed\nTraceback") == 2 and "cannot start its event loop" in output, output  # one per slot
    assert "starting a new one" not in output, output


def test_a_slot_added_after_sigttou_starts_with_no_failed_starts(monkeypatch) -> None:
    """SIGTTOU drops a slot, and with it all the supervisor keeps for it: its failed starts in a
    row outlived it, so the worker of a slot SIGTTIN added back waited 8 s after its first
    failed start, as if it were the slot's fourth, instead of the first retry's 1 s."""
    import os
    import socket

    from fastserve.config import Config
    from fastserve.server import supervisor as module

    signalled = []
    monkeypatch.setattr(module, "_signal", lambda pid, signum: signalled.append(pid))
    with socket.socket() as shared:
        sup = module.Supervisor(Config(workers=2), app=None, shared=shared)
        try:
            monkeypatch.setattr(sup, "_spawn", lambda slot: sup.workers.setdefault(2001, slot) and 2001)
            sup.workers = {1001: 0, 1002: 1}
            sup.served = True
            sup.failed_starts = {1: 3}  # slot 1's worker failed to start three times in a row
            sup.respawns = [(time.monotonic() + 4.0, 1, None)]
            sup._remove_slot()
            assert signalled == [1002] and sup.respawns == [] and sup.failed_starts == {}
            sup._add_slot()
            assert sup.workers == {1001: 0, 2001: 1}
            exits = [(2001, module.STARTUP_FAILED << 8)]  # its worker fails to start: exit code 3
            monkeypatch.setattr(os, "waitpid", lambda pid, options: exits.pop() if exits else (0, 0))
            before = time.monotonic()
            sup._reap(restart=True)
            ((when, slot, _),) = sup.respawns
            assert slot == 1 and when - before <= module.RETRY_FIRST + 0.5, when - before
        finally:
            for fd in (sup.control_r, sup.control_w, sup.wake_r, sup.wake_w):
                os.close(fd)


BLOCKING_APP = '''
import time


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/block":
        time.sleep(60)  # a blocking call in an async app: the worker's event loop stops
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
'''


@pytest.mark.parametrize("how", ["blocked", "stopped"])
def test_a_worker_whose_event_loop_stops_is_killed_and_replaced(tmp_path: Path, how: str) -> None:
    """--timeout-worker-healthcheck (uvicorn's flag, accepted without effect before): a worker
    whose event loop no longer runs (an app blocking it, a process stopped) held its slot's
    listening socket for ever, the connections the kernel gave that socket waiting unanswered;
    it is killed once its loop has not ticked for that long, logged, and replaced."""
    import os
    import signal
    import socket

    from server_helpers import CliProcess, port_from_url
    from test_server_process import wait_for

    (tmp_path / "blocking.py").write_text(BLOCKING_APP)
    args = ["blocking:app", "--port", "0", "--workers", "2", "--timeout-worker-healthcheck", "1"]
    with CliProcess(args, log_path=tmp_path / "log", cwd=tmp_path) as srv:
        port = port_from_url(srv.wait_listening())
        assert wait_for(lambda: srv.output().count("Application startup complete.") == 2, 10.0)
        time.sleep(0.5)  # both accept, and have told the supervisor their first beat
        before = set(srv.children())
        if how == "blocked":
            blocked = socket.create_connection(("127.0.0.1", port), timeout=5)
            blocked.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        else:
            os.kill(sorted(before)[0], signal.SIGSTOP)
        assert wait_for(lambda: "its event loop has not run for" in srv.output(), 10.0), srv.output()
        assert wait_for(lambda: len(srv.children()) == 2 and set(srv.children()) != before, 10.0), srv.output()
        for _ in range(6):  # both slots answer again (each has a running worker)
            assert fetch(port, "/").status == 200
        if how == "blocked":
            blocked.close()
        assert srv.stop() == 0
    output = srv.output()
    assert output.count("its event loop has not run for") == 1, output
    assert "was killed by signal 9 (SIGKILL); starting a new one" in output
