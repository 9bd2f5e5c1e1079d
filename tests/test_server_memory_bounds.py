"""What one client that never reads can make the server hold, over a real socket.

1,000 pipelined GETs of a 256 KiB file in one send (about 35 KB of requests), then
the client stops reading (the file held in memory, or sent from its descriptor by sendfile): the server's RSS must stay near ``--max-response-buffer`` (it grew
by 260-310 MB before the bound), and every answer still arrives, in order, once it reads.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from server_helpers import RawConnection, fetch, rss_kib, running_server, unread_bytes

COUNT = 1000
SIZE = 256 * 1024


@pytest.mark.parametrize("cache_max_file", [str(2 * SIZE), str(SIZE // 16)], ids=["memory", "sendfile"])
def test_pipelined_gets_from_a_client_that_never_reads_hold_bounded_memory(tmp_path: Path, cache_max_file: str) -> None:
    root = tmp_path / "public"
    root.mkdir()
    body = bytes(range(256)) * (SIZE // 256)
    (root / "big.bin").write_bytes(body)
    flags = ["--max-pipeline", "1", "--cache-max-file", cache_max_file]
    with running_server(root, flags, log_path=tmp_path / "server.log") as srv:
        assert fetch(srv.port, "/big.bin").status == 200  # the file is in the cache now
        before = rss_kib(srv.pid)
        with RawConnection(srv.port, timeout=10, rcvbuf=64 * 1024) as conn:
            conn.send(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n" * COUNT)
            # The client does not read; watch the server until it has stopped: neither its RSS
            # nor the bytes waiting in this socket moved for 0.3 s (a server that buffers every
            # answer grows until it has made them all, so its peak is seen either way).
            peak = before
            last, quiet_since, deadline = None, time.monotonic(), time.monotonic() + 10.0
            while time.monotonic() - quiet_since < 0.3 and time.monotonic() < deadline:
                rss = rss_kib(srv.pid)
                peak = max(peak, rss)
                now = (rss, unread_bytes(conn.sock))
                if now != last:
                    last, quiet_since = now, time.monotonic()
                time.sleep(0.03)
            assert peak - before < 32 * 1024, f"RSS grew by {(peak - before) // 1024} MiB"
            for _ in range(COUNT):
                response = conn.read_response()
                assert response.status == 200 and response.body == body
