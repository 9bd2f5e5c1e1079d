"""An HTTP exchange's ``send`` and scope as an app meets them (in-process connection).

``send`` does its work in the call and returns an awaitable that is already complete, unless
it must wait for the client; whatever an app does with it that it could do with a coroutine
(await it, wrap it in a task, time it out) behaves the same. The scope is made when the app's
turn comes, from what the connection knew when the request arrived.
"""
from __future__ import annotations

import asyncio
import contextvars
import os
import sys
from typing import Any, Dict, List

import pytest

from inprocess import request


def test_send_can_be_awaited_wrapped_in_a_task_or_timed_out(serve) -> None:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        started = send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await asyncio.create_task(started)
        await asyncio.wait_for(send({"type": "http.response.body", "body": b"ab", "more_body": True}), 1)
        await asyncio.ensure_future(send({"type": "http.response.body", "body": b"cd"}))

    response = serve(app).open().request("GET", "/")
    assert response.status == 200 and response.body == b"abcd"


def test_what_send_refuses_is_raised_where_the_app_awaits_it(serve) -> None:
    seen: List[str] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            await send({"type": "http.response.body", "body": b"early"})
        except RuntimeError as exc:
            seen.append(str(exc))
        await send({"type": "http.response.start", "status": 204})
        try:
            await send({"type": "http.response.start", "status": 204})
        except RuntimeError as exc:
            seen.append(str(exc))
        await send({"type": "http.response.body"})

    response = serve(app).open().request("GET", "/")
    assert response.status == 204
    assert seen == ["http.response.body sent before http.response.start", "http.response.start sent twice"]


def test_a_paused_client_makes_send_wait_until_it_reads(serve) -> None:
    resumed: List[bool] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        resumed.append(True)
        await send({"type": "http.response.body", "body": b"cd"})

    server = serve(app)
    client = server.open()
    client.conn.pause_writing()  # the transport's buffer is over its high-water mark
    client.send(request("GET", "/"))
    assert resumed == [] and client.parsed() == []
    client.conn.resume_writing()
    server.settle()
    assert resumed == [True] and client.parsed()[0].body == b"abcd"


def test_the_scope_keeps_the_client_address_when_the_client_leaves_before_the_app_runs(serve) -> None:
    scopes: List[Dict[str, Any]] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        scopes.append(scope)
        scopes.append(await receive())

    server = serve(app)
    client = server.open()
    client.conn.data_received(request("GET", "/x"))  # the app's turn comes at the loop's next pass
    client.conn.connection_lost(None)
    server.settle()
    scope, message = scopes
    assert (scope["path"], scope["client"], scope["server"]) == ("/x", ("127.0.0.1", 40000), ("127.0.0.1", 8000))
    assert message == {"type": "http.disconnect"}


def app_declaring(*lengths: Any):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        fields = [(b"content-length", length) for length in lengths]
        await send({"type": "http.response.start", "status": 200, "headers": fields})
        await send({"type": "http.response.body", "body": b"four"})

    return app


@pytest.mark.parametrize("length", [
    b"4", b" 4\t", b"0000000000000000000004", b"\x0b4\x0c",
])
def test_an_apps_content_length_may_have_whitespace_around_its_digits(serve, length) -> None:
    response = serve(app_declaring(length)).open().request("GET", "/")
    assert response.status == 200 and response.body == b"four"
    assert [int(value) for value in response.header_values("content-length")] == [4]


@pytest.mark.parametrize("lengths", [
    (b"",), (b" ",), (b"x4",), (b"4x",), (b"4 4",), (b"-4",), (b"+4",), (b"4.0",), (b"\xd9\xa4",), (b"4", b"5"),
])
def test_an_apps_content_length_that_is_not_one_number_is_answered_500(serve, lengths) -> None:
    response = serve(app_declaring(*lengths)).open().request("GET", "/")
    assert response.status == 500


