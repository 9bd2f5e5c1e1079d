"""How fastserve's classes count as Starlette's where Starlette is installed.

FastAPI and Starlette recognise classes by ``isinstance``/``issubclass`` against their own:
an endpoint's return value passes through untouched only if it is a Starlette ``Response``,
exception handlers are looked up by class, and an endpoint parameter annotated ``Request``,
``WebSocket`` or ``UploadFile`` is recognised by ``issubclass`` of the annotation. So that an
app can swap ``starlette``/``fastapi`` for ``fastserve`` in one import and keep working:

- classes apps *return or annotate with* (``Response`` and each of its subclasses,
  ``UploadFile``, ``BackgroundTasks``) derive from Starlette's class of the same name
  (``framework_base``), or, where Starlette's class is an ABC (``HTTPConnection``,
  ``Request``, ``WebSocket``), are registered as its virtual subclass (``counts_as``), so no
  Starlette method ever runs on a fastserve object;
- classes apps *test with* ``isinstance`` on objects the framework made (``UploadFile``, over the
  values of ``await request.form()``; ``Request``, ``WebSocket`` and ``HTTPConnection``, over the
  connection a FastAPI endpoint, dependency or middleware is handed) also claim the framework
  class's instances (``ClaimsFrameworkInstances``), so the test answers as it did with the
  framework's import;
- classes apps *catch, compare or key exception handlers by* while the framework raises or
  returns them (``HTTPException``, ``WebSocketException``, ``WebSocketDisconnect``,
  ``ClientDisconnect``, ``MultiPartException``, ``WebSocketState``, and the warning category
  ``StarletteDeprecationWarning``) are Starlette's own class, because ``except``, ``==``
  and Starlette's handler lookup (along the raised exception's ``__mro__``) match the real class:
  a look-alike could never be caught, and a handler registered for it would never answer the
  ``404``/``405`` the framework raises;
- values a framework compares with ``is`` (``routing.Match``, what a route makes of a scope)
  are Starlette's own, so routes of either kind match in a router of the other;
- value classes apps compare, copy or ``isinstance``-check beside the framework's
  (``datastructures``' multi-dicts, headers, ``URL``, ``State``...) both count as the framework's
  class (``counts_as``, where it is an ABC) and claim its instances, so ``==`` answers the same
  in either order, as it does between two of Starlette's (whose ``__eq__`` asks ``isinstance``
  against its own class); ``Address``, a named tuple, is Starlette's own;
- routes (``routing``' ``Route``, ``WebSocketRoute``, ``Mount``, ``Host``, ``Router`` and
  ``BaseRoute``) derive from Starlette's class of their name and claim its instances: Starlette's
  ``SchemaGenerator``, its OpenTelemetry middleware and FastAPI's router read a route's kind by
  ``isinstance`` (FastAPI dropped a fastserve route from an ``APIRouter`` it included), and
  every method they call is fastserve's own.

Without Starlette every one of them is fastserve's own class.
"""
from __future__ import annotations

import importlib
from abc import ABCMeta
from typing import Any, Callable, TypeVar

T = TypeVar("T", bound=type)


def framework_base(module: str, name: str, fallback: Any) -> Any:
    """``module.name`` if it can be imported, else ``fallback``."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return fallback


def counts_as(module: str, name: str) -> Callable[[T], T]:
    """Class decorator: register the class as a virtual subclass of ``module.name`` when that
    class can be imported and is an ABC (``issubclass`` then holds; nothing is inherited), and,
    for a class made by ``ClaimsFrameworkInstances``, name it as the class whose instances it
    claims (an ABC or not: a plain framework class is claimed, though it cannot register)."""

    def register(cls: T) -> T:
        framework_class = framework_base(module, name, None)
        if isinstance(framework_class, ABCMeta):
            framework_class.register(cls)
        if isinstance(framework_class, type) and isinstance(cls, ClaimsFrameworkInstances):
            cls._framework_class = framework_class  # type: ignore[attr-defined]
        return cls

    return register


class ClaimsFrameworkInstances(ABCMeta):
    """Metaclass of a fastserve class that stands for a framework's class of the same name and
    names it in ``_framework_class`` (set in the class body, or by ``counts_as``): ``isinstance``
    and ``issubclass`` against the fastserve class also hold for the framework class's instances
    and real subclasses. Only the class that names it claims them, not its own subclasses.

    A claim follows real inheritance (the candidate's ``__mro__``), never the framework class's
    registered virtual subclasses: those include the fastserve class itself, and asking the
    framework's ABC would ask the fastserve class again, without end."""

    def __instancecheck__(cls, instance: Any) -> bool:
        return super().__instancecheck__(instance) or cls._claims(type(instance))

    def __subclasscheck__(cls, subclass: type) -> bool:
        return super().__subclasscheck__(subclass) or cls._claims(subclass)

    def _claims(cls, candidate: type) -> bool:
        framework_class = cls.__dict__.get("_framework_class")
        return framework_class is not None and framework_class in getattr(candidate, "__mro__", ())
