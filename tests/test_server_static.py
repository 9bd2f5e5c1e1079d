"""``python -m fastserve DIR`` as users run it: files, validators, conditionals, ranges, HTTP/1.1."""
from __future__ import annotations

import email.utils
import os
import time
from typing import List, Tuple
from urllib.parse import quote

import pytest

from server_helpers import (
    INDEX_HTML,
    NOT_FOUND_HTML,
    UNICODE_NAME,
    DocRoot,
    RawConnection,
    ServerProcess,
    build_docroot,
    build_request,
    fetch,
    parse_byteranges,
)

TEXT_PLAIN = "text/plain; charset=utf-8"
TEXT_HTML = "text/html; charset=utf-8"


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def last_modified_of(path: os.PathLike) -> str:
    return http_date(os.stat(path).st_mtime)


@pytest.fixture(scope="module")
def etags(http_client) -> dict:
    """Current ETag of each file the tests make conditional requests for."""
    return {name: http_client.head(name).headers["etag"]
            for name in ("/small.txt", "/medium.bin", "/large.bin")}


# -- plain GET -------------------------------------------------------------------------------


def test_text_file_is_served_with_type_length_and_validators(http_client, docroot: DocRoot) -> None:
    response = http_client.get("/small.txt")
    assert response.status_code == 200
    assert response.content == docroot.small
    assert response.headers["content-type"] == TEXT_PLAIN
    assert response.headers["content-length"] == str(len(docroot.small))
    assert response.headers["last-modified"] == last_modified_of(docroot.path("small.txt"))
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2, f"not a strong ETag: {etag!r}"


def test_every_response_has_date_and_server(server: ServerProcess) -> None:
    for target in ["/small.txt", "/large.bin", "/missing", "/dir"]:
        response = fetch(server.port, target)
        assert email.utils.parsedate_to_datetime(response.header("date")) is not None
        assert response.header("server") == "fastserve"


def test_absolute_form_request_target_is_accepted(server: ServerProcess, docroot: DocRoot) -> None:
    # HTTP/1.1 servers must accept "GET http://host/path" (what proxies send).
    response = fetch(server.port, f"http://127.0.0.1:{server.port}/small.txt")
    assert (response.status, response.body) == (200, docroot.small)


def test_html_file_has_html_content_type(http_client) -> None:
    response = http_client.get("/page.html")
    assert response.status_code == 200
    assert response.headers["content-type"] == TEXT_HTML
    assert response.content == b"<!doctype html><p>a page</p>\n"


def test_etag_is_stable_and_differs_between_files(http_client) -> None:
    first = http_client.get("/small.txt").headers["etag"]
    assert http_client.get("/small.txt").headers["etag"] == first
    assert http_client.get("/medium.bin").headers["etag"] != first


def test_binary_file_of_64_kib_is_identical(http_client, docroot: DocRoot) -> None:
    response = http_client.get("/medium.bin")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(64 * 1024)
    assert response.content == docroot.medium


def test_five_mib_file_is_identical_byte_for_byte(http_client, docroot: DocRoot) -> None:
    response = http_client.get("/large.bin")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(docroot.large))
    assert response.headers["last-modified"] == last_modified_of(docroot.path("large.bin"))
    assert response.content == docroot.large


def test_five_mib_file_over_a_raw_socket_then_the_connection_is_reused(server: ServerProcess,
                                                                        docroot: DocRoot) -> None:
    with RawConnection(server.port) as conn:
        big = conn.exchange("GET", "/large.bin")
        assert big.status == 200
        assert big.body == docroot.large
        small = conn.exchange("GET", "/small.txt")
        assert (small.status, small.body) == (200, docroot.small)


