"""Where the server listens and the files it leaves: --uds, --fd, --backlog, --pid-file."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from server_helpers import CliProcess, DocRoot, RawConnection, fetch, port_from_url


def unix_get(path: str, target: str) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


@pytest.fixture
def short_dir():
    """A directory with a short path: unix socket paths are limited to about 100 bytes."""
    path = Path(f"/tmp/fs-{os.getpid()}-{time.monotonic_ns()}")
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("workers", ["2"])  # one worker: the other --uds tests
def test_uds_serves_and_removes_its_socket(docroot: DocRoot, tmp_path: Path, short_dir: Path, workers) -> None:
    path = str(short_dir / "fs.sock")
    with CliProcess([str(docroot.root), "--uds", path, "--workers", workers], log_path=tmp_path / "log") as srv:
        assert srv.wait_listening() == f"unix:{path}"
        for _ in range(4):
            reply = unix_get(path, "/small.txt")
            assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(docroot.small)
        assert os.stat(path).st_mode & 0o777 == 0o666
        assert srv.stop() == 0
    assert not os.path.exists(path)


def test_uds_refuses_new_clients_once_its_workers_stop_accepting(docroot: DocRoot, tmp_path: Path,
                                                                short_dir: Path) -> None:
    """The supervisor's copy of the shared socket closes when the stop begins: while a download
    finishes, a new client is refused at once instead of queueing on a socket nobody accepts from."""
    path = str(short_dir / "fs.sock")
    with CliProcess([str(docroot.root), "--uds", path, "--workers", "2", "--graceful-timeout", "5"],
                    log_path=tmp_path / "log") as srv:
        srv.wait_listening()
        with socket.socket(socket.AF_UNIX) as download:
            download.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            download.settimeout(5)
            download.connect(path)
            download.sendall(b"GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            assert download.recv(12) == b"HTTP/1.1 200"
            srv.terminate()
            deadline = time.monotonic() + 5
            while srv.output().count("shutting down") < 2:
                assert time.monotonic() < deadline, srv.output()
                time.sleep(0.02)
            with socket.socket(socket.AF_UNIX) as late:
                late.settimeout(2)
                with pytest.raises(ConnectionRefusedError):
                    late.connect(path)
        assert srv.wait_exit(5) == 0


def test_uds_replaces_a_stale_socket_and_refuses_a_live_one(docroot: DocRoot, tmp_path: Path, short_dir: Path) -> None:
    path = str(short_dir / "fs.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens: what a crashed server leaves
    with CliProcess([str(docroot.root), "--uds", path], log_path=tmp_path / "a") as first:
        first.wait_listening()
        with CliProcess([str(docroot.root), "--uds", path], log_path=tmp_path / "b") as second:
            assert second.wait_exit(10) == 3
        assert "another server is listening there" in second.output()
        assert unix_get(path, "/small.txt").startswith(b"HTTP/1.1 200 ")


def test_uds_refuses_a_path_that_is_not_a_socket(docroot: DocRoot, tmp_path: Path) -> None:
    path = tmp_path / "regular-file"
    path.write_text("keep me")
    with CliProcess([str(docroot.root), "--uds", str(path)], log_path=tmp_path / "log") as srv:
        assert srv.wait_exit(10) == 3
    assert "is not a socket" in srv.output()
    assert path.read_text() == "keep me"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_fd_serves_an_inherited_socket(docroot: DocRoot, tmp_path: Path, workers) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    try:
        with CliProcess([str(docroot.root), "--fd", str(fd), "--workers", workers], log_path=tmp_path / "log",
                        pass_fds=[fd]) as srv:
            assert srv.wait_listening() == f"http://127.0.0.1:{port}"
            for _ in range(4):
                assert fetch(port, "/small.txt").body == docroot.small
            assert srv.stop() == 0
    finally:
        listener.close()


def test_fd_that_is_not_open_is_a_clear_error(docroot: DocRoot, tmp_path: Path) -> None:
    with CliProcess([str(docroot.root), "--fd", "97"], log_path=tmp_path / "log") as srv:
        assert srv.wait_exit(10) == 3
    assert "cannot listen on descriptor 97" in srv.output()
    assert "Traceback" not in srv.output()


def _listen_backlog(port: int) -> int:
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(out.split()[2])  # State Recv-Q Send-Q: for a listener, Send-Q is the backlog


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read a listener's backlog")
@pytest.mark.parametrize("workers", ["2"])  # each worker's own SO_REUSEPORT socket
def test_backlog_reaches_the_listening_socket(docroot: DocRoot, tmp_path: Path, workers) -> None:
    with CliProcess([str(docroot.root), "--port", "0", "--backlog", "37", "--workers", workers],
                    log_path=tmp_path / "log") as srv:
        port = port_from_url(srv.wait_listening())
        assert fetch(port, "/small.txt").status == 200
        assert _listen_backlog(port) == 37


def test_pid_file_holds_the_server_pid_while_it_runs(docroot: DocRoot, tmp_path: Path) -> None:
    pid_file = tmp_path / "run" / "fastserve.pid"
    pid_file.parent.mkdir()
    with CliProcess([str(docroot.root), "--port", "0", "--pid-file", str(pid_file), "--workers", "2"],
                    log_path=tmp_path / "log") as srv:
        srv.wait_listening()
        assert pid_file.read_text() == f"{srv.proc.pid}\n"
        assert srv.stop() == 0
    assert not pid_file.exists()


def test_unwritable_pid_file_is_a_clear_error(docroot: DocRoot, tmp_path: Path) -> None:
    with CliProcess([str(docroot.root), "--port", "0", "--pid-file", str(tmp_path / "no" / "such" / "x.pid")],
                    log_path=tmp_path / "log") as srv:
        assert srv.wait_exit(10) == 3
    assert "x.pid" in srv.output() and "Traceback" not in srv.output()


def test_keep_alive_over_a_unix_socket(docroot: DocRoot, tmp_path: Path, short_dir: Path) -> None:
    path = str(short_dir / "ka.sock")
    with CliProcess([str(docroot.root), "--uds", path], log_path=tmp_path / "log") as srv:
        srv.wait_listening()
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(path)
            conn = RawConnection.__new__(RawConnection)
            conn.sock, conn.buffer, conn.eof = sock, bytearray(), False
            for name, body in [("/small.txt", docroot.small), ("/large.bin", docroot.large)]:
                response = conn.exchange("GET", name)
                assert (response.status, response.body) == (200, body)


def test_apps_on_a_unix_socket_see_asgi_addresses(tmp_path: Path, short_dir: Path) -> None:
    (tmp_path / "addrapp.py").write_text(
        "async def app(scope, receive, send):\n"
        "    body = repr((scope['client'], scope['server'])).encode()\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': body})\n"
    )
    path = str(short_dir / "app.sock")
    with CliProcess(["addrapp:app", "--uds", path], log_path=tmp_path / "log", cwd=tmp_path) as srv:
        srv.wait_listening()
        reply = unix_get(path, "/")
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert repr((None, (path, None))).encode() + b"\r\n0\r\n\r\n" in reply


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigquit_stops_gracefully_and_leaves_no_files(docroot: DocRoot, tmp_path: Path, short_dir: Path,
                                                      workers: str) -> None:
    # nginx and gunicorn stop gracefully on SIGQUIT (nginx's container images send it); its
    # default action dumps core and leaves the pid file and the socket behind.
    path, pid_file = str(short_dir / "fs.sock"), tmp_path / "fs.pid"
    with CliProcess([str(docroot.root), "--uds", path, "--pid-file", str(pid_file), "--workers", workers],
                    log_path=tmp_path / "log") as srv:
        srv.wait_listening()
        assert unix_get(path, "/small.txt").endswith(docroot.small)
        srv.proc.send_signal(signal.SIGQUIT)
        assert srv.wait_exit(10) == 0, srv.output()
        assert "fastserve stopped" in srv.output()
    assert not os.path.exists(path) and not pid_file.exists()
