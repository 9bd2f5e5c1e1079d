"""Behaviour of fastserve._speedups.headers: Range, entity-tags, dates, content types, codings,
the status line / header block and multipart/byteranges framing."""

from __future__ import annotations

import calendar
import email.parser
import email.utils
import mimetypes
import random
import re
import time

import httptools
import pytest

from fastserve._speedups import headers
from fastserve._speedups.headers import (
    byteranges_layout,
    content_type_for,
    current_http_date,
    etag_matches,
    format_http_date,
    make_etag,
    parse_accept_encoding,
    parse_etag_list,
    parse_http_date,
    parse_range,
    reason_phrase,
    serialize_headers,
)

# ---------------------------------------------------------------------------------------------
# parse_range
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        (b"bytes=0-99", 1000, [(0, 99)]),
        (b"bytes=100-", 1000, [(100, 999)]),
        (b"bytes=-500", 1000, [(500, 999)]),
        (b"bytes=-5000", 1000, [(0, 999)]),  # suffix longer than the file: the whole file
        (b"bytes=0-0, -1", 1000, [(0, 0), (999, 999)]),
        (b"bytes=0-9999", 1000, [(0, 999)]),  # last-pos clipped
        (b"bytes=999-999", 1000, [(999, 999)]),
        (b"BYTES=0-1", 10, [(0, 1)]),  # unit is case-insensitive
        (b"Bytes=0-1", 10, [(0, 1)]),
        (b"  bytes=0-1  ", 10, [(0, 1)]),
        (b"bytes=0-1,2-3", 10, [(0, 3)]),  # adjacent ranges coalesce
        (b"bytes=0-5,3-8", 10, [(0, 8)]),  # overlapping ranges coalesce
        (b"bytes=6-7,0-1", 10, [(6, 7), (0, 1)]),  # in the order listed (RFC 9110 section 15.3.7.2)
        (b"bytes=0-1,5-6,2-3", 10, [(0, 3), (5, 6)]),
        (b"bytes=5-6,2-3,0-1", 10, [(5, 6), (0, 3)]),  # a merged range where its first range was listed
        (b"bytes=8-9,0-1,4-5", 10, [(8, 9), (0, 1), (4, 5)]),
        (b"bytes=8-9,1-2,0-0,4-5", 10, [(8, 9), (0, 2), (4, 5)]),
        (b"bytes=0-9,2-3", 10, [(0, 9)]),  # a contained range disappears
        (b"bytes=-3,0-", 10, [(0, 9)]),
        (b"bytes=0-1 , 4-5 ,\t8-9", 10, [(0, 1), (4, 5), (8, 9)]),
        (b"bytes=0-1,,4-5,", 10, [(0, 1), (4, 5)]),  # empty list elements are allowed
        (b"bytes=,0-1", 10, [(0, 1)]),
        (b"bytes=0-0", 1, [(0, 0)]),
        (b"bytes=-1", 1, [(0, 0)]),
        (b"bytes=007-008", 10, [(7, 8)]),  # leading zeros are still digits
    ],
)
def test_parse_range_satisfiable(value: bytes, size: int, expected: list) -> None:
    assert parse_range(value, size) == expected


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (b"bytes=1000-", 1000),  # first-pos at the end
        (b"bytes=5000-6000", 1000),
        (b"bytes=-0", 1000),  # an empty suffix
        (b"bytes=-0,1000-", 1000),
        (b"bytes=0-99", 0),  # nothing is satisfiable in an empty file
        (b"bytes=-5", 0),
        (b"bytes=0-", 0),
        (b"bytes=99999999999999999999999999-", 1000),  # huge first-pos
        (b"bytes=9223372036854775807-", 2**63 - 1),
    ],
)
def test_parse_range_unsatisfiable(value: bytes, size: int) -> None:
    assert parse_range(value, size) == []


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"   ",
        b"bytes",
        b"bytes=",
        b"bytes= ",
        b"bytes=,",
        b"items=0-1",
        b"bytes 0-1",
        b"bytes:0-1",
        b"bytes =0-1",
        b"bytesx=0-1",
        b"bytes=5-1",  # first > last
        b"bytes=0-1,5-1",
        b"bytes=-",
        b"bytes=a-1",
        b"bytes=0-b",
        b"bytes=0 -1",
        b"bytes=0- 1",
        b"bytes=- 1",
        b"bytes=0-1-2",
        b"bytes=0-1;2-3",
        b"bytes=1",
        b"bytes=0x10-0x20",
        b"bytes=+1-2",
        b"bytes=--1",
        b"bytes=0-1 2-3",
        b"bytes=\xff-\xfe",
        b"bytes=0-1\x00",
        b"\xe2\x80\x8bbytes=0-1",
        b"bytes=\xd9\xa1-\xd9\xa2",  # non-ASCII digits
        b"bytes=99999999999999999999-99999999999999999998",
    ],
)
def test_parse_range_ignored(value: bytes | None) -> None:
    assert parse_range(value, 1000) is None


