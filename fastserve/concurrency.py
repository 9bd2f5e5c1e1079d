"""Run blocking code from async code without stalling the event loop (anyio worker threads)."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from fastserve.exceptions import FastServeDeprecationWarning

__all__ = ["is_async_callable", "iterate_in_threadpool", "run_in_threadpool", "run_until_first_complete"]

T = TypeVar("T")


def is_async_callable(obj: Any) -> bool:
    """True when calling ``obj`` returns an awaitable: an ``async def`` function, a partial of
    one, or an object whose ``__call__`` is ``async def``."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    if inspect.iscoroutinefunction(obj):
        return True
    return callable(obj) and inspect.iscoroutinefunction(obj.__call__)


async def run_until_first_complete(*args: tuple[Callable[..., Awaitable[Any]], dict[str, Any]]) -> None:
    """Deprecated (as in Starlette): run each ``(async_function, kwargs)`` pair concurrently and
    return once the first returns, cancelling the others. An exception from any is raised."""
    # Starlette's words first, which warning filters written for it match (from the start).
    warnings.warn(
        "run_until_first_complete is deprecated and will be removed in a future version. Start the "
        "tasks in an anyio task group and cancel its scope when the first one returns.",
        FastServeDeprecationWarning,
        stacklevel=2,
    )

    async with anyio.create_task_group() as group:

        async def until_done(function: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> None:
            await function(**kwargs)
            group.cancel_scope.cancel()

        for function, kwargs in args:
            group.start_soon(until_done, function, kwargs)


async def run_in_threadpool(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``func(*args, **kwargs)`` in a worker thread and return its result."""
    return await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs))


class _Exhausted(Exception):
    """Carries "no more items" out of a worker thread.

    ``StopIteration`` cannot cross the thread boundary (it would end the awaiting
    coroutine instead), so the worker turns it into this.
    """


def _next_or_exhausted(iterator: Iterator[T]) -> T:
    try:
        return next(iterator)
    except StopIteration:
        raise _Exhausted from None


async def iterate_in_threadpool(iterator: Iterable[T]) -> AsyncIterator[T]:
    """Iterate a blocking iterable, fetching every item in a worker thread."""
    items = iter(iterator)
    while True:
        try:
            item = await anyio.to_thread.run_sync(_next_or_exhausted, items)
        except _Exhausted:
            return
        yield item
