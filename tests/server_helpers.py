"""Helpers for the tests that run ``python -m fastserve`` as a real process.

* ``build_docroot``   a document root with known files (and a secret file outside it);
* ``ServerProcess``   start the CLI on a free port, wait until it accepts, stop it with SIGTERM;
* ``RawConnection``   a blocking socket with a tiny HTTP/1.1 response reader, for protocol-level
  checks that an HTTP client library would hide (pipelining, raw targets, closes);
* ``parse_byteranges`` split a multipart/byteranges body into its parts.

Every socket operation carries a timeout, so a server bug shows up as a failure, never a hang.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import random
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

SMALL_TEXT = "Hello from fastserve.\n" * 3
SECRET_MARKER = b"TOP-SECRET-5d1c9e27-do-not-serve"
INDEX_HTML = b"<!doctype html><title>dir index</title><p>the index of /dir/</p>\n"
NOT_FOUND_HTML = b"<!doctype html><title>404</title><p>custom not found page</p>\n"
UNICODE_NAME = "hello wörld ü.txt"
UNICODE_BODY = "grüße aus einer datei mit leerzeichen\n".encode("utf-8")

# ---------------------------------------------------------------------------------------------
# the document root


@dataclass
class DocRoot:
    """A served directory and what is in it."""

    base: Path              # holds ``public/`` and the secret file
    root: Path              # the directory fastserve serves
    secret: Path            # lies OUTSIDE ``root``
    small: bytes
    medium: bytes           # 64 KiB, above --cache-max-file too: head and sendfile at once
    large: bytes            # 5 MiB, above --cache-max-file: sent with sendfile
    unicode_body: bytes

    def path(self, name: str) -> Path:
        return self.root / name


async def read_body(receive: Any) -> Optional[bytes]:
    """The whole request body an ASGI app reads through ``receive``; None if the client went away."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


async def echo_body(scope: dict, receive: Any, send: Any) -> None:
    """An ASGI app that answers an HTTP request with the body it read, with its Content-Length;
    it returns at ``http.disconnect``."""
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    if body is None:
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def pattern_bytes(size: int, seed: int) -> bytes:
    """Reproducible pseudo-random bytes (so a misplaced byte range shows up)."""
    return random.Random(seed).randbytes(size)


def build_docroot(base: Path, *, with_404: bool = True) -> DocRoot:
    """Create ``base/public`` (served) next to ``base/secret.txt`` (must never be served)."""
    root = base / "public"
    (root / "dir").mkdir(parents=True)
    (root / "evil.example" / "dir").mkdir(parents=True)
    (root / "nested" / "deeper").mkdir(parents=True)
    secret = base / "secret.txt"
    secret.write_bytes(SECRET_MARKER + b"\n")

    small = SMALL_TEXT.encode()
    medium = pattern_bytes(64 * 1024, seed=64)
    large = pattern_bytes(5 * 1024 * 1024, seed=5)
    (root / "small.txt").write_bytes(small)
    (root / "medium.bin").write_bytes(medium)
    (root / "large.bin").write_bytes(large)
    (root / "page.html").write_bytes(b"<!doctype html><p>a page</p>\n")
    (root / "dir" / "index.html").write_bytes(INDEX_HTML)
    (root / "evil.example" / "dir" / "index.html").write_bytes(INDEX_HTML)
    (root / "nested" / "deeper" / "file.txt").write_bytes(b"deep file\n")
    (root / UNICODE_NAME).write_bytes(UNICODE_BODY)
    if with_404:
        (root / "404.html").write_bytes(NOT_FOUND_HTML)
    os.symlink(secret, root / "outside_link.txt")
    os.symlink(base, root / "outside_dir")
    os.symlink("small.txt", root / "inside_link.txt")
    return DocRoot(base=base, root=root, secret=secret, small=small, medium=medium,
                   large=large, unicode_body=UNICODE_BODY)


