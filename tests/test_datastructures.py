"""fastserve.datastructures gives the same answers as starlette.datastructures for the same inputs."""

from __future__ import annotations

from typing import Any

import pytest
import starlette.datastructures as sd

from fastserve import datastructures as fd


def outcome(func: Any) -> Any:
    """The value ``func()`` returns, or the type of the exception it raises."""
    try:
        return ("ok", func())
    except Exception as exc:  # noqa: BLE001 - the exception type is the outcome being compared
        return ("raised", type(exc).__name__)


# --------------------------------------------------------------------------- URL

URLS = [
    "",
    "/",
    "/path/to/somewhere?abc=123&anotherQuery=456#frag",
    "https://example.org:123/path/to/somewhere?abc=123&abc=456",
    "http://user:secret@Example.COM:8000/a%20b?x=1",
    "https://user@host/",
    "ws://[::1]:9000/socket",
    "wss://[2001:db8::7]/",
    "http://host:notaport/",
    "//evil.example/path",
    "mailto:someone@example.com",
    "http://example.com/?empty=&flag&x=1&x=2",
]


def url_view(url: Any) -> Any:
    return {
        "str": str(url),
        "repr": repr(url),
        "scheme": url.scheme,
        "netloc": url.netloc,
        "path": url.path,
        "query": url.query,
        "fragment": url.fragment,
        "username": url.username,
        "password": url.password,
        "hostname": url.hostname,
        "port": outcome(lambda: url.port),
        "is_secure": url.is_secure,
    }


@pytest.mark.parametrize("raw", URLS)
def test_url_components_match(raw: str) -> None:
    assert url_view(fd.URL(raw)) == url_view(sd.URL(raw))


REPLACEMENTS: list[dict[str, Any]] = [
    {"scheme": "https"},
    {"path": "/other"},
    {"query": "a=b", "fragment": "top"},
    {"netloc": "new.example:81"},
    {"hostname": "new.example"},
    {"hostname": "::1"},
    {"hostname": "not:an:ipv6:host"},
    {"port": 8443},
    {"port": None},
    {"username": "alice"},
    {"username": "alice", "password": "pw"},
    {"password": "only"},
    {"hostname": "h", "port": 1, "username": "u", "password": "p"},
]


@pytest.mark.parametrize("raw", [u for u in URLS if u and "notaport" not in u])
@pytest.mark.parametrize("changes", REPLACEMENTS)
def test_url_replace_matches(raw: str, changes: dict[str, Any]) -> None:
    ours = outcome(lambda: str(fd.URL(raw).replace(**changes)))
    theirs = outcome(lambda: str(sd.URL(raw).replace(**changes)))
    assert ours == theirs


@pytest.mark.parametrize("raw", URLS)
def test_url_query_param_helpers_match(raw: str) -> None:
    for ours_url, theirs_url in [(fd.URL(raw), sd.URL(raw))]:
        assert str(ours_url.include_query_params(x=3, new="v w")) == str(
            theirs_url.include_query_params(x=3, new="v w")
        )
        assert str(ours_url.replace_query_params(only=1, b="&")) == str(theirs_url.replace_query_params(only=1, b="&"))
        assert str(ours_url.remove_query_params("x")) == str(theirs_url.remove_query_params("x"))
        assert str(ours_url.remove_query_params(["abc", "empty", "missing"])) == str(
            theirs_url.remove_query_params(["abc", "empty", "missing"])
        )


def test_url_from_components_matches() -> None:
    parts = {"scheme": "https", "netloc": "example.com", "path": "/a", "query": "q=1"}
    assert str(fd.URL(**parts)) == str(sd.URL(**parts)) == "https://example.com/a?q=1"
    assert str(fd.URL(path="//x")) == str(sd.URL(path="//x"))


def test_url_equality_and_examples() -> None:
    url = fd.URL("https://example.org:123/path/to/somewhere?abc=123#anchor")
    assert url == "https://example.org:123/path/to/somewhere?abc=123#anchor"
    assert url == fd.URL("https://example.org:123/path/to/somewhere?abc=123#anchor")
    assert url != fd.URL("https://example.org/")
    assert url.is_secure
    assert not fd.URL("http://example.org").is_secure
    assert fd.URL("wss://x").is_secure
    assert repr(fd.URL("http://u:p@h/")) == "URL('http://u:********@h/')"


