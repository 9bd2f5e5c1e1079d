"""A request path names the same answer on every face: the differential test of path lookup.

The server's static fast path, ``StaticFiles(answers="static")`` and
``StaticFiles(answers="starlette")`` (each run as an app by the same in-process server, so a
target the server itself refuses is refused alike) get the same odd targets on the same tree:
percent-encoded dot segments, ``%00``, ``%5c``, ``%2f``, ``//``, ``/./``, trailing dots, overlong
and invalid UTF-8, ``;params``, an encoded ``?`` or ``#``, very long paths, and random spellings
made of those pieces. Their statuses, bodies and redirect targets must agree, and no answer may
carry a byte of the file kept outside the root. Starlette's own ``StaticFiles``, where it is
installed, is asked too: where it answers as the fast path does, the ``answers="starlette"`` face
answers so as well, and nowhere does that face give a third answer of its own.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastserve.config import Config
from fastserve.exceptions import HTTPException
from fastserve.responses import PlainTextResponse
from fastserve.server.app_loader import load_app
from fastserve.staticfiles import StaticFiles
from inprocess import InProcessServer
from server_helpers import SECRET_MARKER

FILES = {
    "index.html": b"<p>root index</p>",
    "404.html": b"<p>no such page</p>",
    "x": b"x at the root",
    "a?b": b"a question mark",
    "a#b": b"a hash",
    "a;b": b"a semicolon",
    "a b": b"a space",
    "a%b": b"a percent",
    "a%2fb": b"a percent-2f",
    "caf\u00e9.txt": b"cafe, composed",
    ".hidden": b"a dotfile",
    ".well-known/x": b"well known",
    "dir/index.html": b"<p>dir index</p>",
    "dir/f.txt": b"f in dir",
    "dir/sub/g.txt": b"g in dir/sub",
    "empty/.keep": b"",
}

# Spellings of the pieces a path is made of; random targets are strung together from them.
PIECES = [
    "/", "//", "/./", "/../", ".", "..", "%2e", "%2E", "%2e%2e", ".%2e", "%2f", "%2F", "%5c", "%5C", "\\",
    "%00", "%252e", "%252f", "%c0%ae", "%c0%af", "%e0%80%ae", "%ff", "%80", "%ed%a0%80", "%", "%2", "%zz",
    ";p=1", ";", "%3b", "%3f", "%23", "?q", "#f", "%20", "%09", "%0a", "%7f", "~", "C:", "%43:",
    "x", "dir", "sub", "f.txt", "g.txt", "index.html", "a", "b", "empty", ".hidden", ".well-known", "outside",
    "caf%c3%a9.txt", "cafe%cc%81.txt", "a" * 300,
]

NAMED = [
    "/%00/..", "/a%5cb/../x", "/x%00/..", "/%00", "/x%00", "/x%00.html", "/dir/..%00/x", "/%5cx", "/dir%5cf.txt",
    "/..\\x", "/dir/\\..\\x", "\\x", "/%2e%2e/x", "/%2e/x", "/.%2e/x", "/dir/%2e%2e/x", "/dir/..%2fx",
    "/dir%2f..%2fx", "/..%2fx", "/dir%2ff.txt", "//x", "///dir//f.txt", "/./x", "/dir/./", "/dir/.", "/dir/..",
    "/dir/...", "/x.", "/x..", "/dir.", "/...", "/x/", "/x/.", "/x/..", "/dir", "/dir/sub", "/dir/sub/..",
    "/dir/nosuch/../f.txt", "/%c0%ae%c0%ae/x", "/%c0%af", "/%e0%80%ae", "/%ff", "/%80", "/%ed%a0%80",
    "/%f4%90%80%80", "/x;p=1", "/dir;p/../x", "/a;b", "/a%3bb", "/a%3fb", "/a%23b", "/x%3fq", "/x?q#f", "/x#f",
    "/a%20b", "/a%25b", "/a%252fb", "/a%2fb", "/caf%c3%a9.txt", "/cafe%cc%81.txt", "/C:/x", "/c:", "/%43:/x",
    "/.hidden", "/%2ehidden", "/dir/..%2f.hidden", "/.hidden/..", "/.hidden/../x", "/.well-known/x",
    "/.well-known/../x", "/outside/secret.txt", "/outside", "/outside/", "/dir/f.txt/..", "/dir/f.txt/.",
    "/dir/index.html/..", "/..", "/../x", "/dir/../..", "/dir/../../x", "/../outside/secret.txt", "/empty",
    "/empty/", "http://x/x", "http://x/dir", "http://x", "http://x/../x", "/%2F", "/%2F%2Fx", "/dir%2F",
    "/dir%2F.", "/x%2F", "/50%.txt", "/%", "/%2", "/%zz", "/x%0d%0aSet-Cookie:a", "/%01", "/x%20",
    "/x%7f", "/" + "a" * 300, "/" + "a/" * 2000 + "x", "/" + "%2e%2e/" * 1000 + "x", "/dir/" + "./" * 2000 + "f.txt",
    "/" + "x/../" * 1000 + "x",
]


class _HandledErrors:
    """``app`` with Starlette's exception middleware's answer to an ``HTTPException``, as an app
    that mounts a ``StaticFiles`` has it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except HTTPException as exc:
            await PlainTextResponse(exc.detail, exc.status_code, exc.headers)(scope, receive, send)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("differential")
    root = base / "site"
    for name, data in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    outside = base / "secret"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET_MARKER)
    os.symlink(outside, root / "outside")
    return root


