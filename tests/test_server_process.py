"""The fastserve process: workers, restarts, signals, graceful shutdown, logging, binding."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from server_helpers import (
    DocRoot,
    RawConnection,
    ServerProcess,
    fetch,
    running_server,
    server_env,
)


def wait_for(condition, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def assert_serves(server: ServerProcess, docroot: DocRoot, count: int = 10) -> None:
    for _ in range(count):
        response = fetch(server.port, "/small.txt", timeout=3.0)
        assert (response.status, response.body) == (200, docroot.small)


def has_exited(pid: int) -> bool:
    """The process is gone or a zombie (its sockets are closed either way)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    state = next((line for line in status.splitlines() if line.startswith("State:")), "")
    return "Z" in state.split()[1:2]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_refused(port: int, timeout: float) -> bool:
    """True once connecting to ``port`` is refused (a connection that slips in is closed and retried)."""
    def refused() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return False
        except ConnectionRefusedError:
            return True
        except OSError:  # reset by a listener that is closing right now: ask again
            return False
    return wait_for(refused, timeout)


# -- workers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_workers(docroot: DocRoot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A ``--workers 2`` server for the tests below, which leave it with two serving workers."""
    log = tmp_path_factory.mktemp("two-workers") / "server.log"
    with running_server(docroot.root, ["--workers", "2"], log_path=log) as srv:
        yield srv


def test_two_workers_serve_requests(two_workers: ServerProcess, docroot: DocRoot) -> None:
    srv = two_workers
    assert wait_for(lambda: len(srv.children()) == 2, 5.0), f"children: {srv.children()}"
    assert_serves(srv, docroot, 20)
    assert fetch(srv.port, "/large.bin", timeout=5.0).body == docroot.large


def test_killed_worker_is_replaced(two_workers: ServerProcess, docroot: DocRoot) -> None:
    srv = two_workers
    assert wait_for(lambda: len(srv.children()) == 2, 5.0)
    before = srv.children()
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    # Connections the kernel queues on the victim's slot socket meanwhile wait for its
    # replacement (test_server_handover); the other worker keeps serving its own.
    assert wait_for(lambda: has_exited(victim), 3.0)
    assert_serves(srv, docroot, 5)
    # An error, with the likeliest cause named: a SIGKILL fastserve did not send is most often the OOM killer's.
    # (Said as the supervisor reaps it, which may come after the zombie has_exited saw.)
    said = (f"ERROR worker {victim} was killed by signal 9 (SIGKILL), which fastserve did not send: perhaps out of "
            "memory (the kernel's OOM killer sends it; see dmesg); starting a new one")
    assert wait_for(lambda: said in srv.output(), 5.0), srv.output()
    assert wait_for(lambda: len(srv.children()) == 2 and victim not in srv.children(), 5.0), (
        f"no replacement worker: before {before}, now {srv.children()}"
    )
    replacement = set(srv.children()) - set(before)
    assert len(replacement) == 1
    assert_serves(srv, docroot, 20)
    assert srv.alive()


def test_sighup_without_tls_is_ignored_not_fatal(two_workers: ServerProcess, docroot: DocRoot) -> None:
    # SIGHUP reloads the TLS certificate; without TLS, its default action would kill the
    # supervisor and leave its workers serving on, orphaned. The supervisor and each worker log
    # it and serve on, the same workers.
    srv = two_workers
    assert wait_for(lambda: len(srv.children()) == 2, 5.0)
    before = srv.children()
    for pid in (srv.pid, *before, srv.pid):
        os.kill(pid, signal.SIGHUP)
    assert wait_for(lambda: srv.output().count("SIGHUP ignored") >= 3, 3.0), srv.output()
    assert srv.alive() and srv.children() == before
    assert_serves(srv, docroot, 5)


def test_sigttin_and_sigttou_add_and_remove_workers(two_workers: ServerProcess, docroot: DocRoot) -> None:
    """uvicorn's (and gunicorn's) signals: the supervisor adds a worker on SIGTTIN and stops one on
    SIGTTOU, never the last; by their default action they would stop (freeze) the supervisor."""
    srv = two_workers
    assert wait_for(lambda: len(srv.children()) == 2, 5.0)
    for signum, count, line in [
        (signal.SIGTTIN, 3, "SIGTTIN: a worker added, 3 now"),
        (signal.SIGTTOU, 2, "SIGTTOU: a worker removed, 2 now"),
        (signal.SIGTTOU, 1, "SIGTTOU: a worker removed, 1 now"),
        (signal.SIGTTOU, 1, "SIGTTOU ignored: one worker is the fewest"),
        (signal.SIGTTIN, 2, "SIGTTIN: a worker added, 2 now"),
    ]:
        os.kill(srv.pid, signum)  # one at a time: signals sent together may arrive as one
        assert wait_for(lambda: line in srv.output() and len(srv.children()) == count, 5.0), srv.output()
        assert "State:\tT" not in Path(f"/proc/{srv.pid}/status").read_text()
        assert_serves(srv, docroot, 4)
    assert wait_for(lambda: srv.output().count("stopped (SIGTTOU)") == 2, 5.0), srv.output()  # said as each is reaped


