"""A keyword given the wrong kind of value is refused, never taken the other way round.

``StaticFiles(dotfiles="deny")`` served dotfiles and ``follow_symlink="false"`` followed links out
of the directory: the keywords are switches, and a non-empty string is true. A switch takes True
or False (1 or 0), or the word the command line spells it with (``--dotfiles allow|deny``,
``--etag on|off``, ``--compress on|off``, ``--ws-per-message-deflate true|false``); anything else
is a TypeError or ValueError at once. ``fastserve.run`` holds its settings to the same rule.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import fastserve
from fastserve.cachepolicy import CachePolicy
from fastserve.config import SWITCHES, Config
from fastserve.staticfiles import StaticFiles
from inprocess import call_asgi

STATICFILES_SWITCHES = ("html", "check_dir", "follow_symlink", "precompressed", "dotfiles", "etag", "spa",
                        "compress", "listing", "file_slash")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / ".env").write_bytes(b"SECRET=1\n")
    (root / "a.txt").write_bytes(b"a\n" * 1000)
    (root / "missing.html").write_bytes(b"<p>gone</p>")
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"outside the root\n")
    os.symlink(outside, root / "link.txt")
    return root


@pytest.mark.parametrize("word, served", [("allow", True), ("deny", False), (True, True), (False, False),
                                          (1, True), (0, False)])
def test_dotfiles_takes_the_command_lines_words(site, word, served):
    for answers in ("starlette", "static"):
        app = StaticFiles(directory=site, dotfiles=word, answers=answers)
        response = call_asgi(app, "GET", "/.env")
        assert (response.status, response.body) == ((200, b"SECRET=1\n") if served else (404, b"Not Found")), answers


@pytest.mark.parametrize("name, words", [("etag", ("on", "off")), ("compress", ("on", "off"))])
def test_etag_and_compress_take_on_and_off(site, name, words):
    on, off = (StaticFiles(directory=site, **{name: word}) for word in words)
    assert (on.__dict__[name], off.__dict__[name]) == (True, False)
    headers = [("Accept-Encoding", "gzip, identity;q=0")]
    field = "etag" if name == "etag" else "content-encoding"
    assert call_asgi(on, "GET", "/a.txt", headers).header(field) is not None
    assert call_asgi(off, "GET", "/a.txt", headers).header(field) is None


STARLETTE_SWITCHES = ("html", "check_dir", "follow_symlink")  # Starlette's own: None is false there


@pytest.mark.parametrize("name, value", [
    (name, value)
    for name in STATICFILES_SWITCHES
    for value in ["false", "no", "", "0", None, 2, 0.0, [], b"off"]
    if not (value is None and name in STARLETTE_SWITCHES)  # test_none_is_false_for_starlettes_own_switches
])
def test_a_switch_given_anything_else_is_refused(site, name, value):
    with pytest.raises((TypeError, ValueError), match=name):
        StaticFiles(directory=site, **{name: value})


def test_none_is_false_for_starlettes_own_switches(site, tmp_path):
    """``html=None``, ``check_dir=None``, ``follow_symlink=None`` run as under Starlette (falsy):
    no index page, no directory check, no link followed."""
    app = StaticFiles(directory=site, html=None, follow_symlink=None)
    assert (app.html, app.follow_symlink) == (False, False)
    assert call_asgi(app, "GET", "/link.txt").status == 404
    StaticFiles(directory=tmp_path / "not-yet", check_dir=None)  # no RuntimeError: not checked
    app.html = None  # set later: read the same way at the next request
    assert call_asgi(app, "GET", "/a.txt").status == 200 and app.html is False


@pytest.mark.parametrize("name, value", [("dotfiles", "Deny"), ("dotfiles", "on"), ("etag", "true"),
                                         ("compress", "yes")])
def test_a_word_the_command_line_does_not_use_is_a_value_error(site, name, value):
    with pytest.raises(ValueError, match=f"{name} must be True, False, "):
        StaticFiles(directory=site, **{name: value})


def test_follow_symlink_false_as_a_string_no_longer_follows_the_link(site):
    with pytest.raises(TypeError, match="follow_symlink must be True or False, not 'false'"):
        StaticFiles(directory=site, follow_symlink="false")
    assert call_asgi(StaticFiles(directory=site, follow_symlink=False), "GET", "/link.txt").status == 404


def test_a_switch_set_on_the_app_later_is_held_to_the_same_rule(site):
    """Starlette's attributes can be set after the app is made: the next request reads them as
    ``__init__`` would (the word as its meaning), whichever way the app looks paths up."""
    app = StaticFiles(directory=site)
    assert call_asgi(app, "GET", "/.env").status == 200  # Starlette's default: served
    app.dotfiles = "deny"
    assert call_asgi(app, "GET", "/.env").status == 404 and app.dotfiles is False
    app.follow_symlink = "false"
    with pytest.raises(TypeError, match="follow_symlink"):
        call_asgi(app, "GET", "/a.txt")

    class OwnResponses(StaticFiles):  # looks paths up through lookup_path, in a thread
        def file_response(self, *args, **kwargs):
            return super().file_response(*args, **kwargs)

    subclassed = OwnResponses(directory=site)
    subclassed.dotfiles = "deny"
    assert call_asgi(subclassed, "GET", "/.env").status == 404


@pytest.mark.parametrize("keywords, error, message", [
    ({"cache_valid": "1"}, TypeError, "cache_valid must be a number"),
    ({"cache_valid": -1}, ValueError, "cache_valid must be at least 0"),
    ({"cache_valid": float("nan")}, ValueError, "cache_valid must be at least 0"),
    ({"max_ranges": "16"}, TypeError, "max_ranges must be a whole number"),
    ({"max_ranges": 1.5}, TypeError, "max_ranges must be a whole number"),
    ({"max_ranges": -1}, ValueError, "max_ranges must be at least 0"),
    ({"listing_max_entries": 0}, ValueError, "listing_max_entries must be at least 1"),
    ({"listing_max_entries": True}, TypeError, "listing_max_entries must be a whole number"),
    ({"cache_policy": "no-cache"}, TypeError, "cache_policy must be a CachePolicy"),
    ({"error_pages": {500: "missing.html"}}, ValueError, "error_pages answers 404 and 403 only, not 500"),
    ({"error_pages": {"oops": "missing.html"}}, ValueError, "error_pages answers 404 and 403 only"),
    ({"error_pages": {404: 7}}, TypeError, "error_pages"),
])
def test_other_keywords_of_the_wrong_kind_are_refused(site, keywords, error, message):
    with pytest.raises(error, match=message):
        StaticFiles(directory=site, **keywords)


def test_error_pages_take_the_status_as_the_command_line_spells_it(site):
    app = StaticFiles(directory=site, error_pages={"404": "missing.html"}, answers="static")
    response = call_asgi(app, "GET", "/nothing-here")
    assert (response.status, response.body) == (404, b"<p>gone</p>")
    assert StaticFiles(directory=site, cache_policy=CachePolicy(), max_ranges=0, cache_valid=0.5).max_ranges == 0


# -- fastserve.run -----------------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch):
    import fastserve.server.serve

    seen = []
    monkeypatch.setattr(fastserve.server.serve, "serve", lambda config: seen.append(config) or 0)
    return seen


@pytest.mark.parametrize("name", [name for name in SWITCHES if name != "ws_per_message_deflate"])  # takes words
def test_run_refuses_a_string_for_a_switch(served, name):
    with pytest.raises(ValueError, match=f"--{name.replace('_', '-')} must be True or False, not 'false'"):
        fastserve.run(".", **{name: "false"})
    assert served == []


def test_run_takes_true_false_and_the_flags_words(served):
    assert fastserve.run(".", access_log=1, follow_symlink=False, ws_per_message_deflate="false") == 0
    assert fastserve.run(".", ws_per_message_deflate="ON") == 0
    assert [(c.access_log, c.follow_symlink, c.ws_per_message_deflate) for c in served] == [
        (1, False, False), (False, False, True)]
    with pytest.raises(ValueError, match="ws_per_message_deflate must be True, False, "):
        fastserve.run(".", ws_per_message_deflate="maybe")


@pytest.mark.parametrize("name", ["reload", "http2"])
def test_run_refuses_a_string_for_reload_and_http2(served, name):
    with pytest.raises(TypeError, match=f"{name} must be True or False, not 'false'"):
        fastserve.run(".", **{name: "false"})
    assert served == []


def test_every_switch_of_the_config_is_checked():
    assert {"access_log", "follow_symlink", "html", "proxy_headers", "ws_per_message_deflate"} <= set(SWITCHES)
    assert Config(html="no").problems() == ["--html must be True or False, not 'no'"]


# -- CachePolicy -----------------------------------------------------------------------------


def test_cache_policy_takes_rules_as_the_command_line_spells_them():
    spelled = CachePolicy(rules=["/assets/*=public, max-age=31536000, immutable", "*.map="])
    assert spelled("/assets/app.js", b"text/javascript") == b"public, max-age=31536000, immutable"
    assert spelled("/x.map", b"application/json") is None
    assert CachePolicy(rules={"*.js": "no-store"})("/a.js", b"text/javascript") == b"no-store"


@pytest.mark.parametrize("keywords, error, message", [
    ({"max_age": "60"}, TypeError, "max_age must be a whole number"),
    ({"max_age": True}, TypeError, "max_age must be a whole number"),  # was max-age=1
    ({"max_age": 1.5}, TypeError, "max_age must be a whole number"),  # was max-age=1
    ({"rules": "*.js=no-store"}, TypeError, "rules must be a list"),  # was one rule per character
    ({"rules": ["*j"]}, ValueError, "is not GLOB=VALUE"),  # was the glob '*' with the value 'j'
    ({"rules": [("*.js", "no-store", "x")]}, TypeError, "a cache rule is a"),
    ({"rules": [("*.js", b"no-store")]}, TypeError, "a cache rule is a"),
])
def test_cache_policy_refuses_the_wrong_kind(keywords, error, message):
    with pytest.raises(error, match=message):
        CachePolicy(**keywords)
