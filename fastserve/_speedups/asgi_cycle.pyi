from typing import Any, Awaitable, Dict, List, Optional, Tuple

from fastserve._speedups.job import Job

class ClientDisconnected(OSError): ...

def final_status(status: Any, message: str) -> int: ...

def build_scope(
    kind: str, conn: Any, raw_url: bytes, headers: List[Tuple[bytes, bytes]], root_path: str,
    state: Dict[str, Any], proxy: Any, method: Optional[str] = ..., http10: bool = ...,
    file_extensions: bool = ...,
) -> Dict[str, Any]: ...

class ServerFields:
    rule: Any  # fastserve.server.response_headers.ServerHeaders
    def __init__(self, rule: Any) -> None: ...

class Exchanges:
    loop: Any
    app: Any
    max_body_size: int
    root_path: str
    state: Dict[str, Any]
    proxy: Any
    server_fields: ServerFields
    admin_prefix: Optional[bytes]
    admin_app: Any
    reset_contextvars: bool
    file_extensions: bool
    def __init__(
        self, loop: Any, app: Any, max_body_size: int, root_path: str, state: Dict[str, Any], proxy: Any,
        server_fields: ServerFields,
    ) -> None: ...
    def begin(self, conn: Any, method: bytes, raw_url: bytes, headers: List[Tuple[bytes, bytes]]) -> "HttpCycle": ...

class HttpCycle(Job):
    scope: Optional[Dict[str, Any]]  # None until the exchange runs
    too_large: bool
    def __init__(
        self, shared: Exchanges, conn: Any, method: bytes, raw_url: bytes, headers: List[Tuple[bytes, bytes]],
        app: Optional[Any] = ...,
    ) -> None: ...
    def receive_body(self, chunk: bytes) -> None: ...
    def body_complete(self) -> None: ...
    def body_failed(self, status: int) -> None: ...
    def send(self, message: Dict[str, Any]) -> Awaitable[None]: ...
