"""``StaticFiles(answers="static")`` used as a library answers exactly as ``python -m fastserve DIR``.

The server's fast path answers a directory's requests itself; the same ``StaticFiles`` mounted
in a Starlette app (served by ``python -m fastserve module:app``, which hands a mounted app no
fast path) or called by ``TestClient`` answers them through ASGI. Both are to give one answer:
the same status, the same fields (all of them, but ``Date`` and ``Server``, which only a server
writes) and the same body. The requests are ``tests/tools/nginx_compare.py``'s (conditionals,
ranges, codings, names, methods, framing), and more for what the nginx site lacks (a refused
file, hidden files, symlinks, error pages, listings), each sent as the same bytes to an
in-process server of each kind (see tests/inprocess.py).
"""
from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from inprocess import InProcessServer, cli_options
from server_helpers import RawResponse

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
from nginx_compare import Case, build_site, cases, render  # noqa: E402

pytest.importorskip("starlette")

# Fields only a server writes: the app's face has them from the same server code, the library's not at all.
SERVER_FIELDS = ("date", "server")

EXTRA_TARGETS = (
    "/locked.txt", "/.env", "/.well-known/x.txt", "/escape.txt", "/inside-link.txt", "/404.html", "/nothing-here",
    "/route/deep", "/noindex/", "/noindex", "/dir/sub/", "/errors", "/errors/", "/dir/%2e%2e/dir", "/x/../dir",
    "/dir%2f", "/dir/?a=b", "/dir/sub?q", "/a%20dir", "/a%20dir?x=%41", "/dir%3Fx",
)


def extra_cases() -> List[Case]:
    out = [Case(f"{method} {target}", target, method=method) for method in ("GET", "HEAD") for target in EXTRA_TARGETS]
    out += [
        Case("GET /noindex/ json", "/noindex/", [("Accept", "application/json")]),
        Case("GET /noindex/ sorted", "/noindex/?sort=size&order=desc"),
        Case("GET /noindex/ gzip", "/noindex/", [("Accept-Encoding", "gzip")]),
        Case("GET /locked.txt INM *", "/locked.txt", [("If-None-Match", "*")]),
        Case("GET /locked.txt Range", "/locked.txt", [("Range", "bytes=0-1")]),
    ]
    return out


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """nginx_compare's site, and what it lacks: a file the server may not read, hidden files,
    a symlink out of the root and one inside it, an error page, a directory without index."""
    root = tmp_path / "site"
    root.mkdir()
    build_site(root)
    (root / "locked.txt").write_bytes(b"locked\n")
    os.chmod(root / "locked.txt", 0)
    (root / ".env").write_bytes(b"SECRET=1\n")
    (root / ".well-known").mkdir()
    (root / ".well-known" / "x.txt").write_bytes(b"well known\n")
    (root / "404.html").write_bytes(b"<p>custom 404</p>\n")
    (root / "errors").mkdir()
    (root / "errors" / "403.html").write_bytes(b"<p>refused</p>\n")
    (root / "a dir").mkdir()
    (root / "a dir" / "index.html").write_bytes(b"<p>a dir</p>\n")
    (root / "dir?x").mkdir()
    (root / "dir?x" / "index.html").write_bytes(b"<p>dir?x</p>\n")
    (tmp_path / "outside.txt").write_bytes(b"outside\n")
    os.symlink(tmp_path / "outside.txt", root / "escape.txt")
    os.symlink(root / "a.txt", root / "inside-link.txt")
    return root


