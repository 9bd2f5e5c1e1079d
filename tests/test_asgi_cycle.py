"""fastserve._speedups.asgi_cycle.build_scope: the scope every ASGI request starts from."""
from types import SimpleNamespace

from fastserve._speedups.asgi_cycle import build_scope
from fastserve.server.proxy import ProxyTrust

CONN = SimpleNamespace(client=("127.0.0.1", 5000), server=("127.0.0.1", 8000), tls=False)
TLS_CONN = SimpleNamespace(client=("127.0.0.1", 5000), server=("127.0.0.1", 8443), tls=True)


def test_http_scope():
    headers = [(b"host", b"example.com")]
    state = {"db": "connection"}
    scope = build_scope("http", CONN, b"/a%20b/c?x=1&y=2", headers, "", state, None)
    assert scope["type"] == "http" and scope["scheme"] == "http"
    assert scope["path"] == "/a b/c"
    assert scope["raw_path"] == b"/a%20b/c"
    assert scope["query_string"] == b"x=1&y=2"
    assert scope["headers"] is headers
    assert scope["client"] == ("127.0.0.1", 5000) and scope["server"] == ("127.0.0.1", 8000)
    assert scope["asgi"]["version"] == "3.0"
    assert scope["state"] == state and scope["state"] is not state  # each request gets its own copy


def test_root_path_prefixes_path_and_raw_path():
    """As uvicorn: ``raw_path`` spells ``path``, the --root-path included (it used to lack it)."""
    scope = build_scope("http", CONN, b"/items/a%2Fb?x=1", [], "/api", {}, None)
    assert scope["root_path"] == "/api" and scope["path"] == "/api/items/a/b"
    assert scope["raw_path"] == b"/api/items/a%2Fb" and scope["query_string"] == b"x=1"
    websocket = build_scope("websocket", CONN, b"/chat", [], "/api", {}, None)
    assert (websocket["path"], websocket["raw_path"]) == ("/api/chat", b"/api/chat")
    assert build_scope("http", CONN, b"/x", [], "/caf\u00e9", {}, None)["raw_path"] == b"/caf%C3%A9/x"
    assert build_scope("http", CONN, b"/x", [], "", {}, None)["raw_path"] == b"/x"


def test_websocket_scheme_and_absolute_form_target():
    scope = build_scope("websocket", CONN, b"http://example.com/chat?room=1", [], "", {}, None)
    assert scope["scheme"] == "ws" and scope["path"] == "/chat" and scope["query_string"] == b"room=1"


def test_tls_connections_have_secure_schemes():
    assert build_scope("http", TLS_CONN, b"/", [], "", {}, None)["scheme"] == "https"
    assert build_scope("websocket", TLS_CONN, b"/", [], "", {}, None)["scheme"] == "wss"


def test_undecodable_or_unusable_target_has_no_path():
    assert build_scope("http", CONN, b"/%ff", [], "", {}, None)["path"] is None
    assert build_scope("http", CONN, b"*", [], "", {}, None)["path"] is None
    assert build_scope("http", CONN, b"*", [], "", {}, None, "GET")["path"] is None


def test_options_asterisk_has_the_path_asterisk():
    scope = build_scope("http", CONN, b"*", [], "", {}, None, "OPTIONS")
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("*", b"*", b"")


def test_proxy_headers_apply_only_when_present_and_trusted():
    trust = ProxyTrust("127.0.0.1")
    forwarded = [(b"x-forwarded-for", b"203.0.113.5"), (b"x-forwarded-proto", b"https")]
    scope = build_scope("http", CONN, b"/", forwarded, "", {}, trust)
    assert scope["client"] == ("203.0.113.5", 0) and scope["scheme"] == "https"
    plain = build_scope("http", CONN, b"/", [(b"host", b"x")], "", {}, trust)
    assert plain["client"] == ("127.0.0.1", 5000) and plain["scheme"] == "http"
    outsider = SimpleNamespace(client=("198.51.100.4", 1), server=CONN.server, tls=False)
    assert build_scope("http", outsider, b"/", forwarded, "", {}, trust)["client"] == ("198.51.100.4", 1)


def test_an_http_request_scope_is_made_whole():
    scope = build_scope("http", CONN, b"/a?b", [], "", {}, None, "POST", True)
    assert (scope["method"], scope["http_version"], scope["asgi"]["spec_version"]) == ("POST", "1.0", "2.3")
    assert scope["extensions"] == {}  # as uvicorn offers: none
    offering = build_scope("http", CONN, b"/a", [], "", {}, None, "GET", False, True)  # --pathsend
    assert set(offering["extensions"]) == {"http.response.pathsend", "http.response.zerocopysend"}
    other = build_scope("http", CONN, b"/a", [], "", {}, None, "GET", False, True)
    assert other["http_version"] == "1.1" and other["extensions"] is not offering["extensions"]
    websocket = build_scope("websocket", CONN, b"/", [], "", {}, None)
    assert "method" not in websocket and websocket["asgi"]["spec_version"] == "2.3"