# -- HEAD ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["/small.txt", "/medium.bin", "/large.bin", "/dir/"])
def test_head_has_the_get_headers_and_no_body(server: ServerProcess, name: str) -> None:
    with RawConnection(server.port) as conn:
        get = conn.exchange("GET", name)
        head = conn.exchange("HEAD", name)
        # the next request on the same connection must not see stray body bytes
        after = conn.exchange("GET", "/small.txt")
    assert head.status == get.status == 200
    without_date = lambda r: [(k, v) for k, v in r.headers if k != "date"]  # noqa: E731
    assert without_date(head) == without_date(get)
    assert int(head.header("content-length")) == len(get.body)
    assert after.status == 200 and after.body.startswith(b"Hello from fastserve.")


def test_head_of_a_missing_file_is_404_without_body(server: ServerProcess) -> None:
    with RawConnection(server.port) as conn:
        head = conn.exchange("HEAD", "/no-such-file.txt")
        after = conn.exchange("GET", "/small.txt")
    assert head.status == 404
    assert int(head.header("content-length")) == len(NOT_FOUND_HTML)
    assert after.status == 200


# -- conditional requests --------------------------------------------------------------------


def assert_not_modified(response, etag: str) -> None:
    assert response.status_code == 304, response.text
    assert response.content == b""
    assert response.headers["etag"] == etag


@pytest.mark.parametrize("name", ["/small.txt", "/large.bin"])
def test_if_none_match_exact_gives_304(http_client, etags: dict, name: str) -> None:
    assert_not_modified(http_client.get(name, headers={"If-None-Match": etags[name]}), etags[name])


def test_if_none_match_list_gives_304(http_client, etags: dict) -> None:
    etag = etags["/small.txt"]
    value = f'"something-else", {etag}, "another"'
    assert_not_modified(http_client.get("/small.txt", headers={"If-None-Match": value}), etag)


def test_if_none_match_star_gives_304(http_client, etags: dict) -> None:
    assert_not_modified(http_client.get("/small.txt", headers={"If-None-Match": "*"}), etags["/small.txt"])


def test_if_none_match_weak_form_gives_304(http_client, etags: dict) -> None:
    etag = etags["/small.txt"]
    assert_not_modified(http_client.get("/small.txt", headers={"If-None-Match": "W/" + etag}), etag)


def test_if_none_match_other_tag_gives_200(http_client, docroot: DocRoot) -> None:
    response = http_client.get("/small.txt", headers={"If-None-Match": '"not-our-tag"'})
    assert response.status_code == 200
    assert response.content == docroot.small


def test_head_with_matching_if_none_match_gives_304(http_client, etags: dict) -> None:
    response = http_client.head("/small.txt", headers={"If-None-Match": etags["/small.txt"]})
    assert response.status_code == 304


def test_if_modified_since_last_modified_gives_304(http_client, docroot: DocRoot, etags: dict) -> None:
    since = last_modified_of(docroot.path("small.txt"))
    assert_not_modified(http_client.get("/small.txt", headers={"If-Modified-Since": since}), etags["/small.txt"])


def test_if_modified_since_before_mtime_gives_200(http_client, docroot: DocRoot) -> None:
    since = http_date(os.stat(docroot.path("small.txt")).st_mtime - 3600)
    response = http_client.get("/small.txt", headers={"If-Modified-Since": since})
    assert response.status_code == 200
    assert response.content == docroot.small


def test_if_none_match_mismatch_wins_over_if_modified_since(http_client, docroot: DocRoot) -> None:
    since = last_modified_of(docroot.path("small.txt"))
    response = http_client.get("/small.txt", headers={"If-None-Match": '"other"', "If-Modified-Since": since})
    assert response.status_code == 200


def test_if_match_mismatch_gives_412(http_client) -> None:
    response = http_client.get("/small.txt", headers={"If-Match": '"not-our-tag"'})
    assert response.status_code == 412
    assert response.content != b"" and b"Hello" not in response.content


def test_if_match_star_passes(http_client, docroot: DocRoot) -> None:
    response = http_client.get("/small.txt", headers={"If-Match": "*"})
    assert response.status_code == 200
    assert response.content == docroot.small


