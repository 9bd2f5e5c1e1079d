"""fastserve._speedups.pathlookup: decoding, splitting and resolving URL paths safely."""
import os

import pytest

from fastserve._speedups.pathlookup import (
    directory_path, has_dot_segment, is_within, names_directory, origin_form, percent_decode, resolve_path,
    split_url_path, target_without_fragment,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"/plain/path.txt", "/plain/path.txt"),
        (b"/a%20b.txt", "/a b.txt"),
        (b"/%2e%2e/x", "/../x"),
        (b"/%252e%252e/x", "/%2e%2e/x"),  # decoded once only
        (b"/caf%C3%A9", "/café"),
        (b"/100%25", "/100%"),
        (b"/%41%62", "/Ab"),
        (b"", ""),
    ],
)
def test_percent_decode(raw, expected):
    assert percent_decode(raw) == expected


@pytest.mark.parametrize(
    "raw", [b"/50%.txt", b"/100%", b"/%zz", b"/%4", b"/a%2", b"/%g0", b"/%0g", b"/ok%41%", b"/%%41", b"/%\xc3%a9"]
)
def test_percent_decode_rejects_a_percent_that_is_not_an_escape(raw):
    assert percent_decode(raw) is None


def test_percent_decode_rejects_invalid_utf8():
    assert percent_decode(b"/%ff%fe") is None
    assert percent_decode(b"/\xff") is None


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/", ()),
        ("", ()),
        ("/a/b.txt", ("a", "b.txt")),
        ("//a//./b/", ("a", "b")),
        ("/./a", ("a",)),
        ("/a b/c%2e", ("a b", "c%2e")),
        ("/...", ("...",)),
        ("/..a/b..", ("..a", "b..")),
        # dot segments removed as RFC 3986 section 5.2.4 removes them, staying inside the root
        ("/dir/../index.html", ("index.html",)),
        ("/a/b/../../c", ("c",)),
        ("/a/./b/.", ("a", "b")),
        ("/a/..", ()),
        ("/a//../b", ("b",)),            # "//" is "/" first, as nginx merges slashes
        ("/.well-known/../.env", (".env",)),
    ],
)
def test_split_url_path_keeps_safe_segments(path, expected):
    assert split_url_path(path) == expected


@pytest.mark.parametrize(
    "path",
    ["/..", "/../etc/passwd", "/a/../../b", "/a/b/../../..", "/./../a", "/a\\..\\b", "/a\x00b", "/C:/Windows",
     "/c:", "\\..\\x", "/x/../C:/Windows"],
)
def test_split_url_path_rejects_escapes(path):
    assert split_url_path(path) is None


@pytest.mark.parametrize("path, directory", [
    ("/dir/", True), ("/dir/.", True), ("/dir/sub/..", True), ("/", True), ("/.", True),
    ("/dir", False), ("/dir/a.txt", False), ("/dir/..a", False), ("/dir/b.", False), ("/dir.", False),
])
def test_names_directory_reads_a_trailing_dot_segment_as_a_slash(path, directory):
    assert names_directory(path) is directory


@pytest.mark.parametrize("path, found", [
    ("/a/./b", True), ("/a/../b", True), ("/..", True), ("/a/.", True),
    ("/a/b.txt", False), ("/.env", False), ("/a/...", False), ("/a..b/..c", False), ("/", False),
])
def test_has_dot_segment(path, found):
    assert has_dot_segment(path) is found


@pytest.mark.parametrize("parts, path", [
    ((), "/"), (("dir",), "/dir/"), (("a b", "50%", "q?", "#x"), "/a%20b/50%25/q%3F/%23x/"), (("café",), "/caf%C3%A9/"),
])
def test_directory_path_names_exactly_the_directory(parts, path):
    assert directory_path(parts) == path
    assert split_url_path(percent_decode(path.encode())) == parts


@pytest.fixture
def roots(tmp_path):
    first = tmp_path / "first"
    second = tmp_path / "second"
    (first / "sub").mkdir(parents=True)
    second.mkdir()
    (first / "a.txt").write_text("first a")
    (second / "a.txt").write_text("second a")
    (second / "b.txt").write_text("second b")
    (first / "sub" / "c.txt").write_text("c")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", first / "escape.txt")
    os.symlink(first / "a.txt", first / "inside.txt")
    return str(first), str(second)


