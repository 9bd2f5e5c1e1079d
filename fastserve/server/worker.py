"""One worker: an event loop, a listening socket, its connections, a graceful exit."""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import signal
import socket
import struct
import threading
import time
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Coroutine, Dict, Iterator, List, Optional, Tuple

from fastserve._speedups.filecache import FileCache
from fastserve._speedups.protocol import HttpProtocol, ServerState
from fastserve._speedups.readhub import ReadHub
from fastserve._speedups.staticanswer import set_root_path
from fastserve._speedups.wire import set_server_fields
from fastserve.config import Config
from fastserve.server.access_log import AccessLog
from fastserve.server.acceptor import Acceptor, take_accept_queue
from fastserve.server.admin import make_admin
from fastserve.server.asgi import StartupCancelled, interrupt_lifespan
from fastserve.server.heap import heap_trimmer
from fastserve.server.metrics import for_worker
from fastserve.server.proxy import ProxyTrust
from fastserve.server.limits import current_accept_ceiling
from fastserve.server.listen import describe
from fastserve.server.logs import TRACE, reopen_log_files
from fastserve.server.response_headers import ServerHeaders
from fastserve.server.tls import make_context, reload_certificate
from fastserve.server.trace import connection_trace

logger = logging.getLogger("fastserve")


def static_cache_for(app: Any, config: Config) -> Optional[FileCache]:
    """The cache the fast path answers from, when the app is a fastserve ``StaticFiles`` that
    gives the fast path's answers (``answers="static"``, as the one made for a directory does)
    and looks files up its own way (decided here, at startup: the fast path never calls the
    app). Any other ``StaticFiles`` is run as an app, so it answers as it would under uvicorn."""
    from fastserve.staticfiles import StaticFiles

    if not isinstance(app, StaticFiles) or app.answers != "static" or not app.uses_own_lookup():
        return None
    if app.directory is not None and not os.path.isdir(app.directory):
        raise RuntimeError(f"StaticFiles directory '{app.directory}' does not exist.")
    cache = app.build_file_cache(
        config.cache_valid,
        max_entries=config.cache_entries,
        max_bytes=config.cache_bytes,
        max_body=config.cache_max_file,
        compress_bytes=config.compress_bytes,
        compress_max_file=config.compress_max_file,
    )
    app.use_file_cache(cache)
    app.max_ranges = config.max_ranges  # the fast path's limit, should a request reach the app
    return cache


def build_state(config: Config, app: Any, loop: asyncio.AbstractEventLoop) -> ServerState:
    server_headers = ServerHeaders.from_config(config)
    set_root_path(config.root_path)
    set_server_fields(server_headers.static_fields(), config.date_header, server_headers.vary)
    cache = static_cache_for(app, config)
    bridge = None
    if cache is None or getattr(app, "listing", False):
        # An app, or a StaticFiles whose directory listings the fast path hands to it.
        from fastserve.server.asgi import AsgiBridge

        bridge = AsgiBridge(app, config, loop)
    access_log = AccessLog(config.access_log_format) if config.access_log else None
    state = ServerState(config, app=app, cache=cache, asgi_bridge=bridge, access_logger=access_log)
    state.log_agents = access_log is not None and access_log.wants_agents
    if access_log is not None and config.proxy_headers:  # its lines name whom a trusted proxy forwarded for
        state.proxy = bridge.proxy if bridge is not None else ProxyTrust(config.forwarded_allow_ips)
    state.request_limit = worker_request_limit(config)
    state.tracer = connection_trace()
    metrics = for_worker(config)
    if metrics is not None:
        state.counters = metrics.counters
    admin = make_admin(config, metrics)
    if admin is not None:
        state.set_admin(admin)
        if bridge is not None and cache is None:
            bridge.set_admin(admin)
    return state


