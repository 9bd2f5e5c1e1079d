"""Shared fixtures: document roots and real ``python -m fastserve`` processes serving them."""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inprocess import READERS, InProcessServer, cli_options  # noqa: E402
from server_helpers import DocRoot, ServerProcess, build_docroot, running_server  # noqa: E402

try:
    from hypothesis import settings
except ImportError:  # the fuzz tests need the test extra; everything else runs without it
    pass
else:
    # ci: fast and reproducible (the default); long: a deeper search for local runs.
    settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True, database=None)
    settings.register_profile("long", max_examples=20_000, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory holding ``a.txt`` (``first\n``), for tests that ask one file of a static root
    (a module may define its own ``site``)."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "a.txt").write_bytes(b"first\n")
    return root


@pytest.fixture(scope="session")
def docroot(tmp_path_factory: pytest.TempPathFactory) -> DocRoot:
    """The shared, never-modified document root (with a 404.html)."""
    return build_docroot(tmp_path_factory.mktemp("site"))


@pytest.fixture
def fresh_docroot(tmp_path: Path) -> DocRoot:
    """A document root of the test's own, for tests that change files on disk."""
    return build_docroot(tmp_path / "site")


@pytest.fixture(scope="session")
def server(docroot: DocRoot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """fastserve with its CLI defaults (html mode on) serving ``docroot``, shared by the session."""
    log = tmp_path_factory.mktemp("logs") / "default-server.log"
    with running_server(docroot.root, log_path=log) as srv:
        yield srv


@pytest.fixture(scope="session")
def http_client(server: ServerProcess) -> Iterator["object"]:
    """An httpx2 client bound to the shared server."""
    import httpx2

    with httpx2.Client(base_url=server.url, timeout=5.0) as client:
        yield client


StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start extra servers with their own flags; each is stopped (and checked) after the test.

    ``start_server(target, *flags, cwd=None)`` returns a ready ``ServerProcess``.
    """
    stack: List = []

    def start(target: Optional[Path], *flags: str, cwd: Optional[Path] = None) -> ServerProcess:
        log = tmp_path / f"server-{len(stack)}.log"
        manager = running_server(target, list(flags), log_path=log, cwd=cwd)
        srv = manager.__enter__()
        stack.append(manager)
        return srv

    yield start
    errors = []
    for manager in reversed(stack):
        try:
            manager.__exit__(None, None, None)
        except AssertionError as exc:
            errors.append(str(exc))
    assert not errors, "\n".join(errors)



@pytest.fixture(params=READERS)
def reader(request: pytest.FixtureRequest) -> str:
    """Who reads request heads: the scanner (plain GET/HEAD) or httptools (every head)."""
    return request.param


@pytest.fixture
def serve(reader: str) -> Iterator[Callable[..., InProcessServer]]:
    """``serve(target, **config)``: an in-process server (see tests/inprocess.py), run with each reader."""
    servers: List[InProcessServer] = []

    def start(target: object, **options: object) -> InProcessServer:
        server = InProcessServer(target, reader, dict(options))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def serve_cli(serve: Callable[..., InProcessServer]) -> Callable[..., InProcessServer]:
    """``serve_cli(*argv)``: ``serve`` with the settings ``python -m fastserve *argv`` runs with."""

    def start(*argv: str) -> InProcessServer:
        target, options = cli_options(*argv)
        return serve(target, **options)

    return start


@pytest.fixture
def refuse_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.open`` refuses files without any read bit, as the kernel does for a user other than
    root (the tests run as root, which may open anything)."""
    real_open = os.open

    def open_as_user(path, flags, *args):
        if not os.stat(path).st_mode & (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", open_as_user)
