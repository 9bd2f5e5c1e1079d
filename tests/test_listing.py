"""Directory listings (``--listing``): HTML and JSON on a real server, odd names followed back to
their bytes, sorting, breadcrumbs, hidden files, HEAD and validators; the library face in-process."""
from __future__ import annotations

import gzip
import json
import os
import re
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple
from urllib.parse import urljoin

import httpx2
import pytest

from fastserve._speedups.filecache import KIND_FILE, KIND_LISTING, KIND_MISSING, KIND_REDIRECT, FileCache
from fastserve.config import Config
from fastserve.exceptions import HTTPException
from fastserve.listing import prefers_json, sort_from_query
from fastserve.server.app_loader import AppLoadError, load_app
from fastserve.staticfiles import StaticFiles
from fastserve.testclient import TestClient
from inprocess import InProcessServer, request
from server_helpers import RawConnection, ServerProcess, running_server

# Names a listing must survive: markup, quotes, ampersands, spaces, percent signs, URL
# delimiters, a scheme-like colon, unicode (composed and not), and a name that is only digits.
ODD_NAMES = [
    'a "q" <b> & c.txt',
    "<img src=x onerror=alert(1)>.txt",
    "it's.txt",
    "per%cent #hash ?q.txt",
    "50%.txt",
    "%41.txt",
    "ab:c.txt",
    "+plus;semi=eq,comma&amp.txt",
    "two  spaces .txt",
    "ünï cödé.txt",
    "e\u0301.txt",
    "日本語.txt",
    "12345",
]
OLD, NEW = 1_600_000_000, 1_700_000_000


