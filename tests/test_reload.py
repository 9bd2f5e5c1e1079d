"""``--reload``: the server restarts with the new code when a source file changes."""
import os
import select
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from fastserve.server.reload import WatchedFiles, child_argv

APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"%s"})
'''


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port, deadline_s=15.0):
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return httpx2.get(f"http://127.0.0.1:{port}/", timeout=2).text
        except httpx2.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_child_argv_drops_reload_options():
    argv = ["app:app", "--reload", "--reload-dir", "src", "--port", "9000", "--reload-delay=1",
            "--reload-include", "*.html", "--reload-exclude=tmp_*"]
    assert child_argv(argv)[-3:] == ["app:app", "--port", "9000"]


def test_watched_files_follow_uvicorns_include_and_exclude_rules():
    root = Path("/srv/.deploy/app")  # a hidden or build directory above the watched one does not matter
    default = WatchedFiles([root])
    assert default(None, str(root / "main.py")) and default(None, str(root / "pkg" / "mod.py"))
    for ignored in ("notes.txt", "main.pyc", "__pycache__/mod.py", ".git/hooks.py", ".venv/x.py", "a/.hidden.py",
                    "~main.py", ".sw.py", "node_modules/x.py"):
        assert not default(None, str(root / ignored)), ignored
    assert not default(None, "/elsewhere/main.py")
    custom = WatchedFiles([root], include=["*.html", ".env"], exclude=["scratch_*.py", "data"])
    assert custom(None, str(root / "templates" / "index.html"))
    assert custom(None, str(root / ".env"))  # included by name: no longer excluded as hidden
    assert not custom(None, str(root / "scratch_1.py"))
    assert not custom(None, str(root / "data" / "loader.py"))
    assert custom(None, str(root / "main.py"))
    no_python = WatchedFiles([root], include=["*.toml"], exclude=["*.py"])  # a default given as an exclude goes
    assert no_python(None, str(root / "settings.toml")) and not no_python(None, str(root / "main.py"))


def test_child_argv_serves_the_reloaders_socket():
    argv = ["app:app", "--reload", "--uds", "/run/a.sock", "--fd=5", "--workers", "2"]
    assert child_argv(argv, 7)[-5:] == ["app:app", "--workers", "2", "--fd", "7"]


def test_reload_restarts_with_new_code_and_refuses_no_request_meanwhile(tmp_path):
    with _reloader(tmp_path, "first") as (proc, port):
        assert _get(port) == "first"
        time.sleep(0.05)
        (tmp_path / "reload_app.py").write_text(APP % "second")
        # The reloader holds the port while the old child stops and the new one starts: every
        # request is answered, by one or the other, none refused or reset.
        deadline = time.monotonic() + 15
        with httpx2.Client(timeout=10) as client:
            while client.get(f"http://127.0.0.1:{port}/", headers={"Connection": "close"}).text != "second":
                assert time.monotonic() < deadline, "the server did not pick up the change"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_reload_serves_an_inherited_descriptor(tmp_path):
    """``--fd N --reload``: the server child is handed the descriptor too (it used to find it closed)."""
    (tmp_path / "reload_app.py").write_text(APP % "inherited")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "fastserve", "reload_app:app", "--fd", str(sock.fileno()), "--reload"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(sock.fileno(),),
        )
    try:
        assert _get(port) == "inherited"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


@contextmanager
def _reloader(tmp_path, body, *extra):
    """``python -m fastserve reload_app:app --reload`` serving ``APP % body``: ``(process, port)``;
    killed at the end if still running."""
    (tmp_path / "reload_app.py").write_text(APP % body)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastserve", "reload_app:app", "--port", str(port), "--reload", *extra],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _child_of(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as file:
        children = file.read().split()
    assert len(children) == 1, children
    return int(children[0])


def _refused(port, deadline_s=10.0):
    """Whether connecting to the port is refused (nothing listens) before the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)
    return False


def _gone(pid, deadline_s=10.0):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as file:
                if file.read().split(") ")[1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def _wakeups(pid):
    """How many times the process's main thread has gone to sleep and woken (voluntarily)."""
    with open(f"/proc/{pid}/task/{pid}/status") as file:
        return int(next(line for line in file if line.startswith("voluntary_ctxt_switches")).split()[1])


def test_the_reloader_owns_the_pid_file_passes_sighup_on_and_stops_with_its_child(tmp_path):
    """The pid an operator reads is the reloader's; stopping the server it runs stops it too
    (the port used to stay open with nobody answering); SIGHUP no longer kills it.
    ``--reload-delay 0`` looks at the child every watch step (50 ms), never in a busy loop."""
    pid_path = tmp_path / "server.pid"
    with _reloader(tmp_path, "up", "--pid-file", str(pid_path), "--reload-delay", "0") as (proc, port):
        assert _get(port) == "up"
        assert int(pid_path.read_text()) == proc.pid
        woken, since = _wakeups(proc.pid), time.monotonic()
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        rate = (_wakeups(proc.pid) - woken) / (time.monotonic() - since)
        assert rate < 60, f"the reloader woke {rate:.0f} times a second"
        assert proc.poll() is None and _get(port) == "up"
        child = _child_of(proc.pid)
        os.kill(child, signal.SIGTERM)
        assert proc.wait(10) == 0
        assert _refused(port)
        assert not pid_path.exists()
        output = proc.stdout.read()
        assert b"SIGHUP ignored" in output
        assert f"reloader (pid {proc.pid}) watching {tmp_path.resolve()} for changes to *.py".encode() in output


@pytest.mark.parametrize("variable", ["FASTSERVE_RELOAD", "UVICORN_RELOAD"])
def test_reload_asked_for_by_a_variable_runs_one_reloader(tmp_path, variable):
    """The child inherited the variable and became a reloader too, and its child another: a
    chain of reloaders, a new one every 0.1 s. The child is the server."""
    from fastserve.cli import env_name, uvicorn_env_name
    from fastserve.server.reload import RELOAD_VARIABLES

    assert set(RELOAD_VARIABLES) == {env_name("reload"), uvicorn_env_name("reload")}
    (tmp_path / "reload_app.py").write_text(APP % "up")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fastserve", "reload_app:app", "--port", str(port)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, variable: "true"})
    try:
        assert _get(port) == "up"
        server = _child_of(proc.pid)
        with open(f"/proc/{server}/task/{server}/children") as file:
            assert file.read().split() == [], "the reloader's child started a reloader of its own"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        _kill_with_descendants(proc)


def _kill_with_descendants(proc):
    """SIGKILL ``proc`` and every process below it (a chain of reloaders, should one be made)."""
    found, pending = [], [proc.pid]
    while pending:
        pid = pending.pop()
        found.append(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as file:
                pending += [int(child) for child in file.read().split()]
        except FileNotFoundError:
            pass
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def test_a_killed_reloader_takes_its_server_with_it(tmp_path):
    with _reloader(tmp_path, "up") as (proc, port):
        assert _get(port) == "up"
        child = _child_of(proc.pid)
        proc.kill()
        proc.wait()
        assert _gone(child), "the server outlived its reloader"
        assert _refused(port)


CONFIGURED_APP = '''
from pathlib import Path

