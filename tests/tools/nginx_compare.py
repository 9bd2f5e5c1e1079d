"""fastserve's static answers against nginx's, request by request, over loopback.

    python tests/tools/nginx_compare.py [--verbose] [--only SUBSTRING] [-- FASTSERVE FLAGS...]

Builds one site in a temporary directory, serves it with ``python -m fastserve SITE
--compress off`` (plus the flags given after ``--``) and with ``nginx`` (``gzip_static on``,
``gzip_vary on``, ``etag on``, ``if_modified_since exact``: nginx's defaults where not named),
each on a free port of 127.0.0.1, and sends both the same raw HTTP/1.1 requests: a matrix of
conditionals (every HTTP-date form, wrong weekdays and two-digit years, entity-tag lists, weak
tags, precedence among all five fields and Range, on GET, HEAD, POST, PUT and DELETE), ranges
(single, suffix, multiple, overlapping, past the end, at and past --max-ranges, If-Range),
content codings (a ``.gz`` sibling, one older than its file, one larger than it; q-values,
``identity;q=0``, a coding listed twice, tabs), methods, names (MIME types, upper-case and
double suffixes, percent-encoding, directories).
With ``--etag off`` among the flags nginx gets ``etag off``; with ``--header NAME:VALUE``, it
gets ``add_header NAME "VALUE" always`` (``Cache-Control`` without ``always``: for a directory
it is the files' cache policy) and that field is compared too. Entity-tags and dates in a
request are each server's own (``{etag}``, ``{etag_gz}``, ``{lm}``: read from a plain GET
first), so the two are asked the same question.

For each request it compares the status, the fields a cache or a client acts on (those in
``COMPARED``) and the body (a multipart boundary made constant), and prints each difference.
Some differences are fastserve's on purpose: its cache policy (``KNOWN``, listed once), its
charset on ``text/*`` and its ETag's form (normalised away), and the requests where fastserve
follows RFC 9110 and nginx does not, or a rule README states (``DECIDED``, each with its
reason: counted, and printed with ``--verbose``); a field fastserve sends twice and content
after the head of a HEAD's answer are differences whatever the case. Exits 1 when any other difference is found,
2 when nginx is missing. Not part of the test suite (nginx is not a test
dependency); every rule it found broken has an in-process test of its own.
"""
from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests"))
from server_helpers import free_port, wait_until_accepting  # noqa: E402

MTIME = 1_700_000_000  # Tue, 14 Nov 2023 22:13:20 GMT
TEXT = b"".join(b"line %04d of a plain text file\n" % i for i in range(200))  # 6,200 bytes
SCRIPT = b"".join(b"console.log('fastserve %d');\n" % i for i in range(300))
BINARY = bytes(range(256)) * 1200  # 300 KiB: above fastserve's --cache-max-file, sent from the file

COMPARED = (
    "content-length", "content-range", "content-type", "content-encoding", "etag", "last-modified", "vary",
    "accept-ranges", "location", "allow", "transfer-encoding", "expires", "content-location",
)
# Fields fastserve sends on purpose where nginx (as configured here) sends none or another value.
KNOWN = {
    "cache-control": "fastserve's cache policy (--max-age, no-cache for HTML)",
}


# Media types both right, nginx's older (its mime.types) and fastserve's (RFC 9239, RFC 7303).
SAME_TYPE = {"application/javascript": "text/javascript", "text/xml": "application/xml"}