def scope_for(**overrides: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "scheme": "http",
        "path": "/some/path",
        "query_string": b"a=1&b=2",
        "headers": [],
        "server": ("testserver", 80),
    }
    scope.update(overrides)
    return scope


SCOPES = [
    scope_for(),
    scope_for(headers=[(b"host", b"example.com")]),
    scope_for(headers=[(b"host", b"example.com:8080")]),
    scope_for(headers=[(b"host", b"example.com:00080")]),
    scope_for(headers=[(b"host", b"example.com:99999")]),
    scope_for(headers=[(b"host", b"example.com:")]),
    scope_for(headers=[(b"host", b"[::1]:8000")]),
    scope_for(headers=[(b"host", b"[::1")]),
    scope_for(headers=[(b"host", b"[zz::1]")]),
    scope_for(headers=[(b"host", b"[fe80::1%eth0]")]),
    scope_for(headers=[(b"host", b"[v1.fe80::a+en1]")]),
    scope_for(headers=[(b"host", b"[V1.x]")]),
    scope_for(headers=[(b"host", b"[::ffff:1.2.3.4]:1")]),
    scope_for(headers=[(b"host", b"evil.com/path")]),
    scope_for(headers=[(b"host", b"evil.com?x")]),
    scope_for(headers=[(b"host", b"user@evil.com")]),
    scope_for(headers=[(b"host", b"a b")]),
    scope_for(headers=[(b"host", b"")]),
    scope_for(headers=[(b"host", b"example.com\n")]),
    scope_for(headers=[(b"host", b"\xc3\xa9.com")]),
    scope_for(headers=[(b"host", b"example.com:\xd9\xa1")]),
    scope_for(headers=[(b"host", b"ok.com"), (b"host", b"second.com")]),
    scope_for(headers=[(b"host", b"bad/host"), (b"host", b"second.com")]),
    scope_for(scheme="https", server=("testserver", 443)),
    scope_for(scheme="https", server=("testserver", 8443)),
    scope_for(scheme="ws", server=("::1", 80)),
    scope_for(scheme="wss", server=("[::1]", 9000)),
    scope_for(server=None),
    scope_for(server=None, path="//double/slash"),
    scope_for(server=None, query_string=b""),
    scope_for(path="/with?question#hash\\slash"),
    scope_for(path="/caf\u00e9", query_string="q=caf\u00e9".encode()),
]


@pytest.mark.parametrize("scope", SCOPES, ids=range(len(SCOPES)))
def test_url_from_scope_matches(scope: dict[str, Any]) -> None:
    ours = fd.URL(scope=dict(scope))
    theirs = sd.URL(scope=dict(scope))
    assert str(ours) == str(theirs)
    assert url_view(ours) == url_view(theirs)


def test_url_from_scope_prefers_a_valid_host_header() -> None:
    assert str(fd.URL(scope=scope_for(headers=[(b"host", b"example.com")]))) == "http://example.com/some/path?a=1&b=2"
    # A Host header that would change the path falls back to the server address.
    assert str(fd.URL(scope=scope_for(headers=[(b"host", b"evil.com/x")]))) == "http://testserver/some/path?a=1&b=2"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("example.com", True),
        ("example.com:8080", True),
        ("example.com:065535", True),
        ("example.com:65536", False),
        ("[::1]", True),
        ("[::1]:443", True),
        ("[v7.abc]", True),
        ("[1.2.3.4]", False),
        ("example.com:", False),
        (":80", False),
        ("a:b:80", False),
        ("[::1]x", False),
        ("", False),
    ],
)
def test_host_header_validation(value: str, valid: bool) -> None:
    assert fd.is_valid_host_header(value) is valid


# --------------------------------------------------------------------------- URLPath

@pytest.mark.parametrize("path", ["/a", "//b", "\\c"])
@pytest.mark.parametrize("protocol", ["", "http", "websocket"])
@pytest.mark.parametrize("base", ["http://example.com/root/", "https://example.com", "wss://e.com/"])
def test_urlpath_matches(path: str, protocol: str, base: str) -> None:
    ours = fd.URLPath(path, protocol=protocol, host="h.example" if protocol else "")
    theirs = sd.URLPath(path, protocol=protocol, host="h.example" if protocol else "")  # type: ignore[arg-type]
    assert str(ours) == str(theirs)
    assert str(ours.make_absolute_url(base)) == str(theirs.make_absolute_url(base))
    assert ours.protocol == theirs.protocol and ours.host == theirs.host