def _write(path: Path, data: bytes, mtime: Optional[int] = None) -> None:
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("listing")
    root = base / "public"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "withindex").mkdir()
    (root / ".hidden").mkdir()
    (root / ".well-known").mkdir()
    for number, name in enumerate(ODD_NAMES):
        _write(root / name, f"content of file {number}: {name}\n".encode())
    _write(root / "small.bin", b"x", OLD)
    _write(root / "large.bin", b"y" * 5000, NEW)
    _write(root / "Middle.bin", b"z" * 300, (OLD + NEW) // 2)
    _write(root / "sub" / "deeper" / "chunk.bin", b"c" * 100_000)
    _write(root / "sub" / "x.txt", b"in sub\n")
    _write(root / "sub" / "deeper" / "deep.txt", b"deep\n")
    _write(root / "withindex" / "index.html", b"<p>the index</p>")
    _write(root / ".env", b"SECRET=1\n")
    _write(root / ".hidden" / "inner.txt", b"hidden\n")
    _write(root / ".well-known" / "security.txt", b"Contact: mailto:x@example.org\n")
    _write(base / "outside.txt", b"outside the root\n")
    os.symlink(base / "outside.txt", root / "outside_link.txt")
    os.symlink(base, root / "outside_dir")
    os.symlink("small.bin", root / "inside_link.bin")
    os.symlink("nowhere.txt", root / "broken_link.txt")
    os.mkfifo(root / "a_fifo")
    _write(root / "back\\slash.txt", b"no URL names this\n")  # split_url_path refuses a backslash
    _write(root / "c:drive.txt", b"nor this, at the root\n")  # nor a drive-like first segment
    return root


@pytest.fixture(scope="module")
def listing_server(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("listing-log") / "server.log"
    with running_server(tree, ["--listing"], log_path=log) as server:
        yield server


@pytest.fixture(scope="module")
def client(listing_server: ServerProcess) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=listing_server.url, timeout=10) as http:
        yield http


class _Links(HTMLParser):
    """The ``<a href>`` links of a page, with their text, and those inside ``<nav>``."""

    def __init__(self) -> None:
        super().__init__()
        self.links: List[Tuple[str, str]] = []
        self.nav: List[Tuple[str, str]] = []
        self._href: Optional[str] = None
        self._text = ""
        self._in_nav = False

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        if tag == "a":
            self._href, self._text = dict(attrs)["href"], ""
        elif tag == "nav":
            self._in_nav = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            (self.nav if self._in_nav else self.links).append((self._href, self._text))
            self._href = None
        elif tag == "nav":
            self._in_nav = False

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text += data


def _links(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    parser.close()
    return parser


def _json(client: httpx2.Client, target: str) -> Dict:
    response = client.get(target, headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def test_html_listing_escapes_names_and_links_serve_the_exact_files(client: httpx2.Client, tree: Path) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["vary"] == "Accept, Accept-Encoding"
    html = response.text
    # No name reaches the page as markup: every "<" in it belongs to the template's own tags.
    assert "<img" not in html and "<b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in html
    assert set(re.findall(r"<(/?[a-zA-Z0-9!]+)", html)) <= {
        "!DOCTYPE", "html", "/html", "head", "/head", "meta", "title", "/title", "style", "/style", "body",
        "/body", "h1", "/h1", "nav", "/nav", "a", "/a", "table", "/table", "thead", "/thead", "tbody",
        "/tbody", "tr", "/tr", "th", "/th", "td", "/td", "time", "/time",
    }
    links = dict((text, href) for href, text in _links(html).links)
    for name in ODD_NAMES:
        href = links[name]
        assert re.fullmatch(r"/[A-Za-z0-9%._~-]+", href), href  # every delimiter percent-encoded
        fetched = client.get(urljoin(str(client.base_url), href))
        assert fetched.status_code == 200, (name, href)
        assert fetched.content == (tree / name).read_bytes()
    assert links["sub/"] == "/sub/"


def test_json_shape(client: httpx2.Client, tree: Path) -> None:
    document = _json(client, "/")
    assert set(document) == {"path", "sort", "order", "truncated", "entries"}
    assert (document["path"], document["sort"], document["order"], document["truncated"]) == ("/", "name", "asc", False)
    by_name = {entry["name"]: entry for entry in document["entries"]}
    for entry in document["entries"]:
        assert set(entry) == {"name", "type", "size", "mtime", "mtime_epoch", "href"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["mtime"])
        stamp = datetime.strptime(entry["mtime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert stamp.timestamp() == entry["mtime_epoch"]
    assert by_name["large.bin"] == {
        "name": "large.bin", "type": "file", "size": 5000, "mtime": "2023-11-14T22:13:20Z",
        "mtime_epoch": NEW, "href": "/large.bin",
    }
    assert by_name["sub"]["type"] == "directory" and by_name["sub"]["size"] is None
    assert by_name["sub"]["href"] == "/sub/"
    for name in ODD_NAMES:
        assert client.get(by_name[name]["href"]).content == (tree / name).read_bytes()


def test_listed_is_what_is_served(client: httpx2.Client) -> None:
    """Hidden names (--dotfiles deny), links out of the root, broken links and FIFOs are not
    listed, since none of them is served; .well-known and links inside the root are."""
    names = {entry["name"] for entry in _json(client, "/")["entries"]}
    for absent in (".env", ".hidden", "outside_link.txt", "outside_dir", "broken_link.txt", "a_fifo", "c:drive.txt"):
        assert absent not in names
        assert client.get("/" + absent).status_code == 404
    assert "back\\slash.txt" not in names and client.get("/back%5Cslash.txt").status_code in (400, 404)
    assert {".well-known", "inside_link.bin", "withindex", "sub"} <= names
    assert client.get("/.hidden/").status_code == 404  # no listing of a hidden directory either
    assert [e["name"] for e in _json(client, "/.well-known/")["entries"]] == ["security.txt"]


def test_sorting(client: httpx2.Client) -> None:
    def order(query: str) -> List[str]:
        names = [e["name"] for e in _json(client, "/" + query)["entries"] if e["name"].endswith(".bin")]
        return [name for name in names if name != "inside_link.bin"]

    assert order("?sort=name") == ["large.bin", "Middle.bin", "small.bin"]  # case-insensitive
    assert order("?sort=name&order=desc") == ["small.bin", "Middle.bin", "large.bin"]
    assert order("?sort=size&order=asc") == ["small.bin", "Middle.bin", "large.bin"]
    assert order("?sort=size&order=desc") == ["large.bin", "Middle.bin", "small.bin"]
    assert order("?sort=mtime") == ["small.bin", "Middle.bin", "large.bin"]
    assert order("?sort=mtime&order=desc") == ["large.bin", "Middle.bin", "small.bin"]
    for bad in ("?sort=bogus&order=sideways", "?sort=&order=", "?sort=%ff%fe", "?sort=<x>&order=%00", "?order"):
        document = _json(client, "/" + bad)
        assert (document["sort"], document["order"]) == ("name", "asc"), bad
    assert _json(client, "/?sort=bogus")["entries"] == _json(client, "/")["entries"]
    for entries in (_json(client, "/?sort=size&order=desc")["entries"], _json(client, "/?sort=mtime")["entries"]):
        kinds = [entry["type"] for entry in entries]
        assert kinds == sorted(kinds)  # "directory" < "file": directories first, whatever the order


def test_sort_links_and_breadcrumbs(client: httpx2.Client) -> None:
    page = _links(client.get("/sub/deeper/").text)
    assert page.nav == [("/", "/"), ("/sub/", "sub"), ("/sub/deeper/", "deeper")]
    assert ("/sub/", "../") in page.links
    assert ("/sub/deeper/deep.txt", "deep.txt") in page.links
    assert ("?sort=name&order=desc", "Name") in page.links  # the current column flips its order
    assert ("?sort=size&order=asc", "Size") in page.links
    assert ("?sort=mtime&order=asc", "Modified") in page.links
    top = _links(client.get("/").text)
    assert top.nav == [("/", "/")] and not any(text == "../" for _, text in top.links)


def test_redirect_index_head_and_validators(client: httpx2.Client) -> None:
    redirect = client.get("/sub")
    assert redirect.status_code == 301 and redirect.headers["location"] == "/sub/"
    assert client.get("/withindex/").text == "<p>the index</p>"  # an index wins over a listing
    get = client.get("/sub/")
    head = client.head("/sub/")
    assert head.status_code == 200 and head.content == b""
    for name in ("content-type", "content-length", "etag", "cache-control", "vary"):
        assert head.headers[name] == get.headers[name], name
    etag = get.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]+(-gzip)?"', etag)  # httpx asks for gzip
    assert _json(client, "/sub/") and client.get("/sub/", headers={"Accept": "application/json"}).headers["etag"] != etag
    not_modified = client.get("/sub/", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag and not_modified.headers["vary"] == "Accept, Accept-Encoding"
    assert client.get("/sub/", headers={"If-Match": '"other"'}).status_code == 412
    assert client.post("/sub/").status_code == 405


def test_accept_read_by_both_request_readers(listing_server: ServerProcess) -> None:
    """A plain GET is read by the scanner; one with Content-Length goes through httptools."""
    with RawConnection(listing_server.port) as conn:
        for extra in ([], [("Content-Length", "0")]):
            response = conn.exchange("GET", "/sub/", [("Accept", "application/json"), *extra])
            assert response.status == 200 and response.header("content-type") == "application/json", extra
            assert [e["name"] for e in json.loads(response.body)["entries"]] == ["deeper", "x.txt"]
        pipelined = b"".join(
            b"GET /sub/ HTTP/1.1\r\nHost: x\r\nAccept: %s\r\n\r\n" % accept
            for accept in (b"application/json", b"text/html", b"application/json")
        ) + b"GET /sub/x.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        conn.send(pipelined)
        types = [conn.read_response().header("content-type") for _ in range(3)]
        assert types == ["application/json", "text/html; charset=utf-8", "application/json"]
        assert conn.read_response().body == b"in sub\n"  # answers stay in request order


def test_listing_answered_after_the_client_catches_up(listing_server: ServerProcess) -> None:
    """A listing asked for behind more answers than --max-response-buffer holds waits as a bare
    head; answered later, it keeps its own request's keep-alive, not the last one read's."""
    count = 120  # 12 MB of answers: far past the 4 MiB the connection holds for a slow reader
    with RawConnection(listing_server.port, rcvbuf=16384) as conn:
        conn.send(b"GET /sub/deeper/chunk.bin HTTP/1.1\r\nHost: x\r\n\r\n" * count + (
            b"GET /sub/ HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n"
            b"GET /sub/x.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ))
        for _ in range(count):
            assert len(conn.read_response().body) == 100_000
        listing = conn.read_response()
        assert listing.header("content-type") == "application/json" and listing.header("connection") is None
        assert [e["name"] for e in json.loads(listing.body)["entries"]] == ["deeper", "x.txt"]
        last = conn.read_response()
        assert last.body == b"in sub\n" and last.header("connection") == "close"
        assert conn.read_to_eof() == b""


def test_listings_are_gzipped_for_clients_that_accept_it(listing_server: ServerProcess) -> None:
    """--compress (on by default) covers listings: gzip, made with the listing, an ETag of its own."""
    with RawConnection(listing_server.port) as conn:
        plain = conn.exchange("GET", "/sub/")
        assert plain.header("content-encoding") is None and len(plain.body) > 1024
        assert plain.header("vary") == "Accept, Accept-Encoding"
        encoded = conn.exchange("GET", "/sub/", [("Accept-Encoding", "br;q=0, gzip")])
        assert encoded.header("content-encoding") == "gzip" and gzip.decompress(encoded.body) == plain.body
        assert encoded.header("etag") == plain.header("etag")[:-1] + '-gzip"'
        assert encoded.header("vary") == "Accept, Accept-Encoding"
        head = conn.exchange("HEAD", "/sub/", [("Accept-Encoding", "gzip")])
        assert head.body == b"" and head.header("content-length") == str(len(encoded.body))
        again = conn.exchange("GET", "/sub/", [("Accept-Encoding", "gzip"), ("If-None-Match", encoded.header("etag"))])
        assert again.status == 304
        assert conn.exchange("GET", "/sub/", [("If-None-Match", encoded.header("etag"))]).status == 200
        # The same negotiation as for files: a higher weight for identity keeps the listing unencoded.
        for preferred in ("gzip;q=0.5, identity", "gzip;q=0, *", "br, zstd"):
            unencoded = conn.exchange("GET", "/sub/", [("Accept-Encoding", preferred)])
            assert unencoded.header("content-encoding") is None and unencoded.body == plain.body, preferred
        assert conn.exchange("GET", "/sub/", [("Accept-Encoding", "x-gzip")]).header("content-encoding") == "gzip"
        small = conn.exchange("GET", "/.well-known/", [("Accept-Encoding", "gzip"), ("Accept", "application/json")])
        assert small.header("content-encoding") is None and len(small.body) <= 1024  # not worth encoding


def test_server_app_lists_from_the_servers_cache(tree: Path) -> None:
    """The StaticFiles app that renders the fast path's listings looks paths up in the server's
    own open-file cache (its --cache-* limits), not a second one."""
    server = InProcessServer(tree, options={"listing": True})
    try:
        assert server.app.current_file_cache() is server.state.cache
        assert server.state.asgi_bridge is not None  # the listings' way to the app
        assert InProcessServer(tree).state.asgi_bridge is None  # no listing: no bridge
    finally:
        server.close()


def test_without_listing_a_directory_without_index_is_404(server: ServerProcess) -> None:
    with httpx2.Client(base_url=server.url, timeout=5) as http:
        assert http.get("/nested/").status_code == 404
        assert http.get("/nested").status_code == 404  # and no redirect to the slash form
        assert http.get("/dir").status_code == 301  # a directory with an index still redirects


def test_templates_override_and_dotfiles_allow(tree: Path, tmp_path: Path, serve_cli) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "listing.html").write_text(
        "<ul>{% for e in entries %}<li data-size='{{ e.size }}'>{{ e.name }}|{{ e.href }}</li>{% endfor %}</ul>"
    )
    client = serve_cli(str(tree), "--listing", "--templates", str(templates), "--dotfiles", "allow").open()
    client.send(request("GET", "/"))
    client.send(request("GET", "/.hidden/", [("Accept", "application/json")]))
    listed, hidden = client.wait_for(2)  # listings are read and rendered in a worker thread
    page = listed.body.decode()
    assert listed.status == 200 and page.startswith("<ul><li")
    assert "<li data-size='None'>.env" not in page and "<li data-size='9'>.env|/.env</li>" in page
    assert "&lt;img src=x" in page and "<img" not in page  # the override is autoescaped too
    assert ".hidden|/.hidden/</li>" in page
    assert json.loads(hidden.body)["entries"][0]["name"] == "inner.txt"


def test_templates_dir_without_a_usable_listing_html_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AppLoadError, match="no listing.html in it"):
        load_app(Config(target=str(tmp_path), listing=True, templates=str(tmp_path)))
    (tmp_path / "listing.html").write_text("<ul>\n{% for e in entries %}<li>{{ e.name }</li>{% endfor %}</ul>")
    with pytest.raises(AppLoadError, match="listing.html line 2: "):
        load_app(Config(target=str(tmp_path), listing=True, templates=str(tmp_path)))


# -- the pieces, in-process ----------------------------------------------------------------------


def test_file_cache_listing_entries(tree: Path) -> None:
    cache = FileCache([tree], html=True, listing=True, dotfiles=False)
    entry = cache.lookup("/sub/")
    assert (entry.kind, entry.path) == (KIND_LISTING, os.path.realpath(tree / "sub"))
    assert cache.lookup("/sub").kind == KIND_REDIRECT
    assert cache.lookup("/").kind == KIND_LISTING
    assert cache.lookup("/withindex/").kind == KIND_FILE
    assert cache.lookup("/.hidden/").kind == KIND_MISSING
    assert cache.lookup("/outside_dir/").kind == KIND_MISSING
    assert FileCache([tree], html=True).lookup("/sub/").kind == KIND_MISSING
    assert FileCache([tree], listing=True).lookup("/withindex/").kind == KIND_LISTING  # no html: no index


def test_accept_and_query_rules() -> None:
    assert prefers_json("application/json")
    assert prefers_json("application/json, text/html;q=0.5")
    assert prefers_json("application/*")
    assert not prefers_json("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
    assert not prefers_json("*/*") and not prefers_json(None) and not prefers_json("")
    assert not prefers_json("application/json;q=0, */*")
    assert not prefers_json("application/json;q=abc")
    assert sort_from_query(b"sort=mtime&order=desc") == ("mtime", "desc")
    assert sort_from_query(b"sort=MTIME&order=up&x=%zz") == ("name", "asc")


def test_staticfiles_mounted_listing_links_carry_the_mount(tree: Path) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = Starlette(routes=[Mount("/static", app=StaticFiles(directory=tree, listing=True, dotfiles=False))])
    with TestClient(app) as http:
        assert http.get("/static", follow_redirects=False).headers["location"].endswith("/static/")
        document = http.get("/static/sub/", headers={"Accept": "application/json"}).json()
        assert document["path"] == "/static/sub/"
        assert [e["href"] for e in document["entries"]] == ["/static/sub/deeper/", "/static/sub/x.txt"]
        assert http.get(document["entries"][1]["href"]).content == b"in sub\n"
        page = _links(http.get("/static/sub/").text)
        assert page.nav == [("/static/", "/static/"), ("/static/sub/", "sub")]


def test_staticfiles_listing_cap_and_replaced_lookup(tree: Path) -> None:
    capped = TestClient(StaticFiles(directory=tree, listing=True, listing_max_entries=3))
    document = capped.get("/", headers={"Accept": "application/json"}).json()
    assert document["truncated"] is True and len(document["entries"]) == 3
    assert "Only the first 3 entries are listed." in capped.get("/").text

    class Logged(StaticFiles):
        def lookup_path(self, path: str):  # replaced: StaticFiles looks files up in a thread
            return super().lookup_path(path)

    replaced = TestClient(Logged(directory=tree, listing=True, dotfiles=False))
    assert [e["name"] for e in replaced.get("/sub/", headers={"Accept": "application/json"}).json()["entries"]] == [
        "deeper", "x.txt"
    ]
    assert replaced.get("/sub", follow_redirects=False).status_code == 307
    with pytest.raises(HTTPException) as missing:  # without listing: the 404 StaticFiles raises
        TestClient(Logged(directory=tree)).get("/sub/")
    assert missing.value.status_code == 404


def test_template_ships_as_package_data() -> None:
    """``pip install .`` puts ``fastserve/templates/listing.html`` in the wheel (checked by
    building one: the package-data glob of pyproject.toml matches the template)."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from fastserve.listing import PACKAGED_TEMPLATES, TEMPLATE_NAME

    root = Path(__file__).resolve().parent.parent
    with open(root / "pyproject.toml", "rb") as file:
        setuptools = tomllib.load(file)["tool"]["setuptools"]
    # the template's directory is a package of its own (listed, so setuptools does not warn)
    package = os.path.relpath(PACKAGED_TEMPLATES, root).replace(os.sep, ".")
    assert package in setuptools["packages"], (package, setuptools["packages"])
    globs = setuptools["package-data"][package]
    assert any(fnmatch.fnmatch(TEMPLATE_NAME, pattern) for pattern in globs), (TEMPLATE_NAME, globs)


def test_rendered_listings_are_reused_while_the_directory_is_unchanged(tmp_path: Path, monkeypatch) -> None:
    """``DirectoryListing.answer`` renders once per ``valid_for`` while the directory's device,
    inode and modification time hold; a name added shows at once; ``valid_for`` 0 renders each
    time; what it keeps is bounded in count and bytes."""
    import fastserve.listing as listing_module
    from fastserve.listing import DirectoryListing

    root = tmp_path / "public"
    root.mkdir()
    _write(root / "a.txt", b"a")
    renderer = DirectoryListing()
    renders: List[Tuple[str, ...]] = []
    real_render = renderer.render

    def counted(directories, url_parts, **kwargs):
        renders.append(url_parts)
        return real_render(directories, url_parts, **kwargs)

    monkeypatch.setattr(renderer, "render", counted)
    clock = [1000.0]
    monkeypatch.setattr(listing_module.time, "monotonic", lambda: clock[0])
    dirs = [(str(root), str(root))]

    def names(valid_for: float, query: bytes = b"", gzip_wanted: bool = False) -> List[str]:
        rendered = renderer.answer(dirs, (), root_path="", query_string=query, accept="application/json",
                                   dotfiles=False, follow_symlink=False, gzip_wanted=gzip_wanted, valid_for=valid_for)
        body = gzip.decompress(rendered.body) if rendered.coding == "gzip" else rendered.body
        return [entry["name"] for entry in json.loads(body)["entries"]]

    assert names(1.0) == ["a.txt"] and len(renders) == 1
    assert names(1.0) == ["a.txt"] and len(renders) == 1  # reused
    assert names(1.0, b"sort=size") == ["a.txt"] and len(renders) == 2  # another order: its own
    _write(root / "b.txt", b"b" * 2000)
    os.utime(root, ns=(os.stat(root).st_atime_ns, os.stat(root).st_mtime_ns + 1_000_000))  # coarse clocks
    assert names(1.0) == ["a.txt", "b.txt"] and len(renders) == 3  # a name added: at once
    _write(root / "a.txt", b"aaa")  # a file's new size: within valid_for
    clock[0] += 0.5
    assert names(1.0) == ["a.txt", "b.txt"] and len(renders) == 3
    clock[0] += 0.6
    assert names(1.0) == ["a.txt", "b.txt"] and len(renders) == 4
    assert names(0.0) == ["a.txt", "b.txt"] and names(0.0) == ["a.txt", "b.txt"] and len(renders) == 6
    assert names(1.0, gzip_wanted=True) == ["a.txt", "b.txt"] and len(renders) == 7  # gzip: its own
    assert names(1.0, gzip_wanted=True) == ["a.txt", "b.txt"] and len(renders) == 7

    monkeypatch.setattr(listing_module, "KEPT_LISTINGS", 2)
    for query in (b"sort=name", b"sort=size", b"sort=mtime", b"order=desc"):
        names(1.0, query)
    assert len(renderer._kept) == 2
    one_size = max(len(kept[0].body) for kept in renderer._kept.values())
    monkeypatch.setattr(listing_module, "KEPT_LISTING_BYTES", one_size + 10)  # room for one
    for query in (b"sort=name", b"sort=size"):
        names(1.0, query)
    assert len(renderer._kept) == 1 and 0 < renderer._kept_bytes <= one_size + 10
    monkeypatch.setattr(listing_module, "KEPT_LISTING_BYTES", 10)  # none fits: none kept, none dropped
    names(1.0, b"order=desc")
    assert len(renderer._kept) == 1


def test_concurrent_listings_render_one_at_a_time_and_share_the_render(tmp_path: Path, monkeypatch) -> None:
    """Many requests for one listing at once: one worker thread renders at a time (each more
    would take the GIL from the event loop), and with ``cache_valid`` the others get its render."""
    import threading
    import time

    import anyio

    from fastserve.listing import DirectoryListing

    root = tmp_path / "public"
    root.mkdir()
    for number in range(50):
        _write(root / f"f{number:02d}.txt", b"x")
    active = [0]
    most = [0]
    renders = [0]
    lock = threading.Lock()
    real_render = DirectoryListing.render

    def slow_render(self, *args, **kwargs):
        with lock:
            active[0] += 1
            renders[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)
        try:
            return real_render(self, *args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(DirectoryListing, "render", slow_render)

    async def ask_many(app: StaticFiles, count: int) -> List[int]:
        statuses: List[int] = []

        async def one() -> None:
            scope = {"type": "http", "method": "GET", "path": "/", "raw_path": b"/", "root_path": "",
                     "query_string": b"", "headers": [(b"host", b"x")], "http_version": "1.1", "scheme": "http",
                     "server": ("x", 80), "client": ("127.0.0.1", 1)}

            async def receive() -> dict:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            await app(scope, receive, send)

        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(one)
        return statuses

    uncached = StaticFiles(directory=root, listing=True)  # the library's default: cache_valid 0
    assert anyio.run(ask_many, uncached, 6) == [200] * 6
    assert most[0] == 1 and renders[0] == 6
    renders[0] = 0
    cached = StaticFiles(directory=root, listing=True, cache_valid=30.0)
    assert anyio.run(ask_many, cached, 6) == [200] * 6
    assert most[0] == 1 and renders[0] == 1
