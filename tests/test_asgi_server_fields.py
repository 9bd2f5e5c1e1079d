"""The fields the server adds to an app's response (``Server``, ``Date``, ``--header``), through
the HTTP cycle's ``ServerFields``: the app's own field of the same name, in any case, wins and
each name is sent once (RFC 9110 §5.1, §6.6.1, §10.2.4)."""
from __future__ import annotations

from typing import List, Tuple

import pytest

EXTRA = [("X-Frame-Options", "DENY"), ("Strict-Transport-Security", "max-age=60")]


def app_sending(fields: List[Tuple[bytes, bytes]], body: bytes = b"hi", length: bool = True):
    async def app(scope, receive, send):
        headers = list(fields) + ([(b"content-length", b"%d" % len(body))] if length else [])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def test_an_app_setting_none_of_them_gets_all_of_them_once(serve) -> None:
    client = serve(app_sending([(b"content-type", b"text/plain")]), headers=EXTRA).open()
    for _ in range(3):  # later responses reuse the fields kept for this Date
        response = client.request("GET", "/")
        assert response.status == 200 and response.body == b"hi"
        assert response.header("server") == "fastserve"
        assert response.header("date") is not None
        assert response.header("x-frame-options") == "DENY"
        assert response.header("strict-transport-security") == "max-age=60"
        assert response.header("transfer-encoding") is None


@pytest.mark.parametrize("name", [b"Server", b"SERVER", b"server"])
def test_the_apps_server_field_wins_in_any_case(serve, name: bytes) -> None:
    response = serve(app_sending([(name, b"app/1")]), headers=EXTRA).open().request("GET", "/")
    assert response.header("server") == "app/1"
    assert response.header("date") is not None
    assert response.header("x-frame-options") == "DENY"


def test_the_apps_date_and_header_fields_win(serve) -> None:
    fields = [(b"DATE", b"Thu, 01 Jan 1970 00:00:00 GMT"), (b"x-Frame-OPTIONS", b"SAMEORIGIN")]
    response = serve(app_sending(fields), headers=EXTRA).open().request("GET", "/")
    assert response.header("date") == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert response.header("x-frame-options") == "SAMEORIGIN"
    assert response.header("strict-transport-security") == "max-age=60"
    assert response.header("server") == "fastserve"


def test_a_chunked_response_does_not_leave_its_framing_to_the_next(serve) -> None:
    chunked = serve(app_sending([], length=False)).open()
    first = chunked.request("GET", "/")
    assert first.header("transfer-encoding") == "chunked" and first.body == b"hi"
    second = chunked.request("GET", "/")
    assert second.header("transfer-encoding") == "chunked" and second.header("server") == "fastserve"
    assert len(second.header_values("date")) == 1


def test_no_server_and_no_date(serve) -> None:
    response = serve(app_sending([]), server_header=False, date_header=False).open().request("GET", "/")
    assert response.status == 200
    assert response.header("server") is None and response.header("date") is None


@pytest.mark.parametrize("field", [("x-name", "a str"), (b"x-value", "a str"), (b"x bad", b"v"),
                                   (b"x-a", b"v\r\nInjected: 1"), (b"Content-Length", b"two"),
                                   (b"Content-Length", b"3")])
def test_fields_refused_in_the_start_message_are_answered_500(serve, field) -> None:
    # Nothing was sent when the start message is refused, so the client gets a whole 500
    # (framed by its own Content-Length), not an empty close; the refused field goes nowhere.
    client = serve(app_sending([field])).open()  # app_sending adds content-length: 2
    response = client.request("GET", "/")
    assert response.status == 500 and response.body == b"Internal Server Error"
    assert response.header("content-length") == "21" and response.header("transfer-encoding") is None
    assert b"Injected" not in bytes(client.transport.data) and b"a str" not in bytes(client.transport.data)


@pytest.mark.parametrize("length", [True, False])
def test_the_apps_transfer_encoding_is_dropped_the_server_frames_the_body(serve, length: bool) -> None:
    # With its own Content-Length the body goes out as is: an app's "chunked" beside it would
    # make the client read those bytes as chunks (RFC 9112 §6.3) and lose the next response.
    # Without one the server chunks it, naming chunked once.
    client = serve(app_sending([(b"Transfer-Encoding", b"chunked")], body=b"hello", length=length)).open()
    for _ in range(2):
        response = client.request("GET", "/")
        assert response.status == 200 and response.body == b"hello"
        assert response.header_values("transfer-encoding") == ([] if length else ["chunked"])


def test_the_apps_content_length_given_twice_alike_is_sent_once(serve) -> None:
    client = serve(app_sending([(b"Content-Length", b"2")])).open()
    for _ in range(2):
        response = client.request("GET", "/")
        assert response.status == 200 and response.body == b"hi"
        assert response.header_values("content-length") == ["2"]


def test_a_304_gets_none_of_the_operators_representation_metadata(serve) -> None:
    """``--header Content-Type`` (an API's default), ``Content-Language`` or ``Content-Encoding``
    went out on an app's 304 too, whose fields a cache puts in place of the ones it stored (RFC
    9111 section 4.3.4): the stored file relabelled. A 304 gets none of them (RFC 9110 section
    15.4.5); its other fields and every other answer still do."""
    defaults = [("Content-Type", "application/json"), ("Content-Language", "en"), ("Content-Encoding", "br")]

    async def app(scope, receive, send):
        status = 304 if scope["path"] == "/same" else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"etag", b'"v1"')]})
        await send({"type": "http.response.body", "body": b"" if status == 304 else b"{}"})

    client = serve(app, headers=EXTRA + defaults).open()
    for _ in range(2):  # the second time from the fields kept for this Date
        same = client.request("GET", "/same")
        assert same.status == 304 and same.header("etag") == '"v1"'
        assert [same.header(name) for name, _ in defaults] == [None, None, None]
        assert same.header("x-frame-options") == "DENY"
        fresh = client.request("GET", "/")
        assert [fresh.header(name) for name, _ in defaults] == [value for _, value in defaults]
