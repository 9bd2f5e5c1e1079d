"""Logging for the server: fastserve's own loggers, ``--log-level`` and ``--log-config``.

fastserve logs to two loggers and never touches the root logger:

* ``fastserve`` (and its children such as ``fastserve.websocket``): startup, shutdown, errors
  raised by apps, worker restarts; written to stderr;
* ``fastserve.access``: one line per request; written to stdout.

Both stop propagating, so an app's own root-logger setup neither duplicates nor swallows them.
``--log-config FILE`` replaces this default with the user's ``logging.config`` file (JSON or
YAML holding a dictConfig, anything else read as an INI ``fileConfig``); ``--log-level`` then
still sets the level of fastserve's loggers when it is given.
"""
from __future__ import annotations

import json
import logging
import logging.config
import os
from typing import Any, Dict, Optional

TRACE = 5  # below DEBUG: per-connection and ASGI message detail
LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
LOGGER_NAMES = ("fastserve", "fastserve.access")

logging.addLevelName(TRACE, "TRACE")


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
        },
    }


def configure_logging(level: Optional[str] = None, config_file: Optional[str] = None) -> None:
    """Set up fastserve's loggers; ``level`` is one of ``LEVELS`` (None: ``info`` or the file's).

    Raises ``LogConfigError`` for a missing, unreadable or invalid ``config_file``.
    """
    if config_file is None:
        logging.config.dictConfig(default_config(level or "info"))
        return
    _apply_file(config_file)
    if level is not None:
        for name in LOGGER_NAMES:
            logging.getLogger(name).setLevel(level_number(level))


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
                logging.config.dictConfig(json.load(file))
        elif extension in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise LogConfigError(
                    "a YAML --log-config needs PyYAML: pip install 'fastserve[yaml]'"
                ) from None
            with open(path, encoding="utf-8") as file:
                logging.config.dictConfig(yaml.safe_load(file))
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except LogConfigError:
        raise
    except Exception as exc:  # json, yaml, configparser and dictConfig each raise their own
        raise LogConfigError(f"log config file {path!r}: {exc}") from None


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
