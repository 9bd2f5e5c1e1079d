"""/_fastserve/health: 200 while serving, 503 from SIGTERM on and while the served directory is gone;
--admin-prefix; files win."""
from __future__ import annotations

import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest

from server_helpers import CliProcess, DocRoot, RawConnection, ServerProcess, fetch, port_from_url, running_server
from test_server_process import wait_for


def test_health_on_the_static_face(server: ServerProcess, docroot: DocRoot) -> None:
    port = server.port  # the session's server: CLI defaults on docroot
    with RawConnection(port) as conn:
        # pipelined, around ordinary answers, keep-alive throughout
        conn.send(b"GET /_fastserve/health HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"HEAD /_fastserve/health?probe=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        health = conn.read_response()
        assert (health.status, health.body) == (200, b"ok\n")
        assert health.header("cache-control") == "no-store"
        assert conn.read_response().body == docroot.small
        head = conn.read_response(head=True)
        assert (head.status, head.header("content-length")) == (200, "3")
    assert fetch(port, "/_fastserve/health", method="POST").status == 405
    assert fetch(port, "/_fastserve/healthz").status == 404
    assert fetch(port, "/_fastserve/metrics").status == 404  # no --metrics


def test_a_file_at_the_health_path_is_served(tmp_path: Path, serve_cli) -> None:
    root = tmp_path / "site"
    (root / "_fastserve").mkdir(parents=True)
    (root / "_fastserve" / "health").write_bytes(b"the site's own file\n")
    client = serve_cli(str(root)).open()
    assert client.request("GET", "/_fastserve/health").body == b"the site's own file\n"


@pytest.mark.parametrize("prefix, health, other", [
    ("/ops/", "/ops/health", "/_fastserve/health"),
    ("", "/none", "/_fastserve/health"),
])
def test_admin_prefix(docroot: DocRoot, serve_cli, prefix: str, health: str, other: str) -> None:
    client = serve_cli(str(docroot.root), "--admin-prefix", prefix).open()
    assert client.request("GET", health).status == (200 if prefix else 404)
    assert client.request("GET", other).status == 404


APP = textwrap.dedent('''
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = ("app saw " + scope["path"]).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
''')


def test_health_for_apps_and_other_paths_reach_the_app(tmp_path: Path, serve_cli, monkeypatch) -> None:
    (tmp_path / "healthapp.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "healthapp", raising=False)
    client = serve_cli("healthapp:app").open()
    assert client.request("GET", "/_fastserve/health").body == b"ok\n"
    assert client.request("HEAD", "/_fastserve/health").status == 200
    assert client.request("GET", "/_fastserve/other").body == b"app saw /_fastserve/other"
    assert client.request("POST", "/_fastserve/health").body == b"app saw /_fastserve/health"
    assert client.request("GET", "/").body == b"app saw /"


@pytest.mark.parametrize("target, workers", [("static", "2"), ("app", "1")])
def test_sigterm_turns_health_to_503_before_the_listener_closes(docroot: DocRoot, tmp_path: Path,
                                                                target: str, workers: str) -> None:
    (tmp_path / "healthapp.py").write_text(APP)
    what = str(docroot.root) if target == "static" else "healthapp:app"
    delay = 1.0  # --shutdown-delay: room for every worker to turn on a loaded machine
    args = [what, "--port", "0", "--workers", workers, "--shutdown-delay", str(delay)]
    with CliProcess(args, log_path=tmp_path / "log", cwd=tmp_path) as srv:
        port = port_from_url(srv.wait_listening())
        assert fetch(port, "/_fastserve/health").status == 200
        srv.terminate()
        sigterm_sent = time.monotonic()
        # Every worker turns, new connections too: health answers 503 on many connections in a
        # row (each may land on either worker) while the listener is still open.
        in_a_row = 0
        while in_a_row < 8:
            in_a_row = in_a_row + 1 if fetch(port, "/_fastserve/health").status == 503 else 0
            assert time.monotonic() - sigterm_sent < delay - 0.3, "health still answers 200 after SIGTERM"
        for _ in range(4):  # and everything else is still served
            assert fetch(port, "/_fastserve/health").status == 503
            assert fetch(port, "/small.txt" if target == "static" else "/x").status == 200
        assert srv.wait_exit(6) == 0
        assert time.monotonic() - sigterm_sent >= delay - 0.1, "the listener closed before --shutdown-delay"


def test_a_served_directory_that_goes_away_is_said_and_turns_health_to_503(tmp_path: Path) -> None:
    """A volume unmounted or a deploy that deletes before it copies: every file is 404, and
    health said "ok", so a load balancer kept the replica. Now health is 503 while it is gone,
    one error line says so, and both come back with the directory."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "a.txt").write_text("a\n")
    with running_server(root, [], log_path=tmp_path / "log") as srv:
        assert (fetch(srv.port, "/_fastserve/health").status, fetch(srv.port, "/a.txt").status) == (200, 200)
        shutil.rmtree(root)
        assert wait_for(lambda: fetch(srv.port, "/_fastserve/health").status == 503, 5.0)
        assert fetch(srv.port, "/_fastserve/health").body == b"served directory missing\n"
        assert (f"ERROR worker {srv.pid}: the served directory {root} is gone: files are 404 and health 503 until "
                "it is back") in srv.output()
        assert wait_for(lambda: fetch(srv.port, "/a.txt").status == 404, 5.0)  # once --cache-valid has passed
        root.mkdir()
        (root / "a.txt").write_text("a\n")
        assert wait_for(lambda: fetch(srv.port, "/_fastserve/health").status == 200, 5.0)
        assert f"INFO worker {srv.pid}: the served directory {root} is back" in srv.output()
        assert wait_for(lambda: fetch(srv.port, "/a.txt").status == 200, 5.0)
    assert srv.output().count("the served directory") == 2, srv.output()
