"""``--reload``: run the server in a child process and restart it when source files change.

For development only. Files are found by polling their modification times (no extra
dependency): every ``*.py`` below the watched directories, plus any other patterns given.
The reloader opens the listening socket itself and hands it to each child (``--fd``), so the
port stays open across a restart: a request sent meanwhile waits in the queue for the new child
instead of being refused.
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
    descriptor ``fd`` of the reloader's listening socket, ``--fd fd`` replaces ``--uds``/``--fd``."""
    dropped = ["--reload-dir", "--reload-interval"] + (["--uds", "--fd"] if fd is not None else [])
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


class Reloader:
    """Keeps one server child running; replaces it when a watched file changes."""

    def __init__(self, argv: List[str], directories: List[Path], interval: float = 0.5,
                 listener: Optional[socket.socket] = None) -> None:
        self.listener = listener  # handed to every child; None: each child opens its own
        self.command = child_argv(argv, None if listener is None else listener.fileno())
        self.directories = directories
        self.interval = interval
        self.child: Optional[subprocess.Popen] = None
        self.stopping = False
        self.stop_requested = threading.Event()  # ends the wait between polls at once

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        files = snapshot(self.directories)
        self._start()
        while not self.stopping:
            self.stop_requested.wait(self.interval)
            if self.stopping:
                break
            current = snapshot(self.directories)
            if current != files:
                changed = sorted(set(current.items()) ^ set(files.items()))
                logger.info("fastserve: %s changed, restarting", changed[0][0] if changed else "a file")
                files = current
                self._end()
                self._start()
        return self._end()

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True
        self.stop_requested.set()

    def _start(self) -> None:
        if self.listener is None:
            self.child = subprocess.Popen(self.command)
            return
        env = dict(os.environ)
        env.pop("FASTSERVE_UDS", None)  # the child serves the reloader's socket, and must not remove its file
        self.child = subprocess.Popen(self.command, pass_fds=(self.listener.fileno(),), env=env)

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
