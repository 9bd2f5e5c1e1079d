"""Listening sockets: TCP (``--host``/``--port``), a unix socket (``--uds``), an inherited one (``--fd``).

Under a supervisor each TCP worker slot has its own ``SO_REUSEPORT`` socket (opened and held by
the supervisor), so the kernel spreads connections over them. A unix socket or an inherited
descriptor cannot be split that way: it is opened once, before the workers start, and every
worker accepts from the same socket.
"""
from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import replace
from typing import Any, Optional

from fastserve.config import Config

UDS_MODE = 0o666  # a front proxy running as another user must be able to connect


class ListenError(Exception):
    """The configured socket cannot be opened; the message names it and says why."""


def is_shared(config: Config) -> bool:
    """Whether all workers accept from one socket opened before they start (``--uds``, ``--fd``)."""
    return config.uds is not None or config.fd is not None


def open_listener(config: Config, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """The socket ``config`` asks for, non-blocking and (with ``listen``) listening.

    ``reuse_port`` lets the worker slots of one server each listen on the port; a lone server
    binds without it, so a port some other process holds is refused, not shared. Raises
    ``ListenError``.
    """
    if config.fd is not None:
        return _inherited(config.fd, config.backlog)
    if config.uds is not None:
        return _unix(config.uds, config.backlog)
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    where = host_port(config.host, config.port)
    return _bind(sock, (config.host, config.port), where, config.backlog if listen else None)


def _bind(sock: socket.socket, address: Any, where: str, backlog: Optional[int]) -> socket.socket:
    """Bind ``sock`` (and listen, unless ``backlog`` is None), non-blocking; closes it on failure."""
    try:
        sock.bind(address)
        if sock.family == socket.AF_UNIX:
            os.chmod(address, UDS_MODE)
        if backlog is not None:
            sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        port = address[1] if isinstance(address, tuple) else None
        raise ListenError(f"cannot listen on {where}: {_reason(exc, port)}") from None
    return sock


def unprivileged_port_start() -> int:
    """The lowest TCP port a process without ``CAP_NET_BIND_SERVICE`` may bind (Linux's
    ``net.ipv4.ip_unprivileged_port_start``, for IPv6 too; 1024 where it cannot be read)."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as file:
            return int(file.read())
    except (OSError, ValueError):
        return 1024


def resolve_port(config: Config) -> Config:
    """``config`` with ``port`` 0 replaced by a free port (TCP only), so every worker binds the same one.

    The probe binds without ``SO_REUSEPORT``: a port another process holds fails here, once.
    """
    if is_shared(config):
        return config
    probe = open_listener(config, listen=False)
    try:
        return replace(config, port=probe.getsockname()[1])
    finally:
        probe.close()


def _inherited(fd: int, backlog: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ListenError(f"cannot listen on descriptor {fd}: {_reason(exc)}") from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ListenError(f"descriptor {fd} is not a stream socket")
    sock.listen(backlog)  # a no-op for a socket already listening, apart from the backlog
    sock.setblocking(False)
    return sock


def _unix(path: str, backlog: int) -> socket.socket:
    _remove_stale_socket(path)
    return _bind(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), path, f"unix:{path}", backlog)


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file no server answers on (left by a crash); refuse a live one or a non-socket."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"cannot listen on unix:{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return
    except OSError:
        return  # let bind report what is wrong
    finally:
        probe.close()
    raise ListenError(f"cannot listen on unix:{path}: another server is listening there")


def remove_socket_file(config: Config) -> None:
    """After the server stops: remove the ``--uds`` socket it created."""
    if config.uds is not None:
        try:
            if stat.S_ISSOCK(os.stat(config.uds).st_mode):
                os.unlink(config.uds)
        except FileNotFoundError:
            pass


def host_port(host: str, port: int) -> str:
    """``127.0.0.1:8000``, ``[::1]:8000``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describe(sock: socket.socket, scheme: str = "http") -> str:
    """Where ``sock`` listens, as a user would type it: ``http://[::1]:8000``, ``unix:/run/app.sock``."""
    address: Any = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{address if isinstance(address, str) else address.decode()}"
    return f"{scheme}://{host_port(address[0], address[1])}"


def _reason(exc: OSError, port: Optional[int] = None) -> str:
    """Why a socket could not be opened, in words an operator can act on (``port``: the TCP port
    it was to bind)."""
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    lowest = unprivileged_port_start() if exc.errno == errno.EACCES and port is not None else 0
    if port is not None and 0 < port < lowest:
        return (f"permission denied: a port below {lowest} needs the CAP_NET_BIND_SERVICE capability, which this "
                f"process lacks (net.ipv4.ip_unprivileged_port_start is {lowest}); listen on a port from {lowest} up "
                f"(a container or load balancer can map port {port} to it), or grant the capability (systemd's "
                "AmbientCapabilities, docker run --cap-add NET_BIND_SERVICE, setcap on the Python executable)")
    return exc.strerror or str(exc)
