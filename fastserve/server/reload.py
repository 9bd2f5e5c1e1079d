"""``--reload``: run the server in a child process and restart it when source files change.

For development only. Changes are reported by ``watchfiles`` (``pip install 'fastserve[reload]'``;
the kernel's file events, polling where there are none): a file below the watched directories
whose name matches an include pattern (``*.py``, plus ``--reload-include``) and neither it nor a
directory above it matches an exclude pattern (``.*``, ``*.py[cod]``, ``.sw.*``, ``~*``, plus
``--reload-exclude``), as uvicorn's flags say; an include pattern given again as an exclude one
is dropped from the defaults. ``--reload-delay`` is the longest the reloader waits before it
looks again at its child (a change is acted on once watchfiles sees the burst of changes end);
below ``WATCH_STEP`` it is ``WATCH_STEP``, so ``--reload-delay 0`` never makes a busy loop.

The reloader opens the listening socket itself and hands it to each child (``--fd``), so the
port stays open across a restart: a request sent meanwhile waits in the queue for the new child
instead of being refused.

The reloader is the process to signal: it writes ``--pid-file``, stops its child on
SIGTERM/SIGINT/SIGQUIT and passes SIGHUP, SIGUSR1, SIGUSR2, SIGTTIN and SIGTTOU on (the child
reloads its certificate or logs that it has none, reopens its log files, refuses a binary
upgrade, adds or removes a worker where it runs them). A child
stopped from outside stops the reloader too; a child that fails (an import error, say) is started
again when a file changes. A child whose reloader is killed gets
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
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, List, Optional, Sequence

from fastserve.server.serve import pid_file
from fastserve.server.worker import KEPT_SIGNALS, STOP_SIGNALS

logger = logging.getLogger("fastserve")

DEFAULT_INCLUDE = ("*.py",)
DEFAULT_EXCLUDE = (".*", "*.py[cod]", ".sw.*", "~*")
SKIPPED_DIRS = {"__pycache__", "venv", "node_modules", "build"}  # besides hidden ones (``.*``)
# The variables that ask for --reload (fastserve.cli.env_name and uvicorn_env_name of "reload").
RELOAD_VARIABLES = ("FASTSERVE_RELOAD", "UVICORN_RELOAD")
# Seconds between two looks at the file events (watchfiles' ``step``, its default): a burst of
# changes is over once one step brings nothing new, and the reloader never wakes more often.
WATCH_STEP = 0.05


class ReloadUnavailable(Exception):
    """``--reload`` without watchfiles installed; the message says what to install."""


def require_watchfiles() -> None:
    """Return when ``watchfiles`` can be imported; raises ``ReloadUnavailable`` (its message
    says what to install) when it cannot."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ReloadUnavailable("--reload needs watchfiles: pip install 'fastserve[reload]'") from None


class WatchedFiles:
    """Which changed paths below the watched ``directories`` restart the server:
    ``(change, path) -> bool``, as ``watchfiles`` calls a filter. ``include`` and ``exclude``
    are globs (``fnmatch``) matched against the names of the file and of the directories
    between it and the watched directory (not those above it); a file named outright by an
    include pattern (``.env``) is watched whatever the exclude patterns say."""

    def __init__(self, directories: Sequence[Path], include: Sequence[str] = (), exclude: Sequence[str] = ()) -> None:
        self.directories = [Path(d).resolve() for d in directories]
        self.include = [*(p for p in DEFAULT_INCLUDE if p not in exclude), *include]
        self.exclude = [*(p for p in DEFAULT_EXCLUDE if p not in include), *exclude]

    def __call__(self, change: Any, path: str) -> bool:
        parts = self._below_watched(Path(path))
        if not parts or any(part in SKIPPED_DIRS or self._excluded(part) for part in parts[:-1]):
            return False
        name = parts[-1]
        if name in self.include:  # named outright (".env"): wins over the exclude patterns
            return True
        return any(fnmatch(name, pattern) for pattern in self.include) and not self._excluded(name)

    def _below_watched(self, path: Path) -> Sequence[str]:
        for directory in self.directories:
            try:
                return path.relative_to(directory).parts
            except ValueError:
                continue
        return ()

    def _excluded(self, name: str) -> bool:
        return any(fnmatch(name, pattern) for pattern in self.exclude)


def child_argv(argv: List[str], fd: Optional[int] = None) -> List[str]:
    """The command line of the server child: the same, without ``--reload`` options; given the
    descriptor ``fd`` of the reloader's listening socket, ``--fd fd`` replaces ``--uds``/``--fd``.
    ``--pid-file`` is the reloader's own."""
    dropped = ["--reload-dir", "--reload-include", "--reload-exclude", "--reload-delay", "--pid-file"]
    if fd is not None:
        dropped += ["--uds", "--fd"]
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

    def __init__(self, argv: List[str], watched: WatchedFiles, delay: float,
                 listener: Optional[socket.socket] = None, pid_path: Optional[str] = None) -> None:
        self.listener = listener  # handed to every child; None: each child opens its own
        self.command = child_argv(argv, None if listener is None else listener.fileno())
        self.watched = watched  # the directories, and which of their files restart the child
        self.delay = max(WATCH_STEP, delay)  # seconds between two looks at the child
        self.pid_path = pid_path
        self.child: Optional[subprocess.Popen] = None
        self.failed: Optional[int] = None  # the exit code of a child that failed on its own
        self.stopping = False
        self.stop_requested = threading.Event()  # watchfiles' stop_event: ends the watch at once

    def run(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._stop)
        for signum in KEPT_SIGNALS:  # SIGHUP and the operator's signals: the child acts on them
            signal.signal(signum, self._pass_on)
        with pid_file(self.pid_path):
            logger.info("fastserve: reloader (pid %d) watching %s for changes to %s", os.getpid(),
                        ", ".join(map(str, self.watched.directories)), ", ".join(self.watched.include))
            return self._watch()

    def _watch(self) -> int:
        import watchfiles

        self._start()
        changes_seen = watchfiles.watch(
            *self.watched.directories, watch_filter=self.watched, stop_event=self.stop_requested,
            step=round(WATCH_STEP * 1000), rust_timeout=round(self.delay * 1000), yield_on_timeout=True,
            raise_interrupt=False,
        )
        for changes in changes_seen:
            if self.stopping:
                break
            ended = self._ended_on_its_own()
            if ended is not None:
                return ended
            if changes:
                logger.info("fastserve: %s changed, restarting", min(path for _, path in changes))
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
        if self.stopping and signum == signal.SIGINT:
            self._pass_on(signum, frame)  # Ctrl+C again, to the reloader alone: the server stops now
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
            for name in ("FASTSERVE_UDS", "UVICORN_UDS"):  # the child serves the reloader's socket, and must
                env.pop(name, None)                        # not remove its file
            pass_fds = (self.listener.fileno(),)
        env.pop("FASTSERVE_PID_FILE", None)  # the reloader's, like --pid-file
        for name in RELOAD_VARIABLES:  # the child is the server: left set, each child would be a reloader
            env.pop(name, None)
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