def test_if_match_exact_passes(http_client, docroot: DocRoot, etags: dict) -> None:
    response = http_client.get("/small.txt", headers={"If-Match": etags["/small.txt"]})
    assert response.status_code == 200
    assert response.content == docroot.small


def test_if_unmodified_since_in_the_past_gives_412(http_client) -> None:
    response = http_client.get("/small.txt", headers={"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"})
    assert response.status_code == 412


def test_if_unmodified_since_now_passes(http_client, docroot: DocRoot) -> None:
    response = http_client.get("/small.txt", headers={"If-Unmodified-Since": http_date(time.time() + 60)})
    assert response.status_code == 200
    assert response.content == docroot.small


# -- ranges ----------------------------------------------------------------------------------


def assert_partial(response, data: bytes, first: int, last: int) -> None:
    assert response.status_code == 206, response.headers
    assert response.headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
    assert response.headers["content-length"] == str(last - first + 1)
    assert response.content == data[first:last + 1]


@pytest.mark.parametrize("name, attr", [("/small.txt", "small"), ("/large.bin", "large")])
def test_single_range_gives_206(http_client, docroot: DocRoot, name: str, attr: str) -> None:
    data = getattr(docroot, attr)
    response = http_client.get(name, headers={"Range": "bytes=5-20"})
    assert_partial(response, data, 5, 20)


def test_suffix_range_gives_the_last_bytes(http_client, docroot: DocRoot) -> None:
    size = len(docroot.small)
    assert_partial(http_client.get("/small.txt", headers={"Range": "bytes=-7"}), docroot.small, size - 7, size - 1)


def test_open_ended_range_runs_to_the_end(http_client, docroot: DocRoot) -> None:
    size = len(docroot.small)
    assert_partial(http_client.get("/small.txt", headers={"Range": "bytes=10-"}), docroot.small, 10, size - 1)


def test_range_past_the_end_is_clamped(http_client, docroot: DocRoot) -> None:
    size = len(docroot.small)
    assert_partial(http_client.get("/small.txt", headers={"Range": "bytes=3-99999"}), docroot.small, 3, size - 1)


def check_byteranges(response, data: bytes, expected: List[Tuple[int, int]]) -> None:
    assert response.status_code == 206, response.headers
    assert response.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert response.headers["content-length"] == str(len(response.content))
    boundary = response.headers["content-type"].split("boundary=", 1)[1].strip('"').encode()
    parts = parse_byteranges(response.content, boundary)
    assert [part.headers["content-range"] for part in parts] == [
        f"bytes {first}-{last}/{len(data)}" for first, last in expected
    ]
    for part, (first, last) in zip(parts, expected):
        assert part.data == data[first:last + 1]


def test_multiple_ranges_give_multipart_byteranges(http_client, docroot: DocRoot) -> None:
    data = docroot.medium
    response = http_client.get("/medium.bin", headers={"Range": "bytes=0-99,1000-1999,-50"})
    check_byteranges(response, data, [(0, 99), (1000, 1999), (len(data) - 50, len(data) - 1)])
    boundary = response.headers["content-type"].split("boundary=", 1)[1]
    for part in parse_byteranges(response.content, boundary.encode()):
        assert part.headers["content-type"] == "application/octet-stream"


def test_multiple_ranges_over_the_five_mib_file(http_client, docroot: DocRoot) -> None:
    data = docroot.large
    size = len(data)
    response = http_client.get("/large.bin", headers={"Range": "bytes=0-9,1048576-3145727,-100000"})
    check_byteranges(response, data, [(0, 9), (1048576, 3145727), (size - 100000, size - 1)])


def test_large_single_range_over_the_five_mib_file(http_client, docroot: DocRoot) -> None:
    data = docroot.large
    assert_partial(http_client.get("/large.bin", headers={"Range": "bytes=1000000-4999999"}), data, 1000000, 4999999)


