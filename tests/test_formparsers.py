"""fastserve.formparsers: urlencoded and multipart bodies, and every way a client can get them wrong."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi import Request as FastAPIRequest
from starlette.testclient import TestClient

from fastserve.datastructures import FormData, Headers, UploadFile
from fastserve.formparsers import FormParser, MultiPartException, MultiPartParser, parse_content_type
from fastserve.requests import Request
from fastserve.responses import JSONResponse
from fastserve.routing import Route, Router

pytestmark = pytest.mark.anyio

BOUNDARY = "----fastserve-boundary"


def part(name: str, value: bytes, *, filename: str | None = None, content_type: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"\r\n" + value + b"\r\n"


def multipart(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


async def summarise(request: Request) -> JSONResponse:
    """Echo a form: text fields as strings, files as {filename, content_type, size, content}."""
    form = await request.form(max_files=2, max_fields=4, max_part_size=1024)
    items: list[Any] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            content = (await value.read()).decode("latin-1")
            items.append([key, {"filename": value.filename, "type": value.content_type, "size": value.size, "content": content}])
        else:
            items.append([key, value])
    return JSONResponse(items)


@pytest.fixture
def client() -> TestClient:
    return TestClient(Router([Route("/form", summarise, methods=["POST"])]))


def post(client: TestClient, body: bytes, content_type: str = MULTIPART_TYPE) -> Any:
    return client.post("/form", content=body, headers={"content-type": content_type})


async def stream_of(*chunks: bytes) -> AsyncGenerator[bytes, None]:
    for chunk in chunks:
        yield chunk
    yield b""


# --------------------------------------------------------------------------- content type


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("multipart/form-data; boundary=abc", ("multipart/form-data", {"boundary": "abc"})),
        ('Multipart/Form-Data; boundary="a b"; charset=utf-8', ("multipart/form-data", {"boundary": "a b", "charset": "utf-8"})),
        ("application/x-www-form-urlencoded", ("application/x-www-form-urlencoded", {})),
        ("", ("", {})),
    ],
)
def test_parse_content_type(value: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_content_type(value) == expected


# --------------------------------------------------------------------------- urlencoded


def test_urlencoded_fields_keep_order_and_repeats(client: TestClient) -> None:
    response = post(client, b"b=2&a=1&b=3", "application/x-www-form-urlencoded")
    assert response.json() == [["b", "2"], ["a", "1"], ["b", "3"]]


def test_urlencoded_decoding(client: TestClient) -> None:
    body = "name=J%C3%BCrgen+M&sym=%26%3D%2B&empty=&é=raw".encode()
    response = post(client, body, "application/x-www-form-urlencoded")
    assert response.json() == [["name", "Jürgen M"], ["sym", "&=+"], ["empty", ""], ["é", "raw"]]


@pytest.mark.parametrize(
    ("body", "pair"),
    [
        (b"v=caf%E9", ["v", "caf\ufffd"]),
        (b"v=%C3%A9%E9", ["v", "\u00e9\ufffd"]),  # the valid sequence is kept, not read as latin-1
        (b"v=%C3", ["v", "\ufffd"]),
        (b"v=%FF%FEx", ["v", "\ufffd\ufffdx"]),
        (b"%E9=1", ["\ufffd", "1"]),
    ],
)
def test_urlencoded_bytes_that_are_not_utf8_are_replacement_characters(
    client: TestClient, body: bytes, pair: list[str]
) -> None:
    # The WHATWG URL standard's urlencoded parsing, and what Starlette's parser answers: the value
    # was read as latin-1 whole when any byte of it was not UTF-8, so "é" and an odd byte became
    # "Ã©é".
    response = post(client, body, "application/x-www-form-urlencoded")
    assert response.json() == [pair]


@pytest.mark.parametrize(
    "body",
    [b"v=caf%E9", b"v=%C3%A9%E9&w=%C3%BC", b"a+b=c+d&e=%2B%26", b"v=%zz", b"v=%F0%9F%98%80&v=%F0%9F", b"=1&a&b="],
)
async def test_an_escaped_urlencoded_body_reads_as_starlettes_parser_reads_it(body: bytes) -> None:
    from starlette.requests import Request as TheirRequest

    async def parsed(request_class: Any) -> list[tuple[str, Any]]:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        headers = [(b"content-type", b"application/x-www-form-urlencoded")]
        scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
        return (await request_class(scope, receive).form()).multi_items()

    assert await parsed(Request) == await parsed(TheirRequest)


def test_urlencoded_too_many_fields_is_400(client: TestClient) -> None:
    response = post(client, b"a=1&b=2&c=3&d=4&e=5", "application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert response.text == "Too many fields. Maximum number of fields is 4."


def test_urlencoded_field_over_the_size_limit_is_400(client: TestClient) -> None:
    response = post(client, b"a=" + b"x" * 2000, "application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert response.text == "Field exceeded maximum size of 1KB."


async def test_form_parser_used_directly() -> None:
    parser = FormParser(Headers(), stream_of(b"a=1&", b"b=", b"2"))
    assert await parser.parse() == FormData([("a", "1"), ("b", "2")])


@pytest.mark.parametrize("pieces, expected", [
    ([b"&" * 3_000_000 + b"a=1"], [("a", "1")]),
    ([b"a=1" + b"&" * 70_000, b"&" * 70_000 + b"b=2&&"], [("a", "1"), ("b", "2")]),  # a run across chunks
    ([b"&&a=1&&&&b=&&&c&&"], [("a", "1"), ("b", ""), ("c", "")]),
    ([b"a=%26%26&b=&&"], [("a", "&&"), ("b", "")]),                                # escaped: a value
])
async def test_runs_of_empty_pairs_cost_the_parser_one_separator(monkeypatch: pytest.MonkeyPatch,
                                                                 pieces: list, expected: list) -> None:
    """python-multipart skips empty pairs ('&&') one byte at a time in Python, logging each: a
    body of 10 MB of '&' held the event loop for 3 s, yet reached no field limit. A run of
    separators now reaches it as one; the fields are the same."""
    import python_multipart

    fed = []
    write = python_multipart.QuerystringParser.write

    def counting_write(self: Any, data: bytes) -> int:
        fed.append(len(data))
        return write(self, data)

    monkeypatch.setattr(python_multipart.QuerystringParser, "write", counting_write)
    parser = FormParser(Headers(), stream_of(*pieces), max_fields=3)
    assert await parser.parse() == FormData(expected)
    assert sum(fed) < 1000


# --------------------------------------------------------------------------- multipart: good input


def test_multipart_fields_and_files(client: TestClient) -> None:
    body = multipart(
        part("title", b"Report"),
        part("doc", b"%PDF-1.4 ...", filename="report.pdf", content_type="application/pdf"),
        part("notes", b""),
        part("empty", b"", filename="empty.txt"),
    )
    assert post(client, body).json() == [
        ["title", "Report"],
        ["doc", {"filename": "report.pdf", "type": "application/pdf", "size": 12, "content": "%PDF-1.4 ..."}],
        ["notes", ""],
        ["empty", {"filename": "empty.txt", "type": None, "size": 0, "content": ""}],
    ]


def test_multipart_file_content_is_binary_safe(client: TestClient) -> None:
    payload = bytes(range(256)) + b"\r\n--not-the-boundary\r\n"
    response = post(client, multipart(part("blob", payload, filename="b.bin")))
    assert response.json()[0][1]["content"].encode("latin-1") == payload


def test_multipart_from_a_real_client(client: TestClient) -> None:
    response = client.post("/form", data={"a": "1"}, files={"f": ("f.txt", b"abc", "text/plain")})
    assert response.json() == [["a", "1"], ["f", {"filename": "f.txt", "type": "text/plain", "size": 3, "content": "abc"}]]


def test_multipart_charset_parameter_decodes_names_and_values(client: TestClient) -> None:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="café"\r\n\r\n'.encode("latin-1")
    body = head + "né".encode("latin-1") + f"\r\n--{BOUNDARY}--\r\n".encode()
    response = post(client, body, MULTIPART_TYPE + "; charset=latin-1")
    assert response.json() == [["café", "né"]]


def test_multipart_text_that_is_not_valid_in_its_charset_falls_back_to_latin1(client: TestClient) -> None:
    response = post(client, multipart(part("v", b"caf\xe9")))
    assert response.json() == [["v", "café"]]


def test_multipart_quoted_boundary(client: TestClient) -> None:
    response = post(client, multipart(part("a", b"1")), f'multipart/form-data; boundary="{BOUNDARY}"')
    assert response.json() == [["a", "1"]]


def test_multipart_empty_body_is_an_empty_form(client: TestClient) -> None:
    assert post(client, b"").json() == []


async def test_multipart_headers_of_a_file_part_are_kept() -> None:
    body = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="f"; filename="a.txt"\r\n'
        "Content-Type: text/plain\r\n"
        "X-Custom: yes\r\n\r\n"
        "data\r\n"
        f"--{BOUNDARY}--\r\n"
    ).encode()
    form = await MultiPartParser(Headers({"content-type": MULTIPART_TYPE}), stream_of(body)).parse()
    upload = form["f"]
    assert isinstance(upload, UploadFile)
    assert upload.headers["x-custom"] == "yes"
    assert upload.content_type == "text/plain"


async def test_multipart_is_fed_chunk_by_chunk() -> None:
    body = multipart(part("a", b"alpha"), part("f", b"0123456789" * 10, filename="f.txt"))
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)]
    form = await MultiPartParser(Headers({"content-type": MULTIPART_TYPE}), stream_of(*chunks)).parse()
    assert form["a"] == "alpha"
    assert await form["f"].read() == b"0123456789" * 10  # type: ignore[union-attr]


async def test_large_uploads_spool_to_disk() -> None:
    big = b"x" * (MultiPartParser.spool_max_size + 1)
    body = multipart(part("small", b"tiny", filename="s.txt"), part("big", big, filename="b.bin"))
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    form = await MultiPartParser(Headers({"content-type": MULTIPART_TYPE}), stream_of(*chunks)).parse()
    small, large = form["small"], form["big"]
    assert isinstance(small, UploadFile) and isinstance(large, UploadFile)
    assert not small.file._rolled  # type: ignore[attr-defined]
    assert large.file._rolled  # type: ignore[attr-defined]
    assert large.size == len(big)
    assert await large.read() == big
    await form.close()
    assert large.file.closed and small.file.closed


async def test_file_parts_are_not_bound_by_max_part_size() -> None:
    body = multipart(part("f", b"y" * 5000, filename="f.txt"))
    parser = MultiPartParser(Headers({"content-type": MULTIPART_TYPE}), stream_of(body), max_part_size=100)
    form = await parser.parse()
    assert form["f"].size == 5000  # type: ignore[union-attr]


# --------------------------------------------------------------------------- multipart: bad input -> 400


def test_too_many_files_is_400(client: TestClient) -> None:
    body = multipart(*(part(f"f{i}", b"x", filename=f"{i}.txt") for i in range(3)))
    response = post(client, body)
    assert response.status_code == 400
    assert response.text == "Too many files. Maximum number of files is 2."


def test_too_many_fields_is_400(client: TestClient) -> None:
    response = post(client, multipart(*(part(f"k{i}", b"v") for i in range(5))))
    assert response.status_code == 400
    assert response.text == "Too many fields. Maximum number of fields is 4."


def test_files_and_fields_are_counted_separately(client: TestClient) -> None:
    fields = [part(name, b"v") for name in "abcd"]
    body = multipart(*fields, part("f", b"x", filename="f"), part("g", b"y", filename="g"))
    assert post(client, body).status_code == 200


def test_a_huge_part_is_400(client: TestClient) -> None:
    response = post(client, multipart(part("essay", b"z" * 1025)))
    assert response.status_code == 400
    assert response.text == "Part exceeded maximum size of 1KB."


def test_huge_part_headers_are_400(client: TestClient) -> None:
    # Several header lines, each of a reasonable length, adding up to more than a part may carry.
    padding = b"".join(b"X-Padding-%d: %s\r\n" % (i, b"p" * 4000) for i in range(5))
    body = f"--{BOUNDARY}\r\n".encode() + padding + b'Content-Disposition: form-data; name="a"\r\n\r\n1\r\n'
    response = post(client, body + f"--{BOUNDARY}--\r\n".encode())
    assert response.status_code == 400
    assert response.text == "Part headers exceeded maximum size of 16KB."


def test_one_enormous_header_line_is_400(client: TestClient) -> None:
    line = b"X-Padding: " + b"p" * 100_000 + b"\r\n"
    body = f"--{BOUNDARY}\r\n".encode() + line + b'Content-Disposition: form-data; name="a"\r\n\r\n1\r\n'
    response = post(client, body + f"--{BOUNDARY}--\r\n".encode())
    assert response.status_code == 400


@pytest.mark.parametrize("content_type", ["multipart/form-data", 'multipart/form-data; boundary=""', "multipart/form-data; charset=utf-8"])
def test_missing_boundary_is_400(client: TestClient, content_type: str) -> None:
    response = post(client, multipart(part("a", b"1")), content_type)
    assert response.status_code == 400
    assert response.text == "Missing boundary in multipart."


def test_a_boundary_longer_than_the_parser_takes_is_400(client: TestClient) -> None:
    # RFC 2046 section 5.1.1 allows 70 characters; python-multipart refuses more than 256 when
    # the parser is built, which was outside the parse's error handling (a 500).
    boundary = "b" * 300
    body = multipart(part("a", b"1")).replace(BOUNDARY.encode(), boundary.encode())
    response = post(client, body, f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 400
    assert response.text == "Invalid multipart data."  # Starlette's answer to it


TRUNCATION_BODY = multipart(part("a", b"one"), part("b", b"two"), part("f", b"file", filename="f.txt"))


@pytest.mark.parametrize(
    "length",
    [
        pytest.param(TRUNCATION_BODY.index(b"two") + 1, id="inside-a-value"),
        pytest.param(TRUNCATION_BODY.index(b"Content-Disposition") + 10, id="inside-headers"),
        pytest.param(TRUNCATION_BODY.index(b"file"), id="at-the-start-of-a-file"),
        pytest.param(len(TRUNCATION_BODY) - 6, id="inside-the-closing-boundary"),
    ],
)
def test_truncated_body_is_400(client: TestClient, length: int) -> None:
    response = post(client, TRUNCATION_BODY[:length])
    assert response.status_code == 400
    assert response.text == "Incomplete multipart body: the closing boundary is missing."


def test_closing_boundary_without_final_crlf_is_complete(client: TestClient) -> None:
    assert post(client, TRUNCATION_BODY[:-2]).status_code == 200


def test_truncated_body_missing_the_closing_boundary_is_400(client: TestClient) -> None:
    # Every part is complete, but the body stops where "--boundary--" should be.
    body = part("a", b"one") + part("b", b"two")
    response = post(client, body)
    assert response.status_code == 400
    assert response.text == "Incomplete multipart body: the closing boundary is missing."


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(b"Content-Disposition: form-data\r\n", id="no-name"),
        pytest.param(b'Content-Disposition: form-data; filename="a.txt"\r\n', id="filename-but-no-name"),
        pytest.param(b"Content-Type: text/plain\r\n", id="no-content-disposition"),
        pytest.param(b"", id="no-headers-at-all"),
    ],
)
def test_content_disposition_without_a_name_is_400(client: TestClient, headers: bytes) -> None:
    body = f"--{BOUNDARY}\r\n".encode() + headers + b"\r\nvalue\r\n" + f"--{BOUNDARY}--\r\n".encode()
    response = post(client, body)
    assert response.status_code == 400
    assert response.text == 'The Content-Disposition header field "name" must be provided.'


def test_malformed_header_line_is_400(client: TestClient) -> None:
    body = f"--{BOUNDARY}\r\n".encode() + b'Content-Disposition form-data; name="a"\r\n\r\n1\r\n' + f"--{BOUNDARY}--\r\n".encode()
    response = post(client, body)
    assert response.status_code == 400
    assert response.text == "Invalid multipart data."


def test_body_that_does_not_start_with_the_boundary_is_400(client: TestClient) -> None:
    response = post(client, b"this is not multipart at all")
    assert response.status_code == 400
    assert response.text == "Invalid multipart data."


async def test_parser_used_directly_raises_multipart_exception() -> None:
    parser = MultiPartParser(Headers({"content-type": "multipart/form-data"}), stream_of(b""))
    with pytest.raises(MultiPartException) as caught:
        await parser.parse()
    assert caught.value.message == "Missing boundary in multipart."


async def test_a_limit_stops_reading_the_body_early() -> None:
    pulled = 0

    async def endless_fields() -> AsyncGenerator[bytes, None]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield part(f"k{i}", b"v")

    parser = MultiPartParser(Headers({"content-type": MULTIPART_TYPE}), endless_fields(), max_fields=5)
    with pytest.raises(MultiPartException, match="Too many fields"):
        await parser.parse()
    assert pulled == 6


async def test_spooled_files_are_closed_when_parsing_fails() -> None:
    body = part("f", b"data", filename="f.txt") + part("g", b"more", filename="g.txt") + part("h", b"x", filename="h.txt")
    parser = MultiPartParser(Headers({"content-type": MULTIPART_TYPE}), stream_of(body), max_files=2)
    with pytest.raises(MultiPartException, match="Too many files"):
        await parser.parse()
    uploads = [value for _, value in parser.items]
    assert len(uploads) == 2
    assert all(isinstance(upload, UploadFile) and upload.file.closed for upload in uploads)


# --------------------------------------------------------------------------- FastAPI interop


def test_fastapi_endpoint_reading_a_fastserve_form() -> None:
    app = FastAPI()

    @app.post("/upload")
    async def upload(request: FastAPIRequest) -> dict[str, Any]:
        async with Request(request.scope, request.receive).form() as form:
            document = form["document"]
            assert isinstance(document, UploadFile)
            return {
                "title": form["title"],
                "filename": document.filename,
                "content_type": document.content_type,
                "size": document.size,
                "content": (await document.read()).decode(),
            }

    client = TestClient(app)
    response = client.post("/upload", data={"title": "T"}, files={"document": ("d.md", b"# Doc", "text/markdown")})
    assert response.json() == {"title": "T", "filename": "d.md", "content_type": "text/markdown", "size": 5, "content": "# Doc"}
