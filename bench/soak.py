#!/usr/bin/env python3
"""Soak: mixed traffic against fastserve on loopback for a bounded time, watching its memory.

    python bench/soak.py                 # 180 s, 60 s of warm-up
    python bench/soak.py --seconds 60 --warmup 20

Two servers run side by side: a static origin (``python -m fastserve DIR``, the fast path)
and an ASGI app (``bench/apps/soak_app.py``: a small HTTP route and a WebSocket echo). One
asyncio client keeps them busy with keep-alive and new connections, small and large files,
304s, 404s, ranges, pipelined requests, WebSocket sessions and slow readers that give up
halfway. Every few seconds the script samples each server's RSS and open descriptors
(from /proc) and prints the curve. It exits non-zero if, after warm-up, RSS grows by more
than 5% or the descriptors grow (the median of the last third against the first third).
Loopback only; nothing else is contacted.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
APP_DIR = Path(__file__).resolve().parent / "apps"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_root(base: Path) -> Path:
    root = base / "public"
    root.mkdir()
    (root / "small.txt").write_bytes(b"small file\n" * 20)
    (root / "medium.bin").write_bytes(os.urandom(200 * 1024))     # cached in memory
    (root / "large.bin").write_bytes(os.urandom(4 * 1024 * 1024))  # sendfile
    return root


def start(argv: List[str], port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{APP_DIR}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastserve", *argv, "--host", "127.0.0.1", "--port", str(port)],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env, cwd=str(APP_DIR),
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server {argv} did not start; see {log}")


def sample(pid: int) -> Tuple[int, int]:
    """(RSS in KiB, open descriptors) of a server process."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


# ---------------------------------------------------------------------------------------------
# traffic


async def read_response(reader: asyncio.StreamReader, head_request: bool = False) -> Tuple[int, Dict[bytes, bytes]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        if b":" in line:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
    length = int(fields.get(b"content-length", b"0"))
    if not head_request and status not in (204, 304) and length:
        await reader.readexactly(length)
    return status, fields


def get(target: str, *headers: str) -> bytes:
    return ("\r\n".join([f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *headers]) + "\r\n\r\n").encode()


async def keep_alive_client(port: int, stop: float, counts: Dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    etag = None
    try:
        while time.monotonic() < stop:
            kind = random.choice(["small", "medium", "large", "304", "404", "range", "ranges"])
            if kind == "304" and etag:
                writer.write(get("/small.txt", f"If-None-Match: {etag}"))
            elif kind == "404":
                writer.write(get(f"/missing-{random.randrange(1000)}.txt"))
            elif kind == "range":
                writer.write(get("/large.bin", "Range: bytes=1000-20000"))
            elif kind == "ranges":
                writer.write(get("/medium.bin", "Range: bytes=0-10,100-200,-50"))
            else:
                writer.write(get({"small": "/small.txt", "medium": "/medium.bin", "large": "/large.bin",
                                  "304": "/small.txt"}[kind]))
            status, fields = await read_response(reader)
            if kind in ("small", "304") and status == 200:
                etag = fields.get(b"etag", b"").decode()
            counts[kind] = counts.get(kind, 0) + 1
    finally:
        writer.close()


async def new_connection_client(port: int, stop: float, counts: Dict[str, int]) -> None:
    while time.monotonic() < stop:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/small.txt", "Connection: close"))
        await read_response(reader)
        writer.close()
        counts["new-connection"] = counts.get("new-connection", 0) + 1


async def pipelining_client(port: int, stop: float, counts: Dict[str, int]) -> None:
    while time.monotonic() < stop:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(get("/medium.bin" if i % 5 == 0 else "/small.txt") for i in range(40)))
        for _ in range(40):
            await read_response(reader)
        writer.close()
        counts["pipelined"] = counts.get("pipelined", 0) + 40


async def slow_reader(port: int, stop: float, counts: Dict[str, int]) -> None:
    while time.monotonic() < stop:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(get("/large.bin"))
        for _ in range(20):  # a trickle, then it gives up halfway
            await reader.read(4096)
            await asyncio.sleep(0.02)
        writer.transport.abort()
        counts["slow-reader"] = counts.get("slow-reader", 0) + 1


async def websocket_client(port: int, stop: float, counts: Dict[str, int]) -> None:
    from websockets.asyncio.client import connect

    while time.monotonic() < stop:
        async with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10, close_timeout=5) as ws:
            for i in range(20):
                await ws.send(f"message {i}")
                assert await ws.recv() == f"message {i}"
        counts["websocket"] = counts.get("websocket", 0) + 1