def releases(tmp_path: Path) -> Path:
    """``current`` -> ``v1``, the layout of an atomic symlink deploy, and a ``v2`` to swap in."""
    for name, body in (("v1", "one"), ("v2", "two")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.txt").write_text(body)
    (tmp_path / "v2" / "new.txt").write_text("new")
    (tmp_path / "v2" / "old.txt").symlink_to(tmp_path / "v1" / "a.txt")  # into the release swapped out
    (tmp_path / "current").symlink_to("v1")
    return tmp_path / "current"


def swap(current: Path, release: str) -> None:
    """``ln -sfn RELEASE current`` done atomically, as deploy tools do it (a rename)."""
    staged = current.with_name("current.new")
    staged.symlink_to(release)
    os.replace(staged, current)


# ---------------------------------------------------------------------------------------------
# the server process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env() -> Dict[str, str]:
    """The environment for a server process: fastserve importable from any working directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_until_accepting(port: int, proc: Optional[subprocess.Popen] = None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not accept connections within {timeout} s")


class CliProcess:
    """``python -m fastserve *args`` exactly as given (no --host/--port added).

    Output (stdout and stderr together) goes to ``log_path``. ``wait_listening()`` waits for
    the banner and returns where it says the server listens (``http://127.0.0.1:PORT``,
    ``http://[::1]:PORT``, ``unix:/path``), once 127.0.0.1 accepts. Used as a context manager, it is stopped with
    SIGTERM (and killed if it would not stop) on exit. ``open_files`` is the ``(soft, hard)``
    open-file limit the process starts with (default: this one's).
    """

    def __init__(self, args: Sequence[str], *, log_path: Path, cwd: Optional[Path] = None,
                 env: Optional[Dict[str, str]] = None, pass_fds: Sequence[int] = (),
                 open_files: Optional[Tuple[int, int]] = None) -> None:
        self.log_path = log_path
        self.argv = [PYTHON, "-m", "fastserve", *args]
        self.terminated = False
        self._log = open(log_path, "wb")
        full_env = server_env()
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            self.argv, cwd=str(cwd or REPO_ROOT), env=full_env,
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, pass_fds=tuple(pass_fds),
            preexec_fn=None if open_files is None else lambda: resource.setrlimit(resource.RLIMIT_NOFILE, open_files),
        )

    def __enter__(self) -> "CliProcess":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def wait_listening(self, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if "fastserve serving " in line and " on " in line:
                    where = line.split(" on ", 1)[1].split(" ", 1)[0]
                    if where.startswith("http://127.0.0.1:"):  # workers may still be starting
                        wait_until_accepting(int(where.rsplit(":", 1)[1]), self.proc, deadline - time.monotonic())
                    return where
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}\n{self.output()}")
            time.sleep(0.02)
        raise RuntimeError(f"no banner within {timeout} s\n{self.output()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        """Send SIGTERM once; a second one could land after the server restored default handlers."""
        if self.alive() and not self.terminated:
            self.terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> Optional[int]:
        """The exit code, or None when the process is still running after ``timeout``."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """SIGTERM, then wait; kills (and returns None) when it does not exit in time."""
        self.terminate()
        code = self.wait_exit(timeout)
        if code is None:
            self.kill_all()
        self._log.close()
        return code

    def children(self) -> List[int]:
        return child_pids(self.pid)

    def kill_all(self) -> None:
        """Last resort for a server that would not stop: SIGKILL it and its workers."""
        for pid in self.children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.alive():
            self.proc.kill()
        self.proc.wait(5)


class ServerProcess(CliProcess):
    """``python -m fastserve TARGET --host 127.0.0.1 --port PORT *flags`` in a subprocess.

    Output (stdout and stderr together) goes to ``log_path`` so tests can read the access log.
    """

    def __init__(self, target: Optional[Path], flags: Sequence[str] = (), *, log_path: Path,
                 cwd: Optional[Path] = None, port: Optional[int] = None,
                 open_files: Optional[Tuple[int, int]] = None) -> None:
        self.port = port or free_port()
        self.target = target
        args = [] if target is None else [str(target)]
        super().__init__([*args, "--host", "127.0.0.1", "--port", str(self.port), *flags], log_path=log_path, cwd=cwd,
                         open_files=open_files)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 15.0) -> "ServerProcess":
        try:
            wait_until_accepting(self.port, self.proc, timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- server output ---\n{self.output()}") from None
        return self


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid``, in KiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def child_pids(pid: int) -> List[int]:
    """Direct children of ``pid``, from /proc."""
    children: List[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tasks = list(task_dir.iterdir())
    except FileNotFoundError:
        return children
    for task in tasks:
        try:
            text = (task / "children").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.extend(int(word) for word in text.split())
    return sorted(set(children))


# ---------------------------------------------------------------------------------------------
# raw HTTP/1.1 over a socket


class ConnectionClosed(Exception):
    """The server closed the connection before a complete response arrived."""


@dataclass
class RawResponse:
    version: str
    status: int
    reason: str
    headers: List[Tuple[str, str]]
    body: bytes = b""
    raw_head: bytes = b""

    def header(self, name: str) -> Optional[str]:
        """The value of a header that must appear at most once (None when absent)."""
        values = self.header_values(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None

    def header_values(self, name: str) -> List[str]:
        lowered = name.lower()
        return [value for key, value in self.headers if key == lowered]

    def content_type_boundary(self) -> bytes:
        content_type = self.header("content-type") or ""
        for param in content_type.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary":
                return value.strip('"').encode()
        raise AssertionError(f"no boundary in Content-Type {content_type!r}")


def build_request(method: str, target: str | bytes, headers: Iterable[Tuple[str, str]] = (),
                  version: str = "HTTP/1.1", host: bool = True, body: bytes = b"") -> bytes:
    if isinstance(target, str):
        target = target.encode("utf-8")
    lines = [method.encode() + b" " + target + b" " + version.encode()]
    if host:
        lines.append(b"Host: 127.0.0.1")
    for name, value in headers:
        lines.append(f"{name}: {value}".encode("latin-1"))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class RawConnection:
    """One TCP connection with a buffered HTTP/1.1 response reader."""

    def __init__(self, port: int, timeout: float = 5.0, rcvbuf: Optional[int] = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # must be set before connecting to shrink the advertised window
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = bytearray()
        self.eof = False

    def __enter__(self) -> "RawConnection":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Close with an RST (as a crashed client would)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()

    def settimeout(self, timeout: float) -> None:
        self.sock.settimeout(timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, target: str | bytes, headers: Iterable[Tuple[str, str]] = (),
                version: str = "HTTP/1.1", body: bytes = b"") -> None:
        self.send(build_request(method, target, headers, version, body=body))

    def exchange(self, method: str, target: str | bytes, headers: Iterable[Tuple[str, str]] = (),
                 version: str = "HTTP/1.1") -> RawResponse:
        self.request(method, target, headers, version)
        return self.read_response(head=method == "HEAD")

    # -- reading -----------------------------------------------------------------------

    def _fill(self) -> None:
        if self.eof:
            raise ConnectionClosed("connection already closed by the server")
        try:
            data = self.sock.recv(256 * 1024)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            raise ConnectionClosed("connection closed by the server")
        self.buffer += data

    def read_until(self, marker: bytes) -> bytes:
        while True:
            index = self.buffer.find(marker)
            if index >= 0:
                end = index + len(marker)
                data = bytes(self.buffer[:end])
                del self.buffer[:end]
                return data
            self._fill()

    def read_exact(self, count: int) -> bytes:
        if len(self.buffer) < count and not self.eof:
            # Receive the rest straight into place (large bodies are not copied chunk by chunk).
            have = len(self.buffer)
            self.buffer.extend(bytes(count - have))
            view = memoryview(self.buffer)
            try:
                while have < count:
                    try:
                        got = self.sock.recv_into(view[have:count])
                    except ConnectionResetError:
                        got = 0
                    if not got:
                        self.eof = True
                        break
                    have += got
            finally:
                view.release()
                del self.buffer[have:count]
        if len(self.buffer) < count:
            raise ConnectionClosed("connection closed by the server")
        data = bytes(memoryview(self.buffer)[:count])
        del self.buffer[:count]
        return data

    def read_some(self) -> bytes:
        """Whatever is buffered, or one recv's worth."""
        if not self.buffer:
            self._fill()
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def read_to_eof(self) -> bytes:
        try:
            while True:
                self._fill()
        except ConnectionClosed:
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def read_head(self) -> RawResponse:
        raw = self.read_until(b"\r\n\r\n")
        lines = raw[:-4].split(b"\r\n")
        version, status, reason = (lines[0].decode("latin-1").split(" ", 2) + [""])[:3]
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            assert sep, f"malformed response header line {line!r}"
            headers.append((name.decode("latin-1").strip().lower(), value.decode("latin-1").strip()))
        return RawResponse(version=version, status=int(status), reason=reason, headers=headers, raw_head=raw)

    def read_response(self, head: bool = False) -> RawResponse:
        """Read one response; ``head`` says it answers a HEAD request (so it has no body)."""
        response = self.read_head()
        if head or response.status in (204, 304) or 100 <= response.status < 200:
            return response
        encoding = (response.header("transfer-encoding") or "").lower()
        if encoding == "chunked":
            response.body = self._read_chunked()
        elif response.header("content-length") is not None:
            response.body = self.read_exact(int(response.header("content-length")))
        else:
            response.body = self.read_to_eof()
        return response

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_line = self.read_until(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                # trailers end with an empty line
                while self.read_until(b"\r\n") != b"\r\n":
                    pass
                return bytes(body)
            body += self.read_exact(size)
            assert self.read_exact(2) == b"\r\n", "chunk not followed by CRLF"

    def wait_closed(self, timeout: float) -> bool:
        """True when the server closes the connection within ``timeout`` (data before it is dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                return False
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            if not data:
                return True

    def is_open_after(self, seconds: float) -> bool:
        """True when nothing (no data, no close) arrives during ``seconds``."""
        readable, _, _ = select.select([self.sock], [], [], seconds)
        return not readable


def open_descriptors(pid: int) -> int:
    """How many descriptors process ``pid`` holds open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_descriptors(pid: int, done, timeout: float = 10.0) -> bool:
    """Whether ``done(open_descriptors(pid))`` comes true within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not done(open_descriptors(pid)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def held_sockets(pid: int) -> set[str]:
    """The ``socket:[inode]`` names of the sockets process ``pid`` holds open."""
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # closed while we looked
        if target.startswith("socket:"):
            held.add(target)
    return held


def server_side_of(pid: int, sock: socket.socket, timeout: float = 10.0) -> str:
    """The ``socket:[inode]`` that process ``pid`` holds for the server side of the connected
    TCP ``sock`` (found in /proc/net/tcp by the connection's two ports), once it has accepted it.
    ``AssertionError`` when it does not within ``timeout`` seconds."""
    server_port = sock.getpeername()[1]
    client_port = sock.getsockname()[1]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    local, remote, inode = fields[1], fields[2], fields[9]
                    if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                        name = f"socket:[{inode}]"
                        if inode != "0" and name in held_sockets(pid):
                            return name
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never held the server side of {sock!r}")


def wait_released(pid: int, name: str, timeout: float = 10.0) -> bool:
    """Whether process ``pid`` closes its socket ``name`` (from ``server_side_of``) within
    ``timeout`` seconds (polled). Unlike counting descriptors, this is not fooled by what the
    server opens or closes meanwhile for other reasons."""
    deadline = time.monotonic() + timeout
    while name in held_sockets(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def unread_bytes(sock: socket.socket) -> int:
    """Bytes received on ``sock`` and not read yet (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def wait_unread(sock: socket.socket, timeout: float = 10.0) -> None:
    """Wait until the server has sent something ``sock`` has not read (polled, nothing read);
    ``AssertionError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not unread_bytes(sock):
        assert time.monotonic() < deadline, f"nothing arrived on {sock!r} within {timeout} s"
        time.sleep(0.005)


def wait_peer_closed(sock: socket.socket, timeout: float) -> bool:
    """True once the server has closed or reset ``sock`` (within ``timeout`` seconds), told by
    the kernel's TCP state: nothing is read, so a client that stopped reading stays stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        if state != 1:  # no longer TCP_ESTABLISHED: CLOSE_WAIT after a FIN, CLOSE after a reset
            return True
        time.sleep(0.01)
    return False


def fetch(port: int, target: str | bytes, method: str = "GET",
          headers: Iterable[Tuple[str, str]] = (), timeout: float = 5.0) -> RawResponse:
    """One request on a fresh connection."""
    with RawConnection(port, timeout) as conn:
        return conn.exchange(method, target, headers)


# ---------------------------------------------------------------------------------------------
# multipart/byteranges


@dataclass
class BytePart:
    headers: Dict[str, str] = field(default_factory=dict)
    data: bytes = b""


def parse_byteranges(body: bytes, boundary: bytes) -> List[BytePart]:
    """Split a multipart/byteranges body into parts (headers lower-cased)."""
    delimiter = b"\r\n--" + boundary
    chunks = (b"\r\n" + body).split(delimiter)
    assert chunks[0] == b"", f"unexpected preamble {chunks[0][:80]!r}"
    assert chunks[-1] in (b"--", b"--\r\n"), f"missing closing delimiter, got {chunks[-1][:80]!r}"
    parts = []
    for chunk in chunks[1:-1]:
        assert chunk.startswith(b"\r\n"), f"part does not start with CRLF: {chunk[:80]!r}"
        head, sep, data = chunk[2:].partition(b"\r\n\r\n")
        assert sep, "part without a blank line after its headers"
        headers = {}
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            headers[name.decode().strip().lower()] = value.decode().strip()
        parts.append(BytePart(headers=headers, data=data))
    return parts


def assert_partial(response: RawResponse, data: bytes, first: int, last: int) -> None:
    """``response`` is a 206 of ``data[first:last + 1]``."""
    assert response.status == 206, response.headers
    assert response.header("content-range") == f"bytes {first}-{last}/{len(data)}"
    assert response.header("content-length") == str(last - first + 1)
    assert response.body == data[first:last + 1]


def check_byteranges(response: RawResponse, data: bytes, expected: List[Tuple[int, int]]) -> None:
    """``response`` is a multipart/byteranges 206 of the ``expected`` (first, last) ranges of ``data``."""
    assert response.status == 206, response.headers
    assert (response.header("content-type") or "").startswith("multipart/byteranges; boundary=")
    assert response.header("content-length") == str(len(response.body))
    parts = parse_byteranges(response.body, response.content_type_boundary())
    assert [part.headers["content-range"] for part in parts] == [
        f"bytes {first}-{last}/{len(data)}" for first, last in expected
    ]
    for part, (first, last) in zip(parts, expected):
        assert part.data == data[first:last + 1]


@contextlib.contextmanager
def running_server(target: Optional[Path], flags: Sequence[str] = (), *, log_path: Path,
                   cwd: Optional[Path] = None, stop_timeout: float = 5.0) -> Iterator[ServerProcess]:
    """A ready server for the ``with`` block; afterwards SIGTERM must make it exit 0 in time.

    A test may stop the server itself; then only that it is no longer running is checked here.
    When the block raises, the server is stopped (killed if it will not stop) and the block's
    error is what the test reports.
    """
    server = ServerProcess(target, flags, log_path=log_path, cwd=cwd)
    try:
        server.wait_ready()
    except BaseException:
        server.kill_all()
        raise
    try:
        yield server
    except BaseException:
        server.stop(stop_timeout)  # the block failed: stop (or kill) the server, report the failure
        raise
    if not server.alive():
        return
    code = server.stop(stop_timeout)
    assert code == 0, (
        f"server did not exit cleanly on SIGTERM within {stop_timeout} s (code {code})\n"
        f"--- server output ---\n{server.output()}"
    )


@contextlib.contextmanager
def running_app_module(base: Path, module: str, source: str, flags: Sequence[str] = ()) -> Iterator[ServerProcess]:
    """``running_server`` for ``module:app``, the module written into ``base`` from ``source``
    (dedented) and the server run there, its output in ``base/server.log``."""
    (base / f"{module}.py").write_text(textwrap.dedent(source))
    with running_server(Path(f"{module}:app"), flags, log_path=base / "server.log", cwd=base) as srv:
        yield srv


def port_from_url(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def run_cli(args: Sequence[str], *, timeout: float = 15.0, env: Optional[Dict[str, str]] = None,
            cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run the CLI to completion (for flags that make it exit at once), output captured as text."""
    full_env = server_env()
    full_env.update(env or {})
    return subprocess.run([PYTHON, "-m", "fastserve", *args], cwd=str(cwd or REPO_ROOT), env=full_env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
