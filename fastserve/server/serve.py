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
    what = config.target if isinstance(config.target, str) else type(config.target).__name__
    logger.info(
        "fastserve serving %s on http://%s:%d (%d worker%s)",
        what, config.host, config.port, config.workers, "" if config.workers == 1 else "s",
    )
    sys.stderr.flush()
    EarlySignals.install()
    if config.workers <= 1:
        run_worker(config, app, bind_socket(config))
        return 0
    return Supervisor(config, app).run()