# Differences where fastserve follows RFC 9110 (or its own documented rule) and nginx does not:
# (a regular expression matched against the case's name, why). They are counted, not printed.
DECIDED = [
    (r"/lib\.mjs$", "nginx 1.22's mime.types has no .mjs; a module script needs a JavaScript type"),
    (r"/app\.js\.map$", "a source map is JSON: application/json (nginx: application/octet-stream)"),
    (r"^(GET /app\.js\.gz|(GET|HEAD) /release\.tar\.gz)$",
     "a .gz asked for by its own name is application/gzip (nginx: application/octet-stream)"),
    (r"^(GET|HEAD) /logo\.svgz$", "a .svgz is a gzip stream sent as it is: application/gzip (nginx: image/svg+xml "
                                  "without Content-Encoding, a label its bytes do not match)"),
    (r"^(GET|HEAD) /x\.pem$", "RFC 8555's application/pem-certificate-chain (nginx: application/x-x509-ca-cert)"),
    (r"^(GET|HEAD) /(dir/sub|noindex)/?(\?.*)?$",
     "a directory without index.html is 404 with or without its slash (README); nginx 301s then 403s"),
    (r"^(GET|HEAD) /(%2e%2e|\.\.)(/a\.txt)?$", "a path climbing above the root is 404 (nginx: 400)"),
    (r"%00", "a NUL in the path names no file: 404 (nginx: 400)"),
    (r"^GET /gr", "a request-target with raw non-ASCII bytes is invalid (RFC 9112 section 3.2): 400"),
    (r"^POST /missing$", "another method than GET or HEAD is 405 before any lookup (no path takes it); nginx "
                         "looks a POST's file up first: 404"),
    (r"^(POST|PUT|DELETE|OPTIONS|PATCH|TRACE) ", "a 405 MUST carry Allow (RFC 9110 section 15.5.6); nginx's has none"),
    (r"IMS (with length|without GMT|\+0000|RFC850 short weekday)$",
     "an invalid If-Modified-Since is ignored (RFC 9110 section 13.1.3); nginx reads a prefix"),
    (r"IUS invalid$", "an invalid If-Unmodified-Since is ignored (RFC 9110 section 13.1.4); nginx answers 412"),
    (r"IM ok \+ IUS earlier$", "If-Unmodified-Since is not evaluated beside If-Match (RFC 9110 section 13.2.2)"),
    (r"INM etag \+ IMS earlier$", "If-Modified-Since is not evaluated beside If-None-Match (RFC 9110 section 13.2.2)"),
    (r"Range bytes=(5-4|x-y|1-2-3|-|2-1,0-0)$",
     "an invalid range set is ignored (RFC 9110 section 14.2 allows it); nginx 416, or 206 for the valid ones"),
    (r"Range bytes=(0-99999999999999999999999|-99999999999999999999999)$",
     "a last-pos or suffix past the length is cut to it however many digits it has (RFC 9110 section 14.1.1); "
     "nginx 416 past 2^63"),
    (r"^GET /empty\.txt Range bytes=-0$", "bytes=-0 is unsatisfiable on any file (RFC 9110 section 14.1.1); nginx: 200 on an empty one"),
    (r"Range bytes=(,0-5|0-5,)$", "empty list elements are allowed (RFC 9110 section 5.6.1.2); nginx 416"),
    (r"Range bytes=(0-9,5-14|0-9,10-19|99999-100000,99999-|0-0,0-0)$|^GET /one\.txt Range bytes=(0-0,-1|-10,0-9)$",
     "overlapping or adjacent ranges are merged into one part (RFC 9110 section 15.3.7.2 allows it, whatever "
     "their order); nginx sends each as asked"),
    (r"^GET /a.txt 40 ranges$|Range 17 ranges$", "more ranges than --max-ranges: the whole file (RFC 9110 section 14.2); nginx 206"),
    (r"^GET /app\.js AE (identity;q=0|\*;q=0|\*;q=0, gzip;q=0)$",
     "no acceptable representation is 406 (RFC 9110 sections 12.5.3, 15.5.7); nginx ignores the refusal"),
    (r"^GET /app\.js AE (\*|x-gzip|gzip;q=0\.5, identity;q=1)$"
     r"|^GET /(app\.js|big\.css) AE (identity;q=0, \*|identity;q=0\.5, gzip;q=0\.4|gzip;q=0\.5, \*;q=1)$",
     "Accept-Encoding read by RFC 9110 section 12.5.3 (*, x-gzip, q-values); nginx gzip_static looks for 'gzip'"),
    (r"^(GET|HEAD) /only\.css",
     "a .gz without its original is not served for the original's URL (README: siblings beside a file)"),
    (r"^GET /(app\.js|big\.css) AE (gzip;q=0, gzip|gzip, gzip;q=0)$",
     "a coding listed twice takes the weight listed last (RFC 9110 leaves it open); nginx reads the first"),
    (r"^GET /(app\.js|big\.css) AE gzip\t;q=1$", "a tab is whitespace around ';' (RFC 9110 section 5.6.3); nginx "
                                                "reads no gzip"),
    (r"^(GET|HEAD) /stale\.js ", "a sibling older than its file is stale and left out (README: precompressed "
                                 "siblings); nginx serves it"),
    (r"^two I(N)?M fields$", "a list field on two lines is one list (RFC 9110 section 5.3); nginx answers 400"),
    (r"^two Range fields$", "Range is no list field: two lines are an invalid Range, ignored; nginx uses the first"),
    (r"^empty Host$", "an empty Host names the server's default authority (RFC 9112 section 3.3); nginx answers 400"),
    (r"^OPTIONS \*$", "OPTIONS * is answered 405 with Allow: GET, HEAD (nginx: 400)"),
]


def decided_field(name: str, fast: "Answer", nginx: "Answer", operator: Sequence[str]) -> Optional[str]:
    """Why an operator's ``--header`` field ``name`` differs on purpose in this answer, or None."""
    if name not in operator:
        return None
    if name == "cache-control" and nginx.status in (301, 416) and fast.get(name) is None:
        return ("--header Cache-Control is a directory's file policy: no redirect or 416 carries it "
                "(nginx's add_header adds it to both)")
    if nginx.status == 416 and fast.count(name) == 1 and nginx.count(name) > 1 and fast.get(name) == ", ".join(
            dict.fromkeys(member.strip() for member in (nginx.get(name) or "").split(","))):
        return "nginx 1.22 sends an 'add_header ... always' field twice on a 416; fastserve once"
    return None


def decided(name: str) -> Optional[str]:
    for pattern, reason in DECIDED:
        if re.search(pattern, name):
            return reason
    return None