async def asgi_client(port: int, stop: float, counts: Dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop:
            body = os.urandom(random.randrange(0, 20000))
            writer.write(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await read_response(reader)
            counts["asgi"] = counts.get("asgi", 0) + 1
    finally:
        writer.close()


async def traffic(static_port: int, app_port: int, stop: float, counts: Dict[str, int]) -> None:
    async def forever(client, port):  # a client that fails (a reset under load) starts over
        while time.monotonic() < stop:
            try:
                await client(port, stop, counts)
            except (OSError, asyncio.IncompleteReadError, AssertionError) as exc:
                counts["client-errors"] = counts.get("client-errors", 0) + 1
                counts.setdefault("last-error", repr(exc)[:80])
                await asyncio.sleep(0.1)
            except Exception as exc:  # websockets' own errors
                counts["client-errors"] = counts.get("client-errors", 0) + 1
                counts.setdefault("last-error", repr(exc)[:80])
                await asyncio.sleep(0.1)

    tasks = [forever(keep_alive_client, static_port) for _ in range(8)]
    tasks += [forever(new_connection_client, static_port) for _ in range(3)]
    tasks += [forever(pipelining_client, static_port) for _ in range(2)]
    tasks += [forever(slow_reader, static_port) for _ in range(3)]
    tasks += [forever(websocket_client, app_port) for _ in range(3)]
    tasks += [forever(asgi_client, app_port) for _ in range(3)]
    await asyncio.gather(*tasks)


# ---------------------------------------------------------------------------------------------


def grew(values: List[int], after: int, tolerance: float, slack: int) -> bool:
    """Whether the median of the last third beats the first third (after warm-up) by more than
    ``tolerance`` (a fraction) plus ``slack``."""
    kept = values[after:]
    if len(kept) < 6:
        return False
    third = len(kept) // 3
    first, last = statistics.median(kept[:third]), statistics.median(kept[-third:])
    return last > first * (1 + tolerance) + slack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--warmup", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="fastserve-soak-"))
    root = make_root(base)
    static_port, app_port = free_port(), free_port()
    servers = {
        "static": start([str(root)], static_port, base / "static.log"),
        "asgi": start(["soak_app:app"], app_port, base / "asgi.log"),
    }
    counts: Dict[str, int] = {}
    samples: Dict[str, List[Tuple[float, int, int]]] = {name: [] for name in servers}
    began = time.monotonic()
    stop = began + args.seconds

    def run_traffic() -> None:
        asyncio.run(traffic(static_port, app_port, stop, counts))

    import threading

    thread = threading.Thread(target=run_traffic, daemon=True)
    thread.start()
    print(f"{'t (s)':>6} " + " ".join(f"{name + ' RSS MiB':>15} {name + ' fds':>10}" for name in servers))
    try:
        while time.monotonic() < stop:
            time.sleep(args.interval)
            t = time.monotonic() - began
            row = []
            for name, proc in servers.items():
                rss, fds = sample(proc.pid)
                samples[name].append((t, rss, fds))
                row.append(f"{rss / 1024:>15.1f} {fds:>10d}")
            print(f"{t:>6.0f} " + " ".join(row), flush=True)
        thread.join(30)
    finally:
        for proc in servers.values():
            proc.terminate()
            proc.wait(15)
    print("requests:", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    failed = False
    for name, rows in samples.items():
        after = sum(1 for t, _, _ in rows if t < args.warmup)
        rss = [r for _, r, _ in rows]
        fds = [f for _, _, f in rows]
        if grew(rss, after, 0.05, 0):
            print(f"FAIL: {name} RSS grew after warm-up: {rss[after:]}")
            failed = True
        if grew(fds, after, 0.0, 8):
            print(f"FAIL: {name} open descriptors grew after warm-up: {fds[after:]}")
            failed = True
        kept = rss[after:]
        if kept:
            print(f"{name}: RSS after warm-up {min(kept) / 1024:.1f}-{max(kept) / 1024:.1f} MiB "
                  f"(median first third {statistics.median(kept[:max(1, len(kept) // 3)]) / 1024:.1f}, "
                  f"last third {statistics.median(kept[-max(1, len(kept) // 3):]) / 1024:.1f}); "
                  f"fds {min(fds[after:])}-{max(fds[after:])}")
    print("soak:", "FAILED" if failed else "flat")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
