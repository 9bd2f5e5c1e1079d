"""Descriptors: the open-file limit a server run asks for, and the share its connections may use.

Each connection holds one descriptor (two while a file transfer waits for a full socket), so
``--max-connections`` is only reachable when the soft ``RLIMIT_NOFILE`` allows it. Many systems
start processes with a soft limit of 1,024 and a far higher hard limit; the server raises its
soft limit toward what ``--max-connections`` needs (never above the hard limit) before the
workers start, so they inherit it.

A worker stops accepting (``fastserve.server.acceptor``) while the descriptor a new connection
got lies within ``headroom`` of the limit (the kernel hands out the lowest free number, so every lower one is in use), and
takes connections again when one closes: clients past the limit wait in the listen queue
instead of being accepted and closed at once.
"""
from __future__ import annotations

import logging
import os
import resource
from typing import Tuple

logger = logging.getLogger("fastserve")

SPARE = 64  # descriptors beyond the connections: listening sockets, the loop's own, logs, files


def headroom(soft: int) -> int:
    """Descriptors a worker keeps free below a soft limit of ``soft`` (files to open, duplicates)."""
    return max(32, soft // 32)


def wanted(max_connections: int) -> int:
    """The soft limit that lets one worker hold ``max_connections`` and still open files."""
    needed = max_connections + SPARE
    return needed + headroom(needed)


def raise_open_file_limit(max_connections: int) -> Tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` toward ``wanted(max_connections)``, capped by the hard limit.

    Never lowers it. Logs what was raised, and warns (once) when the hard limit leaves
    ``--max-connections`` out of reach. Returns the ``(soft, hard)`` limits now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = wanted(max_connections)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:  # e.g. above fs.nr_open
            logger.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        else:
            logger.info("raised the open-file limit from %d to %d (--max-connections %d)", soft, target, max_connections)
            soft = target
    if soft != resource.RLIM_INFINITY and soft < want:
        logger.warning(
            "the open-file limit (%d; hard limit %s) is below the %d that --max-connections %d needs: "
            "past about %d connections a worker stops accepting and new ones wait in the listen queue",
            soft, "unlimited" if hard == resource.RLIM_INFINITY else hard, want, max_connections,
            max(0, accept_ceiling(soft) - _open_now()),
        )
    return soft, hard


def accept_ceiling(soft: int) -> int:
    """The descriptor number from which a worker stops accepting (0: no limit to watch)."""
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 0
    return max(1, soft - headroom(soft))


def current_accept_ceiling() -> int:
    """``accept_ceiling`` of this process's soft limit now."""
    return accept_ceiling(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _open_now() -> int:
    """Descriptors this process holds now (``SPARE`` when it cannot tell)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return SPARE


def somaxconn() -> int:
    """The kernel's cap on any listen backlog (``net.core.somaxconn``); 0 when it cannot be read."""
    try:
        with open("/proc/sys/net/core/somaxconn") as file:
            return int(file.read())
    except (OSError, ValueError):
        return 0