def test_parse_range_huge_numbers_saturate_instead_of_overflowing() -> None:
    nines = b"9" * 400
    assert parse_range(b"bytes=0-" + nines, 1000) == [(0, 999)]
    assert parse_range(b"bytes=-" + nines, 1000) == [(0, 999)]
    assert parse_range(b"bytes=" + nines + b"-", 1000) == []
    assert parse_range(b"bytes=9223372036854775806-", 2**63 - 1) == [(2**63 - 2, 2**63 - 2)]
    assert parse_range(b"bytes=9223372036854775808-9223372036854775809", 10) == []
    assert parse_range(b"bytes=0-9223372036854775808", 2**63 - 1) == [(0, 2**63 - 2)]
    assert parse_range(b"bytes=4000000000000000000-", 2**62) == [(4 * 10**18, 2**62 - 1)]
    assert parse_range(b"bytes=0-" + b"0" * 50 + b"5", 10) == [(0, 5)]
    # first > last is still detected exactly between two numbers past the cap
    assert parse_range(b"bytes=" + nines + b"-" + nines, 1000) == []
    assert parse_range(b"bytes=" + nines + b"-" + nines[:-1], 1000) is None
    assert parse_range(b"bytes=00" + nines + b"-" + nines + b"0", 1000) == []
    assert parse_range(b"bytes=20000000000000000000-19999999999999999999", 1000) is None


def test_parse_range_limits_the_number_of_ranges() -> None:
    sixteen = b"bytes=" + b",".join(b"%d-%d" % (i * 10, i * 10) for i in range(16))
    assert parse_range(sixteen, 1000) == [(i * 10, i * 10) for i in range(16)]
    seventeen = sixteen + b",500-501"
    assert parse_range(seventeen, 1000) is None
    # counted before coalescing: 17 copies of one range are still too many
    assert parse_range(b"bytes=" + b",".join([b"0-0"] * 17), 1000) is None
    assert parse_range(b"bytes=" + b",".join([b"0-0"] * 16), 1000) == [(0, 0)]
    # unsatisfiable ranges count too
    assert parse_range(b"bytes=" + b",".join([b"5000-"] * 17), 1000) is None


def test_parse_range_max_ranges_argument() -> None:
    assert parse_range(b"bytes=0-0,2-2", 10, 1) is None
    assert parse_range(b"bytes=0-0", 10, 1) == [(0, 0)]
    assert parse_range(b"bytes=0-0", 10, 0) is None
    assert parse_range(b"bytes=0-0,2-2", 10, max_ranges=2) == [(0, 0), (2, 2)]
    many = b"bytes=" + b",".join(b"%d-%d" % (i * 2, i * 2) for i in range(500))
    assert parse_range(many, 10_000, 500) == [(i * 2, i * 2) for i in range(500)]
    assert parse_range(many, 10_000, 499) is None
    # the scan stops early: a syntax error after the limit is never reached
    assert parse_range(b"bytes=0-0,1-1,2-2,garbage", 10, 2) is None


def test_parse_range_long_hostile_values() -> None:
    assert parse_range(b"bytes=" + b"," * 100_000, 1000) is None
    assert parse_range(b"bytes=" + b" " * 100_000 + b"0-1", 1000) == [(0, 1)]
    assert parse_range(b"bytes=" + b"0-1," * 100_000, 1000) is None
    assert parse_range(b"bytes=0-1" + b"\x80" * 1000, 1000) is None


def test_parse_range_negative_size_is_treated_as_empty() -> None:
    assert parse_range(b"bytes=0-1", -5) == []


def _reference_parse_range(value: str, size: int, max_ranges: int = 16):
    """Straightforward model of the documented behaviour, for randomized comparison."""
    match = re.fullmatch(r"[ \t]*bytes=(.*?)[ \t]*", value, re.IGNORECASE | re.DOTALL)
    if not match:
        return None
    specs = [s.strip(" \t") for s in match.group(1).split(",")]
    specs = [s for s in specs if s]
    if not specs or len(specs) > max_ranges:
        return None
    resolved = []
    for spec in specs:
        m = re.fullmatch(r"([0-9]*)-([0-9]*)", spec)
        if not m or (not m.group(1) and not m.group(2)):
            return None
        first, last = m.group(1), m.group(2)
        if not first:
            length = int(last)
            if length and size:
                resolved.append((max(0, size - length), size - 1))
            continue
        a = int(first)
        b = int(last) if last else None
        if b is not None and a > b:
            return None
        if a >= size:
            continue
        resolved.append((a, size - 1 if b is None or b >= size else b))
    merged: list[list[int]] = []  # [a, b, where the first range merged into it was listed]
    for a, b, listed_at in sorted((a, b, i) for i, (a, b) in enumerate(resolved)):
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = [merged[-1][0], max(merged[-1][1], b), min(merged[-1][2], listed_at)]
        else:
            merged.append([a, b, listed_at])
    return [(a, b) for a, b, _ in sorted(merged, key=lambda each: each[2])]


def test_parse_range_matches_reference_model_on_random_input() -> None:
    rng = random.Random(20240611)
    pieces = ["0", "1", "5", "9", "10", "99", "100", "250", "999", "1000", "12345", ""]
    for _ in range(3000):
        size = rng.choice([0, 1, 2, 10, 100, 1000, 5000])
        specs = []
        for _ in range(rng.randint(1, 18)):
            shape = rng.random()
            a, b = rng.choice(pieces), rng.choice(pieces)
            if shape < 0.05:
                specs.append(rng.choice(["x", "-", "1-2-3", " ", ""]))
            else:
                specs.append(f"{a}-{b}")
        sep = rng.choice([",", ", ", " ,\t", ",,"])
        value = rng.choice(["bytes=", "Bytes=", "BYTES="]) + sep.join(specs)
        expected = _reference_parse_range(value, size)
        assert parse_range(value.encode(), size) == expected, (value, size)