# What stops a server gracefully: SIGTERM, SIGINT (Ctrl+C), and SIGQUIT, which nginx and
# gunicorn take for a graceful stop (and nginx's container images send); by its default action
# it would dump core and leave --pid-file and --uds behind.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
# Signals that must never end (or, for SIGTTIN/SIGTTOU, stop) a process by their default action:
# SIGHUP reloads the certificate, and the operator's signals (on_operator_signal): SIGUSR1
# reopens log files (as nginx's), SIGUSR2 (nginx's binary upgrade) is refused in a warning, and
# SIGTTIN/SIGTTOU add and remove a worker (as uvicorn's and gunicorn's) where a supervisor runs
# the workers; elsewhere they are refused in a warning.
OPERATOR_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU)
KEPT_SIGNALS = (signal.SIGHUP, *OPERATOR_SIGNALS)


def handles_signals() -> bool:
    """Whether this thread can be told of signals: Python runs signal handlers in its main thread
    only, so ``fastserve.run`` called from another thread serves without them (a single worker,
    until its process ends, as ``uvicorn.run`` does there)."""
    return threading.current_thread() is threading.main_thread()


def _no_signal_handler(*args: Any) -> None:
    """``add_signal_handler``/``remove_signal_handler`` off the main thread: nothing to do."""


class EarlySignals:
    """Remembers the stop signals and SIGHUP that arrive before the event loop can handle them.

    Installed before the port opens, so a signal at any moment means a clean stop (or, under
    TLS, a certificate reload once the loop runs; without TLS SIGHUP has nothing to reload and
    is ignored), never death by the default handler.
    """

    received: Optional[int] = None
    reload_pending: bool = False

    @classmethod
    def install(cls) -> None:
        cls.received = None
        cls.reload_pending = False
        if not handles_signals():
            return
        for signum in STOP_SIGNALS:
            signal.signal(signum, cls._remember)
        signal.signal(signal.SIGHUP, cls._remember_reload)
        for signum in OPERATOR_SIGNALS:
            signal.signal(signum, on_operator_signal)

    @classmethod
    def _remember(cls, signum: int, frame: Any) -> None:
        cls.received = signum

    @classmethod
    def _remember_reload(cls, signum: int, frame: Any) -> None:
        cls.reload_pending = True


def on_operator_signal(signum: int, frame: Any = None) -> None:
    """What a process that runs no workers does with an operator's signal: SIGUSR1 reopens the
    log files (``logs.reopen_log_files``); SIGUSR2, SIGTTIN and SIGTTOU are refused, in a warning."""
    if signum == signal.SIGUSR1:
        logger.info("process %d: SIGUSR1: %d log files reopened", os.getpid(), reopen_log_files())
    elif signum == signal.SIGUSR2:
        logger.warning("process %d: SIGUSR2 ignored (fastserve has no binary upgrade: replace workers with "
                       "--limit-max-requests, or restart)", os.getpid())
    else:
        logger.warning("process %d: %s ignored (it adds or removes a worker where a supervisor runs them: "
                       "start the server with --workers)", os.getpid(), signal.Signals(signum).name)


def nothing_to_reload() -> None:
    """SIGHUP without TLS: there is no certificate to reload; the process serves on."""
    logger.warning("process %d: SIGHUP ignored (it reloads the TLS certificate; this server has none)", os.getpid())


class ServedDirectories:
    """The directories a worker's open-file cache serves from, looked at on the clock tick (at
    most once a second): one that is gone (a volume unmounted, a deploy that deletes before it
    copies) is said once, as an error, and health answers ``503`` until it is back (logged too),
    so a load balancer stops sending requests that could only be ``404``."""

    EVERY = 1.0  # s between two looks

    def __init__(self, directories: Tuple[str, ...]) -> None:
        self.directories = directories
        self.missing: Tuple[str, ...] = ()
        self.looked_at = float("-inf")

    def look(self, now: float) -> None:
        if now - self.looked_at < self.EVERY:
            return
        self.looked_at = now
        missing = tuple(directory for directory in self.directories if not os.path.isdir(directory))
        if missing == self.missing:
            return
        for directory in missing:
            if directory not in self.missing:
                logger.error("worker %d: the served directory %s is gone: files are 404 and health 503 until it "
                             "is back", os.getpid(), directory)
        for directory in self.missing:
            if directory not in missing:
                logger.info("worker %d: the served directory %s is back", os.getpid(), directory)
        self.missing = missing


