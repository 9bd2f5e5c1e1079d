"""``--reload``: run the server in a child process and restart it when source files change.

For development only. Files are found by polling their modification times (no extra
dependency): every ``*.py`` below the watched directories, plus any other patterns given.
"""
from __future__ import annotations

import logging
import os
import signal
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


def child_argv(argv: List[str]) -> List[str]:
    """The command line of the server child: the same, without ``--reload`` options."""
    out: List[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
            continue
        if arg == "--reload":
            continue
        if arg in ("--reload-dir", "--reload-interval"):
            skip_value = True
            continue
        if arg.startswith(("--reload-dir=", "--reload-interval=")):
            continue
        out.append(arg)
    return [sys.executable, "-m", "fastserve", *out]


class Reloader:
    """Keeps one server child running; replaces it when a watched file changes."""

    def __init__(self, argv: List[str], directories: List[Path], interval: float = 0.5) -> None:
        self.command = child_argv(argv)
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
        self.child = subprocess.Popen(self.command)

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
