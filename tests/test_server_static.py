"""``python -m fastserve DIR`` over real sockets: what the kernel decides (the 5 MiB file and its
ranges sent with ``sendfile``, closes after them). Every other static rule (types, validators,
conditionals, ranges, HEAD, directories, names) is tested in-process in ``test_static_requests.py``."""
from __future__ import annotations

import email.utils
import os
import time

from server_helpers import (
    DocRoot,
    RawConnection,
    ServerProcess,
    assert_partial,
    build_request,
    check_byteranges,
    fetch,
    unread_bytes,
    wait_unread,
)


def last_modified_of(path: os.PathLike) -> str:
    return email.utils.formatdate(os.stat(path).st_mtime, usegmt=True)


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


# -- ranges of the 5 MiB file: sendfile from an offset ---------------------------------------


def ranged(server: ServerProcess, value: str):
    return fetch(server.port, "/large.bin", headers=[("Range", value)])


def test_multiple_ranges_over_the_five_mib_file(server: ServerProcess, docroot: DocRoot) -> None:
    data = docroot.large
    size = len(data)
    response = ranged(server, "bytes=0-9,1048576-3145727,-100000")
    check_byteranges(response, data, [(0, 9), (1048576, 3145727), (size - 100000, size - 1)])


def test_large_single_range_over_the_five_mib_file(server: ServerProcess, docroot: DocRoot) -> None:
    assert_partial(ranged(server, "bytes=1000000-4999999"), docroot.large, 1000000, 4999999)


def test_suffix_and_open_ranges_over_the_five_mib_file(server: ServerProcess, docroot: DocRoot) -> None:
    data = docroot.large
    size = len(data)
    assert_partial(ranged(server, "bytes=-65537"), data, size - 65537, size - 1)
    assert_partial(ranged(server, "bytes=5000000-"), data, 5000000, size - 1)


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


# -- a file answer with nothing ahead of it: the head (MSG_MORE) and sendfile, no job --------


def test_pipelined_file_answers_arrive_whole_and_in_order(server: ServerProcess, docroot: DocRoot) -> None:
    """Answers sent at once (whole or a single range), from memory, and by a sender for what
    the socket did not take, interleaved in one pipeline: each arrives whole, in order."""
    medium, large, small = docroot.medium, docroot.large, docroot.small
    plan = [
        ("GET", "/medium.bin", [], 200, medium),
        ("GET", "/small.txt", [], 200, small),
        ("GET", "/large.bin", [], 200, large),
        ("GET", "/medium.bin", [("Range", "bytes=1000-40999")], 206, medium[1000:41000]),
        ("HEAD", "/medium.bin", [], 200, b""),
        ("GET", "/medium.bin", [], 200, medium),
        ("GET", "/large.bin", [("Range", "bytes=-70000")], 206, large[-70000:]),
        ("GET", "/missing", [], 404, None),
        ("GET", "/medium.bin", [], 200, medium),
    ]
    with RawConnection(server.port, timeout=10.0) as conn:
        conn.send(b"".join(build_request(method, target, headers) for method, target, headers, _, _ in plan))
        for method, target, _, status, body in plan:
            response = conn.read_response(head=method == "HEAD")
            assert response.status == status, target
            if body is not None:
                assert response.body == body, target
        assert conn.exchange("GET", "/medium.bin").body == medium  # the connection is still in step



def test_a_late_request_on_a_closing_connection_costs_no_byte_of_the_answer(
        server: ServerProcess, docroot: DocRoot) -> None:
    """Connection: close on the 5 MiB file, and another request sent while the answer is still on
    its way and the server, blocked on a client that is not reading, reads nothing: closing with
    that request unread would make the kernel reset the connection and the client lose the rest
    of the answer. The server shuts its side after the answer and reads on instead."""
    with RawConnection(server.port, timeout=10.0, rcvbuf=64 * 1024) as conn:
        conn.send(build_request("GET", "/large.bin", [("Connection", "close")]))
        wait_unread(conn.sock)
        seen, deadline = -1, time.monotonic() + 5.0
        while unread_bytes(conn.sock) != seen and time.monotonic() < deadline:  # until the server is blocked
            seen = unread_bytes(conn.sock)
            time.sleep(0.05)
        conn.send(build_request("GET", "/small.txt"))  # never answered, never to cost a reset
        response = conn.read_response()
        assert response.header("connection") == "close"
        assert len(response.body) == len(docroot.large) and response.body == docroot.large
        assert conn.read_to_eof() == b""


def test_a_release_swapped_in_by_its_root_symlink_is_served_without_a_restart(tmp_path) -> None:
    """``fastserve /srv/current`` with ``current`` a symlink, swapped to the next release (the
    atomic deploy nginx follows): served from the new release within --cache-valid seconds;
    the server kept the first release until restarted."""
    from server_helpers import CliProcess, port_from_url, releases, swap

    current = releases(tmp_path)
    with CliProcess([str(current), "--port", "0", "--cache-valid", "0.2"], log_path=tmp_path / "log") as srv:
        port = port_from_url(srv.wait_listening())
        assert fetch(port, "/a.txt").body == b"one"
        swap(current, "v2")
        time.sleep(0.3)
        assert (fetch(port, "/a.txt").body, fetch(port, "/new.txt").body) == (b"two", b"new")
