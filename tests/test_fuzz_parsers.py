"""Property tests (hypothesis) of every parser a request's bytes reach, each against a small
pure-Python reference written here from the grammar it implements.

    HYPOTHESIS_PROFILE=ci    pytest tests/test_fuzz_parsers.py   # the default: fast, reproducible
    HYPOTHESIS_PROFILE=long  pytest tests/test_fuzz_parsers.py   # local runs: 20,000 examples each

Paths (``pathlookup``, the open-file cache), ``Range``, entity-tag lists, HTTP-dates,
``Accept-Encoding`` (``headers``), request heads (``requesthead`` against httptools) and
chunked request bodies (httptools, as the connection feeds it): none may crash, a path may
never leave the root, and each agrees with its reference.
"""
from __future__ import annotations

import calendar
import os
import re
import time
import urllib.parse
from typing import Dict, List, Optional, Tuple

import httptools
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fastserve._speedups.filecache import FileCache
from fastserve._speedups.headers import (
    CODINGS,
    IDENTITY,
    NONE_ACCEPTABLE,
    etag_matches,
    format_http_date,
    negotiate_coding,
    parse_accept_encoding,
    parse_etag_list,
    parse_http_date,
    parse_range,
)
from fastserve._speedups.pathlookup import percent_decode, split_url_path
from fastserve._speedups.requesthead import scan_head
from connection_driver import Driven, run, statuses
from server_helpers import echo_body
from test_requesthead import assert_httptools_reads_alike

OWS = b" \t"
TCHAR = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# ---------------------------------------------------------------------------------------------
# paths


def reference_percent_decode(raw: bytes) -> Optional[str]:
    """RFC 3986 §2.1: ``%`` only as ``%HEXDIG HEXDIG``; decoded once; UTF-8 or nothing."""
    if re.search(rb"%(?![0-9A-Fa-f]{2})", raw):
        return None
    try:
        return urllib.parse.unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None


def reference_split(path: str) -> Optional[Tuple[str, ...]]:
    if "\x00" in path or "\\" in path:
        return None
    parts = [segment for segment in path.split("/") if segment not in ("", ".")]
    if ".." in parts:
        return None
    if parts and len(parts[0]) >= 2 and parts[0][1] == ":" and parts[0][0].isalpha():  # a drive: C:
        return None
    return tuple(parts)


# Pieces a hostile path is made of: every spelling of a dot, slash and escape seen in the wild.
PATH_PIECES = st.sampled_from([
    b"/", b"//", b".", b"..", b"%2e", b"%2E", b"%2e%2e", b".%2e", b"%252e", b"%2f", b"%2F", b"%5c", b"\\",
    b"%00", b"%", b"%z", b"%zz", b"%4", b"%c0%af", b"%c0%ae", b"%e2%80%ae", b"%ff", b"a", b"small.txt",
    b"dir", b"outside_link", b"outside_dir", b"secret.txt", b"C:", b"c%3a", b";", b"?", b"#", b"~", b" ",
    b"%20", b"\xc3\xa9", b"%C3%A9", b"index.html", b"..;", b"...", b"%u002e",
])
HOSTILE_PATHS = st.lists(PATH_PIECES, max_size=12).map(lambda parts: b"/" + b"".join(parts))
RAW_PATHS = st.one_of(HOSTILE_PATHS, st.binary(max_size=64).map(lambda raw: b"/" + raw))


@given(RAW_PATHS)
def test_percent_decode_agrees_with_the_reference(raw: bytes) -> None:
    assert percent_decode(raw) == reference_percent_decode(raw)


@given(st.one_of(st.text(max_size=40), HOSTILE_PATHS.map(lambda raw: raw.decode("latin-1"))))
def test_split_url_path_agrees_with_the_reference(path: str) -> None:
    assert split_url_path(path) == reference_split(path)


