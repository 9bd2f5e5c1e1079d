"""Behaviour of fastserve._speedups.conditional: 304/412 preconditions and Range/If-Range."""

from __future__ import annotations

import email.utils
import itertools

import pytest

from fastserve._speedups.conditional import (
    evaluate_preconditions,
    evaluate_range,
    if_range_allows,
)
from fastserve._speedups.headers import format_http_date, parse_etag_list

ETAG = b'"5f1-1a"'
MTIME = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
AT_MTIME = format_http_date(MTIME)
BEFORE = format_http_date(MTIME - 1)
AFTER = format_http_date(MTIME + 1)


def pre(
    method: bytes = b"GET",
    *,
    if_match: bytes | None = None,
    if_unmodified_since: bytes | None = None,
    if_none_match: bytes | None = None,
    if_modified_since: bytes | None = None,
    etag: bytes | None = ETAG,
    last_modified: int = MTIME,
) -> int:
    return evaluate_preconditions(
        method,
        if_match,
        if_unmodified_since,
        if_none_match,
        if_modified_since,
        etag,
        last_modified,
    )


# ---------------------------------------------------------------------------------------------
# evaluate_preconditions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS"])
def test_no_conditional_headers_proceeds(method: bytes) -> None:
    assert pre(method) == 0


@pytest.mark.parametrize(
    ("if_match", "expected"),
    [
        (ETAG, 0),
        (b"*", 0),
        (b'"other", ' + ETAG, 0),
        (b"  " + ETAG + b"  ", 0),
        (b'"other"', 412),
        (b"W/" + ETAG, 412),  # If-Match uses strong comparison
        (b"garbage", 412),
        (b"", 412),
        (b"\xff\xfe", 412),
    ],
)
def test_if_match(if_match: bytes, expected: int) -> None:
    assert pre(if_match=if_match) == expected
    assert pre(b"PUT", if_match=if_match) == expected


def test_if_match_star_without_a_current_representation_fails() -> None:
    assert pre(if_match=b"*", etag=None) == 412


def test_if_match_with_a_weak_current_etag_never_matches() -> None:
    assert pre(if_match=b'W/"a"', etag=b'W/"a"') == 412
    assert pre(if_match=b"*", etag=b'W/"a"') == 0


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        (AT_MTIME, 0),
        (AFTER, 0),
        (BEFORE, 412),
        (b"Sunday, 06-Nov-94 08:49:36 GMT", 412),
        (b"Sun Nov  6 08:49:37 1994", 0),
        (b"not a date", 0),  # an invalid date is ignored
        (b"", 0),
    ],
)
def test_if_unmodified_since(date: bytes, expected: int) -> None:
    assert pre(if_unmodified_since=date) == expected
    assert pre(b"POST", if_unmodified_since=date) == expected


def test_if_match_takes_precedence_over_if_unmodified_since() -> None:
    assert pre(if_match=ETAG, if_unmodified_since=BEFORE) == 0
    assert pre(if_match=b'"other"', if_unmodified_since=AFTER) == 412


@pytest.mark.parametrize(
    ("if_none_match", "get_result", "other_result"),
    [
        (ETAG, 304, 412),
        (b"W/" + ETAG, 304, 412),  # If-None-Match uses weak comparison
        (b"*", 304, 412),
        (b'"a", ' + ETAG + b', "b"', 304, 412),
        (b'"other"', 0, 0),
        (b"garbage", 0, 0),
        (b"", 0, 0),
    ],
)
def test_if_none_match(if_none_match: bytes, get_result: int, other_result: int) -> None:
    assert pre(b"GET", if_none_match=if_none_match) == get_result
    assert pre(b"HEAD", if_none_match=if_none_match) == get_result
    for method in (b"POST", b"PUT", b"DELETE", b"get", b"head"):
        assert pre(method, if_none_match=if_none_match) == other_result


def test_if_none_match_without_a_current_representation() -> None:
    assert pre(if_none_match=b"*", etag=None) == 0


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        (AT_MTIME, 304),
        (AFTER, 304),
        (BEFORE, 0),
        (b"Sunday, 06-Nov-94 08:49:37 GMT", 304),
        (b"Sun Nov  6 08:49:36 1994", 0),
        (b"garbage", 0),
        (b"", 0),
        (AT_MTIME + b", " + AT_MTIME, 0),  # more than one member: not a date
    ],
)
def test_if_modified_since(date: bytes, expected: int) -> None:
    assert pre(b"GET", if_modified_since=date) == expected
    assert pre(b"HEAD", if_modified_since=date) == expected
    assert pre(b"POST", if_modified_since=date) == 0  # only GET and HEAD look at it


