"""Everything a server run is told: where to listen, what to serve, and every limit."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

ASGIApp = Callable[..., Any]


@dataclass
class Config:
    """Settings for one ``serve()`` run; the CLI flags map one-to-one onto these fields.

    ``target`` is what to serve: a directory (served by ``StaticFiles`` on the fast path),
    a ``"module:attribute"`` string naming an ASGI app, or an ASGI app object.
    """

    target: Union[str, ASGIApp] = "."
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    backlog: int = 2048
    graceful_timeout: float = 10.0
    access_log: bool = False
    root_path: str = ""
    proxy_headers: bool = True
    forwarded_allow_ips: str = "127.0.0.1"

    # static serving (when target is a directory)
    html: bool = True
    follow_symlink: bool = False
    precompressed: bool = True

    # request limits
    max_header_bytes: int = 16 * 1024
    max_header_count: int = 100
    max_url_length: int = 8 * 1024
    max_body_size: int = 100 * 1024 * 1024  # streamed to the app, never held whole
    max_pipeline: int = 64
    max_connections: int = 10_000
    max_ranges: int = 16
    header_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    send_timeout: float = 60.0

    # WebSockets (ASGI apps)
    ws_max_size: int = 16 * 1024 * 1024
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    ws_per_message_deflate: bool = True

    # the open-file cache
    cache_valid: float = 1.0
    cache_entries: int = 10_000
    cache_bytes: int = 64 * 1024 * 1024
    cache_max_file: int = 256 * 1024

    # how often timeouts are checked (the coarse clock's tick)
    tick_interval: float = 0.5

    ready_callback: Optional[Callable[[], None]] = None
