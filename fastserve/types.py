"""The ASGI types fastserve's modules share, with the meanings Starlette gives them.

``Scope`` and ``Message`` are mutable mappings (servers and middleware add keys), ``Receive``
and ``Send`` the two callables an app gets, ``ASGIApp`` an ASGI 3 application.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, MutableMapping

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