class Faces:
    """The fast path (``python -m fastserve SITE *flags``) and the same ``StaticFiles``
    mounted at ``prefix`` in a Starlette app, each an in-process server."""

    def __init__(self, serve, site: Path, flags: Sequence[str], prefix: str) -> None:
        from starlette.applications import Starlette
        from starlette.routing import Mount

        from fastserve.config import Config
        from fastserve.server.app_loader import load_app

        target, options = cli_options(str(site), *flags)
        self.prefix = prefix
        self.fast = serve(target, **options)
        static = load_app(Config(target=target, **options))  # the StaticFiles the server would build
        assert type(static).__name__ == "StaticFiles" and static.answers == "static"
        self.app = serve(Starlette(routes=[Mount(prefix or "/", app=static)]), **options)

    @staticmethod
    def ask(server: InProcessServer, raw: bytes, head: bool) -> Optional[RawResponse]:
        client = server.open()
        client.send(raw, [head])
        server.run_until(lambda: len(client.parsed()) >= 1 or client.closed)
        answers = client.parsed()
        return answers[0] if answers else None

    def both(self, raw: bytes, target: str, head: bool) -> Tuple[Optional[RawResponse], Optional[RawResponse]]:
        """The fast path's answer to ``raw``, and the app's to it with its target below ``prefix``."""
        mounted = raw
        if self.prefix and target.startswith("/"):
            line_end = raw.index(b"\r\n")
            mounted = raw[:line_end].replace(b" " + target.encode("latin-1") + b" ",
                                             b" " + (self.prefix + target).encode("latin-1") + b" ", 1) + raw[line_end:]
            assert mounted != raw, target
        return self.ask(self.fast, raw, head), self.ask(self.app, mounted, head)


def comparable(response: Optional[RawResponse], prefix: str = "") -> object:
    """Status, every field but ``SERVER_FIELDS`` (as a sorted list: the order of different
    fields carries no meaning) and the body, a multipart boundary made constant and, for the
    mounted app, the mount's prefix taken off its ``Location``."""
    if response is None:
        return None
    fields = [(name, value) for name, value in response.headers if name not in SERVER_FIELDS]
    body = response.body
    match = re.search(r"boundary=(\S+)", dict(fields).get("content-type", ""))
    if match:
        boundary = match.group(1)
        fields = [(name, value.replace(boundary, "B")) for name, value in fields]
        body = body.replace(boundary.encode(), b"B")
    if prefix:
        for i, (name, value) in enumerate(fields):
            if name == "location":
                assert value.startswith(prefix + "/"), value  # a path, below the mount
                fields[i] = (name, value[len(prefix):])
    return response.status, sorted(fields), body