def test_suffix_and_open_ranges_over_the_five_mib_file(http_client, docroot: DocRoot) -> None:
    data = docroot.large
    size = len(data)
    assert_partial(http_client.get("/large.bin", headers={"Range": "bytes=-65537"}), data, size - 65537, size - 1)
    assert_partial(http_client.get("/large.bin", headers={"Range": "bytes=5000000-"}), data, 5000000, size - 1)


@pytest.mark.parametrize("value", ["bytes=5-2", "items=0-3", "bytes=abc", "bytes 0-3", "bytes=0-3;x"])
def test_invalid_range_is_ignored(http_client, docroot: DocRoot, value: str) -> None:
    response = http_client.get("/small.txt", headers={"Range": value})
    assert response.status_code == 200
    assert response.content == docroot.small


def test_zero_length_suffix_range_is_unsatisfiable(http_client, docroot: DocRoot) -> None:
    response = http_client.get("/small.txt", headers={"Range": "bytes=-0"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(docroot.small)}"


def test_overlapping_ranges_are_merged(http_client, docroot: DocRoot) -> None:
    response = http_client.get("/small.txt", headers={"Range": "bytes=10-20,0-4,15-30"})
    check_byteranges(response, docroot.small, [(0, 4), (10, 30)])


@pytest.mark.parametrize("name", ["/small.txt", "/large.bin"])
def test_unsatisfiable_range_gives_416_with_size(http_client, docroot: DocRoot, name: str) -> None:
    size = os.stat(docroot.path(name.lstrip("/"))).st_size
    response = http_client.get(name, headers={"Range": f"bytes={size + 10}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"


def test_if_range_with_current_etag_honours_the_range(http_client, docroot: DocRoot, etags: dict) -> None:
    response = http_client.get("/small.txt", headers={"Range": "bytes=0-4", "If-Range": etags["/small.txt"]})
    assert_partial(response, docroot.small, 0, 4)


def test_if_range_with_last_modified_honours_the_range(http_client, docroot: DocRoot) -> None:
    date = last_modified_of(docroot.path("small.txt"))
    response = http_client.get("/small.txt", headers={"Range": "bytes=0-4", "If-Range": date})
    assert_partial(response, docroot.small, 0, 4)


@pytest.mark.parametrize("name, attr", [("/small.txt", "small"), ("/large.bin", "large")])
def test_if_range_with_old_etag_sends_the_whole_file(http_client, docroot: DocRoot, name: str, attr: str) -> None:
    response = http_client.get(name, headers={"Range": "bytes=0-4", "If-Range": '"an-old-tag"'})
    assert response.status_code == 200
    assert "content-range" not in response.headers
    assert response.content == getattr(docroot, attr)


def test_range_is_ignored_for_head(server: ServerProcess, docroot: DocRoot) -> None:
    with RawConnection(server.port) as conn:
        head = conn.exchange("HEAD", "/small.txt", [("Range", "bytes=0-4")])
        after = conn.exchange("GET", "/small.txt")
    assert head.status == 200
    assert head.header("content-length") == str(len(docroot.small))
    assert after.body == docroot.small


# -- directories, 404, methods, names ---------------------------------------------------------


def test_directory_without_slash_redirects(server: ServerProcess) -> None:
    response = fetch(server.port, "/dir")
    assert response.status == 307
    assert response.header("location") == "/dir/"


def test_directory_redirect_keeps_the_query(server: ServerProcess) -> None:
    response = fetch(server.port, "/dir?page=2&x=y")
    assert response.status == 307
    assert response.header("location") == "/dir/?page=2&x=y"


@pytest.mark.parametrize("target", [
    "//dir", "///dir", "//evil.example/dir", "///evil.example/dir", "/%2F%2Fevil.example/dir",
    "/%2fevil.example/dir", "/%5Cevil.example/dir", "/.//evil.example/dir", "//evil.example/dir?x=1",
])
def test_redirect_location_is_never_protocol_relative(server: ServerProcess, target: str) -> None:
    response = fetch(server.port, target)
    assert response.status in (307, 400, 404), response.status
    location = response.header("location")
    if response.status == 307:
        assert location is not None
        assert location.startswith("/") and not location.startswith("//"), location
        assert not location.startswith("/\\"), location
    else:
        assert location is None


def test_redirect_query_cannot_inject_headers(server: ServerProcess) -> None:
    response = fetch(server.port, "/dir?a=%0d%0aSet-Cookie:%20x=1")
    assert response.status == 307
    assert response.header("location") == "/dir/?a=%0d%0aSet-Cookie:%20x=1"
    assert response.header("set-cookie") is None


def test_double_slash_directory_redirects_to_the_local_path(server: ServerProcess) -> None:
    response = fetch(server.port, "//evil.example/dir")
    assert response.status == 307
    assert response.header("location") == "/evil.example/dir/"


def test_directory_with_slash_serves_index_html(http_client) -> None:
    response = http_client.get("/dir/")
    assert response.status_code == 200
    assert response.headers["content-type"] == TEXT_HTML
    assert response.content == INDEX_HTML


def test_nested_file_is_served(http_client) -> None:
    response = http_client.get("/nested/deeper/file.txt")
    assert (response.status_code, response.content) == (200, b"deep file\n")


def test_miss_serves_404_html_when_present(http_client) -> None:
    response = http_client.get("/no/such/file.txt")
    assert response.status_code == 404
    assert response.headers["content-type"] == TEXT_HTML
    assert response.content == NOT_FOUND_HTML


def test_if_none_match_star_on_a_missing_file_is_still_404(http_client) -> None:
    response = http_client.get("/no-such-file.txt", headers={"If-None-Match": "*"})
    assert response.status_code == 404
    assert response.content == NOT_FOUND_HTML


def test_directory_without_index_is_404(http_client) -> None:
    response = http_client.get("/nested/")
    assert response.status_code == 404
    assert response.content == NOT_FOUND_HTML


def test_miss_without_404_html_says_not_found(start_server, tmp_path) -> None:
    root = build_docroot(tmp_path / "no404", with_404=False)
    srv = start_server(root.root)
    response = fetch(srv.port, "/missing.txt")
    assert response.status == 404
    assert response.header("content-type") == TEXT_PLAIN
    assert response.body == b"Not Found"


@pytest.fixture(scope="module")
def no_html_server(docroot: DocRoot, tmp_path_factory) -> ServerProcess:
    from server_helpers import running_server

    log = tmp_path_factory.mktemp("logs") / "no-html.log"
    with running_server(docroot.root, ["--no-html"], log_path=log) as srv:
        yield srv


@pytest.mark.parametrize("target", ["/dir/", "/dir"])
def test_no_html_mode_directory_is_404(no_html_server: ServerProcess, target: str) -> None:
    response = fetch(no_html_server.port, target)
    assert response.status == 404
    assert response.header("location") is None
    assert INDEX_HTML not in response.body


def test_no_html_mode_miss_ignores_404_html(no_html_server: ServerProcess) -> None:
    response = fetch(no_html_server.port, "/missing.txt")
    assert response.status == 404
    assert response.body == b"Not Found"


def test_no_html_mode_still_serves_files(no_html_server: ServerProcess, docroot: DocRoot) -> None:
    response = fetch(no_html_server.port, "/dir/index.html")
    assert (response.status, response.body) == (200, INDEX_HTML)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_get_405_with_allow(server: ServerProcess, docroot: DocRoot, method: str) -> None:
    with RawConnection(server.port) as conn:
        conn.request(method, "/small.txt", [("Content-Length", "5")], body=b"hello")
        response = conn.read_response()
        after = conn.exchange("GET", "/small.txt")
    assert response.status == 405
    assert response.header("allow") == "GET, HEAD"
    assert after.status == 200 and after.body == docroot.small


def test_percent_encoded_name_with_spaces_and_utf8(server: ServerProcess, docroot: DocRoot) -> None:
    response = fetch(server.port, "/" + quote(UNICODE_NAME))
    assert response.status == 200
    assert response.body == docroot.unicode_body


def test_percent_encoded_name_through_httpx(http_client, docroot: DocRoot) -> None:
    response = http_client.get("/" + UNICODE_NAME)
    assert response.status_code == 200
    assert response.content == docroot.unicode_body


def test_percent_encoded_ascii_letters_are_decoded(server: ServerProcess, docroot: DocRoot) -> None:
    response = fetch(server.port, "/%73mall%2Etxt")
    assert (response.status, response.body) == (200, docroot.small)


@pytest.mark.parametrize("query", ["?", "?v=123", "?a=1&b=%2e%2e%2f", "?/../secret.txt", "?x=/dir/"])
def test_query_string_is_ignored_for_lookup(server: ServerProcess, docroot: DocRoot, query: str) -> None:
    response = fetch(server.port, "/small.txt" + query)
    assert (response.status, response.body) == (200, docroot.small)


# -- the cache sees changes on disk ------------------------------------------------------------


def test_modified_file_is_served_fresh_after_cache_validity(start_server, fresh_docroot: DocRoot) -> None:
    srv = start_server(fresh_docroot.root, "--cache-valid", "0.2")
    path = fresh_docroot.path("small.txt")
    first = fetch(srv.port, "/small.txt")
    assert first.body == fresh_docroot.small
    path.write_bytes(b"a new and longer version of the file\n")
    time.sleep(0.35)
    second = fetch(srv.port, "/small.txt")
    assert second.body == b"a new and longer version of the file\n"
    assert second.header("content-length") == str(len(second.body))
    assert second.header("etag") != first.header("etag")


def test_same_size_rewrite_is_seen_through_its_mtime(start_server, fresh_docroot: DocRoot) -> None:
    srv = start_server(fresh_docroot.root, "--cache-valid", "0.2")
    path = fresh_docroot.path("small.txt")
    first = fetch(srv.port, "/small.txt")
    replacement = bytes(reversed(fresh_docroot.small))
    path.write_bytes(replacement)
    later = os.stat(path).st_mtime + 5
    os.utime(path, (later, later))
    time.sleep(0.35)
    second = fetch(srv.port, "/small.txt")
    assert second.body == replacement
    assert second.header("etag") != first.header("etag")
    assert second.header("last-modified") == http_date(later)


def test_created_and_deleted_files_are_noticed(start_server, fresh_docroot: DocRoot) -> None:
    srv = start_server(fresh_docroot.root, "--cache-valid", "0.2")
    assert fetch(srv.port, "/new.txt").status == 404
    assert fetch(srv.port, "/small.txt").status == 200
    fresh_docroot.path("new.txt").write_bytes(b"now it exists\n")
    fresh_docroot.path("small.txt").unlink()
    time.sleep(0.35)
    created = fetch(srv.port, "/new.txt")
    assert (created.status, created.body) == (200, b"now it exists\n")
    assert fetch(srv.port, "/small.txt").status == 404


# -- HTTP/1.1 connection semantics over sendfile (the protocol rules: test_connection_semantics.py)


def test_connection_close_after_a_large_file(server: ServerProcess, docroot: DocRoot) -> None:
    with RawConnection(server.port) as conn:
        response = conn.exchange("GET", "/large.bin", [("Connection", "close")])
        assert response.header("connection") == "close"
        assert response.body == docroot.large
        assert conn.wait_closed(2.0)


def test_pipeline_ending_with_connection_close(server: ServerProcess, docroot: DocRoot) -> None:
    batch = (build_request("GET", "/large.bin") + build_request("GET", "/small.txt")
             + build_request("GET", "/small.txt", [("Connection", "close")])
             + build_request("GET", "/medium.bin"))  # after the close: never answered
    with RawConnection(server.port, timeout=10.0) as conn:
        conn.send(batch)
        assert conn.read_response().body == docroot.large
        assert conn.read_response().body == docroot.small
        last = conn.read_response()
        assert last.header("connection") == "close"
        assert last.body == docroot.small
        assert conn.read_to_eof() == b""
