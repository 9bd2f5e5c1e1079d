"""The server's own endpoints below ``--admin-prefix`` (default ``/_fastserve``).

* ``{prefix}/health``: ``200 ok`` while the worker serves, ``503 draining`` from SIGTERM on
  (during ``--shutdown-delay`` the listener stays open, so a load balancer that polls this
  stops sending before connections are refused), ``503 served directory missing`` while a
  directory the static face serves is gone (``worker.ServedDirectories``);
* ``{prefix}/metrics`` (with ``--metrics``): Prometheus text, summed over all workers.

Only these exact paths (any query) are answered, to GET and HEAD. They never shadow a file:
when the static face has a file at that path, the file is served. For an app, fastserve cannot
know what the app would answer, so the two paths belong to fastserve; move them with
``--admin-prefix``, or turn them off with ``--admin-prefix ''``.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, Optional, Tuple

from fastserve.config import Config

Answer = Tuple[int, bytes, bytes]  # status, content type, body
HEALTHY: Answer = (200, b"text/plain; charset=utf-8", b"ok\n")
DRAINING: Answer = (503, b"text/plain; charset=utf-8", b"draining\n")
DIRECTORY_GONE: Answer = (503, b"text/plain; charset=utf-8", b"served directory missing\n")


class Admin:
    """Answers the admin paths for one worker; ``state`` is its ``ServerState``."""

    def __init__(self, config: Config, metrics: Any = None) -> None:
        prefix = config.admin_prefix.rstrip("/")
        self.prefix = prefix.encode("latin-1")
        self.health_path = self.prefix + b"/health"
        self.metrics = metrics  # a fastserve.server.metrics.Metrics, or None
        self.metrics_path = self.prefix + b"/metrics" if metrics is not None else None
        self.state: Any = None
        self.served: Any = None  # the worker's ServedDirectories (a static face), or None

    def answer(self, raw_url: bytes) -> Optional[Answer]:
        """The answer for ``raw_url`` (a request-target), or None when it is no admin path."""
        path = raw_url.split(b"?", 1)[0]
        if path == self.health_path:
            if self.state is not None and self.state.draining:
                return DRAINING
            return DIRECTORY_GONE if self.served is not None and self.served.missing else HEALTHY
        if path == self.metrics_path:
            self.metrics.update(len(self.state.connections), self.state.cache)  # this worker's, up to now
            return 200, self.metrics.content_type, self.metrics.exposition()
        return None

    def static_answer(self, method: bytes, raw_url: bytes) -> Optional[Answer]:
        """For the static face: ``answer``, unless a file is served at that path (or the method is not GET/HEAD)."""
        if method not in (b"GET", b"HEAD"):
            return None
        answer = self.answer(raw_url)
        if answer is None:
            return None
        from fastserve._speedups.filecache import KIND_FILE

        path = raw_url.split(b"?", 1)[0].decode("latin-1")
        if self.state.cache.lookup(path).kind == KIND_FILE:
            return None  # a real file at this path wins
        return answer

    def asgi_app(self, app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """An ASGI app that answers the admin paths and passes every other request to ``app``."""
        admin = self

        async def admin_or_app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
            target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
            answer = admin.answer(target) if scope["method"] in ("GET", "HEAD") else None
            if answer is None:
                await app(scope, receive, send)
                return
            status, content_type, body = answer
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", content_type), (b"content-length", b"%d" % len(body)),
                (b"cache-control", b"no-store"),
            ]})
            await send({"type": "http.response.body", "body": body})

        return admin_or_app


def make_admin(config: Config, metrics: Any = None) -> Optional[Admin]:
    """The worker's ``Admin``, or None with ``--admin-prefix ''``."""
    if not config.admin_prefix.strip("/"):
        return None
    return Admin(config, metrics)