# ---------------------------------------------------------------------------------------------
# entity-tags
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, []),
        (b"", []),
        (b"   ", []),
        (b"*", [b"*"]),
        (b"  *  ", [b"*"]),
        (b'"a"', [b'"a"']),
        (b'W/"a"', [b'W/"a"']),
        (b'W/"a", "b"', [b'W/"a"', b'"b"']),
        (b'"a","b" ,  "c"\t,\t"d"', [b'"a"', b'"b"', b'"c"', b'"d"']),
        (b'""', [b'""']),  # an empty opaque-tag is valid
        (b'"a,b", "c"', [b'"a,b"', b'"c"']),  # commas may appear inside the quotes
        (b'"\xe2\x82\xac"', [b'"\xe2\x82\xac"']),  # obs-text is allowed inside
        (b',,"a",,', [b'"a"']),
        (b'a, "b"', [b'"b"']),  # unquoted member skipped
        (b'"a" x, "b"', [b'"b"']),  # junk after a tag skips the member
        (b'"a"b, "c"', [b'"c"']),
        (b'w/"a", "b"', [b'"b"']),  # the weak prefix is case-sensitive
        (b'W/ "a", "b"', [b'"b"']),
        (b'"a b", "c"', [b'"c"']),  # space is not an etagc
        (b'"a\x00", "c"', [b'"c"']),
        (b'"unterminated', []),
        (b'"a", "unterminated', [b'"a"']),
        (b'*, "a"', [b'"a"']),  # "*" is only meaningful alone
        (b"\xff\xfe", []),
    ],
)
def test_parse_etag_list(value: bytes | None, expected: list) -> None:
    assert parse_etag_list(value) == expected


@pytest.mark.parametrize(
    ("value", "etag", "weak", "expected"),
    [
        (b'"a"', b'"a"', True, True),
        (b'"a"', b'"a"', False, True),
        (b'W/"a"', b'"a"', True, True),
        (b'W/"a"', b'"a"', False, False),  # strong comparison never matches a weak tag
        (b'"a"', b'W/"a"', True, True),
        (b'"a"', b'W/"a"', False, False),
        (b'W/"a"', b'W/"a"', False, False),
        (b'W/"a"', b'W/"a"', True, True),
        (b'"b", "a"', b'"a"', False, True),
        (b'"b", W/"a"', b'"a"', False, False),
        (b'"b", W/"a"', b'"a"', True, True),
        (b'"ab"', b'"a"', True, False),
        (b'"a"', b'"ab"', True, False),
        (b'"A"', b'"a"', True, False),  # opaque-tags are case-sensitive
        (b"*", b'"a"', True, True),
        (b"*", b'"a"', False, True),
        (b"*", b'W/"a"', False, True),
        (b"*", None, True, False),  # no current representation
        (b'"a"', None, True, False),
        (None, b'"a"', True, False),
        (b"", b'"a"', True, False),
        (b"  ", b'"a"', False, False),
        (b"garbage", b'"a"', True, False),
        (b'a, "a"', b'"a"', True, True),
        (b'"a', b'"a"', True, False),
        (b'"a"', b"", True, False),
        (b"x", b"x", True, False),  # equal, but not an entity-tag
        (b'"18ecfa28fb1db662-400"', b'"18ecfa28fb1db662-400"', False, True),  # the tag sent back as it was
    ],
)
def test_etag_matches(value, etag, weak, expected) -> None:
    assert etag_matches(value, etag, weak) is expected


def test_etag_matches_long_lists() -> None:
    many = b", ".join(b'"%d"' % i for i in range(5000))
    assert etag_matches(many, b'"4999"', False)
    assert not etag_matches(many, b'"5000"', True)


def test_make_etag() -> None:
    assert make_etag(0x5F1, 0x1A) == b'"5f1-1a"'
    assert make_etag(0, 0) == b'"0-0"'
    assert make_etag(1_700_000_000_123_456_789, 1_048_576) == b'"%x-%x"' % (
        1_700_000_000_123_456_789,
        1_048_576,
    )
    assert make_etag(2**63 - 1, 2**63 - 1) == b'"7fffffffffffffff-7fffffffffffffff"'
    assert make_etag(-(2**63), -1) == b'"-8000000000000000--1"'
    # the tag it makes is a valid strong entity-tag
    tag = make_etag(123, 456)
    assert parse_etag_list(tag) == [tag]
    assert etag_matches(tag, tag, False)


def test_make_etag_changes_with_mtime_and_size() -> None:
    assert make_etag(1, 2) != make_etag(2, 2) != make_etag(2, 3)


# ---------------------------------------------------------------------------------------------
# HTTP dates
# ---------------------------------------------------------------------------------------------


def test_parse_http_date_three_formats() -> None:
    expected = 784111777
    assert parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT") == expected
    assert parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT") == expected
    assert parse_http_date(b"Sun Nov  6 08:49:37 1994") == expected
    assert parse_http_date(b"Sun Nov 06 08:49:37 1994") == expected
    assert parse_http_date(b"  Sun, 06 Nov 1994 08:49:37 GMT\t") == expected