def validators(faces: Faces, paths: Sequence[str]) -> Dict[str, Dict[str, str]]:
    """Each path's entity-tags and date, as nginx_compare fills its requests with; the app's
    encodings (made off its event loop) are waited for, so both faces hold the same ones."""
    out = {}
    for path in paths:
        for coding in ("", "gzip", "br", "zstd", "gzip, deflate, br, zstd"):
            raw = f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: {coding}\r\n\r\n".encode("latin-1")
            for _ in range(400):
                fast, app = faces.both(raw, path, False)
                if fast is None or app is None or fast.header("content-encoding") == app.header("content-encoding"):
                    break
                faces.app.loop.run_until_complete(asyncio.sleep(0.005))
        plain = faces.ask(faces.fast, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode("latin-1"), False)
        coded = faces.ask(faces.fast, f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n".encode(), False)
        assert plain is not None and coded is not None
        etag = plain.header("etag") or '"none"'
        out[path] = {"etag": etag, "etag_bare": etag.strip('"'), "etag_gz": coded.header("etag") or '"none"',
                     "lm": plain.header("last-modified") or "none"}
    return out


# (flags after the site, where the app is mounted)
CONFIGURATIONS = {
    "defaults": ((), ""),
    "mounted": ((), "/static"),
    "listing, error page, dotfiles, no etag": (
        ("--listing", "--no-html", "--error-page", "403=/errors/403.html", "--dotfiles", "allow", "--etag", "off"), ""),
    "spa, symlinks followed, mounted": (("--spa", "--follow-symlink", "--if-modified-since", "before"), "/static"),
    "behind a proxy's prefix": (("--root-path", "/site"), ""),
}


@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
def test_staticfiles_as_a_library_answers_as_the_fast_path(site, serve, refuse_unreadable, configuration):
    flags, prefix = CONFIGURATIONS[configuration]
    faces = Faces(serve, site, flags, prefix)
    selected = [case for case in cases() + extra_cases()
                # asterisk-form names the server, not a path: Starlette's router answers it, not StaticFiles
                if case.target != "*"
                # the request as sent: its target cannot be moved below a mount
                and not (prefix and case.raw is not None)
                # a listing names the path it lists, the mount's prefix included
                and not (prefix and "--listing" in flags and case.target.rstrip("/").split("?")[0] in (
                    "", "/noindex", "/dir/sub", "/dir/sub/..", "/errors", "/spa"))]
    paths = sorted({case.target.split("?")[0].split("#")[0] for case in selected if case.target.startswith("/")})
    known = validators(faces, paths)
    differences = []
    for case in selected:
        fast, app = faces.both(render(case, known), case.target, case.method == "HEAD")
        if comparable(fast) != comparable(app, prefix):
            differences.append((case.name, comparable(fast), comparable(app, prefix)))
    assert len(selected) > 800
    assert not differences, f"{len(differences)} of {len(selected)} differ; first: {differences[:3]}"


def test_the_named_answers_on_both_faces(site, serve, refuse_unreadable):
    """The answers that differed: a directory's redirect is 301 to a path (with the mount's prefix
    and the query as sent), a file the server may not read 403, its error page when one is set."""
    faces = Faces(serve, site, ("--error-page", "403=/errors/403.html"), "/static")
    for target, location in (("/dir", "/dir/"), ("/dir?x=1&y=%20", "/dir/?x=1&y=%20"), ("/a%20dir", "/a%20dir/"),
                             ("/x/../dir", "/dir/"), ("/dir%3Fx", "/dir%3Fx/")):
        fast, app = faces.both(f"GET {target} HTTP/1.1\r\nHost: example.com\r\n\r\n".encode(), target, False)
        assert fast is not None and app is not None
        assert (fast.status, fast.header("location")) == (301, location), target
        assert (app.status, app.header("location")) == (301, "/static" + location), target
    fast, app = faces.both(b"GET /locked.txt HTTP/1.1\r\nHost: x\r\n\r\n", "/locked.txt", False)
    assert fast is not None and app is not None
    for response in (fast, app):
        assert (response.status, response.body) == (403, b"<p>refused</p>\n")


def test_a_redirect_behind_root_path_names_the_prefix_on_both_faces(site, serve):
    """With ``--root-path`` (a proxy takes the prefix off), the fast path's redirect named the
    path without it, which leads the client out of the prefix; an app's names it, from its raw_path."""
    faces = Faces(serve, site, ("--root-path", "/site/a b"), "")
    for target, location in (("/dir?v=1", "/site/a%20b/dir/?v=1"), ("/x/../dir", "/site/a%20b/dir/")):
        raw = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        for response in faces.both(raw, target, False):
            assert response is not None
            assert (response.status, response.header("location")) == (301, location), target


def test_testclient_gets_the_fast_paths_answers(site, refuse_unreadable):
    """The library face apps test with: ``TestClient`` over a Starlette app mounting the directory."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from fastserve.staticfiles import StaticFiles
    from fastserve.testclient import TestClient

    app = Starlette(routes=[Mount("/assets", app=StaticFiles(directory=site, html=True, answers="static"))])
    with TestClient(app, base_url="http://testserver") as client:
        moved = client.get("/assets/dir?v=2", follow_redirects=False)
        assert moved.status_code == 301 and moved.headers["location"] == "/assets/dir/?v=2"
        assert client.get("/assets/dir?v=2").text == "<!doctype html><p>dir index</p>\n"
        refused = client.get("/assets/locked.txt")
        assert (refused.status_code, refused.text) == (403, "Forbidden")
    starlette_app = Starlette(routes=[Mount("/assets", app=StaticFiles(directory=site, html=True))])
    with TestClient(starlette_app, base_url="http://testserver") as client:  # Starlette's own answers stay
        moved = client.get("/assets/dir", follow_redirects=False)
        assert moved.status_code == 307 and moved.headers["location"] == "http://testserver/assets/dir/"
        assert client.get("/assets/locked.txt").status_code == 401
