"""The ASGI bridge: runs an ASGI 3 app for requests the static fast path does not answer.

``HttpProtocol`` calls ``AsgiBridge.begin`` when a request's headers are complete; the
returned ``HttpCycle`` (compiled, in ``fastserve._speedups.asgi_cycle``) collects the body
and, when its turn in the connection's response order comes, runs the app as a task. It
writes straight to the transport, honours flow control, and tells the connection when its
response is complete. This module holds what is per worker: the app, its lifespan, the
proxy trust and the scope pieces every request shares.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

from fastserve._speedups.asgi_cycle import Exchanges, HttpCycle, ServerFields, build_scope
from fastserve.config import Config
from fastserve.server.proxy import ProxyTrust
from fastserve.server.response_headers import ServerHeaders
from fastserve.server.trace import traced

logger = logging.getLogger("fastserve")

Headers = List[Tuple[bytes, bytes]]


class AsgiBridge:
    """Per worker: the app, its lifespan, and the scope pieces every request shares."""

    def __init__(self, app: Any, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app = traced(app)  # --log-level trace: every call and message logged
        self.config = config
        self.loop = loop
        self.root_path = config.root_path
        self.proxy = ProxyTrust(config.forwarded_allow_ips) if config.proxy_headers else None
        self.state: Dict[str, Any] = {}
        self.server_headers = ServerHeaders.from_config(config)
        self.server_fields = ServerFields(self.server_headers)  # the same rule, for HTTP cycles
        self.admin_prefix: Optional[bytes] = None
        self.admin_app: Any = None
        self._lifespan: Optional[_Lifespan] = None
        self.exchanges = Exchanges(loop, app, config.max_body_size, self.root_path, self.state, self.proxy,
                                   self.server_fields)
        self.exchanges.reset_contextvars = config.reset_contextvars
        self.exchanges.file_extensions = config.pathsend
        # The connection calls this for every request an app answers: compiled, no Python frame.
        self.begin: Callable[[Any, bytes, bytes, Headers], HttpCycle] = self.exchanges.begin

    async def startup(self) -> None:
        """Run the app's lifespan startup (unless ``--lifespan off``); raises ``LifespanFailure``."""
        if self.config.lifespan == "off":
            return
        self._lifespan = _Lifespan(self.app, self.state, required=self.config.lifespan == "on")
        await self._lifespan.startup()

    async def shutdown(self) -> None:
        """Run the app's lifespan shutdown for at most ``--graceful-timeout`` seconds (then it
        is cancelled, with a warning: a stop must end)."""
        if self._lifespan is not None:
            await self._lifespan.shutdown(self.config.graceful_timeout)

    def scope_for(self, kind: str, conn: Any, raw_url: bytes, headers: Headers) -> Dict[str, Any]:
        """The scope keys HTTP and WebSocket requests share; ``path`` is None if undecodable."""
        return build_scope(kind, conn, raw_url, headers, self.root_path, self.state, self.proxy)

    def set_admin(self, admin: Any) -> None:
        """Answer ``admin``'s paths (a ``fastserve.server.admin.Admin``) before the app sees them."""
        self.admin_prefix = self.exchanges.admin_prefix = admin.prefix + b"/"
        self.admin_app = self.exchanges.admin_app = admin.asgi_app(self.app)

    def websocket(self, conn: Any, method: bytes, raw_url: bytes, headers: Headers) -> Any:
        """The session that takes over ``conn`` after a WebSocket handshake request."""
        from fastserve.server.websocket import WebSocketSession

        return WebSocketSession(self, conn, method, raw_url, headers)


class LifespanFailure(Exception):
    """The app reported that its startup (or shutdown) failed; the server must not serve."""


class StartupCancelled(Exception):
    """The app's lifespan startup was cancelled from inside (``interrupt_lifespan``): a stop
    came while it held the event loop. Nothing was served; the worker ends."""


CANCELLED = "fastserve.lifespan.cancelled"  # the reply _Lifespan._run leaves when its task is cancelled


