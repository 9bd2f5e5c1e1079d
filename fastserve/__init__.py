"""fastserve: a Cython-compiled uvloop + httptools server for static files and ASGI apps."""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def run(app: Any, **options: Any) -> int:
    """Serve ``app`` (an ASGI app, a ``"module:attr"`` string or a directory) until stopped.

    ``options`` are ``fastserve.config.Config`` fields: ``host``, ``port``, ``workers``,
    ``graceful_timeout``, the limits, ... — the same names as the command-line flags.
    Returns the exit code (0 after a clean stop).
    """
    from fastserve.config import Config
    from fastserve.server.serve import serve

    return serve(Config(target=app, **options))
