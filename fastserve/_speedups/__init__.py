"""Cython hot paths: path lookup + file cache, header parsing, conditional checks, the protocol."""
import os
from importlib.machinery import EXTENSION_SUFFIXES


class ExtensionsNotBuilt(ImportError):
    """fastserve's compiled modules are missing: the package was used from an unbuilt checkout."""


def _check_built() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if not any(name.endswith(suffix) for name in os.listdir(here) for suffix in EXTENSION_SUFFIXES):
        raise ExtensionsNotBuilt(
            f"fastserve's compiled extensions are not built in {here}: run `pip install .` "
            "(or `pip install -e .` to work on fastserve) in the repository root"
        )


_check_built()
