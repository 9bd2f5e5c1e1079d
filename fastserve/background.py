"""Work to run after a response has been sent (``Response(background=...)``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastserve._interop import ClaimsFrameworkInstances, counts_as, framework_base
from fastserve.concurrency import is_async_callable, run_in_threadpool

__all__ = ["BackgroundTask", "BackgroundTasks"]


@counts_as("starlette.background", "BackgroundTask")
class BackgroundTask(metaclass=ClaimsFrameworkInstances):
    """``func(*args, **kwargs)``, awaited if it is async, otherwise run in a worker thread."""

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.is_async = is_async_callable(func)

    async def __call__(self) -> None:
        if self.is_async:
            await self.func(*self.args, **self.kwargs)
        else:
            await run_in_threadpool(self.func, *self.args, **self.kwargs)


@counts_as("starlette.background", "BackgroundTasks")
class BackgroundTasks(
    BackgroundTask, framework_base("starlette.background", "BackgroundTasks", object)  # type: ignore[misc]
):
    """Several tasks run one after another, in the order they were added.

    An exception in one task stops the ones after it. Where Starlette is installed it also
    derives from Starlette's class (every method is fastserve's), so a FastAPI endpoint can take
    ``background_tasks: BackgroundTasks`` from fastserve (see ``fastserve._interop``).
    """

    def __init__(self, tasks: Sequence[BackgroundTask] | None = None) -> None:
        self.tasks: list[BackgroundTask] = list(tasks) if tasks else []

    def add_task(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.tasks.append(BackgroundTask(func, *args, **kwargs))

    async def __call__(self) -> None:
        for task in self.tasks:
            await task()