Answer = Tuple[int, bytes, Optional[str]]


class Faces:
    """One in-process server per face, each asked every target on a connection of its own."""

    def __init__(self, root: Path) -> None:
        server_app = load_app(Config(target=str(root)))  # the StaticFiles a directory is served by
        assert isinstance(server_app, StaticFiles) and server_app.answers == "static"
        self.servers: Dict[str, InProcessServer] = {
            "fast path (scanner)": InProcessServer(root, "scanner"),
            "fast path (httptools)": InProcessServer(root, "httptools"),
            'StaticFiles(answers="static")': InProcessServer(_HandledErrors(server_app)),
            # The server's settings (html mode, dotfiles denied, no file asked for as a directory)
            # with Starlette's answers: they differ from the fast path's in the redirect's status.
            'StaticFiles(answers="starlette")': InProcessServer(_HandledErrors(
                StaticFiles(directory=root, html=True, dotfiles=False, file_slash=False))),
        }

    def ask(self, name: str, target: str) -> Answer:
        client = self.servers[name].open()
        client.send(b"GET " + target.encode("latin-1") + b" HTTP/1.1\r\nHost: x\r\n\r\n", [False])
        response = client.wait_for(1)[0]
        assert SECRET_MARKER not in response.body, (name, target)
        location = response.header("location")
        if location is not None:  # the path and query it leads to; the app's names a scheme and host
            location = urlsplit(location)._replace(scheme="", netloc="").geturl()
        status = 301 if response.status == 307 else response.status  # Starlette redirects with 307
        return status, response.body, location

    def close(self) -> None:
        for server in self.servers.values():
            server.close()


@pytest.fixture(scope="module")
def faces(tree: Path) -> Iterator[Faces]:
    faces = Faces(tree)
    yield faces
    faces.close()


def assert_faces_agree(faces: Faces, target: str) -> Answer:
    answers = {name: faces.ask(name, target) for name in faces.servers}
    first = next(iter(answers.values()))
    assert all(answer == first for answer in answers.values()), (target, answers)
    return first


@pytest.mark.parametrize("target", NAMED, ids=[t[:60] for t in NAMED])
def test_every_face_gives_one_answer_to_a_named_target(faces: Faces, target: str) -> None:
    assert_faces_agree(faces, target)


