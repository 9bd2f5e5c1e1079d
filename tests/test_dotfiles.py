"""Hidden files: one rule (pathlookup.is_hidden) for the open-file cache, StaticFiles and the server."""
import pytest

from fastserve._speedups.filecache import KIND_FILE, KIND_MISSING, FileCache
from fastserve._speedups.pathlookup import is_hidden, split_url_path
from fastserve.exceptions import HTTPException
from fastserve.staticfiles import StaticFiles
from fastserve.testclient import TestClient
from inprocess import cli_options


@pytest.mark.parametrize(
    "path, hidden",
    [
        ("/.env", True),
        ("/.git/config", True),
        ("/a/.htaccess", True),
        ("/a/b/.hidden/c.txt", True),
        ("/.well-known/security.txt", False),
        ("/.well-known/acme-challenge/token", False),
        ("/.well-known/.secret", True),
        ("/a/.well-known/x", True),  # only the first segment is RFC 8615's
        ("/index.html", False),
        ("/a.b/c.d", False),
        ("/./a.txt", False),  # "." segments are dropped before the check
        ("/", False),
    ],
)
def test_is_hidden(path, hidden):
    assert is_hidden(split_url_path(path)) is hidden


@pytest.fixture
def site(tmp_path):
    (tmp_path / ".env").write_text("SECRET=1")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("[core]")
    (tmp_path / ".well-known").mkdir()
    (tmp_path / ".well-known" / "security.txt").write_text("Contact: mailto:a@example.com")
    (tmp_path / ".well-known" / ".private").write_text("no")
    (tmp_path / "public.txt").write_text("public")
    (tmp_path / "404.html").write_text("<p>missing</p>")
    return tmp_path


def test_file_cache_denies_hidden_paths(site):
    cache = FileCache([site], dotfiles=False)
    for path in ("/.env", "/.git/config", "/.well-known/.private", "/%2eenv"):
        assert cache.lookup(path).kind == KIND_MISSING, path
    assert cache.lookup("/.well-known/security.txt").kind == KIND_FILE
    assert cache.lookup("/public.txt").kind == KIND_FILE
    allowing = FileCache([site])  # the default serves them, as Starlette does
    assert allowing.lookup("/.env").body == b"SECRET=1"


def test_file_cache_hidden_gets_the_404_page_in_html_mode(site):
    entry = FileCache([site], html=True, dotfiles=False).lookup("/.env")
    assert entry.status == 404 and entry.body == b"<p>missing</p>"


def test_staticfiles_serves_dotfiles_by_default_like_starlette(site):
    client = TestClient(StaticFiles(directory=site))
    assert client.get("/.env").text == "SECRET=1"


@pytest.mark.parametrize("replaced", [False, True])
def test_staticfiles_dotfiles_false(site, replaced):
    class Replaced(StaticFiles):
        def file_response(self, *args, **kwargs):  # Starlette's lookup, in a thread
            return super().file_response(*args, **kwargs)

    app = (Replaced if replaced else StaticFiles)(directory=site, dotfiles=False)
    assert app.uses_own_lookup() is not replaced
    client = TestClient(app)
    for path in ("/.env", "/.git/config"):
        with pytest.raises(HTTPException) as raised:  # as Starlette's: an app's handlers answer it
            client.get(path)
        assert raised.value.status_code == 404
    assert client.get("/.well-known/security.txt").text == "Contact: mailto:a@example.com"
    assert client.get("/public.txt").text == "public"
    app.dotfiles = True  # a setting changed after construction applies on the next request
    assert client.get("/.env").text == "SECRET=1"


# The server's rule, in-process, with the settings the CLI flags give.


def test_server_denies_dotfiles_by_default(site, serve_cli):
    client = serve_cli(str(site)).open()
    for path in ("/.env", "/.git/config", "/.git/", "/%2Eenv", "/.well-known/.private", "/a/../.env", "/.env/../.env"):
        response = client.request("GET", path)
        assert response.status == 404, path
        assert response.body == b"<p>missing</p>"
        assert b"SECRET" not in response.body
    assert client.request("HEAD", "/.env").status == 404
    well_known = client.request("GET", "/.well-known/security.txt")
    assert well_known.status == 200 and well_known.body.startswith(b"Contact:")
    assert client.request("GET", "/public.txt").body == b"public"


def test_server_dotfiles_allow(site, serve_cli):
    client = serve_cli(str(site), "--dotfiles", "allow").open()
    assert client.request("GET", "/.env").body == b"SECRET=1"
    assert client.request("GET", "/.git/config").body == b"[core]"


def test_server_keeps_a_staticfiles_apps_own_setting(site, serve):
    _, options = cli_options(str(site))  # the CLI's defaults: --dotfiles deny
    client = serve(StaticFiles(directory=site, answers="static"), **options).open()
    assert client.request("GET", "/.env").body == b"SECRET=1"  # the library's default is Starlette's
