"""Turn a ``Config.target`` into an ASGI app: a directory, ``"module:attr"``, or an app."""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from fastserve.config import Config


class AppLoadError(Exception):
    """The target names nothing that can be served; the message says why."""


def load_app(config: Config) -> Any:
    target = config.target
    if not isinstance(target, str):
        return target
    if os.path.isdir(target):
        from fastserve.staticfiles import StaticFiles

        return StaticFiles(
            directory=target,
            html=config.html,
            follow_symlink=config.follow_symlink,
            precompressed=config.precompressed,
        )
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise AppLoadError(f"{target!r} is neither a directory nor a 'module:attribute' app.")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise AppLoadError(f"Could not import module {module_name!r}.") from None
    app: Any = module
    for name in attribute.split("."):
        try:
            app = getattr(app, name)
        except AttributeError:
            raise AppLoadError(f"Attribute {attribute!r} not found in module {module_name!r}.") from None
    return app
