"""``--log-level trace``: every ASGI call an app gets, and every message it receives and sends.

With the ``fastserve`` logger at TRACE (``--log-level trace``, or a ``--log-config`` that sets
it), the worker runs the app inside ``TracedApp``, which logs on ``fastserve.asgi``:

    ASGI [3] started scope={'type': 'http', 'method': 'GET', 'path': '/items', ...}
    ASGI [3] receive {'type': 'http.request', 'body': '<5 bytes>', 'more_body': False}
    ASGI [3] send {'type': 'http.response.start', 'status': 200, 'headers': '<2 headers>'}
    ASGI [3] completed

Bodies, text and headers of messages are shown by their size (a scope's headers are shown);
the numbers count the app's calls in this worker. At any other level the app runs unwrapped,
so tracing costs nothing unless it is asked for. Static files answered by the fast path are
no ASGI calls: the access log shows them.
"""
from __future__ import annotations

import logging
from typing import Any, Dict

from fastserve.server.logs import TRACE

logger = logging.getLogger("fastserve.asgi")

_SIZED = ("body", "bytes", "text")  # message fields shown by their size
_SCOPE_LEFT_OUT = ("state", "app", "router", "extensions")  # what would flood a line and says little


def traced(app: Any) -> Any:
    """``app`` inside a ``TracedApp`` when the ``fastserve`` logger is at TRACE; else ``app`` itself."""
    if logging.getLogger("fastserve").isEnabledFor(TRACE):
        return TracedApp(app)
    return app


class TracedApp:
    """An ASGI 3 app that logs each call of ``app``, and each message, at TRACE (see the module)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        number = self.calls
        logger.log(TRACE, "ASGI [%d] started scope=%s", number,
                   {key: value for key, value in scope.items() if key not in _SCOPE_LEFT_OUT})

        async def traced_receive() -> Dict[str, Any]:
            message = await receive()
            logger.log(TRACE, "ASGI [%d] receive %s", number, shown(message))
            return message

        async def traced_send(message: Dict[str, Any]) -> None:
            logger.log(TRACE, "ASGI [%d] send %s", number, shown(message))
            await send(message)

        try:
            await self.app(scope, traced_receive, traced_send)
        except BaseException as exc:
            logger.log(TRACE, "ASGI [%d] raised %r", number, exc)
            raise
        logger.log(TRACE, "ASGI [%d] completed", number)


def shown(message: Dict[str, Any]) -> Dict[str, Any]:
    """``message`` as a trace line shows it: bodies and text by their length, headers by their count."""
    out = {}
    for key, value in message.items():
        if key in _SIZED and isinstance(value, (bytes, bytearray, str)):
            value = f"<{len(value)} {'chars' if isinstance(value, str) else 'bytes'}>"
        elif key == "headers" and isinstance(value, (list, tuple)):
            value = f"<{len(value)} headers>"
        out[key] = value
    return out
