"""``--reload``: the server restarts with the new code when a source file changes."""
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx2

from fastserve.server.reload import child_argv, snapshot

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
    argv = ["app:app", "--reload", "--reload-dir", "src", "--port", "9000", "--reload-interval=1"]
    assert child_argv(argv)[-3:] == ["app:app", "--port", "9000"]


def test_snapshot_sees_python_files_only(tmp_path):
    (tmp_path / "a.py").write_text("x = 1")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "b.py").write_text("")
    assert list(snapshot([tmp_path])) == [str(tmp_path / "a.py")]


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


def test_the_reloader_owns_the_pid_file_passes_sighup_on_and_stops_with_its_child(tmp_path):
    """The pid an operator reads is the reloader's; stopping the server it runs stops it too
    (the port used to stay open with nobody answering); SIGHUP no longer kills it."""
    pid_path = tmp_path / "server.pid"
    with _reloader(tmp_path, "up", "--pid-file", str(pid_path)) as (proc, port):
        assert _get(port) == "up"
        assert int(pid_path.read_text()) == proc.pid
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert proc.poll() is None and _get(port) == "up"
        child = _child_of(proc.pid)
        os.kill(child, signal.SIGTERM)
        assert proc.wait(10) == 0
        assert _refused(port)
        assert not pid_path.exists()
        assert b"SIGHUP ignored" in proc.stdout.read()


def test_a_killed_reloader_takes_its_server_with_it(tmp_path):
    with _reloader(tmp_path, "up") as (proc, port):
        assert _get(port) == "up"
        child = _child_of(proc.pid)
        proc.kill()
        proc.wait()
        assert _gone(child), "the server outlived its reloader"
        assert _refused(port)


def test_a_server_that_fails_starts_again_when_the_file_is_fixed(tmp_path):
    with _reloader(tmp_path, "first") as (proc, port):
        assert _get(port) == "first"
        (tmp_path / "reload_app.py").write_text("this is not python\n")
        deadline = time.monotonic() + 15
        while True:  # the restart with broken code exits with an error; the reloader waits
            try:
                children = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
            except FileNotFoundError:
                children = []
            if not children or _gone(int(children[0]), 0.1):
                break
            assert time.monotonic() < deadline
        time.sleep(0.6)  # a poll of the reloader sees the failure
        assert proc.poll() is None
        (tmp_path / "reload_app.py").write_text(APP % "fixed")
        assert _get(port) == "fixed"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert b"it starts again when a watched file changes" in proc.stdout.read()
