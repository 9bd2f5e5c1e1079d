"""``--reload``: run the server in a child process and restart it when source files change.

For development only. Files are found by polling their modification times (no extra
dependency): every ``*.py`` below the watched directories, plus any other patterns given.
The reloader opens the listening socket itself and hands it to each child (``--fd``), so the
port stays open across a restart: a request sent meanwhile waits in the queue for the new child
instead of being refused.

The reloader is the process to signal: it writes ``--pid-file``, stops its child on
SIGTERM/SIGINT and passes SIGHUP on (the child reloads its certificate, or logs that it has
none). A child stopped from outside stops the reloader too; a child that fails (an import
error, say) is started again when a file changes. A child whose reloader is killed gets
SIGTERM from the kernel (Linux), so no server is left on the port unwatched.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from fastserve.server.serve import pid_file

logger = logging.getLogger("fastserve")

SKIPPED_DIRS = {".git", "__pycache__", ".venv", "venv", "node_modules", "build", ".pytest_cache"}


def snapshot(directories: Iterable[Path], patterns: Iterable[str] = ("*.py",)) -> Dict[str, int]:
    """Path -> mtime_ns of every watched file."""
    seen: Dict[str, int] = {}
    for directory in directories:
        for root, dirs, files in os.walk(directory):
            dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".")]
            for pattern in patterns:
                for path in Path(root).glob(pattern):
                    try:
                        seen[str(path)] = path.stat().st_mtime_ns
                    except OSError:
                        pass
    return seen


def child_argv(argv: List[str], fd: Optional[int] = None) -> List[str]:
    """The command line of the server child: the same, without ``--reload`` options; given the
    descriptor ``fd`` of the reloader's listening socket, ``--fd fd`` replaces ``--uds``/``--fd``.
    ``--pid-file`` is the reloader's own."""
    dropped = ["--reload-dir", "--reload-interval", "--pid-file"] + (["--uds", "--fd"] if fd is not None else [])
    out: List[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
            continue
        if arg == "--reload":
            continue
        if arg in dropped:
            skip_value = True
            continue
        if arg.startswith(tuple(option + "=" for option in dropped)):
            continue
        out.append(arg)
    if fd is not None:
        out += ["--fd", str(fd)]
    return [sys.executable, "-m", "fastserve", *out]


def _stop_with_parent() -> None:
    """In a new child, before it runs the server: SIGTERM when the reloader dies (Linux's
    ``PR_SET_PDEATHSIG``; elsewhere nothing), and at once if it is already gone."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


class Reloader:
    """Keeps one server child running; replaces it when a watched file changes."""

    def __init__(self, argv: List[str], directories: List[Path], interval: float = 0.5,
                 listener: Optional[socket.socket] = None, pid_path: Optional[str] = None) -> None:
        self.listener = listener  # handed to every child; None: each child opens its own
        self.command = child_argv(argv, None if listener is None else listener.fileno())
        self.directories = directories
        self.interval = interval
        self.pid_path = pid_path
        self.child: Optional[subprocess.Popen] = None
        self.failed: Optional[int] = None  # the exit code of a child that failed on its own
        self.stopping = False
        self.stop_requested = threading.Event()  # ends the wait between polls at once

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._pass_on)
        with pid_file(self.pid_path):
            return self._watch()

    def _watch(self) -> int:
        files = snapshot(self.directories)
        self._start()
        while not self.stopping:
            self.stop_requested.wait(self.interval)
            if self.stopping:
                break
            ended = self._ended_on_its_own()
            if ended is not None:
                return ended
            current = snapshot(self.directories)
            if current != files:
                changed = sorted(set(current.items()) ^ set(files.items()))
                logger.info("fastserve: %s changed, restarting", changed[0][0] if changed else "a file")
                files = current
                self._end()
                self._start()
        return self._end()

    def _ended_on_its_own(self) -> Optional[int]:
        """The exit code to end with when the child was stopped from outside (a signal, or a
        clean exit); None while it runs, or after it failed (it is started again on a change)."""
        if self.child is None or self.failed is not None:
            return None
        code = self.child.poll()
        if code is None:
            return None
        if code > 0:
            self.failed = code
            logger.warning("fastserve: the server exited with code %d; it starts again when a watched file "
                           "changes (requests wait meanwhile)", code)
            return None
        logger.info("fastserve: the server (pid %d) was stopped (%s); the reloader stops too", self.child.pid,
                    "exit code 0" if code == 0 else signal.Signals(-code).name)
        return 0

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True
        self.stop_requested.set()

    def _pass_on(self, signum: int, frame: object) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def _start(self) -> None:
        self.failed = None
        env = dict(os.environ)
        pass_fds: tuple = ()
        if self.listener is not None:
            env.pop("FASTSERVE_UDS", None)  # the child serves the reloader's socket, and must not remove its file
            pass_fds = (self.listener.fileno(),)
        env.pop("FASTSERVE_PID_FILE", None)  # the reloader's, like --pid-file
        self.child = subprocess.Popen(self.command, pass_fds=pass_fds, env=env, preexec_fn=_stop_with_parent)

    def _end(self) -> int:
        if self.child is None:
            return 0
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            try:
                return self.child.wait(15)
            except subprocess.TimeoutExpired:
                self.child.kill()
        return self.child.wait()