def test_if_none_match_present_means_if_modified_since_is_ignored() -> None:
    assert pre(if_none_match=b'"other"', if_modified_since=AFTER) == 0
    assert pre(if_none_match=ETAG, if_modified_since=BEFORE) == 304


def test_evaluation_order() -> None:
    # a failed If-Match wins over everything after it
    assert pre(if_match=b'"other"', if_none_match=ETAG) == 412
    assert pre(if_match=b'"other"', if_modified_since=AFTER) == 412
    # a passed If-Match lets If-None-Match decide
    assert pre(if_match=ETAG, if_none_match=ETAG) == 304
    assert pre(b"PUT", if_match=ETAG, if_none_match=b"*") == 412
    # a failed If-Unmodified-Since wins over If-None-Match / If-Modified-Since
    assert pre(if_unmodified_since=BEFORE, if_none_match=ETAG) == 412
    assert pre(if_unmodified_since=BEFORE, if_modified_since=AFTER) == 412
    assert pre(if_unmodified_since=AFTER, if_modified_since=AFTER) == 304


def _reference_preconditions(method, if_match, ius, inm, ims, etag, last_modified) -> int:
    """The RFC 9110 section 13.2.2 steps, written out with stdlib date parsing."""

    def date_of(value):
        try:
            return int(email.utils.parsedate_to_datetime(value.decode("latin-1")).timestamp())
        except (TypeError, ValueError):
            return None

    def matches(value, weak):
        if etag is None:
            return False
        tags = parse_etag_list(value)
        if tags == [b"*"]:
            return True
        strip = (lambda t: t[2:] if t.startswith(b"W/") else t) if weak else (lambda t: t)
        return any(
            strip(tag) == strip(etag)
            for tag in tags
            if weak or not (tag.startswith(b"W/") or etag.startswith(b"W/"))
        )

    if if_match is not None:
        if not matches(if_match, weak=False):
            return 412
    elif ius is not None:
        date = date_of(ius)
        if date is not None and last_modified > date:
            return 412
    if inm is not None:
        if matches(inm, weak=True):
            return 304 if method in (b"GET", b"HEAD") else 412
    elif ims is not None and method in (b"GET", b"HEAD"):
        date = date_of(ims)
        if date is not None and last_modified <= date:
            return 304
    return 0


def test_matches_reference_on_all_combinations() -> None:
    tags = [None, ETAG, b"W/" + ETAG, b"*", b'"other"', b'"other", ' + ETAG, b"junk"]
    dates = [None, BEFORE, AT_MTIME, AFTER, b"junk"]
    for method, im, ius, inm, ims in itertools.product(
        [b"GET", b"HEAD", b"POST"], tags, dates, tags, dates
    ):
        for etag in (ETAG, b'W/"5f1-1a"'):
            expected = _reference_preconditions(method, im, ius, inm, ims, etag, MTIME)
            actual = evaluate_preconditions(method, im, ius, inm, ims, etag, MTIME)
            assert actual == expected, (method, im, ius, inm, ims, etag)


# ---------------------------------------------------------------------------------------------
# if_range_allows
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_range", "expected"),
    [
        (None, True),
        (ETAG, True),
        (b"  " + ETAG + b"\t", True),
        (b'"other"', False),
        (b"W/" + ETAG, False),  # weak validators never satisfy If-Range
        (ETAG + b", " + ETAG, False),  # a list is not an entity-tag
        (b'"other", ' + ETAG, False),
        (b"*", False),
        (ETAG[:-1], False),
        (b'"', False),
        (AT_MTIME, True),
        (BEFORE, False),
        (AFTER, False),  # a date must match exactly
        (b"Sunday, 06-Nov-94 08:49:37 GMT", True),
        (b"Sun Nov  6 08:49:37 1994", True),
        (b"garbage", False),
        (b"", False),
        (b"   ", False),
        (b"\xff", False),
    ],
)
def test_if_range_allows(if_range: bytes | None, expected: bool) -> None:
    assert if_range_allows(if_range, ETAG, MTIME) is expected