def _sample_timestamps() -> list[int]:
    rng = random.Random(7)
    fixed = [
        0,
        1,
        59,
        86399,
        86400,
        68169600,  # 1972-02-29 (leap day)
        951782400,  # 2000-02-29 (400-year leap)
        951868800,  # 2000-03-01
        4107542400,  # 2100-03-01 (2100 is not a leap year)
        2147483647,  # 2038-01-19 03:14:07
        2147483648,
        4294967296,
        1709164800,  # 2024-02-29
        253402300799,  # 9999-12-31 23:59:59
        978307199,  # 2000-12-31 23:59:59
    ]
    return fixed + [rng.randrange(0, 253402300800) for _ in range(2000)]


def test_parse_http_date_agrees_with_email_utils() -> None:
    for ts in _sample_timestamps():
        imf = email.utils.formatdate(ts, usegmt=True)
        assert parse_http_date(imf.encode()) == ts, imf
        assert email.utils.parsedate_to_datetime(imf).timestamp() == ts
        asctime = time.asctime(time.gmtime(ts))
        assert parse_http_date(asctime.encode()) == ts, asctime


def test_parse_http_date_rfc850_two_digit_years() -> None:
    this_year = time.gmtime().tm_year
    for offset in range(-49, 50, 3):
        year = this_year + offset
        ts = calendar.timegm((year, 7, 15, 12, 30, 45, 0, 0, 0))
        text = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(ts))
        assert parse_http_date(text.encode()) == ts, text
    # more than 50 years ahead: the previous century
    year = this_year + 51
    ts = calendar.timegm((year - 100, 7, 15, 0, 0, 0, 0, 0, 0))
    text = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(ts))
    assert parse_http_date(text.encode()) == ts, text


def test_parse_http_date_rfc850_fifty_years_on_is_counted_to_the_day() -> None:
    """RFC 9110 section 5.6.7: a two-digit year is this century's unless the date is then
    *more than 50 years* in the future: in the year fifty years on, a date before today's is
    still this century's, one after it the previous century's (the year alone said this
    century's for the whole year)."""
    now = time.gmtime()
    day = min(now.tm_mday, 28)
    fifty_years_on = calendar.timegm((now.tm_year + 50, now.tm_mon, day, now.tm_hour, now.tm_min, now.tm_sec))
    for ts, century_back in ((fifty_years_on - 2 * 86400, False), (fifty_years_on + 2 * 86400, True)):
        date = time.gmtime(ts)
        text = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", date)
        expected = calendar.timegm((date.tm_year - 100 if century_back else date.tm_year, *date[1:6], 0, 0, 0))
        assert parse_http_date(text.encode()) == expected, text


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"   ",
        b"yesterday",
        b"0",
        b"784111777",
        b"Sun, 06 Nov 1994 08:49:37 UTC",
        b"Sun, 06 Nov 1994 08:49:37 gmt",
        b"Sun, 06 Nov 1994 08:49:37",
        b"Sun, 06 Nov 94 08:49:37 GMT",
        b"Sun, 6 Nov 1994 08:49:37 GMT",
        b"Sun,  06 Nov 1994 08:49:37 GMT",
        b"Sun, 06 nov 1994 08:49:37 GMT",
        b"sun, 06 Nov 1994 08:49:37 GMT",
        b"Xyz, 06 Nov 1994 08:49:37 GMT",
        b"Sun, 06 Foo 1994 08:49:37 GMT",
        b"Sun, 00 Nov 1994 08:49:37 GMT",
        b"Sun, 31 Nov 1994 08:49:37 GMT",
        b"Sun, 32 Jan 1994 08:49:37 GMT",
        b"Thu, 29 Feb 2001 00:00:00 GMT",  # not a leap year
        b"Mon, 29 Feb 2100 00:00:00 GMT",  # century, not a leap year
        b"Sun, 06 Nov 1994 24:00:00 GMT",
        b"Sun, 06 Nov 1994 23:60:00 GMT",
        b"Sun, 06 Nov 1994 23:59:61 GMT",
        b"Sun, 06 Nov 1994 08-49-37 GMT",
        b"Sun, 06 Nov 1994 08:4a:37 GMT",
        b"Sun, 06 Nov 19x4 08:49:37 GMT",
        b"Sun, 06 Nov 1994 08:49:37 GMTX",
        b"Sun, 06 Nov 1994 08:49:37 GM\xff",
        b"\xff\xff\xff, 06 Nov 1994 08:49:37 GMT",
        b"Sun, -6 Nov 1994 08:49:37 GMT",
        b"Sunday, 06-Nov-1994 08:49:37 GMT",
        b"Sunday, 06 Nov 94 08:49:37 GMT",
        b"Sundae, 06-Nov-94 08:49:37 GMT",
        b"Sunday, 06-Nov-94 08:49:37 UTC",
        b"Sunday, 31-Feb-94 08:49:37 GMT",
        b"Sun Nov  6 08:49:37 94",
        b"Sun Nov 6 08:49:37 1994",
        b"Sun Nov  6 08:49:37 1994 GMT",
        b"Sun Nov  0 08:49:37 1994",
        b"Sun Nov  x 08:49:37 1994",
        b"Sun Xyz  6 08:49:37 1994",
        b"Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT",
        b"\x00" * 29,
        b"9" * 1000,
    ],
)
def test_parse_http_date_rejects(value: bytes | None) -> None:
    assert parse_http_date(value) == -1