SECRET = b"SECRET-outside-the-root"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Tuple[str, FileCache, FileCache]:
    """A root with files, a directory, and links that point out of it; the secret lies outside."""
    base = tmp_path_factory.mktemp("fuzz-site")
    root = base / "public"
    (root / "dir").mkdir(parents=True)
    (root / "small.txt").write_bytes(b"small")
    (root / "dir" / "index.html").write_bytes(b"index")
    (base / "secret.txt").write_bytes(SECRET)
    os.symlink(base / "secret.txt", root / "outside_link")
    os.symlink(base, root / "outside_dir")
    real_root = os.path.realpath(root)
    return real_root, FileCache([root], html=True), FileCache([root], html=True, follow_symlink=False, max_body=0)


@given(RAW_PATHS)
def test_no_path_leaves_the_root(site, raw: bytes) -> None:
    root, cache, large_cache = site
    path = percent_decode(raw)
    assume(path is not None)
    for each in (cache, large_cache):
        entry = each.lookup(path)
        if entry.path is not None:
            real = os.path.realpath(entry.path)
            assert real == root or real.startswith(root + os.sep), (raw, entry.path)
        assert entry.body is None or SECRET not in entry.body


# ---------------------------------------------------------------------------------------------
# Range (RFC 9110 §14.1.2)


def reference_parse_range(value: bytes, size: int, max_ranges: int) -> Optional[List[Tuple[int, int]]]:
    value = value.strip(OWS)
    if value[:6].lower() != b"bytes=":
        return None
    listed = 0
    ranges = []
    for element in value[6:].split(b","):
        element = element.strip(OWS)
        if not element:
            continue
        listed += 1
        if listed > max_ranges:
            return None
        match = re.fullmatch(rb"(\d+)-(\d*)|-(\d+)", element)
        if match is None:
            return None
        if match.group(3) is not None:  # suffix-range: the last N bytes
            length = int(match.group(3))
            if length and size:
                ranges.append((max(0, size - length), size - 1))
            continue
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else None
        if last is not None and first > last:
            return None
        if first < size:
            ranges.append((first, size - 1 if last is None else min(last, size - 1)))
    if listed == 0:
        return None
    # overlapping or adjacent ranges merged; the rest (a merged one where its first range was
    # listed) in the order listed
    merged: List[List[int]] = []
    for first, last, listed_at in sorted((first, last, i) for i, (first, last) in enumerate(ranges)):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = [merged[-1][0], max(merged[-1][1], last), min(merged[-1][2], listed_at)]
        else:
            merged.append([first, last, listed_at])
    return [(first, last) for first, last, _ in sorted(merged, key=lambda each: each[2])]


NUMBERS = st.one_of(
    st.integers(0, 2000), st.integers(0, 2**63 + 10), st.just(2**63 - 1), st.just(10**30),
).map(lambda n: str(n).encode())
RANGE_ELEMENTS = st.one_of(
    st.tuples(NUMBERS, st.just(b"-"), NUMBERS).map(b"".join),
    st.tuples(NUMBERS, st.just(b"-")).map(b"".join),
    st.tuples(st.just(b"-"), NUMBERS).map(b"".join),
    st.sampled_from([b"", b"-", b"--1", b"1--2", b"a-b", b"1 - 2", b"+1-2", b"0x1-2", b"1-2-3", b"\xff"]),
)
RANGE_VALUES = st.one_of(
    st.tuples(
        st.sampled_from([b"bytes=", b"BYTES=", b" bytes=", b"bytes =", b"items=", b"bytes", b"Bytes=\t"]),
        st.lists(st.tuples(st.sampled_from([b"", b" ", b"\t "]), RANGE_ELEMENTS), max_size=20).map(
            lambda elements: b",".join(space + element for space, element in elements)
        ),
        st.sampled_from([b"", b" ", b",", b", ,"]),
    ).map(b"".join),
    st.binary(max_size=40),
)


@given(RANGE_VALUES, st.integers(0, 5000) | st.just(2**62), st.integers(1, 16))
def test_parse_range_agrees_with_the_reference(value: bytes, size: int, max_ranges: int) -> None:
    assert parse_range(value, size, max_ranges) == reference_parse_range(value, size, max_ranges)


