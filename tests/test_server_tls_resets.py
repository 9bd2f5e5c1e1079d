"""Clients that reset TLS connections before or during the handshake leave a worker's memory
where it was: the buffers each connection held go back to the kernel (``fastserve.server.heap``)."""
from __future__ import annotations

import socket
import ssl
import struct
import time
from pathlib import Path

import pytest

trustme = pytest.importorskip("trustme")

from server_helpers import CliProcess, DocRoot, port_from_url, rss_kib  # noqa: E402
from test_server_tls import write_cert  # noqa: E402

from fastserve.server.heap import heap_trimmer  # noqa: E402

LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


@pytest.fixture(scope="module")
def ca() -> "trustme.CA":
    return trustme.CA()


def client_hello() -> bytes:
    """A TLS ClientHello, as a client's first flight (made once, sent to every connection)."""
    outgoing = ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def reset_all(socks) -> None:
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        sock.close()


def wait_rss_below(pid: int, limit_kib: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        rss = rss_kib(pid)
        if rss <= limit_kib or time.monotonic() > deadline:
            return rss
        time.sleep(0.1)


def test_resets_during_handshakes_do_not_grow_a_worker(ca, docroot: DocRoot, tmp_path: Path) -> None:
    """2,000 connections, 500 at a time, each sending half a ClientHello (or a whole one, or
    nothing) and then a reset: without the trimmer the worker keeps 60-90 MiB more resident
    than it started with (uvloop's 256 KiB read buffer per connection, freed into glibc's heap
    but not given back); with it, it comes back to within 32 MiB of where it started."""
    trimmer = heap_trimmer()
    if trimmer is None:
        pytest.skip("no glibc malloc_trim or /proc here: workers run without a trimmer")
    trimmer.close()
    certfile, keyfile = write_cert(ca, tmp_path, "server")
    srv = CliProcess([str(docroot.root), "--port", "0", "--workers", "1", "--ssl-certfile", str(certfile),
                      "--ssl-keyfile", str(keyfile)], log_path=tmp_path / "server.log")
    with srv:
        port = port_from_url(srv.wait_listening())
        hello = client_hello()
        firsts = [b"", hello[: len(hello) // 2], hello]
        with socket.create_connection(("127.0.0.1", port), timeout=5.0) as raw:  # one whole exchange first
            context = ssl.create_default_context()
            ca.configure_trust(context)
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert tls.recv(9) == b"HTTP/1.1 "
        before = rss_kib(srv.pid)
        for round_ in range(4):
            socks = []
            for i in range(500):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
                first = firsts[(round_ + i) % 3]
                if first:
                    sock.sendall(first)
                socks.append(sock)
            time.sleep(0.1)  # the worker reads them: each has its TLS state
            reset_all(socks)
        after = wait_rss_below(srv.pid, before + 32 * 1024, timeout=10.0)
        assert after <= before + 32 * 1024, (before, after)
        assert srv.alive()
        # A failed handshake is no handshake under way: the stop does not wait for them.
        started = time.monotonic()
        assert srv.stop(timeout=15.0) == 0, srv.output()
        assert time.monotonic() - started < 4.0


def test_a_handshake_record_lets_a_failed_connection_go() -> None:
    """The TLS layer of a failed handshake drops the connection's protocol without telling it:
    the worker's record of handshakes under way holds it weakly, so it is no longer counted."""
    import asyncio
    import gc

    from fastserve._speedups.protocol import HttpProtocol
    from fastserve.config import Config
    from fastserve.server.worker import Handshakes, build_state

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        state = build_state(Config(target="."), None, loop)
        handshakes = Handshakes()
        kept, dropped = HttpProtocol(state, loop), HttpProtocol(state, loop)
        handshakes.begun(kept, 0.0)
        handshakes.begun(dropped, 0.0)
        assert handshakes.pending(1.0) == 2
        del dropped
        gc.collect()
        assert handshakes.pending(1.0) == 1
        assert handshakes.pending(60.0) == 0  # one never finished is given up after HANDSHAKE_WAIT
        assert kept.transport is None

    asyncio.run(scenario())
