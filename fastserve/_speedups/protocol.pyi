import asyncio
from typing import Any, Callable, Dict, Optional, Tuple

from fastserve._speedups.counters import Counters
from fastserve._speedups.filecache import FileCache
from fastserve._speedups.readhub import HubMember, ReadHub

def request_parser(callbacks: Any) -> Any: ...

class ServerState:
    app: Any
    cache: Optional[FileCache]
    static_only: bool
    asgi_bridge: Any
    max_header_bytes: int
    max_header_count: int
    max_url_length: int
    max_body_size: int
    max_pipeline: int
    max_response_buffer: int
    max_connections: int
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    send_timeout: float
    max_ranges: int
    access_logger: Any
    connections: Dict["HttpProtocol", None]
    now: float
    shutting_down: bool
    keeps_none: bool
    refused_connections: int
    scan_heads: bool
    draining: bool
    on_drained: Optional[Callable[[], None]]
    admin: Any
    admin_prefix: Optional[bytes]
    counters: Optional[Counters]
    requests: int
    request_limit: int
    on_limit: Any
    log_agents: bool
    proxy: Optional[Any]
    tracer: Optional[Any]  # fastserve.server.trace.ConnectionTrace at --log-level trace
    accept_ceiling: int
    acceptor: Any
    accept_paused: bool
    read_hub: Optional[ReadHub]
    def __init__(
        self, config: Any, *, app: Any = ..., cache: Optional[FileCache] = ..., asgi_bridge: Any = ...,
        access_logger: Any = ...,
    ) -> None: ...
    def set_admin(self, admin: Any) -> None: ...
    def tick(self, now: float) -> None: ...
    def descriptors_short(self) -> None: ...
    def shutdown(self) -> None: ...
    def close_idle(self, idle_for: float = ...) -> None: ...

class HttpProtocol(HubMember, asyncio.Protocol):
    state: ServerState
    loop: asyncio.AbstractEventLoop
    transport: Any
    sock_fd: int
    tls: bool
    peer_finished: int
    writing_paused: bool
    transport_holds_data: bool
    upgraded: Any
    def __init__(self, state: ServerState, loop: asyncio.AbstractEventLoop, sock_fd: int = ...) -> None: ...
    @property
    def keep_alive(self) -> bool: ...
    @property
    def http10(self) -> bool: ...
    @property
    def protocol(self) -> Optional[bytes]: ...
    @property
    def declared_length(self) -> int: ...
    @property
    def client(self) -> Optional[Tuple[str, int]]: ...
    @property
    def server(self) -> Any: ...
    def data_received(self, data: bytes) -> None: ...  # type: ignore[override]
    def write(self, data: bytes) -> None: ...
    def send_now(self, data: bytes) -> int: ...
    def watch_writable(self) -> bool: ...
    def job_finished(self, close: bool = ...) -> None: ...
    def set_body_backpressure(self, on: bool) -> None: ...
    def check_timeouts(self, now: float) -> None: ...
    def stop_keeping_alive(self) -> bool: ...
    def close_when_idle(self, idle_for: float = ...) -> None: ...
    def reset(self) -> None: ...
    def abort(self) -> None: ...