def test_the_same_content_length_twice_is_sent_once(serve) -> None:
    response = serve(app_declaring(b"4", b" 4")).open().request("GET", "/")
    assert response.status == 200 and response.header_values("content-length") == ["4"]


def test_each_exchange_runs_as_a_task_of_its_own_in_a_context_of_its_own(serve) -> None:
    """Also when the connection reads inside a running loop, where Python 3.12+ starts an
    exchange eagerly: the app still sees its own task, and a context variable it sets stays
    with its request."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: List[Any] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        task = asyncio.current_task()
        seen.append((isinstance(task, asyncio.Task), task.get_name(), var.get()))
        var.set(scope["path"])
        if scope["path"] == "/wait":
            await asyncio.sleep(0)
        body = var.get().encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    server = serve(app)
    client = server.open()
    written_at_once: List[bool] = []

    async def read_in_the_loop() -> None:
        client.conn.data_received(request("GET", "/a") + request("GET", "/wait") + request("GET", "/b"))
        written_at_once.append(bool(client.transport.data))
        while len(client.parsed()) < 3:
            await asyncio.sleep(0)

    server.loop.run_until_complete(read_in_the_loop())
    assert [response.body for response in client.parsed()] == [b"/a", b"/wait", b"/b"]
    assert seen == [(True, "fastserve-http", "unset")] * 3
    # Where tasks can start eagerly, an app that never waits is answered before data_received
    # returns, for a request read whole (a GET the scanner read; httptools reports a message's
    # end only after its head, so that exchange starts at the loop's next pass).
    assert written_at_once == [sys.version_info >= (3, 12) and server.state.scan_heads]


def test_options_asterisk_reaches_the_app_with_the_path_asterisk(serve) -> None:
    """``OPTIONS *`` (RFC 9112 §3.2.4, asked of the server as a whole; some balancers probe with
    it) is a valid request: the app gets it with the path ``*``, as under uvicorn, instead of a
    400 from the server. Only OPTIONS has an asterisk-form."""
    seen: List[Any] = []

    async def app(scope, receive, send):
        seen.append((scope["method"], scope["path"], scope["raw_path"], scope["query_string"]))
        await send({"type": "http.response.start", "status": 204, "headers": [(b"allow", b"GET, OPTIONS")]})
        await send({"type": "http.response.body", "body": b""})

    client = serve(app).open()
    response = client.request("OPTIONS", "*")
    assert response.status == 204 and response.header_values("allow") == ["GET, OPTIONS"]
    assert seen == [("OPTIONS", "*", b"*", b"")]
    assert serve(app).open().request("GET", "*").status == 400
    assert len(seen) == 1


@pytest.mark.parametrize("pieces", [[b"abc"], [b"ab", b"c"], []])
def test_after_the_last_body_message_receive_waits_for_the_disconnect(serve, pieces) -> None:
    """ASGI: once a message said ``more_body: False`` the next ``receive`` gives
    ``http.disconnect`` when the client leaves or the response is done; a body that arrived
    whole was followed by a second, empty ``http.request``."""
    seen: List[Any] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        message = await receive()
        while message["more_body"]:
            message = await receive()
        waiting = asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        seen.append(waiting.done())  # nothing more may come before the client leaves
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        seen.append((await waiting)["type"])

    client = serve(app).open()
    head = request("POST", "/", [("Transfer-Encoding", "chunked")])
    client.send(head + b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n")
    assert client.parsed()[0].status == 204
    assert seen == [False, "http.disconnect"]
    assert client.request("POST", "/", body=b"whole").status == 204
    assert seen == [False, "http.disconnect"] * 2


def test_a_clients_fin_tells_an_app_waiting_on_receive_that_it_left(serve) -> None:
    """An app that polls for the client (Starlette's ``request.is_disconnected()`` in a long
    poll, a job it stops when nobody waits) hears ``http.disconnect`` once the client sends its
    FIN, as under uvicorn; its answer is still written, for a client that only half-closed."""
    heard: List[str] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        heard.append(message["type"])
        heard.append((await receive())["type"])  # nothing more comes until the client leaves
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"late"})

    client = serve(app).open()
    client.send(request("POST", "/", body=b"abc"))
    assert heard == ["http.request"] and not client.transport.data
    client.eof()
    assert heard == ["http.request", "http.disconnect"]
    (response,) = client.parsed()
    assert response.status == 200 and response.body == b"late"
    assert client.closed


def test_a_fin_does_not_cut_a_body_the_app_reads_or_a_response_it_streams(serve) -> None:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body, more = body + message["body"], message["more_body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (body, b"-", body):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})

    client = serve(app).open()
    client.send(request("POST", "/", body=b"abc"))
    client.eof()
    (response,) = client.parsed()
    assert response.status == 200 and response.body == b"abc-abc"


def app_saying_connection(value: bytes):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2"), (b"Connection", value)]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@pytest.mark.parametrize("value", [b"close", b"Close", b"keep-alive, close", b" CLOSE "])
def test_an_apps_connection_close_ends_the_connection_after_its_response(serve, value) -> None:
    """A response that says ``Connection: close`` is the last on its connection (RFC 9112
    §9.6), as under uvicorn: the server closed nothing and answered the next request."""
    client = serve(app_saying_connection(value)).open()
    client.send(request("GET", "/") + request("GET", "/again"))
    (response,) = client.parsed()
    assert response.status == 200 and response.header_values("connection") == ["close"]
    assert client.closed


def test_an_apps_other_connection_options_leave_keep_alive_to_the_server(serve) -> None:
    client = serve(app_saying_connection(b"keep-alive")).open()
    first, second = client.send(request("GET", "/") + request("GET", "/again")).parsed()
    assert first.header_values("connection") == [] and second.status == 200
    assert not client.closed
    http10 = serve(app_saying_connection(b"keep-alive")).open()
    http10.send(request("GET", "/", version="HTTP/1.0"))
    # An HTTP/1.0 request without keep-alive closes; the one field says so, not the app's.
    assert http10.parsed()[0].header_values("connection") == ["close"] and http10.closed


def test_an_app_failing_between_its_start_and_its_first_body_message_is_answered_500(serve) -> None:
    """The head waits for the first body message, so nothing of the app's answer has left when
    it fails there (a streaming response whose iterator raises at once): the client gets a
    whole 500, and the connection closes after it, where uvicorn has sent the app's 200 head and
    then closes mid-body (README: "The server, beside uvicorn")."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        raise RuntimeError("the stream's first item failed")

    client = serve(app).open()
    response = client.request("GET", "/")
    assert (response.status, response.body) == (500, b"Internal Server Error")
    assert response.header("connection") == "close" and client.closed


