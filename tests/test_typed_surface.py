"""The typed surface: each compiled module's .pyi names only what the module has, and the
package says it is typed."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import fastserve

SPEEDUPS = Path(fastserve.__file__).parent / "_speedups"
STUBS = sorted(SPEEDUPS.glob("*.pyi"))


def test_package_is_marked_typed():
    assert (Path(fastserve.__file__).parent / "py.typed").is_file()


def test_every_compiled_module_python_imports_has_a_stub():
    python_sources = list(Path(fastserve.__file__).parent.rglob("*.py"))
    imported = set()
    for source in python_sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastserve._speedups."):
                imported.add(node.module.rsplit(".", 1)[1])
            elif isinstance(node, ast.ImportFrom) and node.module == "fastserve._speedups":
                imported.update(alias.name for alias in node.names)
    assert imported <= {stub.stem for stub in STUBS}


@pytest.mark.parametrize("stub", STUBS, ids=[stub.stem for stub in STUBS])
def test_stub_names_exist_in_the_module(stub: Path):
    module = importlib.import_module(f"fastserve._speedups.{stub.stem}")
    missing = []
    for node in ast.parse(stub.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            name = node.name
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name = node.target.id
        else:
            continue
        if not hasattr(module, name):
            missing.append(name)
            continue
        if isinstance(node, ast.ClassDef):
            cls = getattr(module, name)
            for item in node.body:
                member = item.name if isinstance(item, ast.FunctionDef) else (
                    item.target.id if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) else None
                )
                if member and member != "__init__" and not hasattr(cls, member):
                    missing.append(f"{name}.{member}")
    assert not missing, f"{stub.name} names what {module.__name__} lacks: {missing}"
