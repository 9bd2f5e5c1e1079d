"""Pre-fork workers on one port, replaced when they die or retire.

Without ``--uds``/``--fd`` the supervisor opens one ``SO_REUSEPORT`` listening socket per worker
slot before any worker starts (the kernel spreads connections over them) and keeps it open
for its whole run; each worker inherits its slot's socket. A worker that stops, retires or
dies closes only its copy: the connections the kernel queued on that socket wait there for the
slot's next worker instead of being reset with the socket.
"""
from __future__ import annotations

import logging
import mmap
import os
import select
import signal
import socket
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from fastserve.config import Config
from fastserve.server.asgi import LifespanFailure
from fastserve.server import metrics
from fastserve.server.listen import ListenError, open_listener
from fastserve.server.tls import tls_enabled
from fastserve.server.worker import (
    BEAT, KEPT_SIGNALS, MESSAGE, OPERATOR_SIGNALS, READY, RETIRING, STOP_SIGNALS, EarlySignals, Handoff, Heartbeat,
    nothing_to_reload, on_operator_signal, run_worker,
)

logger = logging.getLogger("fastserve")
_CONTROL_SIGNALS = {*STOP_SIGNALS, *KEPT_SIGNALS}

IDLE_WAIT = 1.0  # s: the longest the supervisor sleeps without a signal or message (a safety net)
RESTART_DELAY = 0.1  # s: before a worker that died is replaced (no spinning if workers die at once)
RETRY_FIRST = 1.0  # s: before a slot whose worker's app failed to start tries again (doubling each time)
RETRY_MAX = 30.0  # s: the longest wait between two such tries
STARTUP_FAILED = 3  # exit code when a worker cannot start: the app's lifespan startup failed, or an error before it accepted
SLOW_START = 30.0  # s: a worker still starting is reported after this long (or --timeout-worker-healthcheck), then at 2x, 4x...