# ---------------------------------------------------------------------------------------------
# entity-tag lists (RFC 9110 §8.8.3, §13.1.1)


def _is_etagc(byte: int) -> bool:
    return byte == 0x21 or 0x23 <= byte <= 0x7E or byte >= 0x80


def reference_etag_list(value: bytes) -> List[bytes]:
    """Each well-formed ``[W/]"etagc*"`` member; a malformed one is skipped to the next comma
    that follows what was read of it."""
    if value.strip(OWS) == b"*":
        return [b"*"]
    tags = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in b" \t,":
            i += 1
        if i >= n:
            return tags
        start = i
        if value[i:i + 2] == b"W/":
            i += 2
        if i < n and value[i] == 0x22:
            i += 1
            while i < n and _is_etagc(value[i]):
                i += 1
            if i < n and value[i] == 0x22:
                i += 1
                after = len(value[i:]) - len(value[i:].lstrip(OWS))
                if i + after >= n or value[i + after] == 0x2C:
                    tags.append(value[start:i])
                    i += after
                    continue
        while i < n and value[i] != 0x2C:
            i += 1


def reference_etag_matches(value: bytes, etag: bytes, weak: bool) -> bool:
    tags = reference_etag_list(value)
    if tags == [b"*"]:
        return True
    if etag.startswith(b"W/"):
        if not weak:
            return False
        etag = etag[2:]
    for tag in tags:
        if tag.startswith(b"W/"):
            if not weak:
                continue
            tag = tag[2:]
        if tag == etag:
            return True
    return False


ETAGS = st.one_of(
    st.tuples(st.sampled_from([b"", b"W/", b"w/"]), st.sampled_from([b'"', b""]),
              st.binary(max_size=6).filter(lambda b: all(_is_etagc(c) for c in b)) | st.sampled_from([b"a", b"a,b", b'"']),
              st.sampled_from([b'"', b""])).map(b"".join),
    st.sampled_from([b"*", b'"x"', b'W/"x"', b"x", b'""']),
)
ETAG_LISTS = st.one_of(
    st.lists(st.tuples(st.sampled_from([b"", b" ", b"\t"]), ETAGS, st.sampled_from([b"", b" "])).map(b"".join),
             max_size=6).map(b",".join),
    st.binary(max_size=24),
)


@given(ETAG_LISTS, st.sampled_from([b'"x"', b'W/"x"', b'"a,b"', b'""']), st.booleans())
def test_entity_tag_lists_agree_with_the_reference(value: bytes, etag: bytes, weak: bool) -> None:
    assert parse_etag_list(value) == reference_etag_list(value)
    assert etag_matches(value, etag, weak) == (bool(value) and reference_etag_matches(value, etag, weak))


# ---------------------------------------------------------------------------------------------
# HTTP-date (RFC 9110 §5.6.7)

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
LONG_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_CLOCK = r"(\d\d):(\d\d):(\d\d)"
_IMF = re.compile(rf"({'|'.join(DAYS)}), (\d\d) ({'|'.join(MONTHS)}) (\d{{4}}) {_CLOCK} GMT")
_RFC850 = re.compile(rf"({'|'.join(LONG_DAYS)}), (\d\d)-({'|'.join(MONTHS)})-(\d\d) {_CLOCK} GMT")
_ASCTIME = re.compile(rf"({'|'.join(DAYS)}) ({'|'.join(MONTHS)}) ( \d|\d\d) {_CLOCK} (\d{{4}})")


