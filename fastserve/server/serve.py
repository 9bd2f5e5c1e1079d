"""``serve(config)``: load the app, bind, and run one worker in-process or several pre-forked."""
from __future__ import annotations

import logging
import sys

from fastserve.config import Config
from fastserve.server.app_loader import load_app
from fastserve.server.supervisor import Supervisor
from fastserve.server.worker import EarlySignals, bind_socket, run_worker

logger = logging.getLogger("fastserve")


def serve(config: Config) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    app = load_app(config)
    EarlySignals.install()
    if config.workers <= 1:
        sock = bind_socket(config)
        _announce(config)
        run_worker(config, app, sock)
        return 0
    # A port another process holds fails here, once: this probe binds without SO_REUSEPORT.
    bind_socket(config, listen=False).close()
    _announce(config)
    return Supervisor(config, app).run()


def _announce(config: Config) -> None:
    what = config.target if isinstance(config.target, str) else type(config.target).__name__
    logger.info(
        "fastserve serving %s on http://%s:%d (%d worker%s)",
        what, config.host, config.port, config.workers, "" if config.workers == 1 else "s",
    )
    sys.stderr.flush()
