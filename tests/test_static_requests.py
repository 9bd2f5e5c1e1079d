"""What ``python -m fastserve DIR`` answers, in-process on both request readers: types and
validators, HEAD, conditional requests, ranges, directories, 404, 405 and names.

The same document root the real-server tests use (``server_helpers.build_docroot``), served with
the CLI's defaults by a connection on a recording transport (``tests/inprocess.py``); what the
kernel decides (sendfile of the 5 MiB file, closes) stays in ``test_server_static.py``.
"""
from __future__ import annotations

import email.utils
import os
import time
from urllib.parse import quote

import pytest

from inprocess import request
from server_helpers import (
    INDEX_HTML,
    NOT_FOUND_HTML,
    UNICODE_NAME,
    DocRoot,
    RawResponse,
    assert_partial,
    build_docroot,
    check_byteranges,
    parse_byteranges,
)

TEXT_PLAIN = "text/plain; charset=utf-8"
TEXT_HTML = "text/html; charset=utf-8"


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def last_modified_of(path: os.PathLike) -> str:
    return http_date(os.stat(path).st_mtime)


@pytest.fixture
def client(serve, docroot: DocRoot):
    """A connection to the docroot served with the CLI's defaults (html mode on)."""
    return serve(docroot.root).open()


def etag_of(client, name: str) -> str:
    return client.request("HEAD", name).header("etag")


# -- plain GET -------------------------------------------------------------------------------


def test_text_file_is_served_with_type_length_and_validators(client, docroot: DocRoot) -> None:
    response = client.request("GET", "/small.txt")
    assert response.status == 200
    assert response.body == docroot.small
    assert response.header("content-type") == TEXT_PLAIN
    assert response.header("content-length") == str(len(docroot.small))
    assert response.header("last-modified") == last_modified_of(docroot.path("small.txt"))
    etag = response.header("etag")
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2, f"not a strong ETag: {etag!r}"


def test_every_response_has_date_and_server(client) -> None:
    for target in ["/small.txt", "/large.bin", "/missing", "/dir"]:
        response = client.request("GET", target)
        assert email.utils.parsedate_to_datetime(response.header("date")) is not None
        assert response.header("server") == "fastserve"


def test_absolute_form_request_target_is_accepted(client, docroot: DocRoot) -> None:
    # HTTP/1.1 servers must accept "GET http://host/path" (what proxies send).
    response = client.request("GET", "http://127.0.0.1:8000/small.txt")
    assert (response.status, response.body) == (200, docroot.small)


def test_html_file_has_html_content_type(client) -> None:
    response = client.request("GET", "/page.html")
    assert response.status == 200
    assert response.header("content-type") == TEXT_HTML
    assert response.body == b"<!doctype html><p>a page</p>\n"


def test_etag_is_stable_and_differs_between_files(client) -> None:
    first = client.request("GET", "/small.txt").header("etag")
    assert client.request("GET", "/small.txt").header("etag") == first
    assert client.request("GET", "/medium.bin").header("etag") != first


def test_binary_file_of_64_kib_is_identical(client, docroot: DocRoot) -> None:
    response = client.request("GET", "/medium.bin")
    assert response.status == 200
    assert response.header("content-length") == str(64 * 1024)
    assert response.body == docroot.medium


# -- HEAD ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["/small.txt", "/medium.bin", "/large.bin", "/dir/"])
def test_head_has_the_get_headers_and_no_body(client, name: str) -> None:
    get = client.request("GET", name)
    head = client.request("HEAD", name)
    # the next request on the same connection must not see stray body bytes
    after = client.request("GET", "/small.txt")
    assert head.status == get.status == 200
    without_date = lambda r: [(k, v) for k, v in r.headers if k != "date"]  # noqa: E731
    assert without_date(head) == without_date(get)
    assert int(head.header("content-length")) == len(get.body)
    assert head.body == b""
    assert after.status == 200 and after.body.startswith(b"Hello from fastserve.")


def test_head_of_a_missing_file_is_404_without_body(client) -> None:
    head = client.request("HEAD", "/no-such-file.txt")
    after = client.request("GET", "/small.txt")
    assert head.status == 404
    assert int(head.header("content-length")) == len(NOT_FOUND_HTML)
    assert head.body == b""
    assert after.status == 200


