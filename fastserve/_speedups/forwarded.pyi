from typing import Any, List, Optional, Tuple

def resolve_forwarded(
    trust: Any, client: Optional[Tuple[str, int]], headers: List[Tuple[bytes, bytes]], scheme: str,
) -> Tuple[Optional[Tuple[str, int]], str]: ...
