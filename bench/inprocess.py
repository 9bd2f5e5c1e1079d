#!/usr/bin/env python3
"""fastserve's own per-request CPU, without sockets: a connection driven by hand.

    python bench/inprocess.py            # with fastserve installed (e.g. pip install -e .)
    python bench/inprocess.py --access-log common --metrics >/dev/null   # what observing costs
    python bench/inprocess.py --origin off --browser --static-only    # the origin features' cost
    python bench/inprocess.py --forwarded    # requests with a browser's head as a CDN forwards it

``--origin off`` turns off what a static origin adds per file (cache policy: no Cache-Control,
``--dotfiles allow``, ``--compress off``) to compare with the defaults; ``--browser`` sends the
``Accept-Encoding`` a browser sends, ``--forwarded`` the whole head a browser's request has
after a CDN forwards it (``FORWARDED_HEAD``). ``--batches``/``--batch`` size the run (``valgrind --tool=callgrind``
counts instructions: run it with two sizes and divide the difference by the extra requests).

One ``HttpProtocol`` gets each request's bytes through ``data_received`` and writes its
answer to a stand-in transport that only counts. What is left is fastserve's user-space
work for a request: reading the head, the static lookup or the ASGI cycle, building the
answer. The kernel's share (read, send, epoll), which is most of a real request, is not
in it; ``bash bench/run.sh`` measures the whole thing against other servers.

Each scenario runs in short batches and reports the fastest batch, the figure least
disturbed by whatever else the machine is doing. Compare two builds by running this
script with each, alternately, on the same machine.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from apps.hello import app as hello_app  # noqa: E402
from fastserve.config import Config  # noqa: E402
from fastserve.server.logs import configure_logging  # noqa: E402
from fastserve.server.worker import build_state  # noqa: E402
from fastserve.server.app_loader import load_app  # noqa: E402
from fastserve._speedups.protocol import HttpProtocol  # noqa: E402
from inprocess import CountingTransport  # noqa: E402  (tests/inprocess.py: the in-process test layer)

BATCHES = 30
STATIC_BATCH = 5000
ASGI_BATCH = 2000
BROWSER_ACCEPT_ENCODING = "Accept-Encoding: gzip, deflate, br, zstd"
# What a browser's request for a stylesheet looks like once a CDN forwards it (~500 bytes):
# the head the origin reads on every request, where wrk's is 50 bytes.
FORWARDED_HEAD = [
    "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36",
    "Accept: text/css,*/*;q=0.1",
    BROWSER_ACCEPT_ENCODING,
    "Accept-Language: en-US,en;q=0.9",
    "Referer: https://www.example.com/",
    "Sec-Fetch-Dest: style",
    "Sec-Fetch-Mode: no-cors",
    "Sec-Fetch-Site: same-site",
    "Via: 1.1 varnish",
    "X-Forwarded-For: 203.0.113.7",
    "X-Forwarded-Proto: https",
    "CDN-Loop: example; loops=1",
]


def request(target: str, *headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: localhost:8000", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def new_connection(state) -> tuple[CountingTransport, HttpProtocol]:
    transport = CountingTransport()
    conn = HttpProtocol(state, asyncio.get_running_loop())
    conn.connection_made(transport)
    return transport, conn


async def fastest_static(state, data: bytes) -> float:
    best = float("inf")
    for _ in range(BATCHES):
        transport, conn = new_connection(state)
        start = time.perf_counter()
        for _ in range(STATIC_BATCH):
            conn.data_received(data)
        best = min(best, (time.perf_counter() - start) / STATIC_BATCH)
        assert transport.writes == STATIC_BATCH, "every request must be answered at once"
    return best


async def fastest_asgi(state, data: bytes) -> float:
    best = float("inf")
    for _ in range(BATCHES):
        transport, conn = new_connection(state)
        start = time.perf_counter()
        for i in range(ASGI_BATCH):
            conn.data_received(data)
            while transport.writes <= i:  # the app runs as a task: let it answer
                await asyncio.sleep(0)
        best = min(best, (time.perf_counter() - start) / ASGI_BATCH)
    return best


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--access-log", choices=["common", "combined", "json"])
    parser.add_argument("--metrics", action="store_true")
    parser.add_argument("--origin", choices=["on", "off"], default="on")
    parser.add_argument("--browser", action="store_true")
    parser.add_argument("--forwarded", action="store_true")
    parser.add_argument("--static-only", action="store_true")
    parser.add_argument("--batches", type=int, default=BATCHES)
    parser.add_argument("--batch", type=int, default=STATIC_BATCH)
    parser.add_argument("--only", choices=["1k", "304", "404", "hello"], help="run this scenario alone")
    return parser.parse_args()


def observing(args: argparse.Namespace) -> dict:
    """Config fields from ``--access-log FORMAT`` (lines go to stdout), ``--metrics`` and ``--origin``."""
    configure_logging("info")
    fields = {"metrics": args.metrics}
    if args.access_log:
        fields.update(access_log=True, access_log_format=args.access_log)
    if args.origin == "off":
        fields.update(cache_rules=[("*", "")], dotfiles="allow", compress="off")
    return fields


async def main() -> None:
    global BATCHES, STATIC_BATCH
    loop = asyncio.get_running_loop()
    args = arguments()
    BATCHES, STATIC_BATCH = args.batches, args.batch
    options = observing(args)
    extra = FORWARDED_HEAD if args.forwarded else [BROWSER_ACCEPT_ENCODING] if args.browser else []
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "small.txt").write_bytes(b"x" * 1024)
        # What `fastserve DIR` serves: the server's defaults (html, precompressed, cache policy, dotfiles).
        config = Config(target=root, **options)
        static_app = load_app(config)
        static = build_state(config, static_app, loop)
        etag = static_app.file_cache.lookup("/small.txt").etag.decode()
        requests = {
            "1k": request("/small.txt", *extra),
            "304": request("/small.txt", f"If-None-Match: {etag}", *extra),
            "404": request("/missing.txt", *extra),
        }
        results = {}
        for name, data in requests.items():
            if args.only in (None, name):
                results[name] = await fastest_static(static, data)
    if not args.static_only and args.only in (None, "hello"):
        asgi = build_state(Config(target=hello_app, **options), hello_app, loop)
        await asgi.asgi_bridge.startup()
        results["hello (ASGI)"] = await fastest_asgi(asgi, request("/", *extra))
    for name, seconds in results.items():
        print(f"{name:<13} {seconds * 1e6:7.2f} us/request  (fastest of {BATCHES} batches)", file=sys.stderr)


if __name__ == "__main__":
    uvloop.run(main())