class _Lifespan:
    """Runs the app's lifespan protocol; an app that does not speak it is simply skipped."""

    def __init__(self, app: Any, state: Dict[str, Any], required: bool = False) -> None:
        self.app = app
        self.state = state
        self.required = required  # --lifespan on: an app that does not speak it must not be served
        self.error: Optional[BaseException] = None
        self.events: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
        self.replies: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
        self.task: Optional[asyncio.Task] = None
        self.supported = True
        self.answered: Optional[str] = None  # the type of the app's last lifespan message

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await _in_lifespan(self.app, scope, self.events.get, self._send)
        except asyncio.CancelledError:
            # The worker stopped before the app's startup or shutdown finished: its doing, not the app's.
            self.supported = False
            self.replies.put_nowait({"type": CANCELLED})
            raise
        except BaseException as exc:
            self.error = exc
            if self.answered == "lifespan.startup.complete":  # it speaks lifespan: its shutdown failed
                logger.error("exception in the app's lifespan shutdown", exc_info=exc)
            elif self.answered is not None:  # it said it failed (Starlette raises after saying so)
                logger.debug("the app raised after %s: %r", self.answered, exc)
            elif self.required:
                logger.error("the app failed in the lifespan protocol", exc_info=exc)
            else:  # --lifespan auto: taken for an app that does not do lifespan (as uvicorn does)
                logger.info("the app does not run the lifespan protocol (it raised %r): serving without it", exc)
        # Returned or raised: whoever still waits for a reply must not wait forever.
        self.supported = False
        await self.replies.put({"type": "lifespan.unsupported"})

    async def _send(self, message: Dict[str, Any]) -> None:
        self.answered = message["type"]
        await self.replies.put(message)

    async def startup(self) -> None:
        # The lines uvicorn writes (each worker, at info): deploy scripts and health checks wait for them.
        logger.info("Waiting for application startup.")
        self.task = asyncio.get_running_loop().create_task(self._run())
        await self.events.put({"type": "lifespan.startup"})
        reply = await self.replies.get()
        if reply["type"] == CANCELLED:
            raise StartupCancelled()
        if reply["type"] == "lifespan.startup.failed":
            raise LifespanFailure(f"application startup failed: {reply.get('message', '')}")
        if reply["type"] == "lifespan.unsupported" and self.required:
            reason = f"it raised {self.error!r}" if self.error is not None else "it returned without answering"
            raise LifespanFailure(f"--lifespan on: the app does not run the lifespan protocol ({reason})")
        logger.info("Application startup complete.")

    async def shutdown(self, timeout: float) -> None:
        if not self.supported or self.task is None or self.task.done():
            return
        logger.info("Waiting for application shutdown.")
        await self.events.put({"type": "lifespan.shutdown"})
        try:
            reply = await asyncio.wait_for(self.replies.get(), timeout)
        except asyncio.TimeoutError:
            logger.warning("the app's lifespan shutdown did not finish within %g s (--graceful-timeout): cancelled",
                           timeout)
            self.task.cancel()
            await asyncio.wait([self.task], timeout=1.0)
            return
        if reply["type"] == CANCELLED:  # interrupt_lifespan: it held the loop past the timeout, or SIGINT came
            logger.warning("the app's lifespan shutdown was cancelled where it held the event loop (--graceful-timeout "
                           "%g s passed, or SIGINT came)", timeout)
        elif reply["type"] == "lifespan.shutdown.failed":
            logger.error("application shutdown failed: %s", reply.get("message", ""))
        elif reply["type"] == "lifespan.shutdown.complete":
            logger.info("Application shutdown complete.")


async def _in_lifespan(app: Any, scope: Dict[str, Any], receive: Any, send: Any) -> None:
    """The app's lifespan call; while its frame is on the stack, the app's lifespan code runs."""
    await app(scope, receive, send)


def interrupt_lifespan(frame: Any) -> None:
    """Called from a signal handler with the frame the signal interrupted: when that is the
    app's lifespan code, running without giving the event loop a turn (a synchronous call in
    its startup or shutdown: ``time.sleep``, a blocking client), raise ``CancelledError``
    there, which ends the lifespan task as a cancel from the loop would. The loop could not
    deliver the stop itself until that code returned. Elsewhere (the loop waiting, the app
    awaiting) it does nothing: the loop hears the signal and cancels what it must."""
    while frame is not None:
        if frame.f_code is _in_lifespan.__code__:
            raise asyncio.CancelledError("stopped while the app's lifespan code held the event loop")
        frame = frame.f_back
