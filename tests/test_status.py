"""fastserve.status (starlette.status's names and values; old names warn), and exceptions carrying a status."""

from __future__ import annotations

import importlib
import warnings

import pytest
import starlette.exceptions
import starlette.status

from fastserve import status
from fastserve.exceptions import FastServeDeprecationWarning, HTTPException, WebSocketException

RENAMED = {
    "HTTP_413_REQUEST_ENTITY_TOO_LARGE": "HTTP_413_CONTENT_TOO_LARGE",
    "HTTP_414_REQUEST_URI_TOO_LONG": "HTTP_414_URI_TOO_LONG",
    "HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE": "HTTP_416_RANGE_NOT_SATISFIABLE",
    "HTTP_422_UNPROCESSABLE_ENTITY": "HTTP_422_UNPROCESSABLE_CONTENT",
}


@pytest.mark.parametrize("name", starlette.status.__all__)
def test_every_starlette_name_has_the_same_value(name: str) -> None:
    assert getattr(status, name) == getattr(starlette.status, name)


def test_all_lists_exactly_the_current_names() -> None:
    assert sorted(status.__all__) == sorted(starlette.status.__all__)
    assert len(set(status.__all__)) == len(status.__all__)


def test_names_carry_their_value() -> None:
    # HTTP_404_NOT_FOUND == 404, WS_1008_POLICY_VIOLATION == 1008, for every name.
    for name in status.__all__:
        assert getattr(status, name) == int(name.split("_")[1])


def test_current_names_from_the_brief() -> None:
    assert status.HTTP_413_CONTENT_TOO_LARGE == 413
    assert status.HTTP_414_URI_TOO_LONG == 414
    assert status.HTTP_416_RANGE_NOT_SATISFIABLE == 416
    assert status.HTTP_418_IM_A_TEAPOT == 418
    assert status.HTTP_421_MISDIRECTED_REQUEST == 421
    assert status.HTTP_422_UNPROCESSABLE_CONTENT == 422
    assert status.HTTP_425_TOO_EARLY == 425
    assert status.WS_1000_NORMAL_CLOSURE == 1000
    assert status.WS_1015_TLS_HANDSHAKE == 1015


def test_starlette_deprecated_names_are_all_covered() -> None:
    assert set(RENAMED) == set(starlette.status.__deprecated__)


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED.items()))
def test_old_name_warns_and_names_the_replacement(old: str, new: str) -> None:
    with pytest.warns(DeprecationWarning, match=new) as record:
        value = getattr(status, old)
    assert value == getattr(status, new)
    assert record[0].category is FastServeDeprecationWarning
    assert old in str(record[0].message)
    # The warning points at the line that used the old name, not at fastserve.
    assert record[0].filename == __file__


def test_from_import_of_old_name_warns() -> None:
    with pytest.warns(DeprecationWarning, match="HTTP_422_UNPROCESSABLE_CONTENT"):
        from fastserve.status import HTTP_422_UNPROCESSABLE_ENTITY
    assert HTTP_422_UNPROCESSABLE_ENTITY == 422


def test_current_names_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert status.HTTP_422_UNPROCESSABLE_CONTENT == 422


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="HTTP_999_NOPE"):
        status.HTTP_999_NOPE  # noqa: B018
    assert not hasattr(status, "HTTP_422_NOT_A_NAME")


def test_star_import_brings_every_current_name_and_no_old_one() -> None:
    namespace: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec("from fastserve.status import *", namespace)
    imported = {name for name in namespace if name != "__builtins__"}
    assert imported == set(starlette.status.__all__)
    assert namespace["HTTP_404_NOT_FOUND"] == 404


def test_dir_lists_old_names_too() -> None:
    listing = dir(importlib.import_module("fastserve.status"))
    assert "HTTP_422_UNPROCESSABLE_ENTITY" in listing
    assert "HTTP_200_OK" in listing


# --------------------------------------------------------------------------- exceptions carrying a status

@pytest.mark.parametrize("code", [200, 301, 400, 404, 418, 422, 429, 500, 599, 799])
def test_http_exception_detail_defaults_to_the_reason_phrase(code: int) -> None:
    ours = HTTPException(code)
    theirs = starlette.exceptions.HTTPException(code)
    assert ours.detail == theirs.detail
    assert str(ours) == str(theirs)
    assert repr(ours) == repr(theirs)


def test_http_exception_keeps_detail_and_headers() -> None:
    exc = HTTPException(status.HTTP_404_NOT_FOUND, detail="no such item", headers={"x-why": "gone"})
    assert exc.status_code == 404
    assert exc.detail == "no such item"
    assert exc.headers == {"x-why": "gone"}
    assert str(exc) == "404: no such item"
    assert repr(exc) == "HTTPException(status_code=404, detail='no such item')"
    assert HTTPException(404).detail == "Not Found"
    assert HTTPException(404).headers is None
    assert HTTPException(404, detail="").detail == ""


def test_http_exception_subclass_repr_uses_its_name() -> None:
    class NotAllowed(HTTPException):
        pass

    assert repr(NotAllowed(405)) == "NotAllowed(status_code=405, detail='Method Not Allowed')"


def test_websocket_exception_matches_starlette() -> None:
    for args in [(1008,), (1008, "bad token"), (1011, None)]:
        ours = WebSocketException(*args)
        theirs = starlette.exceptions.WebSocketException(*args)
        assert (ours.code, ours.reason, str(ours), repr(ours)) == (
            theirs.code,
            theirs.reason,
            str(theirs),
            repr(theirs),
        )
    assert WebSocketException(status.WS_1008_POLICY_VIOLATION).reason == ""
