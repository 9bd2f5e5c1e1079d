"""No spelling of a request-target reaches a file outside the served directory.

Targets go out byte-for-byte over a raw socket: an HTTP client library would normalise
``..`` and percent-escapes before sending and hide exactly what is being tested.
"""
from __future__ import annotations

import pytest

from server_helpers import SECRET_MARKER, DocRoot, RawConnection, ServerProcess, running_server

ESCAPES = [
    b"/../secret.txt",
    b"/..%2fsecret.txt",
    b"/..%2Fsecret.txt",
    b"/%2e%2e/secret.txt",
    b"/%2E%2E/secret.txt",
    b"/%2e%2e%2fsecret.txt",
    b"/%252e%252e/secret.txt",
    b"/%252e%252e%252fsecret.txt",
    b"/dir/../../secret.txt",
    b"/dir/%2e%2e/%2e%2e/secret.txt",
    b"/dir/..%2f..%2fsecret.txt",
    b"/./../secret.txt",
    b"/dir/index.html/../../../secret.txt",
    b"/..\\secret.txt",
    b"/%5c..%5csecret.txt",
    b"/..%5csecret.txt",
    b"/%2e%2e%5csecret.txt",
    b"/..%255csecret.txt",
    b"/%c0%ae%c0%ae/secret.txt",
    b"/%e0%80%ae%e0%80%ae/secret.txt",
    b"/..;/secret.txt",
    b"/....//secret.txt",
    b"/%00",
    b"/%00/../secret.txt",
    b"/small.txt%00.html",
    b"/secret.txt%00",
    b"//etc/passwd",
    b"/etc/passwd",
    b"/%2fetc%2fpasswd",
    b"/../../../../../../etc/passwd",
    b"/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    b"/C:/Windows",
    b"/c:/windows/win.ini",
    b"/C:%5cWindows",
    b"/%43:/Windows",
    b"../secret.txt",
    b"secret.txt",
    b"http://127.0.0.1/../secret.txt",
]

OUTSIDE_SYMLINKS = [
    b"/outside_link.txt",
    b"/outside_dir/secret.txt",
    b"/outside_dir/",
    b"/outside_dir",
    b"/outside_link.txt%00",
]


def send_raw(port: int, target: bytes):
    with RawConnection(port, timeout=5.0) as conn:
        conn.send(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        response = conn.read_response()
        trailing = conn.read_to_eof()
    return response, response.raw_head + response.body + trailing


def assert_refused(port: int, target: bytes) -> None:
    response, everything = send_raw(port, target)
    assert response.status in (400, 403, 404), f"{target!r} answered {response.status}"
    assert SECRET_MARKER not in everything, f"{target!r} leaked the secret file"
    assert b"root:x:0:0" not in everything, f"{target!r} leaked /etc/passwd"


@pytest.mark.parametrize("target", ESCAPES, ids=[t.decode("latin-1") for t in ESCAPES])
def test_escape_attempt_is_refused(server: ServerProcess, target: bytes) -> None:
    assert_refused(server.port, target)


@pytest.mark.parametrize("target", OUTSIDE_SYMLINKS, ids=[t.decode() for t in OUTSIDE_SYMLINKS])
def test_symlink_out_of_the_root_is_refused_by_default(server: ServerProcess, target: bytes) -> None:
    assert_refused(server.port, target)


def test_symlink_inside_the_root_is_served(server: ServerProcess, docroot: DocRoot) -> None:
    response, _ = send_raw(server.port, b"/inside_link.txt")
    assert (response.status, response.body) == (200, docroot.small)


def test_secret_file_is_really_there(docroot: DocRoot) -> None:
    # guards the tests above: a leak would be visible if it happened
    assert docroot.secret.read_bytes().startswith(SECRET_MARKER)
    assert docroot.secret.parent == docroot.root.parent


@pytest.fixture(scope="module")
def follow_server(docroot: DocRoot, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "follow-symlink.log"
    with running_server(docroot.root, ["--follow-symlink"], log_path=log) as srv:
        yield srv


def test_follow_symlink_serves_the_outside_link(follow_server: ServerProcess) -> None:
    response, _ = send_raw(follow_server.port, b"/outside_link.txt")
    assert response.status == 200
    assert response.body.startswith(SECRET_MARKER)


@pytest.mark.parametrize("target", ESCAPES, ids=[t.decode("latin-1") for t in ESCAPES])
def test_follow_symlink_still_refuses_dot_dot(follow_server: ServerProcess, target: bytes) -> None:
    assert_refused(follow_server.port, target)
