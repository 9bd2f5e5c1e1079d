"""A checkout whose extensions were never compiled: use the installed build, or say so in one line.

``pip install . && python -m fastserve .`` typed in a fresh clone runs the clone's ``fastserve``
(``python -m`` puts the current directory first on ``sys.path``) while the compiled modules are
in the copy pip installed. These tests build such a checkout (the Python sources without any
compiled module) and run interpreters with ``-S``, so only the paths named here are searched.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastserve

BUILT_PACKAGE = Path(fastserve.__path__[0]).resolve()


@pytest.fixture
def unbuilt_checkout(tmp_path: Path) -> Path:
    """A directory holding a copy of the ``fastserve`` package with no compiled modules."""
    shutil.copytree(
        BUILT_PACKAGE, tmp_path / "fastserve",
        ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "__pycache__"),
    )
    return tmp_path


def run_python(cwd: Path, python_path: list, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in python_path)}
    return subprocess.run(
        [sys.executable, "-S", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_unbuilt_checkout_alone_says_how_to_build_in_one_line(unbuilt_checkout: Path) -> None:
    result = run_python(unbuilt_checkout, [], "-m", "fastserve", ".")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fastserve: ") and "pip install ." in lines[0]
    assert "Traceback" not in result.stderr


def test_library_import_from_unbuilt_checkout_raises_a_named_import_error(unbuilt_checkout: Path) -> None:
    result = run_python(
        unbuilt_checkout, [],
        "-c",
        "import fastserve._speedups",
    )
    assert result.returncode == 1
    assert "ExtensionsNotBuilt" in result.stderr and "pip install ." in result.stderr


def test_unbuilt_checkout_first_on_path_uses_the_built_copy_behind_it(unbuilt_checkout: Path) -> None:
    # As after `pip install .`: the checkout comes first (python -m adds the cwd), the build after.
    code = (
        "import fastserve, fastserve._speedups.headers as h, fastserve.cli as c;"
        "print(fastserve.__path__[0]); print(h.__file__); print(c.__file__)"
    )
    result = run_python(unbuilt_checkout, [unbuilt_checkout, BUILT_PACKAGE.parent], "-c", code)
    assert result.returncode == 0, result.stderr
    package_dir, extension, cli_module = result.stdout.split()
    assert Path(package_dir).resolve() == BUILT_PACKAGE
    # Python and compiled modules alike come from the one built copy.
    assert Path(extension).resolve().parent == BUILT_PACKAGE / "_speedups"
    assert Path(cli_module).resolve().parent == BUILT_PACKAGE


def test_built_checkout_is_used_as_it_is() -> None:
    result = run_python(BUILT_PACKAGE.parent, [BUILT_PACKAGE.parent], "-c", "import fastserve; print(fastserve.__path__[0])")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == BUILT_PACKAGE