class Supervisor:
    """Starts ``config.workers`` processes, restarts the ones that die, stops them all on a signal.

    ``shared`` is the one listening socket every worker accepts from (``--uds``, ``--fd``);
    without it the supervisor opens one ``SO_REUSEPORT`` socket per slot on ``config.port``
    (raising ``ListenError`` at start when it cannot), and the slot's workers, one after
    another, accept from it.
    """

    def __init__(self, config: Config, app: Any, shared: Optional[socket.socket] = None) -> None:
        self.config = config
        self.app = app
        self.shared = shared
        self.listeners: List[socket.socket] = []  # slot -> its listening socket (none when shared)
        self.workers: Dict[int, int] = {}  # pid -> slot
        self.stopping = False
        self.exit_code = 0
        # Workers tell the supervisor "retiring" and "ready" through this pipe (see Handoff).
        self.control_r, self.control_w = os.pipe()
        os.set_blocking(self.control_r, False)
        self.wake_r, self.wake_w = os.pipe()  # signal.set_wakeup_fd's pipe (see run)
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.handoffs: Dict[int, int] = {}  # replacement pid -> the retiring worker it replaces
        self.retiring: Set[int] = set()  # workers handing over (no longer in self.workers)
        self.hangups = 0  # SIGHUPs received without TLS, not yet logged
        self.operator_signals: List[int] = []  # SIGUSR1/SIGUSR2/SIGTTIN/SIGTTOU received, not yet handled
        self.slots = config.workers  # worker slots in use: --workers, plus SIGTTIN, less SIGTTOU
        self.most_slots = config.workers + metrics.ADDED_SLOTS
        self.dismissed: Set[int] = set()  # workers stopped by SIGTTOU (also in self.retiring)
        self.served = False  # a worker has accepted: its app can start
        self.respawns: List[Tuple[float, int, Optional[int]]] = []  # (when, slot, the retiring worker it replaces)
        self.failed_starts: Dict[int, int] = {}  # slot -> its workers' startup failures in a row
        # Each slot's (worker pid, time of its event loop's last tick): see Heartbeat, _kill_hung.
        self.heartbeats = mmap.mmap(-1, BEAT.size * self.most_slots)
        # Workers that have not yet told READY (their app's lifespan startup runs): pid -> (when
        # forked, when next reported as slow); see _report_slow_starts.
        self.starting: Dict[int, Tuple[float, float]] = {}
        self.killed: Set[int] = set()  # workers this supervisor sent SIGKILL (_kill_hung), not yet reaped

    def run(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._stop)
        # Each worker reloads its certificate; without TLS the supervisor must not die by
        # SIGHUP's default action (its workers would serve on, orphaned, never stopped).
        signal.signal(signal.SIGHUP, self._forward if tls_enabled(self.config) else self._ignore)
        for signum in OPERATOR_SIGNALS:
            signal.signal(signum, self._remember_operator_signal)
        # Every signal (a stop, a worker's exit) also writes a byte to this pipe, so the
        # supervisor sleeps in select() until something happens instead of polling.
        signal.signal(signal.SIGCHLD, _wake)
        previous_wakeup = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        if EarlySignals.received is not None:
            self.stopping = True
        try:
            if self.shared is None:
                for _ in range(self.config.workers):
                    self.listeners.append(open_listener(self.config, reuse_port=True))
            for slot in range(self.config.workers):
                self._spawn(slot)
            while not self.stopping:
                self._reap(restart=True)
                self._kill_hung()
                self._wait(min(self._respawn_due(), self._report_slow_starts()))
                if self.hangups:
                    self.hangups = 0
                    nothing_to_reload()
                while self.operator_signals:
                    self._on_operator_signal(self.operator_signals.pop(0))
            return self._stop_workers()
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self._close_listeners()
            for fd in (self.control_r, self.control_w, self.wake_r, self.wake_w):
                os.close(fd)
            self.heartbeats.close()

    def _kill_hung(self) -> None:
        """``--timeout-worker-healthcheck``: kill a worker whose event loop has not ticked for
        that long (an app blocking it, a process stopped); it is replaced as any worker that
        dies. Only workers that accept are checked (one whose app still starts has not beaten)."""
        timeout = self.config.timeout_worker_healthcheck
        if not timeout:
            return
        now = time.monotonic()
        for pid, slot in list(self.workers.items()):
            beaten_by, at = BEAT.unpack_from(self.heartbeats, slot * BEAT.size)
            if beaten_by == pid and now - at > timeout:
                logger.error("worker %d: its event loop has not run for %.1f s (--timeout-worker-healthcheck %g): "
                             "killing it", pid, now - at, timeout)
                BEAT.pack_into(self.heartbeats, slot * BEAT.size, 0, 0.0)  # killed once
                self.killed.add(pid)
                _signal(pid, signal.SIGKILL)

    def _report_slow_starts(self) -> float:
        """Say which workers are still starting (their app's lifespan startup has not finished)
        after ``--timeout-worker-healthcheck`` seconds (30 when it is off), then each time that
        time has doubled: the connections their sockets take wait meanwhile. They are not
        killed for it: a startup may load for minutes (uvicorn waits for it too). Returns the
        seconds until the next report is due."""
        now = time.monotonic()
        for pid, (forked, report_at) in list(self.starting.items()):
            if now >= report_at:
                self.starting[pid] = (forked, forked + 2 * (now - forked))
                logger.warning("worker %d is still starting after %g s: its app's lifespan startup has not "
                               "finished, and the connections it is given wait until it does",
                               pid, round(now - forked, 1))
        return min([IDLE_WAIT, *(report_at - now for _, report_at in self.starting.values())])

    def _wait(self, timeout: float) -> None:
        """Sleep until a signal arrives, a worker writes to the control pipe, or ``timeout`` s."""
        try:
            readable, _, _ = select.select([self.control_r, self.wake_r], [], [], timeout)
        except InterruptedError:
            return
        if self.wake_r in readable:
            try:
                os.read(self.wake_r, 4096)
            except BlockingIOError:
                pass
        if self.control_r in readable:
            self._read_control()

    def _read_control(self) -> None:
        """Handle the workers' messages: a retiring worker gets a replacement, and is stopped
        once the replacement accepts, so the port is never without a listener."""
        try:
            data = os.read(self.control_r, 4096)
        except BlockingIOError:
            return
        for i in range(0, len(data) - len(data) % MESSAGE.size, MESSAGE.size):
            kind, pid = MESSAGE.unpack_from(data, i)
            if kind == RETIRING and pid in self.workers and not self.stopping:
                slot = self.workers.pop(pid)  # its exit is expected now: no restart for it
                self.retiring.add(pid)
                self.handoffs[self._spawn(slot)] = pid
            elif kind == READY:
                self.served = True
                self.starting.pop(pid, None)
                self.failed_starts.pop(self.workers.get(pid, -1), None)
                if pid in self.handoffs:
                    _signal(self.handoffs.pop(pid), signal.SIGTERM)

    def _stop(self, signum: int, frame: Any) -> None:
        if self.stopping and signum == signal.SIGINT:
            # Ctrl+C again, sent to the supervisor alone (kill -INT, a container's pid 1): the
            # workers stop now, as a lone process does; a terminal's press reaches them itself.
            self._forward(signum, frame)
        self.stopping = True

    def _remember_operator_signal(self, signum: int, frame: Any) -> None:
        self.operator_signals.append(signum)  # handled from the loop, not from the handler

    def _on_operator_signal(self, signum: int) -> None:
        if signum == signal.SIGTTIN:
            self._add_slot()
        elif signum == signal.SIGTTOU:
            self._remove_slot()
        else:
            on_operator_signal(signum)  # the supervisor's own log files, or SIGUSR2's warning
            if signum == signal.SIGUSR1:
                self._forward(signum, None)  # each worker reopens its own

    def _add_slot(self) -> None:
        """SIGTTIN: one worker more, on a slot of its own (its own ``SO_REUSEPORT`` socket)."""
        if self.slots >= self.most_slots:
            logger.warning("SIGTTIN ignored: %d workers is the most (--workers + %d)", self.slots, metrics.ADDED_SLOTS)
            return
        if self.shared is None:
            try:
                self.listeners.append(open_listener(self.config, reuse_port=True))
            except ListenError as exc:
                logger.error("SIGTTIN: no worker added: %s", exc)
                return
        self.slots += 1
        self._spawn(self.slots - 1)
        logger.info("SIGTTIN: a worker added, %d now", self.slots)

    def _remove_slot(self) -> None:
        """SIGTTOU: the last slot's worker stops as on SIGTERM (answering what its socket has
        queued and what it has begun), and the slot's socket closes with it."""
        if self.slots <= 1:
            logger.info("SIGTTOU ignored: one worker is the fewest")
            return
        self.slots -= 1
        slot = self.slots
        if self.shared is None:
            self.listeners.pop().close()  # the worker's copy is now the last one
        leaving = [retiring for _, each, retiring in self.respawns if each == slot and retiring is not None]
        self._forget_slot(slot)
        for pid in [pid for pid, each in self.workers.items() if each == slot]:
            del self.workers[pid]
            leaving.append(pid)
            if pid in self.handoffs:  # a replacement under way: the worker it replaces goes too
                leaving.append(self.handoffs.pop(pid))
        for pid in leaving:
            self.retiring.add(pid)
            self.dismissed.add(pid)
            _signal(pid, signal.SIGTERM)
        logger.info("SIGTTOU: a worker removed, %d now", self.slots)

    def _forget_slot(self, slot: int) -> None:
        """What the supervisor keeps per slot, dropped with the slot (SIGTTOU): its pending
        restarts and its failed starts in a row, which a slot added later must not inherit
        (its first failed start would wait as if it followed the old slot's)."""
        self.respawns = [respawn for respawn in self.respawns if respawn[1] != slot]
        self.failed_starts.pop(slot, None)

    def _ignore(self, signum: int, frame: Any) -> None:
        self.hangups += 1  # logged from the loop, not from the handler

    def _forward(self, signum: int, frame: Any) -> None:
        for pid in [*self.workers, *self.retiring]:
            _signal(pid, signum)

    def _spawn(self, slot: int) -> int:
        # Signals wait while the worker is forked: the child must not run the supervisor's
        # handlers (a SIGTERM there would be lost and the worker would serve on until killed),
        # and the parent must know the new pid before it forwards a stop to its workers.
        signal.pthread_sigmask(signal.SIG_BLOCK, _CONTROL_SIGNALS)
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                EarlySignals.install()
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _CONTROL_SIGNALS)
                metrics.SLOT = slot
                metrics.SUPERVISOR = supervisor
                Heartbeat.install(self.heartbeats, slot)
                for fd in (self.control_r, self.wake_r, self.wake_w):
                    os.close(fd)
                Handoff.install(self.control_w, supervisor)
                sock = self.shared or self.listeners[slot]
                for other in self.listeners:
                    if other is not sock:
                        other.close()
                run_worker(self.config, self.app, sock)
            except LifespanFailure as exc:
                logger.error("%s", exc)
                code = STARTUP_FAILED
            except BaseException:
                logger.exception("worker %d failed", os.getpid())
                # Before it accepted, a failure is its start's: the slot is not restarted in a
                # tight loop (a server that never served stops; one that has, tries again later).
                code = 1 if Handoff.ready else STARTUP_FAILED
            finally:
                os._exit(code)
        self.workers[pid] = slot
        forked = time.monotonic()
        self.starting[pid] = (forked, forked + (self.config.timeout_worker_healthcheck or SLOW_START))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _CONTROL_SIGNALS)
        return pid

    def _reap(self, restart: bool) -> None:
        while self.workers or self.retiring:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.starting.pop(pid, None)
            killed_here = pid in self.killed
            self.killed.discard(pid)
            if pid in self.retiring:
                self.retiring.discard(pid)
                if pid in self.dismissed:
                    self.dismissed.discard(pid)
                    logger.info("worker %d stopped (SIGTTOU)", pid)
                elif status == 0:
                    logger.info("worker %d retired (--limit-max-requests)", pid)
                else:
                    logger.warning("worker %d %s while retiring (--limit-max-requests)", pid, describe_exit(status))
                continue
            slot = self.workers.pop(pid, None)
            retiring = self.handoffs.pop(pid, None)  # a replacement that died before it accepted
            failed_start = os.WIFEXITED(status) and os.WEXITSTATUS(status) == STARTUP_FAILED
            if failed_start and not self.served:
                # The app cannot start at all: replacing the worker would only fail again.
                if not self.stopping:
                    logger.error("worker %d could not start, and no worker has served yet: stopping "
                                 "(exit code %d)", pid, STARTUP_FAILED)
                self.stopping = True
                self.exit_code = STARTUP_FAILED
            if slot is None or not restart or self.stopping:
                continue
            metrics.count_restart(slot)
            if failed_start:
                # The app started before (its other workers, or the one retiring, still serve):
                # a passing failure (a database away) must not stop the server. Try again later.
                tries = self.failed_starts[slot] = self.failed_starts.get(slot, 0) + 1
                delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (tries - 1))
                logger.error("worker %d: its startup failed; its slot tries again in %g s", pid, delay)
            else:
                delay = RESTART_DELAY
                if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL and not killed_here:
                    # Not this supervisor's doing: most often the kernel's, out of memory (gunicorn says so too).
                    logger.error("worker %d %s, which fastserve did not send: perhaps out of memory (the kernel's "
                                 "OOM killer sends it; see dmesg); starting a new one", pid, describe_exit(status))
                else:
                    logger.warning("worker %d %s; starting a new one", pid, describe_exit(status))
            self.respawns.append((time.monotonic() + delay, slot, retiring))

    def _respawn_due(self) -> float:
        """Start the replacements whose time has come; returns how long the supervisor may sleep."""
        now = time.monotonic()
        waiting = []
        for when, slot, retiring in self.respawns:
            if when > now:
                waiting.append((when, slot, retiring))
                continue
            replacement = self._spawn(slot)
            if retiring is not None:
                self.handoffs[replacement] = retiring  # the successor takes over the hand-off
        self.respawns = waiting
        return min([IDLE_WAIT, *(when - now for when, _, _ in waiting)])

    def _close_listeners(self) -> None:
        for sock in self.listeners:
            sock.close()
        self.listeners = []
        if self.shared is not None:
            self.shared.close()

    def _stop_workers(self) -> int:
        # The workers' copies become the last ones: each takes what is queued on its socket
        # before closing it (see serve_forever), and the port closes with the last of them.
        self._close_listeners()
        for pid in [*self.workers, *self.retiring]:
            _signal(pid, signal.SIGTERM)
        # Each worker's connections get --graceful-timeout, then its app's lifespan shutdown as
        # long. A worker still starting has nothing to drain: its startup is cancelled at once,
        # and one that has not ended a second after --graceful-timeout (its startup holds it in
        # code no signal interrupts) is killed then.
        starting_limit = self.config.graceful_timeout + 1.0
        longest = self.config.shutdown_delay + 2 * self.config.graceful_timeout + 2.0
        began = time.monotonic()
        while True:
            self._reap(restart=False)
            now = time.monotonic()
            if self.starting and now - began >= starting_limit:
                for pid in list(self.starting):
                    self._kill_late(pid, starting_limit, " while its app's lifespan startup ran")
            if not (self.workers or self.retiring) or now - began >= longest:
                break
            wake = began + (starting_limit if self.starting else longest)
            self._wait(min(max(wake - now, 0.0), IDLE_WAIT))  # a worker's exit (SIGCHLD) wakes it sooner
        for pid in [*self.workers, *self.retiring]:
            self._kill_late(pid, longest)
        return self.exit_code

    def _kill_late(self, pid: int, waited: float, why: str = "") -> None:
        """SIGKILL a worker that has not stopped ``waited`` seconds after its SIGTERM, and say so."""
        logger.error("worker %d has not stopped %g s after SIGTERM%s: killing it", pid, waited, why)
        _signal(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        self.starting.pop(pid, None)
        self.workers.pop(pid, None)
        self.retiring.discard(pid)


def describe_exit(status: int) -> str:
    """How a process ended, from its ``waitpid`` status: ``exited with code 1``, ``was killed by
    signal 9 (SIGKILL)``."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = f" ({signal.Signals(number).name})"
        except ValueError:
            name = ""
        return f"was killed by signal {number}{name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _wake(signum: int, frame: Any) -> None:
    """SIGCHLD's handler: nothing to do here; its byte on the wakeup pipe ends the wait."""


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