def test_parse_http_date_edges() -> None:
    assert parse_http_date(b"Thu, 01 Jan 1970 00:00:00 GMT") == 0
    assert parse_http_date(b"Tue, 29 Feb 2000 00:00:00 GMT") == 951782400
    assert parse_http_date(b"Tue, 29 Feb 2400 00:00:00 GMT") == calendar.timegm(
        (2400, 2, 29, 0, 0, 0, 0, 0, 0)
    )
    assert parse_http_date(b"Fri, 31 Dec 9999 23:59:59 GMT") == 253402300799
    # a leap second is accepted and counted as the next minute's first second
    assert parse_http_date(b"Sat, 31 Dec 2016 23:59:60 GMT") == calendar.timegm(
        (2017, 1, 1, 0, 0, 0, 0, 0, 0)
    )
    # dates before the epoch are negative
    assert parse_http_date(b"Wed, 31 Dec 1969 00:00:00 GMT") == -86400
    assert parse_http_date(b"Mon, 01 Jan 0001 00:00:00 GMT") == calendar.timegm(
        (1, 1, 1, 0, 0, 0, 0, 0, 0)
    )
    assert parse_http_date(b"Sat, 01 Jan 0000 00:00:00 GMT") == -62167219200
    # the weekday is not cross-checked against the date
    assert parse_http_date(b"Mon, 06 Nov 1994 08:49:37 GMT") == 784111777


def test_format_http_date_agrees_with_email_utils() -> None:
    for ts in _sample_timestamps():
        assert format_http_date(ts) == email.utils.formatdate(ts, usegmt=True).encode()
        assert parse_http_date(format_http_date(ts)) == ts


def test_format_http_date_truncates_fractions_and_handles_the_past() -> None:
    assert format_http_date(784111777.999) == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(0.0) == b"Thu, 01 Jan 1970 00:00:00 GMT"
    assert format_http_date(-0.5) == b"Wed, 31 Dec 1969 23:59:59 GMT"
    assert format_http_date(-86400) == email.utils.formatdate(-86400, usegmt=True).encode()
    assert format_http_date(-62167219200) == b"Sat, 01 Jan 0000 00:00:00 GMT"
    assert format_http_date(253402300799.5) == b"Fri, 31 Dec 9999 23:59:59 GMT"


@pytest.mark.parametrize(
    "ts", [float("nan"), float("inf"), float("-inf"), 253402300800.0, -62167219201.0, 1e300]
)
def test_format_http_date_out_of_range(ts: float) -> None:
    with pytest.raises(ValueError):
        format_http_date(ts)


# time(NULL), which current_http_date reads, is the kernel's coarse clock: it may be up to a
# scheduler tick (1-10 ms) behind time.time() just after a second begins.
COARSE_CLOCK_LAG = 0.05