# -- conditional requests --------------------------------------------------------------------


def assert_not_modified(response: RawResponse, etag: str) -> None:
    assert response.status == 304, response.body
    assert response.body == b""
    assert response.header("etag") == etag


@pytest.mark.parametrize("name", ["/small.txt", "/large.bin"])
def test_if_none_match_exact_gives_304(client, name: str) -> None:
    etag = etag_of(client, name)
    assert_not_modified(client.request("GET", name, [("If-None-Match", etag)]), etag)


def test_if_none_match_list_gives_304(client) -> None:
    etag = etag_of(client, "/small.txt")
    value = f'"something-else", {etag}, "another"'
    assert_not_modified(client.request("GET", "/small.txt", [("If-None-Match", value)]), etag)


def test_if_none_match_star_gives_304(client) -> None:
    assert_not_modified(client.request("GET", "/small.txt", [("If-None-Match", "*")]), etag_of(client, "/small.txt"))


def test_if_none_match_weak_form_gives_304(client) -> None:
    etag = etag_of(client, "/small.txt")
    assert_not_modified(client.request("GET", "/small.txt", [("If-None-Match", "W/" + etag)]), etag)


def test_if_none_match_other_tag_gives_200(client, docroot: DocRoot) -> None:
    response = client.request("GET", "/small.txt", [("If-None-Match", '"not-our-tag"')])
    assert (response.status, response.body) == (200, docroot.small)


def test_head_with_matching_if_none_match_gives_304(client) -> None:
    response = client.request("HEAD", "/small.txt", [("If-None-Match", etag_of(client, "/small.txt"))])
    assert response.status == 304


def test_if_modified_since_last_modified_gives_304(client, docroot: DocRoot) -> None:
    since = last_modified_of(docroot.path("small.txt"))
    assert_not_modified(client.request("GET", "/small.txt", [("If-Modified-Since", since)]),
                        etag_of(client, "/small.txt"))


def test_if_modified_since_before_mtime_gives_200(client, docroot: DocRoot) -> None:
    since = http_date(os.stat(docroot.path("small.txt")).st_mtime - 3600)
    response = client.request("GET", "/small.txt", [("If-Modified-Since", since)])
    assert (response.status, response.body) == (200, docroot.small)


def test_if_none_match_mismatch_wins_over_if_modified_since(client, docroot: DocRoot) -> None:
    since = last_modified_of(docroot.path("small.txt"))
    response = client.request("GET", "/small.txt", [("If-None-Match", '"other"'), ("If-Modified-Since", since)])
    assert response.status == 200


def test_if_match_mismatch_gives_412(client) -> None:
    response = client.request("GET", "/small.txt", [("If-Match", '"not-our-tag"')])
    assert response.status == 412
    assert response.body != b"" and b"Hello" not in response.body


def test_if_match_star_passes(client, docroot: DocRoot) -> None:
    response = client.request("GET", "/small.txt", [("If-Match", "*")])
    assert (response.status, response.body) == (200, docroot.small)


def test_if_match_exact_passes(client, docroot: DocRoot) -> None:
    response = client.request("GET", "/small.txt", [("If-Match", etag_of(client, "/small.txt"))])
    assert (response.status, response.body) == (200, docroot.small)


def test_if_unmodified_since_in_the_past_gives_412(client) -> None:
    response = client.request("GET", "/small.txt", [("If-Unmodified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")])
    assert response.status == 412


def test_if_unmodified_since_now_passes(client, docroot: DocRoot) -> None:
    response = client.request("GET", "/small.txt", [("If-Unmodified-Since", http_date(time.time() + 60))])
    assert (response.status, response.body) == (200, docroot.small)


# -- ranges ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, attr", [("/small.txt", "small"), ("/medium.bin", "medium"), ("/large.bin", "large")])
def test_single_range_gives_206(client, docroot: DocRoot, name: str, attr: str) -> None:
    data = getattr(docroot, attr)
    assert_partial(client.request("GET", name, [("Range", "bytes=5-20")]), data, 5, 20)


def test_suffix_range_gives_the_last_bytes(client, docroot: DocRoot) -> None:
    size = len(docroot.small)
    assert_partial(client.request("GET", "/small.txt", [("Range", "bytes=-7")]), docroot.small, size - 7, size - 1)