def observe(state: ServerState) -> None:
    """On each tick: write the buffered access log, refresh the gauges the metrics show."""
    if state.access_logger is not None:
        state.access_logger.flush()
    if state.admin is not None and state.admin.metrics is not None:
        state.admin.metrics.update(len(state.connections), state.cache)


MESSAGE = struct.Struct("=ci")  # (kind, worker pid), written by a worker to its supervisor
RETIRING = b"R"  # the worker reached --limit-max-requests: start its replacement
READY = b"U"  # the worker accepts connections: the one it replaces may stop now
# The names of the tasks that run apps for requests (asgi_cycle's and websocket's TASK_NAME).
REQUEST_TASKS = ("fastserve-http", "fastserve-websocket")
IDLE_GRACE = 0.5  # s: how long a stopping worker keeps idle connections open for one more request
SHUTDOWN_STEP = 0.05  # s: how often a stopping worker looks for idle connections to close
HANDSHAKE_WAIT = 5.0  # s: the longest a stopping worker waits for a TLS handshake begun before it stopped
SAME_PRESS = 0.25  # s: a SIGINT this soon after the SIGTERM that began a stop belongs to the same Ctrl+C
REFUSALS_EVERY = 10.0  # s: the most often a worker says it answered connections 503 at --max-connections


class Refusals:
    """Says in a warning that the worker answered connections ``503`` at ``--max-connections``
    (``ServerState.refused_connections``, counted as the connection is closed; no request was
    read, so there is no access line): the first at the next tick, then at most once every
    ``REFUSALS_EVERY`` seconds, with the number since the last line."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.said = 0  # refusals counted in the lines so far
        self.said_at = -REFUSALS_EVERY

    def look(self, refused: int, now: float) -> None:
        if refused > self.said and now - self.said_at >= REFUSALS_EVERY:
            logger.warning("worker %d: --max-connections %d reached: %s answered 503 and closed%s", os.getpid(),
                           self.limit, _count(refused - self.said, "connection"),
                           " since the last such line" if self.said else "")
            self.said, self.said_at = refused, now


class Heartbeat:
    """A worker's side of the supervisor's liveness check (``--timeout-worker-healthcheck``):
    on each clock tick, from its event loop, the worker writes its pid and the time into its
    slot of a block shared with the supervisor (``BEAT``), which kills a worker whose beat is
    older than the timeout. A lone process has no block and beats nothing."""

    block: Any = None  # the shared block (an mmap), None without a supervisor
    offset: int = 0

    @classmethod
    def install(cls, block: Any, slot: int) -> None:
        cls.block, cls.offset = block, slot * BEAT.size

    @classmethod
    def beat(cls) -> None:
        if cls.block is not None:
            BEAT.pack_into(cls.block, cls.offset, os.getpid(), time.monotonic())


BEAT = struct.Struct("=qd")  # (worker pid, time.monotonic() of its last tick) per slot


class UnheardStops:
    """A second stop signal while the event loop has not yet heard the first forces the exit.

    The loop hears a stop on its next turn; an app holding it in a synchronous call
    (``time.sleep`` in an ``async`` route, a blocking client) gives it none, so the graceful
    stop cannot begin, and a lone server ignored SIGTERM and Ctrl+C for as long as the call
    ran. Python still runs ``signal.signal`` handlers in the main thread between two bytecodes
    (a ``time.sleep`` is interrupted for them); ``watch`` puts one in front of the loop's own
    for a stop signal. When a stop signal arrives while an earlier one is still unheard, and
    later than ``SAME_PRESS`` after it (one Ctrl+C can reach a process as SIGINT and as the
    SIGTERM a reloader or supervisor passes on), the worker says so and ends by that signal's
    default action, as an uncaught one would end it: no drain, no lifespan shutdown, the
    ``--pid-file`` and ``--uds`` file left as a kill leaves them. Code that never returns to
    the interpreter (a long computation inside a C extension) runs no handler; only SIGKILL
    ends it. Once the loop has heard a stop (``heard``), a second signal is the graceful
    stop's business again (SIGINT cuts the drain short).
    """

    def __init__(self) -> None:
        self.since: Optional[float] = None  # when the first stop signal the loop has not heard came

    def watch(self, signum: int) -> None:
        """Put the check in front of the handler the event loop set for ``signum`` (call it
        after each ``add_signal_handler`` for a stop signal: that replaces the handler)."""
        loop_handler = signal.getsignal(signum)

        def handler(signum: int, frame: Any) -> None:
            now = time.monotonic()
            if self.since is None:
                self.since = now
            elif now - self.since >= SAME_PRESS:
                self.force(signum, now - self.since)
            if callable(loop_handler):
                loop_handler(signum, frame)

        signal.signal(signum, handler)

    def heard(self) -> None:
        """The event loop ran a stop signal's callback: it has heard every stop so far."""
        self.since = None

    @staticmethod
    def force(signum: int, waited: float) -> None:
        logger.warning("worker %d: %s again, and the event loop has not run since the first stop signal %.1f s ago "
                       "(the app holds it in a synchronous call): exiting now", os.getpid(),
                       signal.Signals(signum).name, waited)
        for handler in logging.getLogger().handlers + logger.handlers:
            handler.flush()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