def test_current_http_date() -> None:
    before = int(time.time() - COARSE_CLOCK_LAG)
    value = current_http_date()
    after = int(time.time())
    assert re.fullmatch(rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", value)
    assert before <= parse_http_date(value) <= after
    # cached within the second: the same object comes back
    for _ in range(5):
        again = current_http_date()
        if parse_http_date(again) == parse_http_date(value):
            assert again is value
            break
        value = again


def test_current_http_date_moves_on() -> None:
    second = float(int(time.time() - COARSE_CLOCK_LAG))
    first = current_http_date(second)
    assert parse_http_date(first) == second
    assert current_http_date(second + 0.9) is first  # still that second: kept
    later = current_http_date(second + 1.0)
    assert parse_http_date(later) == second + 1
    assert current_http_date(second + 61.5) == format_http_date(second + 61)
    assert second <= parse_http_date(current_http_date()) <= time.time()  # the system clock again, not the kept second


# ---------------------------------------------------------------------------------------------
# Content-Type
# ---------------------------------------------------------------------------------------------


def _expected_type(path: str) -> str:
    guessed = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return guessed + "; charset=utf-8" if guessed.startswith("text/") else guessed


@pytest.mark.parametrize(
    "path, expected",
    [
        ("index.html", "text/html; charset=utf-8"),
        ("/srv/www/index.htm", "text/html; charset=utf-8"),
        ("page.HTML", "text/html; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),  # RFC 9239, whatever the host's tables say
        ("app.mjs", "text/javascript; charset=utf-8"),  # a module script is refused under another type
        ("app.cjs", "text/javascript; charset=utf-8"),
        ("data.json", "application/json"),
        ("app.js.map", "application/json"),  # a source map is JSON
        ("feed.xml", "application/xml"),
        ("site.webmanifest", "application/manifest+json"),
        ("logo.svg", "image/svg+xml"),
        ("logo.png", "image/png"),
        ("photo.jpg", "image/jpeg"),
        ("photo.JPG", "image/jpeg"),
        ("photo.webp", "image/webp"),
        ("photo.avif", "image/avif"),
        ("favicon.ico", "image/vnd.microsoft.icon"),
        ("font.woff2", "font/woff2"),
        ("font.woff", "font/woff"),
        ("font.ttf", "font/ttf"),
        ("font.otf", "font/otf"),
        ("module.wasm", "application/wasm"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("notes.md", "text/markdown; charset=utf-8"),
        ("movie.mp4", "video/mp4"),
        ("clip.webm", "video/webm"),
        ("stream.m3u8", "application/vnd.apple.mpegurl"),
        ("segment.ts", "video/mp2t"),
        ("archive.zip", "application/zip"),
        ("doc.pdf", "application/pdf"),
        # a file whose name says it is compressed is sent as it is, so it is the compressed file
        ("archive.tar.gz", "application/gzip"),
        ("bundle.js.gz", "application/gzip"),
        ("archive.tgz", "application/gzip"),
        ("image.svgz", "application/gzip"),
        ("x.gz", "application/gzip"),
        ("x.zst", "application/zstd"),
        ("x.br", "application/octet-stream"),
        ("x.bz2", "application/octet-stream"),
        ("README", "application/octet-stream"),
        ("/a.b/README", "application/octet-stream"),
        ("weird.unknownext", "application/octet-stream"),
        (".bashrc", "application/octet-stream"),
        ("..hidden", "application/octet-stream"),
        ("a.", "application/octet-stream"),
        ("dir/.config.json", "application/json"),
        ("noext.", "application/octet-stream"),
    ],
)
def test_content_type_for_web_assets(path: str, expected: str) -> None:
    assert content_type_for(path) == expected
    assert content_type_for(path) == expected  # and again, from the cache


def test_content_type_for_does_not_depend_on_the_hosts_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host without /etc/mime.types (a slim container) or with odd entries in it (``.js`` as
    ``text/plain`` in a Windows registry, ``.ts`` as Qt Linguist) gets the same answers."""
    bare = mimetypes.MimeTypes(filenames=())  # Python's own table alone: no woff2, no webp
    assert bare.guess_type("f.woff2")[0] is None and bare.guess_type("f.webp")[0] is None
    odd = mimetypes.MimeTypes(filenames=())
    odd.add_type("text/plain", ".js")
    odd.add_type("text/vnd.trolltech.linguist", ".ts")
    for table in (bare, odd):
        headers.clear_content_type_cache()
        monkeypatch.setattr(mimetypes, "guess_type", table.guess_type)
        assert content_type_for("a.woff2") == "font/woff2"
        assert content_type_for("a.webp") == "image/webp"
        assert content_type_for("a.js") == "text/javascript; charset=utf-8"
        assert content_type_for("a.ts") == "video/mp2t"
    monkeypatch.undo()
    headers.clear_content_type_cache()


def test_content_type_for_other_suffixes_follow_mimetypes() -> None:
    for path in ("a.tar", "a.eps", "a.opus", "a.latex"):
        assert content_type_for(path) == _expected_type(path)


# What nginx's own mime.types answers for suffixes a site serves, that Python's table alone (a
# slim container has no /etc/mime.types) does not know or names otherwise: each was sent as
# application/octet-stream there, so a browser downloaded a feed, a calendar or a video (with
# X-Content-Type-Options: nosniff it may not guess).
NGINX_TYPES_FOR_SITES = [
    ("page.shtml", "text/html; charset=utf-8"),
    ("page.xhtml", "application/xhtml+xml"),
    ("feed.rss", "application/rss+xml"),
    ("feed.atom", "application/atom+xml"),
    ("event.ics", "text/calendar; charset=utf-8"),
    ("table.tsv", "text/tab-separated-values; charset=utf-8"),
    ("map.geojson", "application/geo+json"),
    ("map.kml", "application/vnd.google-earth.kml+xml"),
    ("map.kmz", "application/vnd.google-earth.kmz"),
    ("config.yaml", "application/yaml"),  # RFC 9512
    ("config.yml", "application/yaml"),
    ("scan.tif", "image/tiff"),
    ("scan.tiff", "image/tiff"),
    ("photo.jxl", "image/jxl"),
    ("photo.heic", "image/heic"),
    ("photo.heif", "image/heif"),
    ("model.glb", "model/gltf-binary"),
    ("model.gltf", "model/gltf+json"),
    ("sound.oga", "audio/ogg"),
    ("clip.ogv", "video/ogg"),
    ("sound.weba", "audio/webm"),
    ("sound.aac", "audio/aac"),
    ("tune.mid", "audio/midi"),
    ("tune.midi", "audio/midi"),
    ("clip.m4v", "video/x-m4v"),
    ("clip.mov", "video/quicktime"),
    ("clip.mkv", "video/x-matroska"),
    ("clip.3gp", "video/3gpp"),
    ("clip.3gpp", "video/3gpp"),
    ("letter.rtf", "application/rtf"),
    ("book.epub", "application/epub+zip"),
    ("letter.doc", "application/msword"),
    ("sheet.xls", "application/vnd.ms-excel"),
    ("slides.ppt", "application/vnd.ms-powerpoint"),
    ("letter.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("sheet.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("slides.pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
    ("letter.odt", "application/vnd.oasis.opendocument.text"),
    ("sheet.ods", "application/vnd.oasis.opendocument.spreadsheet"),
    ("slides.odp", "application/vnd.oasis.opendocument.presentation"),
    ("drawing.odg", "application/vnd.oasis.opendocument.graphics"),
    ("archive.7z", "application/x-7z-compressed"),
    ("archive.rar", "application/vnd.rar"),  # IANA's name (nginx: application/x-rar-compressed)
    ("lib.jar", "application/java-archive"),
]


@pytest.mark.parametrize("path, expected", NGINX_TYPES_FOR_SITES)
def test_content_type_for_a_slim_container_is_nginxs(monkeypatch: pytest.MonkeyPatch, path: str,
                                                      expected: str) -> None:
    bare = mimetypes.MimeTypes(filenames=())  # Python's own table alone
    headers.clear_content_type_cache()
    monkeypatch.setattr(mimetypes, "guess_type", bare.guess_type)
    try:
        assert content_type_for(path) == expected
        assert content_type_for(path.upper()) == expected
    finally:
        monkeypatch.undo()
        headers.clear_content_type_cache()


def test_content_type_for_charset_rules() -> None:
    assert content_type_for("a.html") == "text/html; charset=utf-8"
    assert content_type_for("a.css") == "text/css; charset=utf-8"
    # As Starlette's FileResponse (and nginx) send them: a charset for text/* only.
    assert content_type_for("a.json") == "application/json"
    assert content_type_for("a.svg") == "image/svg+xml"
    assert content_type_for("a.png") == "image/png"
    assert content_type_for("no_extension") == "application/octet-stream"


def test_content_type_for_ignores_url_schemes() -> None:
    assert content_type_for("data:text/html,x.png") == "image/png"
    assert content_type_for("x.png") == "image/png"


def test_content_type_for_cache_can_be_cleared() -> None:
    ext = ".fastserve-test-ext"
    assert content_type_for("a" + ext) == "application/octet-stream"
    mimetypes.add_type("application/x-fastserve-test", ext)
    try:
        assert content_type_for("a" + ext) == "application/octet-stream"  # cached
        headers.clear_content_type_cache()
        assert content_type_for("a" + ext) == "application/x-fastserve-test"
    finally:
        mimetypes.types_map.pop(ext, None)
        headers.clear_content_type_cache()


def test_content_type_for_many_extensions_stays_correct() -> None:
    # more distinct suffixes than the cache holds: answers stay right after the cache resets
    for i in range(3000):
        assert content_type_for(f"f.x{i}") == "application/octet-stream"
    assert content_type_for("f.html") == "text/html; charset=utf-8"


# ---------------------------------------------------------------------------------------------
# Accept-Encoding
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, {}),
        (b"", {}),
        (b"gzip;q=0.8, br, *;q=0", {"gzip": 0.8, "br": 1.0, "*": 0.0}),
        (b"gzip, deflate, br, zstd", {"gzip": 1.0, "deflate": 1.0, "br": 1.0, "zstd": 1.0}),
        (b"GZIP;Q=0.5", {"gzip": 0.5}),
        (b"gzip ; q=0.5", {"gzip": 0.5}),
        (b"gzip;q=1", {"gzip": 1.0}),
        (b"gzip;q=1.000", {"gzip": 1.0}),
        (b"gzip;q=0.", {"gzip": 0.0}),
        (b"gzip;q=0.001", {"gzip": 0.001}),
        (b"gzip;q=0.125", {"gzip": 0.125}),
        (b"identity;q=0", {"identity": 0.0}),
        (b",, gzip ,,", {"gzip": 1.0}),
        (b"gzip;q=0.5, gzip;q=0.2", {"gzip": 0.2}),  # the last weight wins
        # invalid members are skipped, the rest still count
        (b"gzip;q=1.5, br", {"br": 1.0}),
        (b"gzip;q=1.001, br", {"br": 1.0}),
        (b"gzip;q=0.1234, br", {"br": 1.0}),
        (b"gzip;q=-1, br", {"br": 1.0}),
        (b"gzip;q=, br", {"br": 1.0}),
        (b"gzip;q=abc, br", {"br": 1.0}),
        (b"gzip;q = 0.5, br", {"br": 1.0}),
        (b"gzip;level=5, br", {"br": 1.0}),
        (b"gzip;, br", {"br": 1.0}),
        (b"gzip;q=0.5;q=0.4, br", {"br": 1.0}),
        (b"gz ip, br", {"br": 1.0}),
        (b"g\xffzip, br", {"br": 1.0}),
        (b"\xff\xfe", {}),
        (b"(gzip), br", {"br": 1.0}),
    ],
)
def test_parse_accept_encoding(value: bytes | None, expected: dict) -> None:
    assert parse_accept_encoding(value) == expected


# ---------------------------------------------------------------------------------------------
# status line, header block
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "phrase"),
    [
        (200, b"OK"),
        (206, b"Partial Content"),
        (304, b"Not Modified"),
        (404, b"Not Found"),
        (412, b"Precondition Failed"),
        (413, b"Content Too Large"),
        (416, b"Range Not Satisfiable"),
        (431, b"Request Header Fields Too Large"),
        (503, b"Service Unavailable"),
        (299, b""),
        (599, b""),
        (0, b""),
        (-1, b""),
        (600, b""),
        (99999, b""),
    ],
)
def test_reason_phrase(status: int, phrase: bytes) -> None:
    assert reason_phrase(status) == phrase


def test_serialize_headers_layout() -> None:
    block = serialize_headers(
        200, [(b"content-type", b"text/plain"), (b"Content-Length", b"5")]
    )
    assert block == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 5\r\n\r\n"
    )
    assert serialize_headers(304, []) == b"HTTP/1.1 304 Not Modified\r\n\r\n"
    assert serialize_headers(599, []) == b"HTTP/1.1 599 \r\n\r\n"
    assert serialize_headers(200, [[b"x", b""]]) == b"HTTP/1.1 200 OK\r\nx: \r\n\r\n"
    # values keep any byte but CR, LF and NUL
    assert serialize_headers(200, [(b"x", b"a\tb \xff")]) == b"HTTP/1.1 200 OK\r\nx: a\tb \xff\r\n\r\n"


TCHAR = set(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&'*+-.^_`|~")


@pytest.mark.parametrize("byte", range(256))
def test_header_names_are_rfc9110_tokens_byte_by_byte(byte: int) -> None:
    name = b"x" + bytes([byte])
    if byte in TCHAR:
        assert serialize_headers(200, [(name, b"v")]) == b"HTTP/1.1 200 OK\r\n" + name + b": v\r\n\r\n"
    else:
        with pytest.raises(ValueError):
            serialize_headers(200, [(name, b"v")])


def test_serialize_headers_parses_back_with_httptools() -> None:
    pairs = [(b"server", b"fastserve"), (b"content-length", b"3"), (b"etag", b'"1-3"')]
    for i in range(50):
        pairs.append((b"x-h%d" % i, b"v" * (i + 1)))
    seen: list[tuple[bytes, bytes]] = []
    body: list[bytes] = []

    class Sink:
        def on_header(self, name: bytes, value: bytes) -> None:
            seen.append((name, value))

        def on_body(self, data: bytes) -> None:
            body.append(data)

    parser = httptools.HttpResponseParser(Sink())
    parser.feed_data(serialize_headers(206, pairs) + b"abc")
    assert parser.get_status_code() == 206
    assert seen == pairs
    assert b"".join(body) == b"abc"


@pytest.mark.parametrize(
    "pair",
    [
        (b"", b"v"),
        (b"bad name", b"v"),
        (b"bad:name", b"v"),
        (b"bad\tname", b"v"),
        (b"bad\r\nname", b"v"),
        (b"bad\x00", b"v"),
        (b"caf\xc3\xa9", b"v"),
        (b"(x)", b"v"),
        (b"x", b"v\r\nSet-Cookie: evil=1"),
        (b"x", b"v\r"),
        (b"x", b"v\n"),
        (b"x", b"v\x00"),
    ],
)
def test_serialize_headers_rejects_response_splitting(pair: tuple[bytes, bytes]) -> None:
    with pytest.raises(ValueError):
        serialize_headers(200, [(b"ok", b"fine"), pair])


@pytest.mark.parametrize(
    "bad",
    [
        [("content-type", b"x")],
        [(b"content-type", "x")],
        [(b"content-type", None)],
        [b"content-type: x"],
        [None],
    ],
)
def test_serialize_headers_rejects_non_bytes(bad: list) -> None:
    with pytest.raises(TypeError):
        serialize_headers(200, bad)


def test_serialize_headers_rejects_wrong_pair_sizes() -> None:
    with pytest.raises(ValueError):
        serialize_headers(200, [(b"a", b"b", b"c")])
    with pytest.raises(ValueError):
        serialize_headers(200, [(b"a",)])


@pytest.mark.parametrize("status", [0, 99, 1000, -200])
def test_serialize_headers_rejects_bad_status(status: int) -> None:
    with pytest.raises(ValueError):
        serialize_headers(status, [])


def test_serialize_headers_large_block() -> None:
    pairs = [(b"x-%d" % i, b"%d" % i * 100) for i in range(1000)]
    block = serialize_headers(200, pairs)
    expected = b"HTTP/1.1 200 OK\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in pairs) + b"\r\n"
    assert block == expected


# ---------------------------------------------------------------------------------------------
# multipart/byteranges framing
# ---------------------------------------------------------------------------------------------


def test_byteranges_layout_shape() -> None:
    heads, tail, length = byteranges_layout([(0, 0), (5, 9)], b"text/plain", 10, b"XYZ")
    assert heads == [
        b"--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-0/10\r\n\r\n",
        b"\r\n--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-9/10\r\n\r\n",
    ]
    assert tail == b"\r\n--XYZ--"
    assert length == sum(map(len, heads)) + 1 + 5 + len(tail)


def test_byteranges_layout_body_parses_as_multipart() -> None:
    data = bytes(range(256)) * 40
    ranges = parse_range(b"bytes=0-99, 500-599, -10", len(data))
    boundary = b"3d6b6a416f9b5"
    heads, tail, length = byteranges_layout(ranges, b"application/octet-stream", len(data), boundary)
    body = b"".join(h + data[a : b + 1] for h, (a, b) in zip(heads, ranges)) + tail
    assert len(body) == length
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: multipart/byteranges; boundary=" + boundary + b"\r\n\r\n" + body
    )
    parts = message.get_payload()
    assert len(parts) == len(ranges)
    for part, (a, b) in zip(parts, ranges):
        assert part["Content-Range"] == f"bytes {a}-{b}/{len(data)}"
        assert part["Content-Type"] == "application/octet-stream"
        assert part.get_payload(decode=True) == data[a : b + 1]


def test_byteranges_layout_empty_and_invalid() -> None:
    heads, tail, length = byteranges_layout([], b"text/plain", 10, b"b")
    assert heads == [] and length == len(tail)
    for bad in ([(5, 4)], [(-1, 3)], [(0, 10)]):
        with pytest.raises(ValueError):
            byteranges_layout(bad, b"text/plain", 10, b"b")