def _seconds(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    if not (1 <= day <= calendar.monthrange(year or 2000, month)[1]) or hour > 23 or minute > 59 or second > 60:
        return -1
    shift = 400 if year == 0 else 0  # the Gregorian calendar repeats every 400 years (146097 days)
    return calendar.timegm((year + shift, month, day, hour, minute, second)) - shift * 146097 * 86400 // 400


def reference_http_date(value: bytes) -> int:
    text = value.strip(OWS).decode("latin-1")
    match = _IMF.fullmatch(text)
    if match:
        _, day, month, year, hour, minute, second = match.groups()
        return _seconds(int(year), MONTHS.index(month) + 1, int(day), int(hour), int(minute), int(second))
    match = _ASCTIME.fullmatch(text)
    if match:
        _, month, day, hour, minute, second, year = match.groups()
        return _seconds(int(year), MONTHS.index(month) + 1, int(day), int(hour), int(minute), int(second))
    match = _RFC850.fullmatch(text)
    if match:
        _, day, month, year, hour, minute, second = match.groups()
        this_year = time.gmtime().tm_year
        full_year = this_year - this_year % 100 + int(year)
        if full_year > this_year + 50:  # RFC 9110 §5.6.7: more than 50 years ahead is the past
            full_year -= 100
        return _seconds(full_year, MONTHS.index(month) + 1, int(day), int(hour), int(minute), int(second))
    return -1


def _date_text(parts: tuple) -> bytes:
    form, weekday, year, month, day, hour, minute, second = parts
    clock = f"{hour:02d}:{minute:02d}:{second:02d}"
    if form == 0:
        text = f"{DAYS[weekday]}, {day:02d} {MONTHS[month - 1]} {year:04d} {clock} GMT"
    elif form == 1:
        text = f"{LONG_DAYS[weekday]}, {day:02d}-{MONTHS[month - 1]}-{year % 100:02d} {clock} GMT"
    else:
        text = f"{DAYS[weekday]} {MONTHS[month - 1]} {day:2d} {clock} {year:04d}"
    return text.encode()


DATES = st.tuples(
    st.integers(0, 2), st.integers(0, 6), st.integers(0, 9999), st.integers(1, 12), st.integers(0, 32),
    st.integers(0, 25), st.integers(0, 61), st.integers(0, 61),
).map(_date_text)


def _mangle(data: bytes, at: int, byte: int) -> bytes:
    at %= len(data) + 1
    return data[:at] + bytes([byte]) + data[at + 1:]


DATE_VALUES = st.one_of(
    DATES,
    st.builds(lambda date, space: space + date + space, DATES, st.sampled_from([b"", b" ", b"\t"])),
    st.builds(_mangle, DATES, st.integers(0, 40), st.sampled_from(b" ,:-0129AaGMTZz\t\xff")),
    st.binary(max_size=32),
)


@given(DATE_VALUES)
def test_http_dates_agree_with_the_reference(value: bytes) -> None:
    assert parse_http_date(value) == reference_http_date(value)


@given(st.integers(-62167219200, 253402300799))
def test_formatted_dates_read_back(seconds: int) -> None:
    assert parse_http_date(format_http_date(seconds)) == seconds


# ---------------------------------------------------------------------------------------------
# Accept-Encoding (RFC 9110 §12.5.3)

_CODING = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*(?:;[ \t]*[qQ]=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)[ \t]*)?")


def reference_accept_encoding(value: bytes) -> Dict[str, float]:
    weights: Dict[str, float] = {}
    for member in value.split(b","):
        member = member.lstrip(OWS)
        match = _CODING.fullmatch(member)
        if member and match:
            weights[match.group(1).decode().lower()] = float(match.group(2) or b"1")
    return weights


def reference_negotiate(value: bytes, offered: int) -> int:
    """RFC 9110 section 12.5.3 as negotiate_coding documents it, over the reference weights."""
    weights = reference_accept_encoding(value)
    star = weights.get("*")
    best, best_q = -1, 0.0
    for index, coding in enumerate(CODINGS):
        q = weights.get(coding, star)
        if (offered >> index) & 1 and q is not None and q > best_q:
            best, best_q = index, q
    identity = weights.get("identity", star)
    if best >= 0:
        return IDENTITY if identity is not None and identity > best_q else best
    return NONE_ACCEPTABLE if identity == 0 else IDENTITY