MESSAGE = Path(__file__).with_name("message.txt").read_bytes()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": MESSAGE})
'''


def test_reload_include_and_exclude_choose_the_files_that_restart(tmp_path):
    """uvicorn's --reload-include/--reload-exclude: a change to an included data file restarts the
    server; one to an excluded module does not (it is named first, so it would be the one logged)."""
    (tmp_path / "message.txt").write_text("first")
    with _reloader(tmp_path, "unused", "--reload-include", "*.txt", "--reload-exclude", "a_scratch*.py",
                   "--reload-delay", "0.1") as (proc, port):
        (tmp_path / "reload_app.py").write_text(CONFIGURED_APP)
        assert _get(port) in ("unused", "first")  # the first child may start before the app is rewritten
        deadline = time.monotonic() + 15
        while _get(port) != "first":
            assert time.monotonic() < deadline
        (tmp_path / "a_scratch.py").write_text("x = 1")
        (tmp_path / "message.txt").write_text("second")
        while _get(port) != "second":
            assert time.monotonic() < deadline, "a change to an included file did not restart the server"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        log = proc.stdout.read()
        assert b"message.txt changed, restarting" in log and b"a_scratch" not in log, log


def test_a_server_that_fails_starts_again_when_the_file_is_fixed(tmp_path):
    with _reloader(tmp_path, "first") as (proc, port):
        assert _get(port) == "first"
        (tmp_path / "reload_app.py").write_text("this is not python\n")
        # The restart with broken code exits with an error; the reloader says so and waits.
        output = _output_until(proc, b"it starts again when a watched file changes")
        assert proc.poll() is None, output
        (tmp_path / "reload_app.py").write_text(APP % "fixed")
        assert _get(port) == "fixed"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def _output_until(proc, text, deadline_s=15.0):
    """What ``proc`` wrote to its stdout pipe, read until it holds ``text``."""
    output = b""
    deadline = time.monotonic() + deadline_s
    while text not in output:
        left = deadline - time.monotonic()
        assert left > 0, output
        if select.select([proc.stdout], [], [], left)[0]:
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, output
            output += chunk
    return output


def test_reload_without_watchfiles_says_what_to_install(monkeypatch, capsys):
    from fastserve.cli import main

    monkeypatch.setitem(sys.modules, "watchfiles", None)  # as if it were not installed
    assert main(["app:app", "--port", "0", "--reload"]) == 3
    assert capsys.readouterr().err == "fastserve: --reload needs watchfiles: pip install 'fastserve[reload]'\n"


def test_a_reload_dir_that_is_not_a_directory_is_refused_in_one_line(tmp_path, capsys):
    from fastserve.cli import main

    missing = tmp_path / "nowhere"
    assert main(["app:app", "--port", "0", "--reload", "--reload-dir", str(missing)]) == 3
    assert capsys.readouterr().err == f"fastserve: --reload-dir {missing} is not a directory\n"
