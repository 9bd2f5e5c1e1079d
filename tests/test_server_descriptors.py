"""The open-file limit, with real processes: raised at start, and respected when it cannot be.

Past the limit a worker stops accepting: connections wait in the kernel's listen queue (no
busy loop, no client accepted and closed) and are served as soon as others close.
"""
from __future__ import annotations

import os
import select
import time
from pathlib import Path
from typing import List

from fastserve.server.limits import wanted
from tests.server_helpers import DocRoot, RawConnection, ServerProcess

TICK = os.sysconf("SC_CLK_TCK")


def soft_open_files(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_soft_limit_is_raised_toward_max_connections(docroot: DocRoot, tmp_path: Path) -> None:
    with ServerProcess(docroot.root, ["--max-connections", "1000"], log_path=tmp_path / "log",
                       open_files=(256, 4096)) as server:
        server.wait_ready()
        assert soft_open_files(server.pid) == wanted(1000)
        assert f"raised the open-file limit from 256 to {wanted(1000)}" in server.output()
        assert "below the" not in server.output()


def test_connections_past_the_limit_wait_in_the_queue_and_are_served_later(docroot: DocRoot, tmp_path: Path) -> None:
    # Hard limit 64: the server cannot raise it, says so once, and holds about 20 connections
    # (idle ones kept open for the whole test).
    with ServerProcess(docroot.root, ["--keepalive-timeout", "60"], log_path=tmp_path / "log",
                       open_files=(64, 64)) as server:
        server.wait_ready()
        assert "is below the" in server.output()
        conns: List[RawConnection] = []
        for _ in range(48):
            conn = RawConnection(server.port)
            conn.request("GET", "/small.txt")
            conns.append(conn)
        wait_for(lambda: "near the open-file limit" in server.output())

        answered = []
        pending = {conn.sock: conn for conn in conns}
        idle_cpu = None
        while pending:  # take every answer that comes, until none has for half a second
            before = cpu_seconds(server.pid)
            ready, _, _ = select.select(list(pending), [], [], 0.5)
            if not ready:
                idle_cpu = cpu_seconds(server.pid) - before  # the worker's CPU over that half second
                break
            for sock in ready:
                assert pending[sock].read_response().status == 200
                answered.append(pending.pop(sock))
        waiting = [conn for conn in conns if conn.sock in pending]
        assert answered and waiting, (len(answered), len(waiting))

        # The waiting clients are neither answered nor closed, and the worker did not spin
        # while they waited.
        readable, _, _ = select.select([conn.sock for conn in waiting], [], [], 0)
        assert not readable, "a queued connection got bytes or a close"
        assert idle_cpu is not None and idle_cpu < 0.2, idle_cpu

        # Clients already served keep being served.
        assert answered[0].exchange("GET", "/small.txt").body == docroot.small

        # Each close lets the next queued connection in.
        for conn in answered:
            conn.close()
        for conn in waiting:
            response = conn.read_response()
            assert (response.status, response.body) == (200, docroot.small)
            conn.close()
        assert server.output().count("near the open-file limit") == 1
