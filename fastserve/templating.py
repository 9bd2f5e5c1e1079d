"""Jinja2 templates rendered into HTML responses.

    templates = Jinja2Templates(directory="templates")

    async def homepage(request):
        return templates.TemplateResponse(request, "index.html", {"title": "Home"})

Every template gets ``request`` in its context and a ``url_for(name, **path_params)`` global that
builds absolute URLs through ``request.url_for``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from typing import Any

import jinja2

from fastserve.background import BackgroundTask
from fastserve.datastructures import URL
from fastserve.exceptions import FastServeDeprecationWarning
from fastserve.requests import Request
from fastserve.responses import HTMLResponse
from fastserve.types import Scope

__all__ = ["Jinja2Templates"]

ContextProcessor = Callable[[Request], dict[str, Any]]


class _TemplateResponse(HTMLResponse):
    """An HTML response rendered from ``template`` with ``context``; both stay on the response so
    tests (and servers offering the ``http.response.debug`` extension) can inspect them."""

    def __init__(
        self,
        template: jinja2.Template,
        context: dict[str, Any],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.template = template
        self.context = context
        super().__init__(template.render(context), status_code, headers, media_type, background)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if "http.response.debug" in scope.get("extensions", {}):
            await send({"type": "http.response.debug", "info": {"template": self.template, "context": self.context}})
        await super().__call__(scope, receive, send)


@jinja2.pass_context
def _url_for(context: Mapping[str, Any], name: str, /, **path_params: Any) -> URL:
    """The ``url_for`` template global: the absolute URL of route ``name``."""
    return context["request"].url_for(name, **path_params)


_NAME_FIRST_DEPRECATED = (
    "TemplateResponse(name, {'request': request, ...}) is deprecated: "
    "pass the request first, as TemplateResponse(request, name, context)."
)
_REQUEST_MISSING_DEPRECATED = (
    "TemplateResponse() requires the `request` argument; a call without it is deprecated: "
    "pass the request first, as TemplateResponse(request, name, context)."
)
_RESPONSE_OPTIONS = ("status_code", "headers", "media_type", "background")
_METHOD = "Jinja2Templates.TemplateResponse()"


class _RequestMissing(TypeError, ValueError):
    """A call that gives no request at all: a ``TypeError`` as Python raises for Starlette 1.x's
    required argument, and a ``ValueError`` as Starlette 0.x raised for its deprecated forms."""

    def __init__(self) -> None:
        super().__init__(
            f"{_METHOD} missing 1 required positional argument: 'request' "
            '(in the deprecated forms, context must include a "request" key)'
        )


class Jinja2Templates:
    """Renders Jinja2 templates into responses.

    Give either ``directory`` (a path or a list of paths searched in order) or a ready-made
    ``env``, not both. ``context_processors`` are called with the request for every response and
    their dicts merged into the context.
    """

    def __init__(
        self,
        directory: str | PathLike[str] | Sequence[str | PathLike[str]] | None = None,
        *,
        context_processors: list[ContextProcessor] | None = None,
        env: jinja2.Environment | None = None,
        **env_options: Any,
    ) -> None:
        if env_options:
            warnings.warn(
                "Passing jinja2.Environment options to Jinja2Templates is deprecated: "
                "build a jinja2.Environment and pass it as env=... instead.",
                FastServeDeprecationWarning,
                stacklevel=2,
            )
        assert bool(directory) ^ bool(env), "either 'directory' or 'env' arguments must be passed"
        self.context_processors = context_processors or []
        if env is None:
            env_options.setdefault("loader", jinja2.FileSystemLoader(directory))  # type: ignore[arg-type]
            env_options.setdefault("autoescape", jinja2.select_autoescape())
            env = jinja2.Environment(**env_options)
        self.env = env
        self.env.globals.setdefault("url_for", _url_for)

    def get_template(self, name: str) -> jinja2.Template:
        return self.env.get_template(name)

    def TemplateResponse(self, *args: Any, **kwargs: Any) -> _TemplateResponse:  # noqa: N802 (public name)
        """Render template ``name`` into an HTML response.

        ``TemplateResponse(request, name, context=None, status_code=200, headers=None,
        media_type=None, background=None)``. The older ``TemplateResponse(name, {"request":
        request, ...}, ...)`` form still works, with a deprecation warning. ``TypeError`` for a
        call Starlette's signature refuses; a call with no request anywhere raises one that is
        also a ``ValueError`` (what Starlette 0.x raised for it).
        """
        request, name, context, options = self._arguments(args, kwargs)
        context.setdefault("request", request)
        for processor in self.context_processors:
            context.update(processor(request))
        return _TemplateResponse(self.get_template(name), context, **options)

    @staticmethod
    def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, str, dict[str, Any], dict[str, Any]]:
        """Sort both call styles into (request, name, context, response options)."""
        if args and isinstance(args[0], str):
            warnings.warn(_NAME_FIRST_DEPRECATED, FastServeDeprecationWarning, stacklevel=3)
            names: tuple[str, ...] = ("name", "context", *_RESPONSE_OPTIONS)
            given = {**dict(zip(names, args)), **kwargs}
            context = given.get("context") or {}
            if "request" not in context:
                raise _RequestMissing()
            request = context["request"]
        elif args:
            names = ("request", "name", "context", *_RESPONSE_OPTIONS)
            given = {**dict(zip(names, args)), **kwargs}
            request = given["request"]
        else:
            given = dict(kwargs)
            if "request" not in given:
                warnings.warn(_REQUEST_MISSING_DEPRECATED, FastServeDeprecationWarning, stacklevel=3)
                if "request" not in (given.get("context") or {}):
                    raise _RequestMissing()
                request = given["context"]["request"]
            else:
                request = given["request"]
        if len(args) > 2 + len(_RESPONSE_OPTIONS):
            raise TypeError(f"{_METHOD} takes at most {2 + len(_RESPONSE_OPTIONS)} positional arguments")
        if "name" not in given:
            raise TypeError(f"{_METHOD} missing 1 required positional argument: 'name'")
        context = given.get("context")
        if context is None:
            context = {}
        options = {key: given[key] for key in _RESPONSE_OPTIONS if key in given}
        unexpected = set(given) - {"request", "name", "context", *_RESPONSE_OPTIONS}
        if unexpected:
            raise TypeError(f"{_METHOD} got unexpected keyword arguments: {', '.join(sorted(unexpected))}")
        return request, given["name"], context, options