class Handoff:
    """A worker's side of the supervisor's control pipe (None: a lone process, no supervisor).

    A worker at ``--limit-max-requests`` keeps serving until its replacement accepts, then
    gets SIGTERM like any stop: the port always has a listener.
    """

    fd: Optional[int] = None
    supervisor: Optional[int] = None  # the supervisor's pid
    ready: bool = False  # this worker told READY: it accepts connections

    @classmethod
    def install(cls, fd: int, supervisor: int) -> None:
        """In a new worker: ``fd`` is the pipe's writing end, ``supervisor`` the pid that forked
        the worker (told, not read with getppid(): the supervisor may already be gone)."""
        cls.fd = fd
        cls.supervisor = supervisor

    @classmethod
    def orphaned(cls) -> bool:
        """Whether the supervisor is gone (killed with SIGKILL, say): the worker is then
        another process's child, and nobody would stop or replace it."""
        return cls.supervisor is not None and os.getppid() != cls.supervisor

    @classmethod
    def tell(cls, kind: bytes) -> bool:
        cls.ready = cls.ready or kind == READY
        if cls.fd is None:
            return False
        try:
            os.write(cls.fd, MESSAGE.pack(kind, os.getpid()))
        except OSError:
            return False
        return True


async def serve_forever(config: Config, app: Any, sock: socket.socket) -> None:
    """Serve on ``sock`` until SIGTERM/SIGINT/SIGQUIT, then drain within ``graceful_timeout``; a SIGINT
    while draining closes the connections and cancels the requests at once (the lifespan
    shutdown still runs, and one more SIGINT cuts that short too)."""
    loop = asyncio.get_running_loop()
    state = build_state(config, app, loop)
    state.now = loop.time()
    bridge = state.asgi_bridge
    stop = asyncio.Event()
    stopped_by: List[Any] = []  # the signal that began the stop, and when (loop time)
    unheard = UnheardStops()

    def stop_signal(signum: int) -> None:
        unheard.heard()
        if not stop.is_set():
            stopped_by[:] = [signum, loop.time()]
        stop.set()

    # Off the main thread (fastserve.run called from a thread) no signal reaches the loop:
    # the worker serves until its process ends, as uvicorn.run does there.
    on_signal = loop.add_signal_handler if handles_signals() else _no_signal_handler
    off_signal = loop.remove_signal_handler if handles_signals() else _no_signal_handler
    for signum in STOP_SIGNALS:
        on_signal(signum, stop_signal, signum)
        if handles_signals():
            unheard.watch(signum)
    if EarlySignals.received is not None:
        stop.set()
    if bridge is not None and not state.static_only:
        # Before the first connection is taken; LifespanFailure ends the run, and so does a
        # stop while the app is still starting (its startup is cancelled: nothing was served),
        # one that holds the event loop with a synchronous call included.
        with lifespan_interruptible(STOP_SIGNALS):
            try:
                started = await _first(bridge.startup(), stop)
            except StartupCancelled:
                started = False
        if not started:
            logger.info("worker %d stopped before the app's lifespan startup finished", os.getpid())
            await _cancel(_tasks(lambda task: True))
            for signum in STOP_SIGNALS:
                off_signal(signum)
            return
    tls = make_context(config)

    handshakes = Handshakes()

    def room() -> int:
        """Connections this worker may still take: under TLS a handshake under way counts as
        one (as nginx counts it), so --max-connections bounds what handshakes hold too."""
        return config.max_connections - len(state.connections) - handshakes.under_way(len(state.connections),
                                                                                     config.max_connections)

    def new_connection(sock_fd: int = -1) -> HttpProtocol:
        conn = HttpProtocol(state, loop, sock_fd)
        if tls is not None:
            handshakes.begun(conn, loop.time())
            if room() <= 0:
                loop.call_soon(stop_accepting)  # not inside uvloop's accept, which still needs its server
        return conn

    def stop_accepting() -> None:
        """TLS clients past the limit wait in the listen queue: a 503 would cost a handshake."""
        if room() <= 0 and state.acceptor is not None and not state.accept_paused and not state.shutting_down:
            state.accept_paused = acceptor.pause(f"--max-connections ({config.max_connections}) reached, TLS "
                                                 "handshakes under way included,")

    def handshake_failed() -> None:  # a slot is free again
        if state.accept_paused and room() > 0:
            state.accept_paused = False
            acceptor.resume()

    handshakes.on_failed = handshake_failed
    if state.static_only and tls is None:
        # The static root's connections are read from the worker's own epoll set (readhub.pyx).
        try:
            state.read_hub = ReadHub(loop)
        except OSError as error:
            logger.warning("worker %d: connections are read by their transports (%s)", os.getpid(), error)
    acceptor = Acceptor(loop, new_connection, sock, config.backlog, tls, state.connections,
                        room if tls is not None else None)
    await acceptor.start()
    state.acceptor = acceptor
    state.accept_ceiling = current_accept_ceiling()
    if tls is not None:
        on_signal(signal.SIGHUP, reload_certificate, tls, config)
        if EarlySignals.reload_pending:  # a SIGHUP came while the worker was starting
            reload_certificate(tls, config)
    else:
        on_signal(signal.SIGHUP, nothing_to_reload)
    for signum in OPERATOR_SIGNALS:
        on_signal(signum, on_operator_signal, signum)

    def retire() -> None:
        logger.info("worker %d answered %d requests (--limit-max-requests): retiring", os.getpid(), state.requests)
        if not Handoff.tell(RETIRING):
            stop.set()  # nobody to hand over to: stop now

    state.on_limit = retire

    interval = config.clock_tick()
    trimmer = heap_trimmer()  # freed TLS buffers and the like go back to the kernel after a burst

    served = ServedDirectories(state.cache.configured_roots) if state.cache is not None else None
    if served is not None and state.admin is not None:
        state.admin.served = served

    def tick() -> None:
        # The next tick first: an error below (the loop logs it) must not stop the clock, by
        # which the timeouts, the heartbeat and the access log's writes run.
        ticker[0] = loop.call_later(interval, tick)
        Heartbeat.beat()
        state.tick(loop.time())
        if served is not None:
            served.look(state.now)
        handshakes.pending(state.now)
        refusals.look(state.refused_connections, state.now)
        observe(state)
        if trimmer is not None:
            trimmer.check(state.now)
        if Handoff.orphaned() and not stop.is_set():
            logger.warning("worker %d: its supervisor (pid %d) is gone; stopping", os.getpid(), Handoff.supervisor)
            stop.set()

    refusals = Refusals(config.max_connections)
    ticker = [loop.call_later(interval, tick)]
    logger.log(TRACE, "worker %d accepting on %s", os.getpid(), describe(sock, "https" if tls else "http"))
    Heartbeat.beat()  # from now on the supervisor expects one each tick
    Handoff.tell(READY)
    if config.ready_callback is not None:
        config.ready_callback()
    await stop.wait()
    state.draining = True  # health answers 503 from now on
    # Ctrl+C again: stop waiting. A terminal's Ctrl+C reaches the whole process group at once,
    # and the SIGTERM the supervisor (or reloader) sends for it is no second press, so only
    # SIGINT counts; that SIGTERM may even be handled here before the press's own SIGINT,
    # which then, right behind it, is the same press.
    hurry = asyncio.Event()

    def sigint_while_draining() -> None:
        unheard.heard()
        if stopped_by and stopped_by[0] == signal.SIGTERM and loop.time() - stopped_by[1] < SAME_PRESS:
            return
        hurry.set()

    on_signal(signal.SIGINT, sigint_while_draining)
    if handles_signals():
        unheard.watch(signal.SIGINT)
    if config.shutdown_delay > 0:
        logger.info("worker %d draining: health 503 for %g s before the listener closes",
                    os.getpid(), config.shutdown_delay)
        await _first(asyncio.sleep(config.shutdown_delay), hurry)

    # Stop accepting, but first keep the listening socket open (a duplicate descriptor): the
    # connections the kernel already completed wait in its queue, and are answered too.
    queue_fd = acceptor.close_keeping_queue()
    if queue_fd >= 0:
        await take_accept_queue(queue_fd, loop, new_connection, tls)
    logger.info(
        "worker %d shutting down: %s to finish within %g s%s",
        os.getpid(), _count(len(state.connections), "connection"), config.graceful_timeout,
        "; Ctrl+C (SIGINT) again stops them now" if state.connections else "",
    )
    if not hurry.is_set():
        await _first(_drain(state, handshakes, config.graceful_timeout), hurry)
    # Requests still running now (past the graceful timeout, or with their clients gone) are
    # cancelled before the lifespan shutdown closes what they may be using. Connections
    # already closing (a TLS close waiting for the client's reply) are no news.
    running = _tasks(lambda task: task.get_name() in REQUEST_TASKS)
    busy = sum(1 for conn in state.connections if conn.transport is not None)
    news = []
    if busy:
        why = "SIGINT again" if hurry.is_set() else f"graceful timeout ({config.graceful_timeout:g} s)"
        news.append(f"{why}: closing {_count(busy, 'connection')}")
    if running:
        news.append(f"cancelling {_count(len(running), 'request')} still running")
    if news:
        logger.warning("worker %d: %s", os.getpid(), ", ".join(news))
    for conn in list(state.connections):
        conn.abort()
    await asyncio.sleep(0)  # the aborted connections hear of it before their requests are cancelled
    await _cancel(running)
    if state.read_hub is not None:
        state.read_hub.close()
    ticker[0].cancel()
    if trimmer is not None:
        trimmer.close()
    observe(state)
    if bridge is not None:
        hurry.clear()  # the lifespan shutdown runs all the same; one more SIGINT cuts it short
        # A shutdown held in a synchronous call hears neither: SIGINT, and SIGALRM at
        # --graceful-timeout, then cancel it where it runs.
        with lifespan_interruptible((signal.SIGINT, signal.SIGALRM)), alarm_after(config.graceful_timeout):
            if not await _first(bridge.shutdown(), hurry):
                logger.warning("worker %d: the app's lifespan shutdown was cut short by SIGINT", os.getpid())
    left = _tasks(lambda task: True)
    if left:
        logger.info("worker %d: cancelling %s the app left running", os.getpid(), _count(len(left), "task"))
        await _cancel(left)
    for signum in (*STOP_SIGNALS, *KEPT_SIGNALS):
        off_signal(signum)
        if Handoff.supervisor is not None and signum in STOP_SIGNALS:
            # A forked worker about to exit: a stop signal now (Ctrl+C pressed again, which
            # its supervisor passes on) has nothing left to stop; by its default action it
            # would end the worker in a KeyboardInterrupt traceback, a failed worker.
            signal.signal(signum, signal.SIG_IGN)


