"""Turn a ``Config.target`` into an ASGI app: a directory, ``"module:attr"``, or an app.

Also loads ``--env-file`` first, so the app's module sees the variables when it is imported.
"""
from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from typing import Any

from fastserve.config import Config


class AppLoadError(Exception):
    """The target names nothing that can be served; the message says why."""


def names_directory(target: Any) -> bool:
    """Whether ``Config.target`` is a directory to serve (a path, or anything without the
    ``:`` of ``"module:attribute"``) rather than an app."""
    return isinstance(target, str) and (os.path.isdir(target) or ":" not in target)


def load_env_file(config: Config) -> None:
    """Load ``config.env_file`` (``KEY=VALUE`` lines, dotenv syntax) into ``os.environ``.

    Variables already set in the environment keep their values. Raises ``AppLoadError``
    when the file is missing or python-dotenv is not installed.
    """
    if config.env_file is None:
        return
    if not os.path.isfile(config.env_file):
        raise AppLoadError(f"--env-file {config.env_file!r} does not exist.")
    try:
        from dotenv import load_dotenv
    except ImportError:
        raise AppLoadError("--env-file needs python-dotenv: pip install 'fastserve[dotenv]'") from None
    load_dotenv(config.env_file, override=False)


def load_app(config: Config) -> Any:
    """The ASGI 3 app ``config.target`` names (an ASGI 2 app comes wrapped).

    Raises ``AppLoadError`` when the target names nothing, or something that is not callable,
    or ``--factory``'s function cannot be called without arguments (its ``TypeError``).
    """
    target = config.target
    if not isinstance(target, str):
        return asgi3_app(target, "The app given")
    if names_directory(target):
        return _directory(config, target)
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise AppLoadError(f"{target!r} is neither a directory nor a 'module:attribute' app.")
    app_dir = os.path.abspath(config.app_dir or os.getcwd())
    if config.app_dir or ("" not in sys.path and app_dir not in sys.path):
        sys.path.insert(0, app_dir)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise AppLoadError(f'Error loading ASGI app. Could not import module "{module_name}".') from None
    app: Any = module
    for name in attribute.split("."):
        try:
            app = getattr(app, name)
        except AttributeError:
            raise AppLoadError(
                f'Error loading ASGI app. Attribute "{attribute}" not found in module "{module_name}".') from None
    if config.factory:
        if not callable(app):
            raise AppLoadError(f"--factory: {target!r} is not callable.")
        try:
            app = app()
        except TypeError as exc:  # called with what it cannot take: no app to serve
            raise AppLoadError(f"Error loading ASGI app factory: {exc}") from None
    elif _takes_no_arguments(app):
        logging.getLogger("fastserve").warning(
            "%r takes no arguments, so it is taken for an app factory and called; "
            "pass --factory to say so", target)
        app = app()
    return asgi3_app(app, repr(target))


def _takes_no_arguments(app: Any) -> bool:
    """Whether ``app`` is a plain function that can be called with no arguments: no ASGI app
    (which is called with a scope) is one, so it can only be an app factory (``create_app``)."""
    if not inspect.isfunction(app) or inspect.iscoroutinefunction(app):
        return False
    try:
        inspect.signature(app).bind()
    except TypeError:
        return False
    return not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in inspect.signature(app).parameters.values())


# Fields a directory's answers set per file or per request (RFC 9110 sections 8 and 14, 10.2):
# an operator's --header copy of one went out beside it, two values for one field.
# (Cache-Control is the cache policy's, which an operator's --header replaces: _cache_policy;
# Vary is a list, which the operator's members join: response_headers.ServerHeaders.merged.)
STATIC_ANSWER_FIELDS = frozenset({"content-type", "content-encoding", "content-range", "accept-ranges", "etag",
                                  "last-modified", "location", "allow"})


def _directory(config: Config, target: str) -> Any:
    if not os.path.exists(target):
        raise AppLoadError(f"Directory {target!r} does not exist.{_module_hint(config, target)}")
    if not os.path.isdir(target):
        raise AppLoadError(f"{target!r} is not a directory (an app is named 'module:attribute').")
    if os.path.isfile(os.path.join(target, "__init__.py")):
        logging.getLogger("fastserve").warning(
            "%r is a Python package: its files, sources included, are served as they are; to run an app "
            "it holds, name it 'module:attribute' (%s:app)", target, os.path.basename(os.path.normpath(target)))
    for name, _ in config.headers:
        if name.strip().lower() in STATIC_ANSWER_FIELDS:
            raise AppLoadError(f"--header {name.strip()}: a file's answer sets that field itself (it describes "
                               f"the file, or this answer): a second would contradict it; leave it out for a directory")
    if config.templates is not None:
        from fastserve.listing import templates_problem

        problem = templates_problem(config.templates)
        if problem is not None:
            raise AppLoadError(f"--templates {config.templates!r}: {problem}")
    from fastserve.staticfiles import StaticFiles

    return StaticFiles(
        directory=target,
        html=config.html,
        follow_symlink=config.follow_symlink,
        precompressed=config.precompressed,
        dotfiles=config.dotfiles == "allow",
        cache_policy=_cache_policy(config),
        etag=config.etag == "on",
        if_modified_since=config.if_modified_since,
        spa=config.spa,
        error_pages=dict(config.error_pages),
        compress=config.compress == "on",
        listing=config.listing,
        templates=config.templates,
        listing_max_entries=config.listing_max_entries,
        file_slash=False,  # /a.txt/ is 404, as nginx answers
        answers="static",  # the fast path's answers, should a request it answers reach the app
        max_ranges=config.max_ranges,
    )


def _cache_policy(config: Config) -> Any:
    """The ``Cache-Control`` policy for a directory's files: the cache policy (``--max-age``,
    ``--cache-rule``), or the operator's own ``--header Cache-Control:`` value for every file.

    The operator's value goes where the policy's would (a file's 200, 206, 304 and HEAD), and
    never on a miss, an error, a ``416`` or a redirect, as nginx's ``add_header`` skips them: a
    long ``max-age`` on a ``404`` would have a cache keep the miss after the file is deployed
    (RFC 9111 section 4.2.1). ``ServerHeaders.from_config`` leaves it out of the fields every
    answer gets."""
    from fastserve.cachepolicy import CachePolicy

    own = [value.strip() for name, value in config.headers if name.strip().lower() == "cache-control"]
    if own:
        return CachePolicy(rules=[("*", ", ".join(own))])
    return CachePolicy.from_config(config)


def _module_hint(config: Config, target: str) -> str:
    """For a target that is no directory but names a module beside it (``fastserve main``, typed
    for ``main:app``): how to name its app."""
    path = os.path.join(config.app_dir or os.getcwd(), *target.split(".")) + ".py"
    if target.replace(".", "").replace("_", "").isalnum() and os.path.isfile(path):
        return f" To run an app of the module {target!r} ({path}), name it 'module:attribute': {target}:app"
    return ""


def asgi3_app(app: Any, what: str) -> Any:
    """``app`` as an ASGI 3 callable: itself, or an ASGI 2 app wrapped; ``AppLoadError`` when
    it cannot be called at all (a module, a string, a settings object named by mistake)."""
    from fastserve.asgi2 import as_asgi3  # the CLI imports this module before its dependencies are checked

    try:
        return as_asgi3(app)
    except TypeError:
        raise AppLoadError(f"{what} is not an ASGI app: a {type(app).__name__} cannot be called.") from None