@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=8))
def test_every_face_gives_one_answer_to_a_made_up_target(faces: Faces, pieces: List[str]) -> None:
    assert_faces_agree(faces, "/" + "".join(pieces))


@pytest.mark.parametrize("target, status, body", [
    # A NUL or a backslash is refused wherever it stands, before dot segments are removed; the 404
    # page answers it (html mode).
    ("/%00/..", 404, FILES["404.html"]),
    ("/x%00/..", 404, FILES["404.html"]),
    ("/a%5cb/../x", 404, FILES["404.html"]),
    ("/dir/\\..\\x", 404, FILES["404.html"]),
    ("/dir/%2e%2e/x", 200, FILES["x"]),
    ("/dir/..%2fx", 200, FILES["x"]),
    ("/dir/sub/..", 200, FILES["dir/index.html"]),
    ("/dir/../../x", 404, FILES["404.html"]),
    ("/.hidden/../x", 200, FILES["x"]),
    ("/%2ehidden", 404, FILES["404.html"]),
    ("/a%3fb", 200, FILES["a?b"]),
    ("/a%23b", 200, FILES["a#b"]),
    ("/outside/secret.txt", 404, FILES["404.html"]),
    ("/%c0%ae%c0%ae/x", 400, b"Bad Request"),
    ("/%ff", 400, b"Bad Request"),
    ("/50%.txt", 400, b"Bad Request"),
])
def test_the_answer_all_faces_give(faces: Faces, target: str, status: int, body: bytes) -> None:
    assert assert_faces_agree(faces, target)[:2] == (status, body)


def test_a_refused_path_is_kept_refused_by_get_path(tree: Path) -> None:
    """``get_path`` removes dot segments only from a path the lookup accepts; a refused one comes
    back as it was spelled, which ``lookup_path`` refuses again (a subclass that looks paths up
    through ``lookup_path`` refuses it too)."""
    app = StaticFiles(directory=tree)
    for path, expected in [("/dir/../x", "x"), ("/", "."), ("", "."), ("/dir/./sub/", os.path.join("dir", "sub")),
                           ("/%00/..".replace("%00", "\x00"), "\x00/.."), ("/a\\b/../x", "a\\b/../x"),
                           ("/../x", "../x")]:
        got = app.get_path({"path": path, "root_path": ""})
        assert got == expected, path
        if expected not in (".", "x", os.path.join("dir", "sub")):
            assert app.lookup_path(got) == ("", None), path


# -- Starlette's own StaticFiles, where installed ----------------------------------------------

@pytest.fixture(scope="module")
def starlette_faces(tree: Path) -> Iterator[Dict[str, InProcessServer]]:
    starlette_staticfiles = pytest.importorskip("starlette.staticfiles")
    servers = {
        "fast": InProcessServer(tree, "scanner", {"dotfiles": "allow"}),
        "ours": InProcessServer(_HandledErrors(StaticFiles(directory=tree, html=True))),
        "starlette": InProcessServer(_HandledErrors(starlette_staticfiles.StaticFiles(directory=tree, html=True))),
    }
    yield servers
    for server in servers.values():
        server.close()


def _ask(server: InProcessServer, target: str) -> Tuple[int, bytes]:
    client = server.open()
    client.send(b"GET " + target.encode("latin-1") + b" HTTP/1.1\r\nHost: x\r\n\r\n", [False])
    response = client.wait_for(1)[0]
    assert SECRET_MARKER not in response.body, target
    return (301 if response.status == 307 else response.status), response.body


@pytest.mark.parametrize("target", NAMED, ids=[t[:60] for t in NAMED])
def test_the_starlette_face_follows_the_fast_path_where_starlette_does(
    starlette_faces: Dict[str, InProcessServer], target: str
) -> None:
    answers = {name: _ask(server, target) for name, server in starlette_faces.items()}
    if answers["starlette"] == answers["fast"]:
        assert answers["ours"] == answers["fast"], (target, answers)
    else:
        assert answers["ours"] in (answers["fast"], answers["starlette"]), (target, answers)