def test_sigttin_to_a_lone_server_is_refused_not_a_stop(server: ServerProcess, docroot: DocRoot) -> None:
    """Without a supervisor there is no worker to add: a warning, and the server serves on
    (SIGTTIN's and SIGTTOU's default action would stop the process)."""
    for signum in (signal.SIGTTIN, signal.SIGTTOU):
        os.kill(server.pid, signum)
        name = signal.Signals(signum).name
        assert wait_for(lambda: f"{name} ignored (it adds or removes a worker" in server.output(), 3.0), server.output()
        assert "State:\tT" not in Path(f"/proc/{server.pid}/status").read_text()
        assert_serves(server, docroot, 2)


def test_single_worker_runs_in_process(server: ServerProcess, docroot: DocRoot) -> None:
    assert server.children() == []  # the session's server: CLI defaults, one worker
    assert_serves(server, docroot, 3)


# -- graceful shutdown -------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_lets_a_slow_download_finish(start_server, docroot: DocRoot, workers: str) -> None:
    srv = start_server(docroot.root, "--workers", workers, "--graceful-timeout", "8")
    with RawConnection(srv.port, timeout=5.0, rcvbuf=65536) as conn:
        conn.request("GET", "/large.bin")
        head = conn.read_head()
        assert head.status == 200
        received = bytearray(conn.read_exact(100_000))
        srv.terminate()
        # new connections are refused while the download goes on
        assert wait_refused(srv.port, 2.0), "new connections still accepted after SIGTERM"
        while len(received) < len(docroot.large):  # the listener is closed: read the rest
            received += conn.read_some()
        finished = time.monotonic()
        assert bytes(received) == docroot.large
        assert srv.alive() or srv.proc.returncode == 0
        # the response is done: the connection should close and the server exit, without
        # waiting out the rest of --graceful-timeout
        assert conn.wait_closed(1.5), "connection left open after its response during shutdown"
    code = srv.wait_exit(5.0)
    assert code == 0, f"exit code {code}"
    assert time.monotonic() - finished < 2.0, (
        f"server took {time.monotonic() - finished:.1f} s to exit after its last response"
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_with_idle_keep_alive_connections_exits_promptly(start_server, docroot: DocRoot,
                                                                 workers: str) -> None:
    srv = start_server(docroot.root, "--workers", workers, "--graceful-timeout", "10")
    conns: List[RawConnection] = [RawConnection(srv.port) for _ in range(4)]
    try:
        for conn in conns:
            assert conn.exchange("GET", "/small.txt").status == 200
        started = time.monotonic()
        srv.terminate()
        code = srv.wait_exit(5.0)
        elapsed = time.monotonic() - started
        assert code == 0, f"exit code {code}"
        assert elapsed < 2.0, f"exit took {elapsed:.1f} s with only idle connections"
        for conn in conns:
            assert conn.wait_closed(1.0)
    finally:
        for conn in conns:
            conn.close()


def test_graceful_timeout_bounds_a_client_that_never_reads(start_server, docroot: DocRoot) -> None:
    srv = start_server(docroot.root, "--graceful-timeout", "0.2")
    stuck = RawConnection(srv.port, rcvbuf=4096)
    try:
        stuck.request("GET", "/large.bin")
        assert stuck.read_head().status == 200
        started = time.monotonic()
        srv.terminate()
        code = srv.wait_exit(5.0)
        elapsed = time.monotonic() - started
        assert code is not None, "server still running 5 s after SIGTERM"
        assert code == 0
        assert elapsed < 3.0, f"exit took {elapsed:.1f} s with --graceful-timeout 0.2"
    finally:
        stuck.close()


def test_sigint_stops_the_server_too(start_server, docroot: DocRoot) -> None:
    srv = start_server(docroot.root)
    assert_serves(srv, docroot, 1)
    srv.proc.send_signal(signal.SIGINT)
    assert srv.wait_exit(3.0) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_right_after_the_port_opens_is_a_clean_stop(docroot: DocRoot, tmp_path: Path, signum) -> None:
    # Whoever sees the port accept connections may stop the server at once (a supervisor,
    # a test harness): the signal handlers must already be in place by then.
    # The window is short: poll the port tightly and try twice.
    codes = []
    for attempt in range(2):
        srv = ServerProcess(docroot.root, [], log_path=tmp_path / f"early-{attempt}.log")
        assert wait_for(lambda: port_accepts(srv.port), 10.0, interval=0.002), srv.output()
        srv.proc.send_signal(signum)
        code = srv.wait_exit(5.0)
        if code is None:
            srv.kill_all()
        codes.append(code)
    assert codes == [0] * len(codes), f"exit codes {codes} (negative: killed by the signal)"


# -- logging, binding, defaults ----------------------------------------------------------------


def test_no_access_log_by_default(start_server, docroot: DocRoot) -> None:
    srv = start_server(docroot.root)
    assert_serves(srv, docroot, 3)
    assert srv.stop() == 0  # a log buffer is written at the latest on the way out
    assert "/small.txt" not in srv.output()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_in_use_exits_non_zero_with_a_message(docroot: DocRoot, tmp_path: Path, workers: str) -> None:
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        srv = ServerProcess(docroot.root, ["--workers", workers], log_path=tmp_path / "busy.log", port=port)
        code = srv.wait_exit(10.0)
        if code is None:
            srv.kill_all()
        output = srv.output()
    assert code is not None and code != 0, f"exit code {code}\n{output}"
    assert f"127.0.0.1:{port}" in output
    assert "already in use" in output.lower()
    assert "Traceback" not in output


def test_second_fastserve_on_the_same_port_is_refused(server: ServerProcess, docroot: DocRoot, tmp_path: Path) -> None:
    first = server  # the session's server
    second = ServerProcess(docroot.root, [], log_path=tmp_path / "second.log", port=first.port)
    code = second.wait_exit(3.0)
    if code is None:
        second.kill_all()
    assert code == 3, (  # uvicorn's exit code for a start that failed
        "a second server bound the port already served by the first one\n" + second.output()
    )
    assert "already in use" in second.output().lower()
    assert_serves(first, docroot, 3)


def test_no_target_serves_the_current_directory(serve_cli, docroot: DocRoot, monkeypatch) -> None:
    monkeypatch.chdir(docroot.root)
    client = serve_cli().open()
    for _ in range(3):
        response = client.request("GET", "/small.txt")
        assert (response.status, response.body) == (200, docroot.small)
    assert client.request("GET", "/dir/").status == 200


def test_missing_directory_is_a_clear_error(docroot: DocRoot, tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "does-not-exist", [], log_path=tmp_path / "missing.log")
    code = srv.wait_exit(10.0)
    if code is None:
        srv.kill_all()
    output = srv.output()
    assert code is not None and code != 0, output
    assert "does-not-exist" in output
    assert "Traceback" not in output


def test_sigterm_while_workers_start_stops_them_promptly(docroot: DocRoot) -> None:
    # SIGTERM right after the banner reaches workers that are still starting: each must take
    # it as a stop, not lose it in the supervisor's handlers it inherited at fork and serve on
    # until the graceful timeout runs out.
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "fastserve", str(docroot.root), "--port", "0", "--workers", "2",
         "--graceful-timeout", "20"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        for line in iter(proc.stderr.readline, b""):
            if b"serving" in line:
                break
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the workers too, should the stop have failed
            proc.wait()


def test_a_privileged_port_without_the_capability_says_what_to_do(docroot: DocRoot, tmp_path: Path) -> None:
    """Port 80 as an unprivileged user (a container's non-root user, a developer): one line that
    says why and what to do, exit code 3; it said "Permission denied" alone."""
    from fastserve.server.listen import unprivileged_port_start

    lowest = unprivileged_port_start()
    if lowest <= 1:
        pytest.skip("this kernel lets any process bind any port (net.ipv4.ip_unprivileged_port_start)")
    argv = [sys.executable, "-m", "fastserve", str(docroot.root), "--port", "1"]
    if os.geteuid() == 0:  # root: run without the capability, as a container that drops it does
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root, and no setpriv to drop CAP_NET_BIND_SERVICE")
        argv = [setpriv, "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service", *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=server_env())
    assert result.returncode == 3, result
    assert (f"fastserve: cannot listen on 127.0.0.1:1: permission denied: a port below {lowest} needs the "
            "CAP_NET_BIND_SERVICE capability") in result.stderr, result.stderr
    assert f"listen on a port from {lowest} up" in result.stderr and "Traceback" not in result.stderr