# --------------------------------------------------------------------------- Headers

HEADER_INPUTS = [
    {"headers": {"Content-Type": "text/html", "X-Thing": "1"}},
    {"raw": [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")]},
    {"raw": [(b"set-cookie", b"x=1"), (b"set-cookie", b"y=2"), (b"vary", b"accept")]},
    {"scope": {"headers": ((b"host", b"example.com"), (b"accept", b"*/*"))}},
    {},
]


def headers_view(headers: Any) -> Any:
    return {
        "raw": headers.raw,
        "keys": list(headers.keys()),
        "values": list(headers.values()),
        "items": list(headers.items()),
        "len": len(headers),
        "list": list(headers),
        "repr": repr(headers).split("(", 1)[1],
        "getlist_a": headers.getlist("A"),
        "get_content_type": headers.get("content-type"),
        "contains": [name in headers for name in ("a", "A", "Host", "missing", "content-type")],
        "getitem_a": outcome(lambda: headers["a"]),
        "getitem_missing": outcome(lambda: headers["missing"]),
        "dict": dict(headers),
    }


def copy_input(kwargs: dict[str, Any]) -> dict[str, Any]:
    copied = dict(kwargs)
    if "raw" in copied:
        copied["raw"] = list(copied["raw"])
    if "scope" in copied:
        copied["scope"] = dict(copied["scope"])
    return copied


@pytest.mark.parametrize("kwargs", HEADER_INPUTS)
def test_headers_read_api_matches(kwargs: dict[str, Any]) -> None:
    assert headers_view(fd.Headers(**copy_input(kwargs))) == headers_view(sd.Headers(**copy_input(kwargs)))


def test_headers_equality_and_repr() -> None:
    assert fd.Headers({"A": "1", "b": "2"}) == fd.Headers(raw=[(b"b", b"2"), (b"a", b"1")])
    assert fd.Headers({"a": "1"}) != fd.Headers({"a": "2"})
    assert fd.Headers({"a": "1"}) != {"a": "1"}
    assert repr(fd.Headers({"A": "1"})) == "Headers({'a': '1'})"
    assert repr(fd.Headers(raw=[(b"a", b"1"), (b"a", b"2")])) == "Headers(raw=[(b'a', b'1'), (b'a', b'2')])"


def test_headers_from_scope_share_the_scope_list() -> None:
    scope = {"headers": ((b"x", b"1"),)}
    headers = fd.Headers(scope=scope)
    assert scope["headers"] == [(b"x", b"1")]
    assert headers.raw == scope["headers"]


def test_headers_raw_is_shared_not_copied() -> None:
    raw = [(b"a", b"1")]
    headers = fd.Headers(raw=raw)
    raw.append((b"b", b"2"))
    assert headers["b"] == "2"
    assert headers.raw is not raw  # a copy for readers of the immutable kind


def test_headers_reject_conflicting_sources() -> None:
    with pytest.raises(AssertionError):
        fd.Headers(headers={"a": "1"}, raw=[])
    with pytest.raises(AssertionError):
        fd.Headers(raw=[], scope={"headers": []})


def test_headers_non_string_key_is_not_contained() -> None:
    assert 1 not in fd.Headers({"a": "1"})


def run_mutations(module: Any) -> list[Any]:
    """Apply the same edits to headers from ``module`` and record what is seen after each."""
    headers = module.MutableHeaders(raw=[(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"vary", b"accept")])
    seen: list[Any] = []

    def note(label: str, result: Any = None) -> None:
        seen.append((label, result, list(headers.raw)))

    headers["A"] = "new"
    note("set existing (first kept, repeats dropped)")
    headers["c"] = "4"
    note("set new")
    del headers["b"]
    note("del")
    del headers["missing"]
    note("del missing")
    note("setdefault existing", headers.setdefault("C", "zzz"))
    note("setdefault new", headers.setdefault("d", "5"))
    headers.update({"D": "6", "e": "7"})
    note("update")
    headers.append("a", "again")
    note("append")
    headers.add_vary_header("accept-encoding")
    note("vary")
    headers.add_vary_header("origin")
    note("vary twice")
    headers |= {"f": "8"}
    note("ior")
    combined = headers | {"g": "9"}
    note("or", (type(combined).__name__, combined.raw))
    copy = headers.mutablecopy()
    copy["zz"] = "1"
    note("mutablecopy is independent", copy.raw)
    note("getlist", headers.getlist("a"))
    note("repr", repr(headers).split("(", 1)[1])
    return seen


def test_mutable_headers_match_starlette_step_by_step() -> None:
    assert run_mutations(fd) == run_mutations(sd)


def test_mutable_headers_edit_the_list_they_were_given() -> None:
    raw: list[tuple[bytes, bytes]] = [(b"a", b"1"), (b"a", b"2")]
    headers = fd.MutableHeaders(raw=raw)
    headers["b"] = "3"
    del headers["a"]
    assert raw == [(b"b", b"3")]
    assert headers.raw is raw


def test_mutable_headers_or_requires_a_mapping() -> None:
    headers = fd.MutableHeaders()
    with pytest.raises(TypeError):
        headers |= [("a", "b")]  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        headers | "a"  # type: ignore[operator]


def test_mutable_headers_update_also_takes_pairs() -> None:
    headers = fd.MutableHeaders()
    headers.update([("A", "1"), ("a", "2")])
    assert headers.raw == [(b"a", b"2")]


# --------------------------------------------------------------------------- multi-dicts

MULTIDICT_INPUTS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    (([("a", "1"), ("b", "2"), ("a", "3")],), {}),
    (({"a": "1", "b": "2"},), {}),
    (([("a", "1")],), {"a": "2", "c": "3"}),
    ((), {"x": "1"}),
]


def multidict_view(value: Any) -> Any:
    return {
        "multi_items": value.multi_items(),
        "items": list(value.items()),
        "keys": list(value.keys()),
        "values": list(value.values()),
        "len": len(value),
        "iter": list(value),
        "getlist_a": value.getlist("a"),
        "get_a": value.get("a"),
        "a_in": "a" in value,
        "getitem_missing": outcome(lambda: value["missing"]),
        "repr": repr(value).split("(", 1)[1],
        "str": str(value),
    }


@pytest.mark.parametrize(("args", "kwargs"), MULTIDICT_INPUTS)
@pytest.mark.parametrize("name", ["ImmutableMultiDict", "MultiDict", "QueryParams"])
def test_multidicts_read_api_matches(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    ours = getattr(fd, name)(*args, **kwargs)
    theirs = getattr(sd, name)(*args, **kwargs)
    assert multidict_view(ours) == multidict_view(theirs)


def test_multidicts_from_other_multidicts() -> None:
    source_ours = fd.MultiDict([("a", "1"), ("a", "2")])
    source_theirs = sd.MultiDict([("a", "1"), ("a", "2")])
    assert fd.ImmutableMultiDict(source_ours).multi_items() == sd.ImmutableMultiDict(source_theirs).multi_items()
    assert fd.QueryParams(source_ours).multi_items() == [("a", "1"), ("a", "2")]


def multidict_comparisons(module: Any) -> list[bool]:
    a = module.ImmutableMultiDict([("a", "1"), ("b", "2"), ("a", "3")])
    return [
        a == module.ImmutableMultiDict([("b", "2"), ("a", "1"), ("a", "3")]),
        a == module.ImmutableMultiDict([("b", "2"), ("a", "3"), ("a", "1")]),
        a == {"a": "3", "b": "2"},
        a == module.MultiDict([("a", "1"), ("b", "2"), ("a", "3")]),
        module.MultiDict([("a", "1"), ("b", "2"), ("a", "3")]) == a,
        module.QueryParams("a=1&b=2&a=3") == module.QueryParams([("b", "2"), ("a", "1"), ("a", "3")]),
    ]


def test_multidict_equality_matches() -> None:
    # Keys may come in any order, but one key's values keep theirs.
    assert multidict_comparisons(fd) == multidict_comparisons(sd) == [True, False, False, False, False, True]


def multidict_mutations(module: Any) -> list[Any]:
    value = module.MultiDict([("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")])
    seen: list[Any] = []

    def note(label: str, result: Any = None) -> None:
        seen.append((label, result, value.multi_items(), dict(value.items())))

    value["a"] = "x"
    note("setitem")
    value.append("b", "5")
    note("append")
    note("setdefault existing", value.setdefault("b", "no"))
    note("setdefault new", value.setdefault("d", "6"))
    value.setlist("c", ["7", "8"])
    note("setlist")
    value.setlist("d", [])
    note("setlist empty")
    note("pop", value.pop("b"))
    note("pop missing", value.pop("nope", "dflt"))
    note("poplist", value.poplist("c"))
    value.update([("a", "9"), ("a", "10"), ("e", "11")])
    note("update pairs")
    value.update({"f": "12"}, g="13")
    note("update mapping and kwargs")
    del value["g"]
    note("del")
    note("del missing", outcome(lambda: value.__delitem__("zz")))
    note("popitem", value.popitem())
    value.clear()
    note("clear")
    return seen


def test_multidict_mutations_match_starlette() -> None:
    assert multidict_mutations(fd) == multidict_mutations(sd)


@pytest.mark.parametrize(
    "query",
    ["", "a=1&b=2&a=3", "a=&b", "x=%20y+z&%F0%9F%98%80=emoji", b"a=1&b=%E9", "a=1;b=2"],
)
def test_query_params_parse_like_starlette(query: str | bytes) -> None:
    ours, theirs = fd.QueryParams(query), sd.QueryParams(query)
    assert multidict_view(ours) == multidict_view(theirs)
    assert str(ours) == str(theirs)


def test_query_params_values_become_strings() -> None:
    params = fd.QueryParams({"a": 1, 2: True})
    assert params.multi_items() == [("a", "1"), ("2", "True")]
    assert str(params) == "a=1&2=True"
    assert repr(params) == "QueryParams('a=1&2=True')"


def test_multidict_rejects_two_positional_arguments() -> None:
    with pytest.raises(AssertionError):
        fd.MultiDict([], [])
    with pytest.raises(AssertionError):
        fd.QueryParams("a", "b")


# --------------------------------------------------------------------------- small value types


def test_address_is_a_named_pair() -> None:
    address = fd.Address("127.0.0.1", 8000)
    assert address.host == "127.0.0.1" and address.port == 8000
    assert address == ("127.0.0.1", 8000)
    host, port = address
    assert (host, port) == tuple(sd.Address("127.0.0.1", 8000))
    assert repr(address) == "Address(host='127.0.0.1', port=8000)"


def test_secret_hides_its_value() -> None:
    secret = fd.Secret("hunter2")
    assert repr(secret) == repr(sd.Secret("hunter2")) == "Secret('**********')"
    assert str(secret) == "hunter2"
    assert secret and not fd.Secret("")


@pytest.mark.parametrize("value", ["a, b, c", "'a,b', c", "", "single", ' "x y" ,z ', ["l", "m"]])
def test_comma_separated_strings_match(value: Any) -> None:
    ours, theirs = fd.CommaSeparatedStrings(value), sd.CommaSeparatedStrings(value)
    assert list(ours) == list(theirs)
    assert (len(ours), repr(ours), str(ours)) == (len(theirs), repr(theirs), str(theirs))
    if len(ours):
        assert ours[0] == theirs[0] and ours[-1:] == theirs[-1:]


def test_state_attribute_and_item_access() -> None:
    state = fd.State({"db": "conn"})
    assert state.db == "conn"
    state.user = "alice"
    assert state["user"] == "alice"
    state["n"] = 1
    assert state.n == 1
    assert sorted(state) == ["db", "n", "user"]
    assert len(state) == 3
    del state.n
    del state["user"]
    assert list(state) == ["db"]
    with pytest.raises(AttributeError, match="'State' object has no attribute 'missing'"):
        state.missing  # noqa: B018
    with pytest.raises(KeyError):
        state["missing"]


def test_state_shares_the_dict_it_was_given() -> None:
    backing: dict[str, Any] = {}
    state = fd.State(backing)
    state.x = 1
    assert backing == {"x": 1}
    assert fd.State()._state == {}
