"""``serve(config)``: load the app, open the socket, and run one worker in-process or several pre-forked."""
from __future__ import annotations

import logging
import os
import stat
import sys
from contextlib import contextmanager
from typing import Iterator, Optional

from fastserve.config import Config
from fastserve.server import metrics
from fastserve.server.app_loader import load_app, load_env_file
from fastserve.server.limits import raise_open_file_limit, somaxconn
from fastserve.server.listen import (
    describe,
    host_port,
    is_shared,
    open_listener,
    remove_socket_file,
    resolve_port,
)
from fastserve.server.supervisor import Supervisor
from fastserve.server.tls import make_context, tls_enabled
from fastserve.server.worker import EarlySignals, handles_signals, run_worker

logger = logging.getLogger("fastserve")


class PidFileError(Exception):
    """The ``--pid-file`` cannot be written; the message names it and says why."""


def serve(config: Config) -> int:
    """Run until SIGTERM/SIGINT/SIGQUIT; returns the process exit code.

    Raises ``AppLoadError`` (nothing to serve), ``ListenError`` (the socket cannot be
    opened) or ``LifespanFailure`` (the app's startup failed, single process only).
    """
    if not handles_signals() and (config.workers > 1 or config.limit_max_requests is not None):
        raise RuntimeError("fastserve.run with workers > 1 or limit_max_requests must be called from the main "
                           "thread: its supervisor is told of its workers and of stops by signals")
    make_context(config)  # a bad certificate stops the start here, before any worker
    metrics.prepare(config)  # the counters every worker writes, mapped before they fork
    load_env_file(config)
    app = load_app(config)
    raise_open_file_limit(config.max_connections)  # before the workers fork: they inherit it
    _check_backlog(config.backlog)
    EarlySignals.install()
    with pid_file(config.pid_file):
        return _run(config, app)


def _run(config: Config, app: object) -> int:
    _report_static_app(app)
    _report_missing_error_pages(config)
    if config.workers <= 1 and config.limit_max_requests is None:
        sock = open_listener(config)
        with _running(config):
            _announce(config, describe(sock, _scheme(config)))
            run_worker(config, app, sock)
        return 0
    # Several processes (or one that retires and is replaced): a supervisor keeps them going.
    if not is_shared(config):
        config = resolve_port(config)
        with _running(config):
            _announce(config, f"{_scheme(config)}://{host_port(config.host, config.port)}")
            return Supervisor(config, app).run()
    shared = open_listener(config)
    with _running(config):
        _announce(config, describe(shared, _scheme(config)))
        _report_compression(app)
        return Supervisor(config, app, shared).run()


def _check_backlog(backlog: int) -> None:
    cap = somaxconn()
    if 0 < cap < backlog:
        logger.info("the listen queue holds %d connections, not --backlog %d (net.core.somaxconn)", cap, backlog)


def _scheme(config: Config) -> str:
    return "https" if tls_enabled(config) else "http"


@contextmanager
def _running(config: Config) -> Iterator[None]:
    """From the banner on: log the stop, and remove the ``--uds`` socket file we created."""
    try:
        yield
    finally:
        remove_socket_file(config)
        logger.info("fastserve stopped")


def _announce(config: Config, where: str) -> None:
    target = config.target  # a directory, "module:app", or the app itself: its name, or its class's
    what = target if isinstance(target, str) else getattr(target, "__name__", type(target).__name__)
    logger.info(
        "fastserve serving %s on %s (pid %d, %d worker%s); %s",
        what, where, os.getpid(), config.workers, "" if config.workers == 1 else "s",
        "press Ctrl+C or send SIGTERM to stop" if handles_signals() else
        "from a thread other than the main one: no signal stops it, the process's end does",
    )
    sys.stderr.flush()


def _report_static_app(app: object) -> None:
    """Say once that a ``StaticFiles`` app is called like any app (as uvicorn calls it) unless it
    asks for the fast path's answers, and how to get them."""
    from fastserve.staticfiles import StaticFiles

    if isinstance(app, StaticFiles) and app.answers != "static":
        logger.info(
            "the app is a StaticFiles that answers as Starlette's, so it is called for every request, "
            "as under uvicorn; StaticFiles(..., answers=\"static\") or `fastserve DIRECTORY` answers "
            "from the static fast path"
        )


def _report_missing_error_pages(config: Config) -> None:
    """Say once at start which ``--error-page`` names no file below the served directory: its
    status is answered with the plain page until the file is there (it is looked for again as
    the cache revalidates), which a typo would otherwise leave unnoticed. The page is looked
    for as the open-file cache looks for it (``split_url_path``, ``resolve_path``): a path that
    climbs out of the directory, or a symlink leading out of it, names no file there."""
    if not (isinstance(config.target, str) and os.path.isdir(config.target)):
        return
    from fastserve._speedups.pathlookup import resolve_path, split_url_path

    root = os.path.abspath(config.target)
    roots = (root if config.follow_symlink else os.path.realpath(root),)
    for status, page in config.error_pages:
        parts = split_url_path(page)
        try:
            found = resolve_path(roots, parts, config.follow_symlink) if parts else None
        except OSError:
            found = None
        if found is None or not stat.S_ISREG(found[1].st_mode):
            logger.warning("--error-page %d=%s: no such file in %s; %d answers are the plain ones until it is there",
                           status, page, config.target, status)


def _report_compression(app: object) -> None:
    """Say once, before any worker starts, which codings --compress cannot offer and why."""
    if getattr(app, "compress", False) is True:
        from fastserve.compression import available_encoders, report_missing

        report_missing(available_encoders()[1])


@contextmanager
def pid_file(path: Optional[str]) -> Iterator[None]:
    """Write our process id to ``path`` for the run; remove it after, unless another process took it over."""
    if path is None:
        yield
        return
    pid = str(os.getpid())
    try:
        with open(path, "w") as file:
            file.write(pid + "\n")
    except OSError as exc:
        raise PidFileError(f"cannot write --pid-file {path!r}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        try:
            with open(path) as file:
                ours = file.read().strip() == pid
            if ours:
                os.unlink(path)
        except FileNotFoundError:
            pass