def app_starting(status: Any):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


@pytest.mark.parametrize("status", [0, 99, 600, 999, 1000, -200, 2 ** 70, "200", 200.0, None])
def test_a_status_that_is_no_final_status_code_is_answered_500(serve, status, caplog) -> None:
    """RFC 9110 section 15: a status code is 100..599, and http.response.start's is a final one
    (200..599; the 1xx are held in tests/test_bad_input_bounded.py). A 600 or 999 went out as
    the app gave it, with an empty reason phrase; a client may read it as its class's x00 or drop
    the connection (uvicorn drops it). The app gets its 500, and the log says why."""
    client = serve(app_starting(status)).open()
    response = client.request("GET", "/")
    assert (response.status, response.body) == (500, b"Internal Server Error")
    assert client.closed
    assert "http.response.start" in caplog.text


def test_a_final_status_may_be_an_int_subclass(serve) -> None:
    from http import HTTPStatus

    response = serve(app_starting(HTTPStatus.ACCEPTED)).open().request("GET", "/")
    assert (response.status, response.body) == (202, b"ok")
    assert serve(app_starting(599)).open().request("GET", "/").status == 599


def app_sending_buffers(kind: Any, size: int, declared: bool):
    """Sends two pieces of ``size`` bytes each as ``kind`` (a bytearray or a memoryview of one),
    filling the same buffer again for the second once the first send returned."""
    async def app(scope, receive, send):
        headers = [(b"content-length", b"%d" % (2 * size))] if declared else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        buffer = bytearray(b"A" * size)
        await send({"type": "http.response.body", "body": kind(buffer), "more_body": True})
        buffer[:] = b"B" * size
        await send({"type": "http.response.body", "body": kind(buffer)})
    return app


