"""Every public callable of the drop-in modules takes Starlette's arguments in Starlette's order.

Swapping ``from starlette.X import Y`` (or FastAPI's re-export of it) for ``from fastserve.X import Y``
must be enough, so each public function, class constructor and public method that Starlette defines
must accept the same call: the same parameter names, in the same order, of the same kinds, with
the same defaults. fastserve may add parameters only after Starlette's, keyword-only and with a
default (``StaticFiles(precompressed=...)``), so no call written for Starlette lands elsewhere.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator

import pytest

pytest.importorskip("starlette")

MODULES = [
    "background",
    "concurrency",
    "datastructures",
    "exceptions",
    "requests",
    "responses",
    "routing",
    "staticfiles",
    "status",
    "templating",
    "testclient",
    "websockets",
]

# Where fastserve deliberately takes more than Starlette 1.10 does, with the reason.
WIDER = {
    # Also the deprecated ``TemplateResponse(name, {"request": request}, ...)`` style, with its warning.
    "templating.Jinja2Templates.TemplateResponse",
    # httpx's keywords are passed through; a ``timeout`` is warned about (README).
    "testclient.TestClient.request",
}


# Public names Starlette 1.10 defines that fastserve does not offer, with the reason.
NOT_OFFERED = {
    # Starlette's FileResponse raises and catches these inside its own range parsing; fastserve's
    # reads Range in ``responses.starlette_range`` and never raises them.
    "responses.MalformedRangeHeader",
    "responses.RangeNotSatisfiable",
    # Starlette's helper that frames multipart/byteranges; fastserve's FileResponse frames them
    # in ``headers.byteranges_layout``, so a replacement would change nothing.
    "responses.FileResponse.generate_multipart",
}


def _defined_by_starlette() -> Iterator[str]:
    """Every public class and function Starlette defines in the drop-in modules, and every
    public method those classes define, as ``module.Name`` or ``module.Name.method``."""
    for module in MODULES:
        theirs = importlib.import_module("starlette." + module)
        for name in sorted(vars(theirs)):
            their_obj = getattr(theirs, name)
            if name.startswith("_") or not (inspect.isclass(their_obj) or inspect.isfunction(their_obj)):
                continue
            if inspect.getmodule(their_obj) is not theirs:
                continue
            yield f"{module}.{name}"
            if inspect.isclass(their_obj):
                for attr in sorted(vars(their_obj)):
                    if not attr.startswith("_") and inspect.isfunction(inspect.getattr_static(their_obj, attr)):
                        yield f"{module}.{name}.{attr}"


@pytest.mark.parametrize("name", [name for name in _defined_by_starlette() if name not in NOT_OFFERED])
def test_every_public_name_starlette_defines_is_there(name: str) -> None:
    module, *path = name.split(".")
    obj: object = importlib.import_module("fastserve." + module)
    for part in path:
        assert hasattr(obj, part), f"fastserve.{name} is missing"
        obj = getattr(obj, part)


def _public_callables(module: str) -> Iterator[tuple[str, Callable, Callable]]:
    theirs = importlib.import_module("starlette." + module)
    ours = importlib.import_module("fastserve." + module)
    for name in sorted(vars(theirs)):
        their_obj = getattr(theirs, name)
        if name.startswith("_") or not getattr(their_obj, "__module__", "").startswith("starlette."):
            continue
        if not (inspect.isclass(their_obj) or inspect.isfunction(their_obj)):
            continue
        if not hasattr(ours, name) or inspect.getmodule(their_obj) is not theirs:
            continue  # names Starlette only imports; the test of exported names covers those
        our_obj = getattr(ours, name)
        if our_obj is their_obj:
            continue
        if inspect.isfunction(their_obj):
            yield f"{module}.{name}", their_obj, our_obj
            continue
        for attr in sorted(vars(their_obj)):
            if attr.startswith("_") and attr not in ("__init__", "__call__"):
                continue
            their_attr = inspect.getattr_static(their_obj, attr)
            if not inspect.isfunction(their_attr):
                continue
            our_attr = getattr(our_obj, attr, None)
            if our_attr is None or getattr(their_obj, attr) is our_attr:
                continue
            yield f"{module}.{name}.{attr}", getattr(their_obj, attr), our_attr


def _shape(function: Callable) -> list[tuple[str, inspect._ParameterKind, object]]:
    """Each parameter's name, kind and default; a default that is an object of its own (a
    sentinel) only needs to be there, so it reads as ``"object"``."""
    plain = (int, float, str, bool, tuple, type(None))
    return [
        (p.name, p.kind, p.default if p.default is p.empty or type(p.default) in plain else "object")
        for p in inspect.signature(function).parameters.values()
    ]


CASES = [case for module in MODULES for case in _public_callables(module)]


def test_the_comparison_sees_the_drop_in_classes() -> None:
    names = {name for name, _, _ in CASES}
    for expected in (
        "responses.FileResponse.__init__",
        "staticfiles.StaticFiles.__init__",
        "templating.Jinja2Templates.__init__",
        "testclient.TestClient.__init__",
        "testclient.TestClient.websocket_connect",
        "datastructures.UploadFile.__init__",
        "websockets.WebSocket.accept",
    ):
        assert expected in names


@pytest.mark.parametrize(("name", "theirs", "ours"), CASES, ids=[name for name, _, _ in CASES])
def test_a_call_written_for_starlette_means_the_same(name: str, theirs: Callable, ours: Callable) -> None:
    their_shape, our_shape = _shape(theirs), _shape(ours)
    if name in WIDER:
        kinds = {kind for _, kind, _ in our_shape}
        assert inspect.Parameter.VAR_KEYWORD in kinds
        return
    assert our_shape[: len(their_shape)] == their_shape
    for extra_name, kind, default in our_shape[len(their_shape) :]:
        assert kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD), extra_name
        if kind is inspect.Parameter.KEYWORD_ONLY:
            assert default is not inspect.Parameter.empty, extra_name


def test_file_response_takes_the_disposition_type_eighth(tmp_path) -> None:
    from fastserve.responses import FileResponse
    from fastserve.staticfiles import FileResponse as ReExported

    assert ReExported is FileResponse
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF")
    response = FileResponse(path, 200, None, None, None, "report.pdf", None, "inline")
    assert response.headers["content-disposition"] == 'inline; filename="report.pdf"'
    with pytest.raises(TypeError):
        FileResponse(path, method="HEAD")  # type: ignore[call-arg]