def test_open_ended_range_runs_to_the_end(client, docroot: DocRoot) -> None:
    size = len(docroot.small)
    assert_partial(client.request("GET", "/small.txt", [("Range", "bytes=10-")]), docroot.small, 10, size - 1)


def test_range_past_the_end_is_clamped(client, docroot: DocRoot) -> None:
    size = len(docroot.small)
    assert_partial(client.request("GET", "/small.txt", [("Range", "bytes=3-99999")]), docroot.small, 3, size - 1)


def test_multiple_ranges_give_multipart_byteranges(client, docroot: DocRoot) -> None:
    data = docroot.medium
    response = client.request("GET", "/medium.bin", [("Range", "bytes=0-99,1000-1999,-50")])
    check_byteranges(response, data, [(0, 99), (1000, 1999), (len(data) - 50, len(data) - 1)])
    for part in parse_byteranges(response.body, response.content_type_boundary()):
        assert part.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize("value", ["bytes=5-2", "items=0-3", "bytes=abc", "bytes 0-3", "bytes=0-3;x"])
def test_invalid_range_is_ignored(client, docroot: DocRoot, value: str) -> None:
    response = client.request("GET", "/small.txt", [("Range", value)])
    assert (response.status, response.body) == (200, docroot.small)


def test_zero_length_suffix_range_is_unsatisfiable(client, docroot: DocRoot) -> None:
    response = client.request("GET", "/small.txt", [("Range", "bytes=-0")])
    assert response.status == 416
    assert response.header("content-range") == f"bytes */{len(docroot.small)}"


def test_overlapping_ranges_are_merged(client, docroot: DocRoot) -> None:
    """Overlapping ranges are sent as one part, where the first of them was listed; the other
    parts in the order listed (RFC 9110 section 15.3.7.2)."""
    response = client.request("GET", "/small.txt", [("Range", "bytes=10-20,0-4,15-30")])
    check_byteranges(response, docroot.small, [(10, 30), (0, 4)])


@pytest.mark.parametrize("name", ["/small.txt", "/large.bin"])
def test_unsatisfiable_range_gives_416_with_size(client, docroot: DocRoot, name: str) -> None:
    size = os.stat(docroot.path(name.lstrip("/"))).st_size
    response = client.request("GET", name, [("Range", f"bytes={size + 10}-")])
    assert response.status == 416
    assert response.header("content-range") == f"bytes */{size}"
    assert response.body == b""


def test_if_range_with_current_etag_honours_the_range(client, docroot: DocRoot) -> None:
    etag = etag_of(client, "/small.txt")
    response = client.request("GET", "/small.txt", [("Range", "bytes=0-4"), ("If-Range", etag)])
    assert_partial(response, docroot.small, 0, 4)


def test_if_range_with_last_modified_honours_the_range(client, docroot: DocRoot) -> None:
    date = last_modified_of(docroot.path("small.txt"))
    response = client.request("GET", "/small.txt", [("Range", "bytes=0-4"), ("If-Range", date)])
    assert_partial(response, docroot.small, 0, 4)


@pytest.mark.parametrize("name, attr", [("/small.txt", "small"), ("/large.bin", "large")])
def test_if_range_with_old_etag_sends_the_whole_file(client, docroot: DocRoot, name: str, attr: str) -> None:
    response = client.request("GET", name, [("Range", "bytes=0-4"), ("If-Range", '"an-old-tag"')])
    assert response.status == 200
    assert response.header("content-range") is None
    assert response.body == getattr(docroot, attr)


def test_a_head_with_range_gets_the_fields_a_get_would_and_no_body(client, docroot: DocRoot) -> None:
    # RFC 9110 section 9.3.2; nginx and Starlette answer a ranged HEAD with 206 too.
    head = client.request("HEAD", "/small.txt", [("Range", "bytes=0-4")])
    after = client.request("GET", "/small.txt")  # no body bytes were sent for the HEAD
    assert head.status == 206
    assert head.header("content-length") == "5"
    assert head.header("content-range") == f"bytes 0-4/{len(docroot.small)}"
    assert head.body == b""
    assert after.body == docroot.small
    several = client.request("HEAD", "/small.txt", [("Range", "bytes=0-1,4-5")])
    assert several.status == 206
    assert several.header("content-type").startswith("multipart/byteranges; boundary=")
    assert several.body == b""
    assert client.request("GET", "/small.txt").body == docroot.small