@pytest.mark.parametrize("kind", [bytearray, memoryview])
@pytest.mark.parametrize("size", [10, 70_000, 1 << 20])  # under and over the 64 KiB the socket is asked to take
@pytest.mark.parametrize("declared", [True, False])
def test_a_body_piece_may_be_a_bytearray_or_a_memoryview(serve, kind, size, declared) -> None:
    """send() took them (the ASGI spec names bytes; uvicorn writes any buffer) and then failed:
    a bytearray after the first piece of a declared length raised TypeError at the write, and a
    piece over 64 KiB left the response hanging with no byte of it sent and nothing logged."""
    client = serve(app_sending_buffers(kind, size, declared)).open()
    response = client.request("GET", "/")
    assert response.status == 200 and response.body == b"A" * size + b"B" * size
    assert not client.closed


def test_a_memoryview_body_counts_its_bytes_not_its_items(serve) -> None:
    import array

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"8")]})
        await send({"type": "http.response.body", "body": memoryview(array.array("i", [1, 2]))})

    response = serve(app).open().request("GET", "/")
    assert response.status == 200 and response.body == array.array("i", [1, 2]).tobytes()


def app_zerocopysending(path: Any, **slice_: Any):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        with open(path, "rb") as file:
            await send({"type": "http.response.zerocopysend", "file": file, **slice_})
    return app


@pytest.mark.parametrize("slice_", [
    {"offset": 1000, "count": 10},   # starts past the end
    {"offset": 95, "count": 10},     # ends past it
    {"offset": -5, "count": 10},
    {"offset": 0, "count": -1},
    {"offset": 101},                 # to the end, from past it
    {"offset": "0", "count": 10},
    {"offset": 0, "count": 10.0},
])
def test_a_zerocopysend_slice_the_file_does_not_hold_is_answered_500(serve, tmp_path, caplog, slice_) -> None:
    """Each was framed (a chunk of the count, or a Content-Length) and cut off where sendfile
    found no byte: a response broken off, the connection dropped, nothing logged. Refused before
    the head is framed, the app gets its 500 and the log says why."""
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(100)))
    client = serve(app_zerocopysending(path, **slice_), pathsend=True).open()
    response = client.request("GET", "/")
    assert (response.status, response.body) == (500, b"Internal Server Error")
    assert "http.response.zerocopysend" in caplog.text


@pytest.mark.parametrize("slice_, body", [
    ({"offset": 90, "count": 10}, bytes(range(90, 100))),  # up to the last byte
    ({"offset": 100}, b""),                                 # from the end: nothing
    ({"offset": 100, "count": 0}, b""),
    ({}, bytes(range(100))),
])
def test_a_zerocopysend_slice_within_the_file_is_sent(serve, tmp_path, slice_, body) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(100)))
    client = serve(app_zerocopysending(path, **slice_), pathsend=True).open()
    response = client.request("GET", "/")
    assert (response.status, response.body) == (200, body)
    assert not client.closed


def test_zerocopysend_of_what_is_no_regular_file_is_answered_500(serve, caplog) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"piped")
    os.close(write_end)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        with os.fdopen(read_end, "rb") as pipe:
            await send({"type": "http.response.zerocopysend", "file": pipe, "offset": 0, "count": 5})

    response = serve(app, pathsend=True).open().request("GET", "/")
    assert (response.status, response.body) == (500, b"Internal Server Error")
    assert "not a regular file" in caplog.text
