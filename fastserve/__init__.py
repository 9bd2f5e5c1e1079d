"""fastserve: a Cython-compiled uvloop + httptools server for static files and ASGI apps."""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from importlib.machinery import EXTENSION_SUFFIXES
from typing import TYPE_CHECKING, Any, Dict, Iterator

if TYPE_CHECKING:
    from fastserve.config import Config

__version__ = "0.1.0"


def _has_built_extensions(package_dir: str) -> bool:
    """Whether ``package_dir/_speedups`` holds compiled extensions for this interpreter."""
    try:
        names = os.listdir(os.path.join(package_dir, "_speedups"))
    except OSError:
        return False
    return any(name.endswith(suffix) for name in names for suffix in EXTENSION_SUFFIXES)


def _use_installed_build() -> None:
    """Import the package from an installed build when this copy was never compiled.

    ``pip install . && python -m fastserve .`` typed in a checkout puts the checkout first on
    ``sys.path``; its ``_speedups`` has only ``.pyx`` sources (pip builds elsewhere), while the
    copy pip just installed has the compiled modules. Pointing ``__path__`` there makes every
    submodule, Python and compiled alike, come from that one installed build. A checkout
    built in place (``pip install -e .``) is used as it is.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    if _has_built_extensions(here):
        return
    for entry in sys.path:
        candidate = os.path.join(os.path.abspath(entry or os.curdir), "fastserve")
        if os.path.realpath(candidate) != os.path.realpath(here) and _has_built_extensions(candidate):
            __path__[:] = [candidate]
            return


_use_installed_build()


# uvicorn.run's keywords for --reload-dir/--reload-include/--reload-exclude (lists, named in the plural).
_RELOAD_LISTS = ("reload_dirs", "reload_includes", "reload_excludes")


def _take_uvicorn_only_options(options: Dict[str, Any]) -> None:
    """Remove from ``options`` the ``uvicorn.run`` keywords that name no fastserve setting, as
    the command line takes their flags: ``loop``, ``http``, ``ws`` and ``interface`` naming what
    fastserve does (any other value is a ``ValueError``), ``http2=False``, the reload keywords
    without ``reload=True`` (uvicorn ignores them too), and the ones that change nothing here."""
    from fastserve.cli import ACCEPTED_WITHOUT_EFFECT, UVICORN_CHOICES
    from fastserve.config import switch

    for name in ("loop", "http", "ws", "interface"):
        if name in options:
            value, choices = options.pop(name), UVICORN_CHOICES["--" + name]
            if value not in choices:
                raise ValueError(f"{name}={value!r}: fastserve runs {' or '.join(map(repr, choices))}")
    if switch("http2", options.pop("http2", False)):
        raise ValueError("http2=True: fastserve speaks HTTP/1.1 (put an HTTP/2 proxy or CDN in front)")
    for name in (*ACCEPTED_WITHOUT_EFFECT, *_RELOAD_LISTS, "reload_delay"):
        options.pop(name, None)


def run(app: Any, **options: Any) -> int:
    """Serve ``app`` (an ASGI app, a ``"module:attr"`` string or a directory) until stopped.

    ``options`` are ``fastserve.config.Config`` fields: ``host``, ``port``, ``workers``,
    ``graceful_timeout``, the limits, ... — the same names as the command-line flags; the
    names ``uvicorn.run`` takes for the same settings (``timeout_keep_alive``,
    ``timeout_graceful_shutdown``, ``limit_concurrency``) work too, and so does every other
    ``uvicorn.run`` keyword, as the command line takes its flag (``loop="uvloop"``,
    ``http="httptools"``, ``use_colors``, the reload keywords without ``reload=True``, ...).
    ``reload=True`` (with ``reload_dirs``, ``reload_includes``, ``reload_excludes`` and
    ``reload_delay``, as ``uvicorn.run`` takes them) restarts the server
    when a source file changes, as ``--reload`` does: ``app`` must then be an import string or a
    directory, and the call returns when the reloader stops.
    Logging is set up as the command line sets it (``log_level``: a name or a ``logging`` level
    number; ``log_config``: a file, or a ``logging.config.dictConfig`` dict, as ``uvicorn.run``
    takes them), so the start-up line, the access log (``access_log=True``) and errors are written;
    ``log_config=None`` sets up none, as ``uvicorn.run`` then does: fastserve's records go to the
    handlers the program gave the root logger (or uvicorn's loggers), at the level it set there
    unless ``log_level`` is given. Any other keyword given ``None`` (``uvicorn.run``'s default
    for ``workers``, ``ssl_keyfile``, ``limit_max_requests``, ...) is fastserve's default.

    Returns 0 after a clean stop. What the command line refuses with exit code 2 is raised,
    with or without ``reload=True``, before anything starts: ``ValueError`` for a setting out of
    its range or of the wrong kind (``Config.problems``), not among its choices
    (``config.CHOICES``), and for ``loop``, ``http``, ``ws`` or ``interface`` naming what fastserve
    does not run or ``http2=True``, and for a setting that is on or off (``access_log``,
    ``follow_symlink``, ...) given anything but True or False (1 or 0): ``"false"`` would turn it
    on (``ws_per_message_deflate`` takes the words its flag takes, ``"true"``/``"false"``, ...);
    ``TypeError`` for an option that is no setting, and for ``reload`` or ``http2`` given
    anything but True or False. A start that
    fails (the app cannot be imported, the port is taken, a file a setting names cannot be used,
    the lifespan startup failed) is said in one line on stderr and ends the process with exit
    code 3, ``SystemExit(3)``, as the command line ends and as ``uvicorn.run`` exits.
    Called from a thread other than the main one, it serves without signal handlers (Python
    runs them in the main thread only) until the process ends, as ``uvicorn.run`` does there;
    ``workers`` > 1, ``limit_max_requests`` and ``reload=True``, which need them, are then a
    ``RuntimeError``.
    """
    from fastserve.cli import command_line, main, serve_logged
    from fastserve.config import switch
    from fastserve.server.logs import AS_THE_PROGRAM_SET_IT

    if "log_config" in options and options["log_config"] is None:
        options["log_config"] = dict(AS_THE_PROGRAM_SET_IT)  # uvicorn.run's: configure no logging
    # uvicorn.run's keywords default to None where fastserve has a default of its own (workers,
    # ssl_keyfile, limit_max_requests, ...): a keyword given None is one not given.
    options = {name: value for name, value in options.items() if value is not None}
    level = options.get("log_level")
    if isinstance(level, int) and not isinstance(level, bool):  # uvicorn.run(log_level=logging.DEBUG)
        options["log_level"] = logging.getLevelName(level).lower()
    if switch("reload", options.pop("reload", False)):
        if not isinstance(app, str):
            raise TypeError("run(reload=True) needs the app as an import string ('module:app') or a directory")
        from fastserve.server.worker import handles_signals

        if not handles_signals():
            raise RuntimeError("run(reload=True) must be called from the main thread: the reloader is told of "
                               "stops by signals")
        _checked_config(app, dict(options))  # refused here as without reload=True, not as a usage error
        for plural in _RELOAD_LISTS:
            values = options.pop(plural, None)
            if values:
                options[plural[:-1]] = [values] if isinstance(values, str) else values
        with _log_config_as_file(options):
            code = main(command_line(app, options) + ["--reload"])
    else:
        code = serve_logged(_checked_config(app, options))
    if code:
        raise SystemExit(code)
    return 0


def _checked_config(app: Any, options: Dict[str, Any]) -> "Config":
    """The ``Config`` that ``run(app, **options)`` serves with; raises ``ValueError`` or
    ``TypeError`` as ``run`` says. Takes the ``uvicorn.run``-only keywords out of ``options``."""
    from fastserve.cli import FALSE_WORDS, TRUE_WORDS
    from fastserve.config import UVICORN_NAMES, Config, switch

    _take_uvicorn_only_options(options)
    if isinstance(options.get("ws_per_message_deflate"), str):  # as --ws-per-message-deflate takes it
        options["ws_per_message_deflate"] = switch("ws_per_message_deflate", options["ws_per_message_deflate"].lower(),
                                                   {**dict.fromkeys(TRUE_WORDS, True), **dict.fromkeys(FALSE_WORDS, False)})
    config = Config(target=app, **{UVICORN_NAMES.get(name, name): value for name, value in options.items()})
    problems = config.problems()
    if problems:
        raise ValueError("; ".join(problems))
    return config


@contextmanager
def _log_config_as_file(options: Dict[str, Any]) -> Iterator[None]:
    """For ``run(reload=True)``, whose server is started from a command line: a ``log_config``
    dict goes to it as a JSON file for the reloader's run (``ValueError`` if it is no JSON)."""
    config = options.get("log_config")
    if not isinstance(config, dict):
        yield
        return
    try:
        text = json.dumps(config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"log_config: with reload=True the dict must be JSON ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="fastserve-") as folder:
        path = os.path.join(folder, "log_config.json")
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
        options["log_config"] = path
        yield