ACCEPT_MEMBERS = st.tuples(
    st.sampled_from([b"", b" ", b"\t"]),
    st.sampled_from([b"gzip", b"GZip", b"br", b"zstd", b"identity", b"*", b"x-gzip", b"", b"g zip", b"\xff"]),
    st.sampled_from([b"", b" ", b";q=0", b";q=1", b"; q=0.5", b";Q=0.001", b";q=0.0001", b";q=1.0", b";q=1.001",
                     b";q=2", b";q=", b";q=0.", b";level=1", b";q=0.5;x=1", b" ;q=0.8 ", b";q=.5"]),
).map(b"".join)
ACCEPT_VALUES = st.one_of(st.lists(ACCEPT_MEMBERS, max_size=6).map(b",".join), st.binary(max_size=24))


@given(ACCEPT_VALUES, st.integers(min_value=0, max_value=7))
def test_accept_encoding_agrees_with_the_reference(value: bytes, offered: int) -> None:
    weights = reference_accept_encoding(value)
    assert parse_accept_encoding(value) == weights
    assume("x-gzip" not in weights)  # an alias of gzip: which spelling counts depends on order
    assert negotiate_coding(value, offered) == reference_negotiate(value, offered)


# ---------------------------------------------------------------------------------------------
# request heads: whatever the scanner takes, httptools reads the same way

HEAD_LINES = st.tuples(
    st.sampled_from([b"Host", b"host", b"Range", b"If-None-Match", b"Accept-Encoding", b"Connection",
                     b"If-Range", b"If-Modified-Since", b"X-A", b"Content-Length", b"Transfer-Encoding",
                     b"Bad Name", b"", b"Host\x00", b"\xffx"]),
    st.sampled_from([b":", b": ", b":\t", b" :", b""]),
    st.sampled_from([b"x", b"close", b"keep-alive", b"bytes=0-1", b'"e"', b"gzip", b"", b" v ", b"a\x00b",
                     b"\x7f", b"\x80\xff", b"0", b"chunked", b"v\r\n folded"]),
    st.sampled_from([b"\r\n", b"\n", b"\r", b""]),
).map(b"".join)
HEADS = st.tuples(
    st.sampled_from([b"GET", b"HEAD", b"get", b"POST", b"GE T", b""]),
    st.sampled_from([b" ", b"  ", b"\t"]),
    st.sampled_from([b"/", b"/a?b", b"*", b"http://h/x", b"/%zz", b"/a b", b"/\xff", b""]),
    st.sampled_from([b" HTTP/1.1", b" HTTP/1.0", b" HTTP/1.2", b" HTTP/2.0", b" http/1.1", b"", b" HTTP/1.1 "]),
    st.sampled_from([b"\r\n", b"\n"]),
    st.lists(HEAD_LINES, max_size=6).map(b"".join),
    st.sampled_from([b"\r\n", b"\n", b"", b"\r\n\r\n"]),
).map(b"".join)


@given(st.one_of(HEADS, st.builds(_mangle, HEADS, st.integers(0, 200), st.integers(0, 255))))
def test_heads_the_scanner_accepts_httptools_reads_alike(data: bytes) -> None:
    end, fields = scan_head(data)
    if end > 0:
        assert_httptools_reads_alike(data[:end], fields)


# ---------------------------------------------------------------------------------------------
# chunked request bodies (RFC 9112 §7.1), as httptools hands them to the connection


_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# chunk-size [chunk-ext] (RFC 9112 §7.1.1), without the optional whitespace around ";" and "="
# that the grammar allows and the connection (llhttp, strict) refuses.
_CHUNK_LINE = re.compile(rb"[0-9A-Fa-f]{1,15}(?:;" + _TOKEN + rb'(?:=(?:' + _TOKEN + rb'|"[\t\x20\x21\x23-\x5b\x5d-\x7e]*"))?)*')


