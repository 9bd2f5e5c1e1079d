"""Pre-fork workers on one port (each with its own SO_REUSEPORT socket), replaced when they die."""
from __future__ import annotations

import logging
import os
import signal
import socket
import time
from typing import Any, Dict

from fastserve.config import Config
from fastserve.server.worker import bind_socket, run_worker

logger = logging.getLogger("fastserve")


class Supervisor:
    """Starts ``config.workers`` processes, restarts the ones that die, stops them all on a signal."""

    def __init__(self, config: Config, app: Any) -> None:
        self.config = config
        self.app = app
        self.workers: Dict[int, int] = {}  # pid -> slot
        self.stopping = False

    def run(self) -> int:
        # Hold the port (bound, never listening, so it takes no connections) for our lifetime:
        # a port already in use fails here, once, instead of in every worker.
        guard = socket.socket(socket.AF_INET6 if ":" in self.config.host else socket.AF_INET)
        guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        guard.bind((self.config.host, self.config.port))
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        try:
            for slot in range(self.config.workers):
                self._spawn(slot)
            while not self.stopping:
                self._reap(restart=True)
                time.sleep(0.1)
            return self._stop_workers()
        finally:
            guard.close()

    def _stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _spawn(self, slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                run_worker(self.config, self.app, bind_socket(self.config))
            except BaseException:
                logger.exception("worker %d failed", os.getpid())
                code = 1
            finally:
                os._exit(code)
        self.workers[pid] = slot

    def _reap(self, restart: bool) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = self.workers.pop(pid, None)
            if slot is not None and restart and not self.stopping:
                logger.warning("worker %d exited (status %d); starting a new one", pid, status)
                time.sleep(0.1)  # do not spin if workers die at once
                self._spawn(slot)

    def _stop_workers(self) -> int:
        for pid in self.workers:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.config.graceful_timeout + 2.0
        while self.workers and time.monotonic() < deadline:
            self._reap(restart=False)
            time.sleep(0.05)
        for pid in list(self.workers):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        return 0
