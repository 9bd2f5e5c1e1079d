"""Logging for the server: fastserve's own loggers, ``--log-level`` and ``--log-config``.

fastserve logs to two loggers and never touches the root logger:

* ``fastserve`` (and its children such as ``fastserve.websocket``): startup, shutdown, errors
  raised by apps, worker restarts; written to stderr;
* ``fastserve.access``: one line per request; written to stdout.

Both stop propagating, so an app's own root-logger setup neither duplicates nor swallows them.
By default ``uvicorn`` (and so ``uvicorn.error``) is given fastserve's stderr handler too, as
uvicorn gives it one: an app written for uvicorn that logs there is heard.
``--log-config FILE`` replaces this default with the user's ``logging.config`` file (JSON or
YAML holding a dictConfig, anything else read as an INI ``fileConfig``; loggers a file does not
name stay enabled unless it sets ``disable_existing_loggers``); ``--log-level`` then
still sets the level of fastserve's loggers when it is given. A file written for uvicorn, which
gives handlers to ``uvicorn.error`` and ``uvicorn.access`` and none to fastserve's loggers,
works as it did under uvicorn: fastserve's lines go to ``uvicorn.error``'s handlers, and access
lines to ``uvicorn.access`` as uvicorn logs them (``'%s - "%s %s HTTP/%s" %d'`` with the client
address, method, path and query, HTTP version and status as arguments, which uvicorn's
``AccessFormatter`` reads). Otherwise a file that gives fastserve's loggers no handler is warned
about: their lines would be dropped.
"""
from __future__ import annotations

import json
import logging
import logging.config
import os
from typing import Any, Dict, Optional, Union

from fastserve.config import CHOICES

TRACE = 5  # below DEBUG: ASGI calls and messages (fastserve.server.trace)
LEVELS = CHOICES["log_level"]
LOGGER_NAMES = ("fastserve", "fastserve.access")
UVICORN_LOGGERS = {"fastserve": "uvicorn.error", "fastserve.access": "uvicorn.access"}
access_to_uvicorn = False  # access lines go to uvicorn.access, in uvicorn's shape (see the module)

logging.addLevelName(TRACE, "TRACE")
# ``run(log_config=None)``, ``uvicorn.run``'s way to set up no logging: a dictConfig that changes
# nothing, so fastserve's loggers keep no handler of their own and their records reach the
# handlers the program set up (``_route_to_uvicorns_loggers``).
AS_THE_PROGRAM_SET_IT: Dict[str, Any] = {"version": 1, "incremental": True}


class LogConfigError(Exception):
    """The ``--log-config`` file cannot be read or applied; the message says why."""


def default_config(level: str) -> Dict[str, Any]:
    """The dictConfig fastserve applies when no ``--log-config`` file is given."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"},
            "access": {"format": "%(message)s"},
        },
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"},
            "access": {
                "class": "fastserve.server.access_log.AccessHandler", "formatter": "access", "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "fastserve": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "fastserve.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            # Apps written for uvicorn log to its loggers (logging.getLogger("uvicorn.error")):
            # their lines are shown as under uvicorn, which configures these by default.
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
        },
    }


def configure_logging(level: Optional[str] = None, config_file: Union[str, Dict[str, Any], None] = None) -> None:
    """Set up fastserve's loggers; ``level`` is one of ``LEVELS`` (None: ``info`` or the file's).
    ``config_file`` is a file's path, or a dictConfig dict (``fastserve.run(log_config=...)``).

    Raises ``LogConfigError`` for a missing, unreadable or invalid ``config_file``.
    """
    global access_to_uvicorn
    access_to_uvicorn = False  # access lines on fastserve.access, unless the config routes them
    if config_file is None:
        logging.config.dictConfig(default_config(level or "info"))
        return
    if isinstance(config_file, dict):
        try:
            _apply_dict(config_file)
        except Exception as exc:  # dictConfig's ValueError, TypeError, ...
            raise LogConfigError(f"log config: {exc}") from None
        _route_to_uvicorns_loggers("log_config=None" if config_file == AS_THE_PROGRAM_SET_IT else "log_config (a dict)")
    else:
        _apply_file(config_file)
        _route_to_uvicorns_loggers(f"--log-config {config_file}")
    if level is not None:
        for name in LOGGER_NAMES:
            logging.getLogger(name).setLevel(level_number(level))


class ToLogger(logging.Handler):
    """Hands each record to another logger, which logs it with its handlers (and its parents')."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.target = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.target.handle(record)


def _route_to_uvicorns_loggers(source: str) -> None:
    """After a ``--log-config`` file (or ``run()``'s dict), named by ``source`` in the warning:
    fastserve's loggers that it gives no handler log through uvicorn's (``UVICORN_LOGGERS``)
    when it configures those; else a warning says their lines would be dropped."""
    global access_to_uvicorn
    unheard = [name for name in LOGGER_NAMES if not logging.getLogger(name).hasHandlers()]
    for name in unheard:
        ours, theirs = logging.getLogger(name), logging.getLogger(UVICORN_LOGGERS[name])
        if not theirs.hasHandlers():
            logging.getLogger("fastserve").warning(
                "%s gives the %r logger no handler: its lines are dropped", source, name)
            continue
        ours.setLevel(theirs.getEffectiveLevel())
        ours.propagate = False
        if name == "fastserve.access":
            access_to_uvicorn = True  # AccessLog logs on uvicorn.access, in uvicorn's shape
        else:
            ours.addHandler(ToLogger(theirs.name))


def level_number(level: str) -> int:
    """``"trace"`` -> 5, ``"info"`` -> 20, ...; raises ``ValueError`` for other names."""
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (choose from {', '.join(LEVELS)})")
    return TRACE if level.lower() == "trace" else logging.getLevelName(level.upper())


def _apply_file(path: str) -> None:
    if not os.path.isfile(path):
        raise LogConfigError(f"log config file {path!r} does not exist")
    extension = os.path.splitext(path)[1].lower()
    try:
        if extension == ".json":
            with open(path, encoding="utf-8") as file:
                _apply_dict(json.load(file))
        elif extension in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise LogConfigError(
                    "a YAML --log-config needs PyYAML: pip install 'fastserve[yaml]'"
                ) from None
            with open(path, encoding="utf-8") as file:
                _apply_dict(yaml.safe_load(file))
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except LogConfigError:
        raise
    except Exception as exc:  # json, yaml, configparser and dictConfig each raise their own
        raise LogConfigError(f"log config file {path!r}: {exc}") from None


def _apply_dict(config: Any) -> None:
    """dictConfig, leaving the loggers the file does not name enabled unless it says otherwise
    (as fastserve reads INI files): by dictConfig's own default, fastserve's loggers and the
    app's, made before the file is read, would be silenced."""
    if isinstance(config, dict):
        config = {"disable_existing_loggers": False, **config}
    logging.config.dictConfig(config)


def reopen_log_files() -> int:
    """SIGUSR1 (as nginx's): close and reopen every file a ``logging.FileHandler`` writes (those
    a ``--log-config`` file set up), so that after logrotate moved a log away the next line goes
    to a new file at the configured path. Returns how many files were reopened."""
    loggers = [logging.getLogger(), *(item for item in logging.Logger.manager.loggerDict.values()
                                      if isinstance(item, logging.Logger))]
    handlers = {id(handler): handler for each in loggers for handler in each.handlers}
    reopened = 0
    for handler in handlers.values():
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                if handler.stream is not None:
                    handler.stream.close()
                handler.stream = handler._open()
                reopened += 1
            finally:
                handler.release()
    return reopened