def test_resolve_path_first_root_wins(roots):
    full, st = resolve_path(roots, ("a.txt",), False)
    assert full == os.path.join(roots[0], "a.txt")
    assert st.st_size == len("first a")


def test_resolve_path_falls_back_to_later_roots(roots):
    full, _ = resolve_path(roots, ("b.txt",), False)
    assert full == os.path.join(roots[1], "b.txt")


def test_resolve_path_misses(roots):
    assert resolve_path(roots, ("missing.txt",), False) is None
    assert resolve_path(roots, ("a.txt", "below-a-file"), False) is None


def test_resolve_path_directory_and_root(roots):
    full, st = resolve_path(roots, ("sub",), False)
    assert os.path.isdir(full)
    full, _ = resolve_path(roots, (), False)
    assert full == roots[0]


def test_symlink_outside_root_refused_unless_followed(roots):
    assert resolve_path(roots, ("escape.txt",), False) is None
    full, st = resolve_path(roots, ("escape.txt",), True)
    assert full == os.path.join(roots[0], "escape.txt")
    assert st.st_size == len("secret")


def test_symlink_inside_root_is_served_as_its_target(roots):
    full, _ = resolve_path(roots, ("inside.txt",), False)
    assert full == os.path.join(roots[0], "a.txt")


def test_name_too_long_propagates(roots):
    with pytest.raises(OSError):
        resolve_path(roots, ("x" * 5000,), True)


def test_percent_decode_long_paths():
    # beyond the on-stack buffer: the heap path must decode the same way
    raw = b"/" + b"a%20" * 400 + b"%C3%A9"
    assert percent_decode(raw) == "/" + "a " * 400 + "é"
    assert percent_decode(b"/" + b"%ff" * 300) is None


@pytest.mark.parametrize(
    "target, expected",
    [
        (b"/a/b?c=d", b"/a/b?c=d"),
        (b"http://example.com/a/b?c", b"/a/b?c"),
        (b"HTTPS://example.com:8443/x", b"/x"),
        (b"http://example.com", b"/"),
        (b"http://example.com?q=1", b"/?q=1"),
        (b"*", None),
        (b"example.com:443", None),
        (b"ftp://example.com/x", None),
        (b"", None),
        # a fragment is no part of a request-target: dropped (RFC 9112 section 3.2)
        (b"/a.txt#frag", b"/a.txt"),
        (b"/a?x=1#frag?y", b"/a?x=1"),
        (b"http://example.com/a#f", b"/a"),
        (b"http://example.com#f", b"/"),
        (b"#", None),
        # the authority stands for Host (RFC 9112 section 3.2.2): held to Host's rule
        (b"http://example.com?to=/admin", b"/?to=/admin"),  # a slash in the query is no path
        (b"http://[::1]:8080/x", b"/x"),
        (b"http://[::1/x", None),                           # a broken IP literal
        (b"http:///x", None),                                # an empty host (RFC 9110 section 4.2.1)
        (b"http://", None),
        (b"http://user:secret@example.com/x", None),         # userinfo (RFC 9110 section 4.2.4)
        (b"http://exa mple.com/x", None),
        (b"http://example.com:8o/x", None),
    ],
)
def test_origin_form(target, expected):
    assert origin_form(target) == expected


@pytest.mark.parametrize(
    "path, root, inside",
    [
        ("/srv/www", "/srv/www", True),
        ("/srv/www/a.txt", "/srv/www", True),
        ("/srv/www-secret/a.txt", "/srv/www", False),  # a shared prefix is not containment
        ("/srv", "/srv/www", False),
        ("/etc/passwd", "/", True),
    ],
)
def test_is_within(path, root, inside):
    assert is_within(path, root) is inside


@pytest.mark.parametrize("target, expected", [
    (b"/a.txt", b"/a.txt"), (b"/a.txt#", b"/a.txt"), (b"/a#b#c", b"/a"), (b"", b""), (b"#x", b""),
])
def test_without_fragment(target, expected):
    assert target_without_fragment(target) == expected


HEX_DIGITS = set(b"0123456789abcdefABCDEF")


@pytest.mark.parametrize("byte", range(256))
def test_a_percent_escape_takes_hex_digits_of_either_case(byte):
    """``charclass.hex_value``, through the decoder (the Host check and the chunked-body
    framing use the same function)."""
    expected = "/" + chr(0x30 + int(chr(byte), 16)) if byte in HEX_DIGITS else None
    assert percent_decode(b"/%3" + bytes([byte])) == expected