def build_site(root: Path) -> None:
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "noindex").mkdir()
    files = {
        "a.txt": TEXT,
        "empty.txt": b"",
        "one.txt": b"x",
        "big.bin": BINARY,
        "app.js": SCRIPT,
        "app.js.gz": gzip.compress(SCRIPT, mtime=0),
        "only.css.gz": gzip.compress(b"body{color:red}\n" * 100, mtime=0),
        "lib.mjs": b"export const a = 1;\n",
        "style.css": b"body { margin: 0 }\n",
        "m.wasm": b"\0asm\1\0\0\0",
        "i.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>\n",
        "d.json": b'{"a": 1}\n',
        "p.webp": b"RIFF\0\0\0\0WEBP",
        "p.avif": b"\0\0\0\x1cftypavif",
        "f.woff2": b"wOF2\0\1\0\0",
        "app.js.map": b'{"version":3}\n',
        "index.html": b"<!doctype html><p>root index</p>\n",
        "dir/index.html": b"<!doctype html><p>dir index</p>\n",
        "dir/sub/x.txt": b"deep\n",
        "noindex/y.txt": b"y\n",
        "a b.txt": b"space\n",
        "100%.txt": b"percent\n",
        "gr\u00fc\u00dfe.txt": "gr\u00fc\u00dfe\n".encode(),
        "plus+sign.txt": b"plus\n",
        "page.html": b"<!doctype html><p>a page</p>\n",
        "data.xml": b"<a/>\n",
        "pic.png": b"\x89PNG\r\n\x1a\n",
        "font.woff": b"wOFF",
        "doc.pdf": b"%PDF-1.4\n",
        "noext": b"no extension\n",
        "page.shtml": b"<p>server-side</p>\n",
        "page.xhtml": b"<html xmlns='http://www.w3.org/1999/xhtml'/>\n",
        "feed.rss": b"<rss version='2.0'/>\n",
        "feed.atom": b"<feed xmlns='http://www.w3.org/2005/Atom'/>\n",
        "letter.rtf": b"{\\rtf1}\n",
        "letter.docx": b"PK\3\4",
        "map.kml": b"<kml/>\n",
        "tune.mid": b"MThd",
        "clip.3gp": b"\0\0\0\x14ftyp3gp",
        "clip.m4v": b"\0\0\0\x14ftypM4V ",
        "lib.jar": b"PK\3\4",
        "archive.7z": b"7z\xbc\xaf",
        "logo.svgz": gzip.compress(b"<svg xmlns='http://www.w3.org/2000/svg'/>\n", mtime=0),
        "clip.flv": b"FLV\1",
        "setup.exe": b"MZ",
        "x.pem": b"-----BEGIN CERTIFICATE-----\n",
        "UP.TXT": b"upper case suffix\n",
        "pic.PNG": b"\x89PNG\r\n\x1a\n",
        "x.JS": b"var up = 1;\n",
        "f.Svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>\n",
        "release.tar.gz": gzip.compress(b"tar", mtime=0),
        "big.css": b"a{}\n",
        "big.css.gz": gzip.compress(bytes(range(256)) * 64, mtime=0),  # larger than the file
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    for path in root.rglob("*"):
        os.utime(path, (MTIME, MTIME))
    (root / "stale.js").write_bytes(SCRIPT + b"// changed after it was compressed\n")
    (root / "stale.js.gz").write_bytes(gzip.compress(SCRIPT, mtime=0))
    os.utime(root / "stale.js.gz", (MTIME - 60, MTIME - 60))  # compressed before the file last changed
    os.utime(root / "stale.js", (MTIME, MTIME))


NGINX_CONF = """
worker_processes 1;
daemon off;
master_process off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 64; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    access_log off;
    sendfile on;
    gzip_static on;
    gzip_vary on;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.html;
{add_headers}{etag}
    }}
}}
"""


@dataclass
class Answer:
    status: int
    fields: List[Tuple[str, str]]
    body: bytes
    raw_head: bytes = b""

    def get(self, name: str) -> Optional[str]:
        values = [value for key, value in self.fields if key == name]
        return ", ".join(values) if values else None

    def count(self, name: str) -> int:
        return sum(1 for key, _ in self.fields if key == name)


def exchange(port: int, request: bytes, head_only: bool = False, timeout: float = 5.0) -> Answer:
    """Send ``request`` (it must ask for ``Connection: close``) and read the answer to the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    fields = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields.append((name.decode("latin-1").strip().lower(), value.decode("latin-1").strip()))
    answer = Answer(status, fields, body, head)
    if answer.get("transfer-encoding") == "chunked":
        answer.body = dechunk(body)
    return answer


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2:]
    return out


@dataclass
class Case:
    name: str
    target: str
    headers: Sequence[Tuple[str, str]] = ()
    method: str = "GET"
    body: bytes = b""
    raw: Optional[bytes] = None  # the whole request as sent, for what a client would not write
    # fields compared on top of COMPARED, or left out of it for this case
    skip: Tuple[str, ...] = ()


def cases() -> List[Case]:
    out: List[Case] = []
    add = out.append
    # -- names and types
    for name in ("a.txt", "empty.txt", "big.bin", "app.js", "lib.mjs", "style.css", "m.wasm", "i.svg", "d.json",
                 "p.webp", "p.avif", "f.woff2", "app.js.map", "page.html", "data.xml", "pic.png", "font.woff",
                 "doc.pdf", "noext", "page.shtml", "page.xhtml", "feed.rss", "feed.atom", "letter.rtf",
                 "letter.docx", "map.kml", "tune.mid", "clip.3gp", "clip.m4v", "lib.jar", "archive.7z", "logo.svgz", "clip.flv", "setup.exe", "x.pem", "UP.TXT", "pic.PNG", "x.JS", "f.Svg",
                 "release.tar.gz", "a%20b.txt", "100%25.txt", "gr%C3%BC%C3%9Fe.txt", "plus+sign.txt",
                 "plus%2Bsign.txt", "dir/sub/x.txt", "%61.txt"):
        add(Case(f"GET /{name}", "/" + name))
        add(Case(f"HEAD /{name}", "/" + name, method="HEAD"))
    for target in ("/", "/dir/", "/dir", "/dir?x=1&y=%20", "/dir/sub", "/dir/sub/", "/noindex", "/noindex/",
                   "/missing", "/dir/index.html", "/a.txt/", "/a.txt?v=1", "/a.txt#frag", "/./a.txt",
                   "/dir/../a.txt", "/%2e%2e/a.txt", "/../a.txt", "//a.txt", "/only.css", "/only.css.gz",
                   "/app.js.gz", "/A.TXT", "/gr\u00fc\u00dfe.txt".encode().decode("latin-1")):
        add(Case(f"GET {target}", target))
    for target in ("/dir%2Fsub%2Fx.txt", "/a.txt%00", "/a.txt%00.png", "/dir\\sub\\x.txt", "/%252e%252e/a.txt",
                   "/a.txt.", "/a.txt;v=1", "/dir/sub/x.txt?", "/a%2etxt", "/%7Eu", "/" + "a" * 300 + ".txt",
                   "/index.html/", "/dir/index.html?x", "/dir/./sub/../", "/dir//sub//x.txt", "/..", "/a.txt%3Fx",
                   "/a.txt%23x", "/dir/%2e/index.html", "/dir/%2E%2E/a.txt", "/dir/.", "/dir/sub/..", "/%64ir/"):
        add(Case(f"GET {target}", target))
    for label, headers in (("IM *", [("If-Match", "*")]), ("INM *", [("If-None-Match", "*")]),
                           ("Range", [("Range", "bytes=0-1")]), ("IMS", [("If-Modified-Since", "Tue, 14 Nov 2023 22:13:20 GMT")])):
        add(Case(f"GET /missing {label}", "/missing", headers))
        add(Case(f"GET /dir {label}", "/dir", headers))
    # -- methods
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"):
        add(Case(f"{method} /a.txt", "/a.txt", method=method, skip=("content-type", "body", "content-length")))
    add(Case("OPTIONS *", "*", method="OPTIONS", skip=("content-type", "body", "content-length")))
    add(Case("POST /a.txt If-Match wrong", "/a.txt", [("If-Match", '"nope"')], method="POST",
             skip=("content-type", "body", "content-length")))
    add(Case("POST /a.txt If-None-Match *", "/a.txt", [("If-None-Match", "*")], method="POST",
             skip=("content-type", "body", "content-length")))
    # -- conditionals
    imf_at = "Tue, 14 Nov 2023 22:13:20 GMT"
    rfc850_at = "Tuesday, 14-Nov-23 22:13:20 GMT"
    asctime_at = "Tue Nov 14 22:13:20 2023"
    later = "Wed, 15 Nov 2023 00:00:00 GMT"
    earlier = "Mon, 13 Nov 2023 00:00:00 GMT"
    future = "Fri, 01 Jan 2100 00:00:00 GMT"
    for path in ("/a.txt", "/big.bin", "/app.js", "/page.html", "/empty.txt"):
        conditional = [
            ("INM etag", [("If-None-Match", "{etag}")]),
            ("INM weak etag", [("If-None-Match", "W/{etag}")]),
            ("INM *", [("If-None-Match", "*")]),
            ("INM list", [("If-None-Match", '"x", {etag}, "y"')]),
            ("INM list no space", [("If-None-Match", '"x",{etag}')]),
            ("INM other", [("If-None-Match", '"other"')]),
            ("INM malformed", [("If-None-Match", "nope")]),
            ("INM unquoted etag", [("If-None-Match", "{etag_bare}")]),
            ("INM empty", [("If-None-Match", "")]),
            ("IM etag", [("If-Match", "{etag}")]),
            ("IM weak", [("If-Match", "W/{etag}")]),
            ("IM *", [("If-Match", "*")]),
            ("IM other", [("If-Match", '"other"')]),
            ("IM list", [("If-Match", '"x", {etag}')]),
            ("IM malformed", [("If-Match", "nope")]),
            ("IMS at IMF", [("If-Modified-Since", imf_at)]),
            ("IMS at RFC850", [("If-Modified-Since", rfc850_at)]),
            ("IMS at asctime", [("If-Modified-Since", asctime_at)]),
            ("IMS later", [("If-Modified-Since", later)]),
            ("IMS earlier", [("If-Modified-Since", earlier)]),
            ("IMS future", [("If-Modified-Since", future)]),
            ("IMS invalid", [("If-Modified-Since", "yesterday")]),
            ("IMS lowercase", [("If-Modified-Since", imf_at.lower())]),
            ("IMS with length", [("If-Modified-Since", imf_at + "; length=6200")]),
            ("IMS without GMT", [("If-Modified-Since", imf_at[:-4])]),
            ("IMS +0000", [("If-Modified-Since", imf_at[:-3] + "+0000")]),
            ("IUS at", [("If-Unmodified-Since", imf_at)]),
            ("IUS earlier", [("If-Unmodified-Since", earlier)]),
            ("IUS later", [("If-Unmodified-Since", later)]),
            ("IUS invalid", [("If-Unmodified-Since", "garbage")]),
            ("IUS RFC850 earlier", [("If-Unmodified-Since", "Monday, 13-Nov-23 00:00:00 GMT")]),
            ("IUS asctime earlier", [("If-Unmodified-Since", "Mon Nov 13 00:00:00 2023")]),
            ("IM ok + IUS earlier", [("If-Match", "{etag}"), ("If-Unmodified-Since", earlier)]),
            ("IM other + IUS later", [("If-Match", '"other"'), ("If-Unmodified-Since", later)]),
            ("INM other + IMS at", [("If-None-Match", '"other"'), ("If-Modified-Since", imf_at)]),
            ("INM etag + IMS earlier", [("If-None-Match", "{etag}"), ("If-Modified-Since", earlier)]),
            ("IM other + INM etag", [("If-Match", '"other"'), ("If-None-Match", "{etag}")]),
            ("IUS earlier + INM etag", [("If-Unmodified-Since", earlier), ("If-None-Match", "{etag}")]),
        ]
        for label, headers in conditional:
            add(Case(f"GET {path} {label}", path, headers))
            add(Case(f"HEAD {path} {label}", path, headers, method="HEAD"))
    # -- ranges
    for path in ("/a.txt", "/big.bin", "/empty.txt", "/one.txt"):
        for spec in ("bytes=0-0", "bytes=0-", "bytes=-1", "bytes=-100", "bytes=-0", "bytes=0-99999999",
                     "bytes=100-199", "bytes=6199-", "bytes=6200-", "bytes=99999-", "bytes=0-0,-1",
                     "bytes=0-9,20-29", "bytes=20-29,0-9", "bytes=0-9,5-14", "bytes=0-9,10-19",
                     "bytes=0-9,500-509,1000-1009", "bytes=1000-1009,0-9,500-509", "bytes=-10,0-9", "bytes=5-4", "bytes=x-y", "bytes=1-2-3", "items=0-5",
                     "bytes = 0-5", "bytes=0-5 ,  10-15", "BYTES=0-5", "bytes=,0-5", "bytes=", "bytes=-",
                     "bytes=0-5,", "bytes=99999-,0-0", "bytes=0-5,99999-", "bytes=99999-100000,99999-",
                     "bytes=0-0,0-0", "bytes=2-1,0-0", "bytes=0-99999999999999999999999",
                     "bytes=-99999999999999999999999"):
            add(Case(f"GET {path} Range {spec}", path, [("Range", spec)]))
        add(Case(f"HEAD {path} Range 0-5", path, [("Range", "bytes=0-5")], method="HEAD"))
        add(Case(f"HEAD {path} Range past end", path, [("Range", "bytes=99999-")], method="HEAD"))
        add(Case(f"GET {path} If-Range etag", path, [("Range", "bytes=0-5"), ("If-Range", "{etag}")]))
        add(Case(f"GET {path} If-Range weak", path, [("Range", "bytes=0-5"), ("If-Range", "W/{etag}")]))
        add(Case(f"GET {path} If-Range other", path, [("Range", "bytes=0-5"), ("If-Range", '"other"')]))
        add(Case(f"GET {path} If-Range date", path, [("Range", "bytes=0-5"), ("If-Range", "{lm}")]))
        add(Case(f"GET {path} If-Range earlier date", path, [("Range", "bytes=0-5"), ("If-Range", earlier)]))
        add(Case(f"GET {path} If-Range later date", path, [("Range", "bytes=0-5"), ("If-Range", later)]))
        add(Case(f"GET {path} Range + INM etag", path, [("Range", "bytes=0-5"), ("If-None-Match", "{etag}")]))
        add(Case(f"GET {path} Range + IM other", path, [("Range", "bytes=0-5"), ("If-Match", '"other"')]))
        add(Case(f"GET {path} Range past end + IM other", path, [("Range", "bytes=99999-"),
                                                                   ("If-Match", '"other"')]))
    many = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(40))
    add(Case("GET /a.txt 40 ranges", "/a.txt", [("Range", many)]))
    # -- content codings
    for path in ("/app.js", "/a.txt", "/only.css"):
        for ae in ("", "gzip;q=1, br;q=1", "gzip, deflate, br, zstd", "gzip;q=0", "identity;q=0", "*;q=0", "gzip, identity;q=0", "br", "*",
                   "deflate", "gzip;q=0.5, identity;q=1", "GZIP", "x-gzip", "gzip;q=0.001", "gzip ; q=1",
                   "identity", "*;q=0, gzip;q=0", "gzip;level=9"):
            add(Case(f"GET {path} AE {ae}", path, [("Accept-Encoding", ae)]))
        add(Case(f"HEAD {path} AE gzip", path, [("Accept-Encoding", "gzip")], method="HEAD"))
        add(Case(f"GET {path} AE gzip INM gz-etag", path, [("Accept-Encoding", "gzip"),
                                                           ("If-None-Match", "{etag_gz}")]))
        add(Case(f"GET {path} AE gzip INM etag", path, [("Accept-Encoding", "gzip"), ("If-None-Match", "{etag}")]))
        add(Case(f"GET {path} no AE INM gz-etag", path, [("If-None-Match", "{etag_gz}")]))
        add(Case(f"GET {path} AE gzip IMS at", path, [("Accept-Encoding", "gzip"), ("If-Modified-Since", imf_at)]))
        add(Case(f"GET {path} AE gzip Range", path, [("Accept-Encoding", "gzip"), ("Range", "bytes=0-5")]))
        add(Case(f"GET {path} AE gzip IM other", path, [("Accept-Encoding", "gzip"), ("If-Match", '"other"')]))
        add(Case(f"GET {path} Range 416", path, [("Range", "bytes=999999-")]))
        add(Case(f"GET {path} AE gzip Range 416", path, [("Accept-Encoding", "gzip"), ("Range", "bytes=999999-")]))
    # -- preconditions together, with Range, and on other methods (RFC 9110 section 13.2.2)
    for path in ("/a.txt", "/big.bin"):
        together = [
            ("IM * + INM *", [("If-Match", "*"), ("If-None-Match", "*")]),
            ("IM etag + INM etag", [("If-Match", "{etag}"), ("If-None-Match", "{etag}")]),
            ("IM etag + INM other + IMS at", [("If-Match", "{etag}"), ("If-None-Match", '"other"'),
                                              ("If-Modified-Since", imf_at)]),
            ("IUS at + IMS at", [("If-Unmodified-Since", imf_at), ("If-Modified-Since", imf_at)]),
            ("IUS future", [("If-Unmodified-Since", future)]),
            ("IUS earlier + IMS at", [("If-Unmodified-Since", earlier), ("If-Modified-Since", imf_at)]),
            ("INM weak list", [("If-None-Match", 'W/"x", W/{etag}')]),
            ("IM weak list", [("If-Match", 'W/"x", W/{etag}')]),
            ("IM strong and weak", [("If-Match", 'W/{etag}, {etag}')]),
            ("INM lowercase w/", [("If-None-Match", "w/{etag}")]),
            ("IMS IMF wrong weekday", [("If-Modified-Since", "Mon, 14 Nov 2023 22:13:20 GMT")]),
            ("IMS RFC850 wrong weekday", [("If-Modified-Since", "Monday, 14-Nov-23 22:13:20 GMT")]),
            ("IMS asctime wrong weekday", [("If-Modified-Since", "Mon Nov 14 22:13:20 2023")]),
            ("IMS IMF two-digit year", [("If-Modified-Since", "Tue, 14 Nov 23 22:13:20 GMT")]),
            ("IMS RFC850 short weekday", [("If-Modified-Since", "Tue, 14-Nov-23 22:13:20 GMT")]),
            ("IMS asctime one-digit day", [("If-Modified-Since", "Tue Nov  4 22:13:20 2023")]),
            ("IMS one second later", [("If-Modified-Since", "Tue, 14 Nov 2023 22:13:21 GMT")]),
            ("IMS one second earlier", [("If-Modified-Since", "Tue, 14 Nov 2023 22:13:19 GMT")]),
            ("IMS RFC850 far future year", [("If-Modified-Since", "Thursday, 31-Dec-99 23:59:59 GMT")]),
            ("IMS at + Range", [("If-Modified-Since", imf_at), ("Range", "bytes=0-5")]),
            ("IMS earlier + Range", [("If-Modified-Since", earlier), ("Range", "bytes=0-5")]),
            ("IUS earlier + Range", [("If-Unmodified-Since", earlier), ("Range", "bytes=0-5")]),
            ("IUS later + Range", [("If-Unmodified-Since", later), ("Range", "bytes=0-5")]),
            ("IM etag + Range", [("If-Match", "{etag}"), ("Range", "bytes=0-5")]),
            ("IM * + Range past end", [("If-Match", "*"), ("Range", "bytes=99999-")]),
            ("INM * + Range past end", [("If-None-Match", "*"), ("Range", "bytes=99999-")]),
            ("INM other + Range past end", [("If-None-Match", '"other"'), ("Range", "bytes=99999-")]),
            ("If-Range etag + INM etag", [("If-Range", "{etag}"), ("Range", "bytes=0-5"), ("If-None-Match", "{etag}")]),
            ("If-Range other + IMS at", [("If-Range", '"other"'), ("Range", "bytes=0-5"), ("If-Modified-Since", imf_at)]),
            ("If-Range date + IUS later", [("If-Range", "{lm}"), ("Range", "bytes=0-5"), ("If-Unmodified-Since", later)]),
            ("If-Range without Range", [("If-Range", '"other"')]),
            ("If-Range RFC850 date", [("If-Range", rfc850_at), ("Range", "bytes=0-5")]),
            ("If-Range weak list", [("If-Range", '{etag}, "x"'), ("Range", "bytes=0-5")]),
            ("Range 0-0,-1", [("Range", "bytes=0-0,-1")]),
            ("Range -0,0-0", [("Range", "bytes=-0,0-0")]),
            ("Range 16 ranges", [("Range", "bytes=" + ",".join(f"{i * 10}-{i * 10}" for i in range(16)))]),
            ("Range 17 ranges", [("Range", "bytes=" + ",".join(f"{i * 10}-{i * 10}" for i in range(17)))]),
            ("Range items unit", [("Range", "items=0-1")]),
            ("Range unit without =", [("Range", "bytes 0-1")]),
        ]
        for label, headers in together:
            add(Case(f"GET {path} {label}", path, headers))
            add(Case(f"HEAD {path} {label}", path, headers, method="HEAD"))
        for method in ("POST", "PUT", "DELETE"):
            for label, headers in (("IM other", [("If-Match", '"other"')]), ("INM *", [("If-None-Match", "*")]),
                                   ("IMS at", [("If-Modified-Since", imf_at)]), ("IUS earlier", [("If-Unmodified-Since", earlier)]),
                                   ("Range", [("Range", "bytes=0-5")])):
                add(Case(f"{method} {path} {label}", path, headers, method=method,
                         skip=("content-type", "body", "content-length")))
    add(Case("POST /missing", "/missing", method="POST", skip=("content-type", "body", "content-length")))
    add(Case("DELETE /missing", "/missing", method="DELETE", skip=("content-type", "body", "content-length")))
    # -- codings read by RFC 9110 section 12.5.3 beside a .gz sibling, stale and larger siblings
    for path in ("/app.js", "/stale.js", "/big.css"):
        for ae in ("gzip;q=0, gzip", "gzip, gzip;q=0", "gzip;Q=1", "gzip;q=1.0000", "gzip;q=0.", "gzip\t;q=1",
                   " gzip ", "br;q=0", "*;q=0, identity", "identity;q=0, *", "identity;q=0.5, gzip;q=0.4",
                   "gzip;q=0.5, *;q=1", "gzip, gzip"):
            add(Case(f"GET {path} AE {ae}", path, [("Accept-Encoding", ae)]))
        add(Case(f"GET {path} AE gzip", path, [("Accept-Encoding", "gzip")]))
        add(Case(f"HEAD {path} AE gzip Range", path, [("Accept-Encoding", "gzip"), ("Range", "bytes=0-1")], method="HEAD"))
        add(Case(f"GET {path} AE gzip If-Range gz-etag", path, [("Accept-Encoding", "gzip"), ("Range", "bytes=0-1"),
                                                                ("If-Range", "{etag_gz}")]))
    # -- framing the client chose
    add(Case("HTTP/1.0 GET", "/a.txt", raw=b"GET /a.txt HTTP/1.0\r\n\r\n"))
    add(Case("absolute-form", "/a.txt", raw=b"GET http://127.0.0.1/a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    add(Case("no Host", "/a.txt", raw=b"GET /a.txt HTTP/1.1\r\nConnection: close\r\n\r\n"))
    add(Case("two Host fields", "/a.txt",
             raw=b"GET /a.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"))
    add(Case("empty Host", "/a.txt", raw=b"GET /a.txt HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n"))
    add(Case("HEAD HTTP/1.0", "/a.txt", raw=b"HEAD /a.txt HTTP/1.0\r\n\r\n"))
    # refusals of a HEAD request: the head alone (a body after it is a difference of its own)
    add(Case("HEAD no Host", "/a.txt", method="HEAD", raw=b"HEAD /a.txt HTTP/1.1\r\nConnection: close\r\n\r\n"))
    add(Case("HEAD two Host fields", "/a.txt", method="HEAD",
             raw=b"HEAD /a.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"))
    add(Case("HEAD HTTP/2.0", "/a.txt", method="HEAD", raw=b"HEAD /a.txt HTTP/2.0\r\nHost: x\r\n\r\n"))
    add(Case("HEAD two lengths", "/a.txt", method="HEAD",
             raw=b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"))
    add(Case("HEAD gzip coding", "/a.txt", method="HEAD",
             raw=b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"))
    add(Case("If-None-Match on HTTP/1.0", "/a.txt", raw=b"GET /a.txt HTTP/1.0\r\nIf-None-Match: {etag}\r\n\r\n"))
    add(Case("Range on HTTP/1.0", "/a.txt", raw=b"GET /a.txt HTTP/1.0\r\nRange: bytes=0-3\r\n\r\n"))
    add(Case("Range on HTTP/1.0 two ranges", "/a.txt", raw=b"GET /a.txt HTTP/1.0\r\nRange: bytes=0-3,6-9\r\n\r\n"))
    add(Case("two Range fields", "/a.txt",
             raw=b"GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\nRange: bytes=3-4\r\nConnection: close\r\n\r\n"))
    add(Case("two INM fields", "/a.txt",
             raw=b"GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"x\"\r\nIf-None-Match: {etag}\r\n"
                 b"Connection: close\r\n\r\n"))
    add(Case("two IM fields", "/a.txt",
             raw=b"GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-Match: \"x\"\r\nIf-Match: {etag}\r\n"
                 b"Connection: close\r\n\r\n"))
    return out


def render(case: Case, validators: Dict[str, Dict[str, str]]) -> bytes:
    path = case.target.split("?")[0].split("#")[0]
    known = validators.get(path, {})

    def fill(text: str) -> str:
        for key, value in known.items():
            text = text.replace("{" + key + "}", value)
        return text

    if case.raw is not None:
        return fill(case.raw.decode("latin-1")).encode("latin-1")
    lines = [f"{case.method} {case.target} HTTP/1.1", "Host: localhost", "Connection: close"]
    for name, value in case.headers:
        lines.append(f"{name}: {fill(value)}")
    if case.body:
        lines.append(f"Content-Length: {len(case.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + case.body


def learn_validators(port: int, paths: Sequence[str]) -> Dict[str, Dict[str, str]]:
    out: Dict[str, Dict[str, str]] = {}
    for path in paths:
        plain = exchange(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1"))
        coded = exchange(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n"
                               f"Connection: close\r\n\r\n".encode("latin-1"))
        etag = plain.get("etag") or '"none"'
        out[path] = {
            "etag": etag,
            "etag_bare": etag.strip('"'),
            "etag_gz": coded.get("etag") or '"none"',
            "lm": plain.get("last-modified") or "none",
        }
    return out


def comparable(answer: Answer, case: Case, identity_etag: Optional[str], also: Sequence[str] = ()) -> Dict[str, object]:
    fields: Dict[str, object] = {name: answer.get(name) for name in (*COMPARED, *also) if name not in case.skip}
    body = answer.body
    content_type = answer.get("content-type") or ""
    match = re.search(r"boundary=(\S+)", content_type)
    if match:
        boundary = match.group(1)
        fields["content-type"] = content_type.replace(boundary, "B")
        body = body.replace(boundary.encode(), b"B")
        # the parts in order, as sent: the CRLFs before the first delimiter and after the last
        # (RFC 2046 section 5.1.1's preamble and epilogue, both optional) and the charset of
        # each part's type (see below) are not compared
        if body.startswith(b"\r\n"):
            body = body[2:]
        if body.endswith(b"--\r\n"):
            body = body[:-2]
        body = body.replace(b"; charset=utf-8\r\n", b"\r\n")
    if fields.get("content-type") is not None:
        # fastserve adds charset=utf-8 to text/*: compare the media type itself
        fields["content-type"] = str(fields["content-type"]).split(";")[0].strip() + (
            "; boundary=B" if match else "")
    # the forms differ by design (fastserve: mtime in nanoseconds): compare the strength, and
    # whether it is the unencoded representation's tag or another one (an encoding's)
    if fields.get("etag") is not None:
        tag = str(fields["etag"])
        fields["etag"] = ("W/" if tag.startswith("W/") else "") + ("tag" if tag == identity_etag else "other tag")
    if fields.get("location") is not None:  # nginx writes it absolute, fastserve as a path: both right
        fields["location"] = urlsplit(str(fields["location"]))._replace(scheme="", netloc="").geturl()
    if fields.get("content-type") in SAME_TYPE:
        fields["content-type"] = SAME_TYPE[str(fields["content-type"])]
    if answer.status == 206:
        fields.pop("accept-ranges", None)  # nginx sends none on a 206; either is right
        if match:
            fields.pop("content-length", None)  # the boundaries differ in length; the bodies are compared
    if answer.status == 416:
        for name in ("etag", "last-modified"):  # fastserve says which version the range missed
            fields.pop(name, None)
    if answer.status >= 400 or answer.status in (301, 302, 307, 308):
        # error and redirect pages differ in wording: their sizes, types and bodies are not compared
        for name in ("content-length", "content-type"):
            fields.pop(name, None)
        body = b"<page>"
    if "body" not in case.skip:
        fields["body"] = body if len(body) < 200 else f"<{len(body)} bytes, crc {hash(body) & 0xffff:x}>"
    fields["status"] = answer.status
    return fields


def start_fastserve(root: Path, port: int, flags: Sequence[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "fastserve", str(root), "--port", str(port), "--compress", "off", *flags]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_accepting(port, process, timeout=60)
    except RuntimeError:
        process.kill()
        sys.stderr.write(process.communicate()[1].decode(errors="replace"))
        raise
    return process


def operator_headers(flags: Sequence[str]) -> List[Tuple[str, str]]:
    """The ``--header NAME:VALUE`` fields among fastserve's flags, as ``(lowercased name, value)``."""
    out = []
    for i, flag in enumerate(flags):
        given = flags[i + 1] if flag == "--header" and i + 1 < len(flags) else (
            flag[len("--header="):] if flag.startswith("--header=") else None)
        if given is not None:
            name, _, value = given.partition(":")
            out.append((name.strip().lower(), value.strip()))
    return out


def add_header_lines(fields: Sequence[Tuple[str, str]]) -> str:
    """nginx's ``add_header`` for each operator field: ``always`` (errors too) but for
    ``Cache-Control``, which is a directory's file policy in fastserve (README "Cache policy")."""
    return "".join(f'        add_header {name} "{value}"{"" if name == "cache-control" else " always"};\n'
                   for name, value in fields)


def start_nginx(root: Path, port: int, run: Path, flags: Sequence[str] = ()) -> subprocess.Popen:
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run / name).mkdir(parents=True, exist_ok=True)
    conf = run / "nginx.conf"
    etag_off = any(flags[i:i + 2] == ["--etag", "off"] for i in range(len(flags))) or "--etag=off" in flags
    conf.write_text(NGINX_CONF.format(run=run, port=port, root=root,
                                      add_headers=add_header_lines(operator_headers(flags)),
                                      etag="        etag off;\n" if etag_off else ""))
    process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(run)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    wait_until_accepting(port, process, timeout=60)
    return process


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="print every request, not only differences")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("flags", nargs="*", help="fastserve flags (after --)")
    args = parser.parse_args(argv)
    if shutil.which("nginx") is None:
        print("nginx is not installed (apt-get install nginx-light)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "site"
        root.mkdir()
        build_site(root)
        fast_port, nginx_port = free_port(), free_port()
        fast = start_fastserve(root, fast_port, args.flags)
        nginx = start_nginx(root, nginx_port, Path(tmp) / "nginx", args.flags)
        try:
            return compare(fast_port, nginx_port, args)
        finally:
            for process in (fast, nginx):
                process.terminate()
                process.wait(10)


def compare(fast_port: int, nginx_port: int, args: argparse.Namespace) -> int:
    selected = [case for case in cases() if args.only in case.name]
    also = [name for name, _ in operator_headers(args.flags)]  # --header fields: both send them, once
    paths = sorted({case.target.split("?")[0].split("#")[0] for case in selected if case.target.startswith("/")})
    fast_validators = learn_validators(fast_port, paths)
    nginx_validators = learn_validators(nginx_port, paths)
    differences = 0
    seen_known: Dict[str, str] = {}
    decided_seen: Dict[str, int] = {}
    for case in selected:
        fast = exchange(fast_port, render(case, fast_validators))
        nginx = exchange(nginx_port, render(case, nginx_validators))
        path = case.target.split("?")[0].split("#")[0]
        mine = comparable(fast, case, fast_validators.get(path, {}).get("etag"), also)
        theirs = comparable(nginx, case, nginx_validators.get(path, {}).get("etag"), also)
        diff = {key: (mine.get(key), theirs.get(key)) for key in mine if mine.get(key) != theirs.get(key)}
        for key in list(diff):  # an operator's field where fastserve answers otherwise on purpose
            why = decided_field(key, fast, nginx, also)
            if why is not None:
                decided_seen[why] = decided_seen.get(why, 0) + 1
                del diff[key]
        reason = decided(case.name)
        if diff and reason is not None:
            decided_seen[reason] = decided_seen.get(reason, 0) + 1
            if args.verbose:
                print(f"decided {case.name}: {diff}")
            diff = {}
        for name, why in KNOWN.items():
            if fast.get(name) != nginx.get(name) and name not in also:
                seen_known.setdefault(name, why)
        if case.method == "HEAD" and fast.body:  # never decided away: a HEAD's answer has no content
            diff["body after a HEAD's head"] = (fast.body[:40], nginx.body[:40])
        for name, _ in fast.fields:  # never decided away: one field per name
            if fast.count(name) > 1 and name not in ("set-cookie",):
                diff[f"{name} (sent {fast.count(name)} times)"] = (fast.get(name), nginx.get(name))
        if diff:
            differences += 1
            print(f"DIFF {case.name}")
            for key, (a, b) in diff.items():
                print(f"    {key}: fastserve {a!r}  nginx {b!r}")
        elif args.verbose:
            print(f"same {case.name}: {mine.get('status')}")
    for name, why in seen_known.items():
        print(f"known: {name} differs ({why})")
    for reason, count in decided_seen.items():
        print(f"decided ({count} requests): {reason}")
    print(f"{len(selected)} requests, {differences} with differences")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