# -- directories, 404, methods, names ---------------------------------------------------------


def test_directory_without_slash_redirects(client) -> None:
    response = client.request("GET", "/dir")
    assert response.status == 301
    assert response.header("location") == "/dir/"


def test_directory_redirect_keeps_the_query(client) -> None:
    response = client.request("GET", "/dir?page=2&x=y")
    assert response.status == 301
    assert response.header("location") == "/dir/?page=2&x=y"


@pytest.mark.parametrize("target", [
    "//dir", "///dir", "//evil.example/dir", "///evil.example/dir", "/%2F%2Fevil.example/dir",
    "/%2fevil.example/dir", "/%5Cevil.example/dir", "/.//evil.example/dir", "//evil.example/dir?x=1",
])
def test_redirect_location_is_never_protocol_relative(client, target: str) -> None:
    response = client.request("GET", target)
    assert response.status in (301, 400, 404), response.status
    location = response.header("location")
    if response.status == 301:
        assert location is not None
        assert location.startswith("/") and not location.startswith("//"), location
        assert not location.startswith("/\\"), location
    else:
        assert location is None


def test_redirect_query_cannot_inject_headers(client) -> None:
    response = client.request("GET", "/dir?a=%0d%0aSet-Cookie:%20x=1")
    assert response.status == 301
    assert response.header("location") == "/dir/?a=%0d%0aSet-Cookie:%20x=1"
    assert response.header("set-cookie") is None


def test_double_slash_directory_redirects_to_the_local_path(client) -> None:
    response = client.request("GET", "//evil.example/dir")
    assert response.status == 301
    assert response.header("location") == "/evil.example/dir/"


def test_directory_with_slash_serves_index_html(client) -> None:
    response = client.request("GET", "/dir/")
    assert response.status == 200
    assert response.header("content-type") == TEXT_HTML
    assert response.body == INDEX_HTML


def test_nested_file_is_served(client) -> None:
    response = client.request("GET", "/nested/deeper/file.txt")
    assert (response.status, response.body) == (200, b"deep file\n")


def test_miss_serves_404_html_when_present(client) -> None:
    response = client.request("GET", "/no/such/file.txt")
    assert response.status == 404
    assert response.header("content-type") == TEXT_HTML
    assert response.body == NOT_FOUND_HTML


def test_a_404_answered_again_is_the_one_built_fresh(client) -> None:
    """Keep-alive 404s come from the entry's kept answer (as 200s do); it must carry what an
    answer built for the request carries (a Connection: close one is never kept)."""
    def comparable(response: RawResponse) -> tuple:
        fields = [(name, value) for name, value in response.headers if name not in ("date", "connection")]
        return response.status, fields, response.body

    first, again = (client.request("GET", "/no/such/page.txt") for _ in range(2))
    fresh = client.request("GET", "/no/such/page.txt", [("Connection", "close")])
    assert first.status == 404 and first.body == NOT_FOUND_HTML
    assert comparable(first) == comparable(again) == comparable(fresh)
    assert fresh.header("connection") == "close" and first.header("connection") is None


def test_if_none_match_star_on_a_missing_file_is_still_404(client) -> None:
    response = client.request("GET", "/no-such-file.txt", [("If-None-Match", "*")])
    assert response.status == 404
    assert response.body == NOT_FOUND_HTML


def test_directory_without_index_is_404(client) -> None:
    response = client.request("GET", "/nested/")
    assert response.status == 404
    assert response.body == NOT_FOUND_HTML


def test_miss_without_404_html_says_not_found(serve, tmp_path) -> None:
    root = build_docroot(tmp_path / "no404", with_404=False)
    response = serve(root.root).open().request("GET", "/missing.txt")
    assert response.status == 404
    assert response.header("content-type") == TEXT_PLAIN
    assert response.body == b"Not Found"


@pytest.fixture
def no_html(serve, docroot: DocRoot):
    return serve(docroot.root, html=False).open()