def reference_chunks(data: bytes) -> Optional[Tuple[bytes, int]]:
    """The body of strictly well-formed chunks up to the last-chunk line, and where that line
    ends; None when a chunk is malformed or the data ends first."""
    body = bytearray()
    i = 0
    while True:
        line_end = data.find(b"\r\n", i)
        if line_end < 0:
            return None
        if not _CHUNK_LINE.fullmatch(data[i:line_end]):
            return None
        size_text = data[i:line_end].partition(b";")[0]
        size = int(size_text, 16)
        i = line_end + 2
        if size == 0:
            return bytes(body), i
        if data[i + size:i + size + 2] != b"\r\n":
            return None
        body += data[i:i + size]
        i += size + 2


def reference_chunked(data: bytes) -> Optional[bytes]:
    """The body of a strictly well-formed chunked message (no trailers), or None."""
    chunks = reference_chunks(data)
    return chunks[0] if chunks is not None and data[chunks[1]:] == b"\r\n" else None


class _BodyRecorder:
    def __init__(self) -> None:
        self.body = bytearray()
        self.complete = False

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def encode_chunked(chunks: List[bytes], size_case: str) -> bytes:
    out = bytearray()
    for chunk in chunks:
        size = b"%x" % len(chunk)
        out += (size.upper() if size_case == "upper" else size) + b"\r\n" + chunk + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


CHUNKS = st.lists(st.binary(min_size=1, max_size=40), max_size=6)
CHUNKED_BODIES = st.one_of(
    st.builds(encode_chunked, CHUNKS, st.sampled_from(["lower", "upper"])),
    st.builds(_mangle, st.builds(encode_chunked, CHUNKS, st.just("lower")), st.integers(0, 300),
              st.sampled_from(b"\r\n;0 zZ\t-+x")),
)


@given(CHUNKED_BODIES, st.integers(1, 64))
def test_chunked_bodies_read_as_the_reference_reads_them(data: bytes, split: int) -> None:
    """Well-formed: httptools gives exactly the reference's body, in any split of the bytes.
    Whatever httptools completes, the reference reads to the same body."""
    recorder = _BodyRecorder()
    parser = httptools.HttpRequestParser(recorder)
    parser.feed_data(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    expected = reference_chunked(data)
    chunks = reference_chunks(data)
    try:
        for at in range(0, len(data), split):
            parser.feed_data(data[at:at + split])
    except httptools.HttpParserError:
        assert expected is None, data
        return
    if expected is not None:
        assert recorder.complete and bytes(recorder.body) == expected, data
    elif recorder.complete:  # what follows the last chunk is the next request's business
        assert chunks is not None and bytes(recorder.body) == chunks[0], data


@given(CHUNKED_BODIES, st.integers(1, 64))
def test_chunked_bodies_through_the_server(data: bytes, split: int) -> None:
    """An app behind the connection gets the reference's body and answers it, or the client
    gets 400 and a close: never a hang, never an answer to a body the reference refuses."""
    expected = reference_chunked(data)
    chunks = reference_chunks(data)

    async def main() -> None:
        driven = Driven(echo_body)
        driven.send(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        for at in range(0, len(data), split):
            driven.send(data[at:at + split])
            await driven.settle(5)
        await driven.settle()
        got = statuses(driven.output)
        second = driven.output.find(b"HTTP/1.1 ", 1)
        first = driven.output if second < 0 else driven.output[:second]
        if expected is not None:
            assert got == [200] and first.endswith(b"\r\n\r\n" + expected), (data, driven.output)
        elif got and got[0] == 200:  # what follows the last chunk is the next request's business
            assert chunks is not None and first.endswith(b"\r\n\r\n" + chunks[0]), (data, driven.output)
        elif got:
            assert got[0] == 400 and driven.closed, (data, driven.output)
        else:  # still waiting for the rest of a body that is not finished yet
            driven.tick(60.0)
            await driven.settle()
            assert statuses(driven.output) == [408] and driven.closed, (data, driven.output)

    run(main)
