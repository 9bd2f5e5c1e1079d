"""Bases that make fastserve's classes count as Starlette's where Starlette is installed.

FastAPI and Starlette recognise responses and exceptions by ``isinstance`` against their
own classes: an endpoint's return value passes through untouched only if it is a Starlette
``Response``, and exception handlers are looked up by class. So that an app can swap
``starlette`` for ``fastserve`` in one import and keep working, fastserve's ``Response``,
``HTTPException`` and ``WebSocketException`` derive from Starlette's classes of the same name
when Starlette can be imported. Every method they use is fastserve's own; without Starlette
the bases are plain ``object`` / ``Exception``.
"""
from __future__ import annotations

import importlib
from typing import Any


def framework_base(module: str, name: str, fallback: Any) -> Any:
    """``module.name`` if it can be imported, else ``fallback``."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return fallback