@pytest.mark.parametrize("target", ["/dir/", "/dir"])
def test_no_html_mode_directory_is_404(no_html, target: str) -> None:
    response = no_html.request("GET", target)
    assert response.status == 404
    assert response.header("location") is None
    assert INDEX_HTML not in response.body


def test_no_html_mode_miss_ignores_404_html(no_html) -> None:
    response = no_html.request("GET", "/missing.txt")
    assert response.status == 404
    assert response.body == b"Not Found"


def test_no_html_mode_still_serves_files(no_html) -> None:
    response = no_html.request("GET", "/dir/index.html")
    assert (response.status, response.body) == (200, INDEX_HTML)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_get_405_with_allow(client, docroot: DocRoot, method: str) -> None:
    response = client.request(method, "/small.txt", body=b"hello")
    after = client.request("GET", "/small.txt")
    assert response.status == 405
    assert response.header("allow") == "GET, HEAD"
    assert after.status == 200 and after.body == docroot.small


def test_percent_encoded_name_with_spaces_and_utf8(client, docroot: DocRoot) -> None:
    response = client.request("GET", "/" + quote(UNICODE_NAME))
    assert (response.status, response.body) == (200, docroot.unicode_body)


def test_percent_encoded_ascii_letters_are_decoded(client, docroot: DocRoot) -> None:
    response = client.request("GET", "/%73mall%2Etxt")
    assert (response.status, response.body) == (200, docroot.small)


@pytest.mark.parametrize("query", ["?", "?v=123", "?a=1&b=%2e%2e%2f", "?/../secret.txt", "?x=/dir/"])
def test_query_string_is_ignored_for_lookup(client, docroot: DocRoot, query: str) -> None:
    response = client.request("GET", "/small.txt" + query)
    assert (response.status, response.body) == (200, docroot.small)


# -- the cache sees changes on disk (revalidating on every request; the --cache-valid window
# itself is FileCache's, tested in test_filecache.py) ----------------------------------------


def test_modified_file_is_served_fresh(serve, fresh_docroot: DocRoot) -> None:
    client = serve(fresh_docroot.root, cache_valid=0).open()
    path = fresh_docroot.path("small.txt")
    first = client.request("GET", "/small.txt")
    assert first.body == fresh_docroot.small
    path.write_bytes(b"a new and longer version of the file\n")
    second = client.request("GET", "/small.txt")
    assert second.body == b"a new and longer version of the file\n"
    assert second.header("content-length") == str(len(second.body))
    assert second.header("etag") != first.header("etag")


def test_same_size_rewrite_is_seen_through_its_mtime(serve, fresh_docroot: DocRoot) -> None:
    client = serve(fresh_docroot.root, cache_valid=0).open()
    path = fresh_docroot.path("small.txt")
    first = client.request("GET", "/small.txt")
    replacement = bytes(reversed(fresh_docroot.small))
    path.write_bytes(replacement)
    other = os.stat(path).st_mtime - 3600  # another mtime (a future one would be sent as now)
    os.utime(path, (other, other))
    second = client.request("GET", "/small.txt")
    assert second.body == replacement
    assert second.header("etag") != first.header("etag")
    assert second.header("last-modified") == http_date(other)


def test_created_and_deleted_files_are_noticed(serve, fresh_docroot: DocRoot) -> None:
    client = serve(fresh_docroot.root, cache_valid=0).open()
    assert client.request("GET", "/new.txt").status == 404
    assert client.request("GET", "/small.txt").status == 200
    fresh_docroot.path("new.txt").write_bytes(b"now it exists\n")
    fresh_docroot.path("small.txt").unlink()
    created = client.request("GET", "/new.txt")
    assert (created.status, created.body) == (200, b"now it exists\n")
    assert client.request("GET", "/small.txt").status == 404


def test_pipelined_requests_are_answered_in_order(client, docroot: DocRoot) -> None:
    batch = (request("GET", "/medium.bin") + request("GET", "/small.txt")
             + request("GET", "/small.txt", [("Connection", "close")])
             + request("GET", "/medium.bin"))  # after the close: never answered
    client.send(batch, [False] * 4)
    answers = client.parsed()
    assert [r.body for r in answers] == [docroot.medium, docroot.small, docroot.small]
    assert answers[-1].header("connection") == "close"
    assert client.closed