def test_if_range_with_weak_or_missing_current_etag() -> None:
    assert if_range_allows(b'W/"a"', b'W/"a"', MTIME) is False
    assert if_range_allows(b'"a"', b'W/"a"', MTIME) is False
    assert if_range_allows(b'"a"', None, MTIME) is False
    assert if_range_allows(AT_MTIME, None, MTIME) is True


# ---------------------------------------------------------------------------------------------
# evaluate_range
# ---------------------------------------------------------------------------------------------


def rng(
    range_value: bytes | None,
    *,
    method: bytes = b"GET",
    if_range: bytes | None = None,
    size: int = 1000,
    **kwargs,
):
    return evaluate_range(method, range_value, if_range, ETAG, MTIME, size, **kwargs)


def test_evaluate_range_outcomes() -> None:
    assert rng(None) == (200, None)
    assert rng(b"bytes=0-99") == (206, [(0, 99)])
    assert rng(b"bytes=-1, 0-0") == (206, [(999, 999), (0, 0)])  # in the order listed
    assert rng(b"bytes=1000-") == (416, None)
    assert rng(b"bytes=-0") == (416, None)
    # an empty representation: a suffix range is satisfiable there (RFC 9110 section 14.1.1) and
    # no 206 can carry a part of nothing: the whole of it, as nginx answers (and for one from 0);
    # a range from a later byte is still unsatisfiable
    assert rng(b"bytes=0-", size=0) == (200, None)
    assert rng(b"bytes=-5", size=0) == (200, None)
    assert rng(b"bytes=0-0,-1", size=0) == (200, None)
    assert rng(b"bytes=5-,-1", size=0) == (200, None)
    assert rng(b"bytes=5-", size=0) == (416, None)
    assert rng(b"bytes=-0", size=0) == (416, None)
    assert rng(b"bytes=x", size=0) == (200, None)
    assert rng(b"bytes=5-1") == (200, None)  # invalid: ignored
    assert rng(b"items=0-1") == (200, None)
    assert rng(b"") == (200, None)
    assert rng(b"\xff\xff") == (200, None)


@pytest.mark.parametrize("method", [b"HEAD", b"POST", b"PUT", b"get", b""])
def test_evaluate_range_applies_to_get_only(method: bytes) -> None:
    assert rng(b"bytes=0-99", method=method) == (200, None)
    assert rng(b"bytes=1000-", method=method) == (200, None)


def test_evaluate_range_with_none_method() -> None:
    assert evaluate_range(None, b"bytes=0-1", None, ETAG, MTIME, 10) == (200, None)


def test_evaluate_range_if_range() -> None:
    assert rng(b"bytes=0-99", if_range=ETAG) == (206, [(0, 99)])
    assert rng(b"bytes=0-99", if_range=AT_MTIME) == (206, [(0, 99)])
    assert rng(b"bytes=0-99", if_range=b'"stale"') == (200, None)
    assert rng(b"bytes=0-99", if_range=BEFORE) == (200, None)
    assert rng(b"bytes=0-99", if_range=b"junk") == (200, None)
    # a failed If-Range means the whole representation, not a 416
    assert rng(b"bytes=5000-", if_range=b'"stale"') == (200, None)
    assert rng(b"bytes=5000-", if_range=ETAG) == (416, None)
    # If-Range without Range changes nothing
    assert rng(None, if_range=b'"stale"') == (200, None)


def test_evaluate_range_max_ranges() -> None:
    sixteen = b"bytes=" + b",".join(b"%d-%d" % (i * 10, i * 10) for i in range(16))
    assert rng(sixteen)[0] == 206
    assert rng(sixteen + b",900-900") == (200, None)
    assert rng(b"bytes=0-0,2-2,4-4", max_ranges=2) == (200, None)
    assert rng(b"bytes=0-0,2-2", max_ranges=2) == (206, [(0, 0), (2, 2)])


def test_if_range_date_on_a_wednesday_is_a_date_not_a_weak_tag() -> None:
    # "Wed, ..." starts with W like a weak tag "W/..."; only "W/" makes an entity-tag.
    wednesday = 1700086400  # Wed, 15 Nov 2023 22:13:20 GMT
    assert if_range_allows(b"Wed, 15 Nov 2023 22:13:20 GMT", b'"x"', wednesday)
    assert not if_range_allows(b'W/"x"', b'"x"', wednesday)