@contextmanager
def lifespan_interruptible(signals: Tuple[int, ...]) -> Iterator[None]:
    """While the ``with`` block runs, each of ``signals`` also cancels the app's lifespan code
    if the signal comes while that code holds the event loop (``asgi.interrupt_lifespan``).

    The loop's own handlers (``add_signal_handler``) still run: Python calls a handler set
    with ``signal.signal`` in the main thread between two bytecodes, even inside the app's
    blocking call, and the loop is told of the signal all the same (its wakeup descriptor).
    Off the main thread there are no signals to take, and nothing is changed.
    """
    if not handles_signals():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in signals}

    def handler(signum: int, frame: Any) -> None:
        earlier = previous[signum]
        if callable(earlier):
            earlier(signum, frame)
        interrupt_lifespan(frame)

    for signum in signals:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, earlier in previous.items():
            signal.signal(signum, earlier)


@contextmanager
def alarm_after(seconds: float) -> Iterator[None]:
    """SIGALRM ``seconds`` into the ``with`` block, unless it ended first (none off the main
    thread, or for 0 s); the block handles it (``lifespan_interruptible``)."""
    if not handles_signals() or seconds <= 0:
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


async def _first(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``work`` unless ``stop`` is set first (then cancel it); returns whether it finished.
    Its exception, if it raises one, is raised here."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    await asyncio.wait([stopped])  # gone before the caller looks for tasks left running
    if not task.done():
        task.cancel()
        await asyncio.wait([task])
        return False
    task.result()
    return True


async def _drain(state: ServerState, handshakes: "Handshakes", timeout: float) -> None:
    """Let ``state``'s connections finish for at most ``timeout`` seconds, keeping none alive.

    Idle connections get a moment to send one more request (answered, with Connection:
    close), so a client sending its next request, or the first on a connection just accepted
    (or whose TLS handshake finishes now), does not meet a closed connection; the others close
    after their answers. Returns when no connection, no handshake and no request's app is left
    (an app runs on after its response, for its background tasks, with its connection gone
    on), or at the timeout.
    """
    loop = asyncio.get_running_loop()
    drained = asyncio.Event()
    state.on_drained = drained.set
    state.shutdown()
    started = loop.time()
    deadline = started + timeout
    grace = min(IDLE_GRACE, timeout / 2)
    while True:
        state.now = loop.time()
        if state.now - started >= grace:  # (idle times stamped before the stop are a tick coarse)
            state.close_idle(grace)
        if state.now >= deadline or not (
            state.connections or handshakes.pending(state.now) or _tasks(lambda task: task.get_name() in REQUEST_TASKS)
        ):
            return
        await _until(drained, state, min(SHUTDOWN_STEP, deadline - state.now))


async def _until(drained: asyncio.Event, state: ServerState, timeout: float) -> None:
    """Wait ``timeout`` seconds, or less if the last of ``state``'s connections closes."""
    drained.clear()
    if not state.connections:
        await asyncio.sleep(timeout)
        return
    try:
        await asyncio.wait_for(drained.wait(), timeout)
    except asyncio.TimeoutError:
        pass


class Handshakes:
    """The TLS connections accepted whose handshake has not finished: their protocol is made
    at accept, and told ``connection_made`` (which sets its ``tls``) only after the handshake.
    They count toward ``--max-connections``, and a stopping worker waits for them, so a client
    in the middle of one is still answered. A failed handshake is never told to the protocol,
    but its TLS layer lets the protocol go, and so does this record: it holds them weakly, and
    calls ``on_failed`` when one goes."""

    def __init__(self) -> None:
        self.since: Dict["weakref.ref[HttpProtocol]", float] = {}
        self.on_failed: Optional[Callable[[], None]] = None

    def begun(self, conn: HttpProtocol, now: float) -> None:
        self.since[weakref.ref(conn, self._gone)] = now

    def _gone(self, ref: "weakref.ref[HttpProtocol]") -> None:
        if self.since.pop(ref, None) is not None and self.on_failed is not None:
            self.on_failed()

    def _forget_finished(self) -> None:
        for ref in list(self.since):
            conn = ref()
            if conn is None or conn.tls:
                del self.since[ref]

    def under_way(self, connections: int = 0, limit: int = 0) -> int:
        """How many are still under way. The record also holds the finished ones until it is
        cleaned, which it is only when they could matter: when ``connections`` (those
        finished and open) and the record reach ``limit`` (0: always)."""
        if not limit or connections + len(self.since) >= limit:
            self._forget_finished()
        return len(self.since)

    def pending(self, now: float) -> int:
        """How many a stopping worker still waits for: those under way for less than
        ``HANDSHAKE_WAIT`` (an older one is given up, but still counts as under way)."""
        self._forget_finished()
        return sum(1 for since in self.since.values() if now - since <= HANDSHAKE_WAIT)


def _tasks(which: Callable[[asyncio.Task], bool]) -> List[asyncio.Task]:
    """The running tasks ``which`` picks, but not the caller's."""
    current = asyncio.current_task()
    return [task for task in asyncio.all_tasks() if task is not current and not task.done() and which(task)]


async def _cancel(tasks: List[asyncio.Task]) -> None:
    """Cancel ``tasks``, giving them a second to unwind."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=1.0)


def _count(number: int, noun: str) -> str:
    """``1 connection``, ``2 connections``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


# Container allocations between two young-generation collections. Python's default (700) runs
# one every few requests when hundreds are in flight, each walking every request's live objects;
# measured at 256 connections on a saturated core: p99 -20 to -37%, +4 to +11% requests.
YOUNG_COLLECTION_EVERY = 20_000


def worker_request_limit(config: Config) -> int:
    """Requests this worker answers before it retires: ``--limit-max-requests`` plus a random
    0..``--limit-max-requests-jitter`` of its own (each forked worker draws from a reseeded
    generator), so workers started together do not all retire together; 0: never."""
    if not config.limit_max_requests:
        return 0
    return config.limit_max_requests + random.randint(0, config.limit_max_requests_jitter)


def space_out_young_collections() -> None:
    """Raise the cyclic collector's first threshold to ``YOUNG_COLLECTION_EVERY`` (never lower it)."""
    young, middle, old = gc.get_threshold()
    if 0 < young < YOUNG_COLLECTION_EVERY:
        gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, old)


def run_worker(config: Config, app: Any, sock: socket.socket) -> None:
    """Run one worker to completion on a fresh uvloop event loop."""
    import uvloop

    space_out_young_collections()
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve_forever(config, app, sock))
    finally:
        sock.close()
        loop.close()
