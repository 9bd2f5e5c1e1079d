"""``--access-log``: one line per request (static, app, WebSocket handshake), written through a buffer.

``--access-log-format``:

* ``common``: ``client - - [time] "METHOD target HTTP/x.y" status bytes`` (NCSA Common Log Format);
* ``combined``: ``common`` and ``"referer" "user-agent"``;
* ``json``: one object per line with ``time`` (RFC 3339, UTC), ``client``, ``method``, ``path``,
  ``query``, ``version`` (``"1.1"``), ``status``, ``bytes`` (response bytes, head included), ``duration_us``
  (from the request head to the response handed to the connection, or to its last byte sent
  when the socket did not take it at once: below), ``user_agent``, ``referer``
  and ``worker`` (the process id).

The request is named as its request line named it, as nginx's ``$request`` does: the
HTTP-version as sent (``HTTP/1.2``, served as HTTP/1.1; ``HTTP/2.0``, refused 505). A request
refused before its head was read whole (a target too long, a head too large, a line that is no
request line, another major version) is named by as much of its line as came: the words before
the first SP and between the SPs as method and target, the rest as the protocol (its first
8 KiB in all); what never came is ``-`` (in ``common``, a part not read is left out, and a
line of which nothing was read is ``"-"``).

A static answer is logged with the bytes the socket took (nginx's ``$bytes_sent``), not the
size its head promised: one the socket took whole at once at its size; any other (a file's body,
bytes the socket did not take, answers waiting behind another) when its last byte went to the
socket, or when the client went away, with what left by then (none, for an answer never begun);
its duration runs that long too. A request whose connection ended before any byte of its
answer left is logged with nginx's status 499 ("client closed request") and 0 bytes, on
both faces (``CLIENT_CLOSED_REQUEST``, decided in the connection's ``_account``). An app's answer counts the same way, its file bodies
(``FileResponse``, ``http.response.pathsend``) and the bytes it sends alike. Under TLS the TLS
layer's transport stands for the socket. The metrics count the same bytes.

Lines go to the ``fastserve.access`` logger. They are kept in a buffer and written every tick
of the server's clock (or sooner when ``BUFFER_LINES`` are waiting); with fastserve's own
handler the buffer goes out in one write, with a user's ``--log-config`` every line is a log
record as usual; with a file written for uvicorn (``fastserve.server.logs``), a record on
``uvicorn.access`` as uvicorn makes it. Lines a handler cannot take are dropped and said once
(``AccessLog._taken``), whichever handler it is.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, List, Optional

from fastserve.server import logs

FORMATS = ("common", "combined", "json")
_now = time.time
BUFFER_LINES = 256

logger = logging.getLogger("fastserve.access")
uvicorn_logger = logging.getLogger("uvicorn.access")
UVICORN_LINE = '%s - "%s %s HTTP/%s" %d'  # uvicorn's access record: its AccessFormatter reads the arguments


class AccessHandler(logging.StreamHandler):
    """fastserve's default handler for ``fastserve.access``; ``AccessLog`` writes around it in batches."""


class AccessLog:
    """The per-worker access log; called by the connection for each answered request."""

    def __init__(self, fmt: str = "common") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"access log format {fmt!r} is not one of {', '.join(FORMATS)}")
        self.format = fmt
        self.wants_agents = fmt != "common"
        self.pending: List[tuple] = []
        self.worker = os.getpid()
        self._second = -1
        self._clf_time = ""
        self._iso_time = ""
        self.dropped = 0  # lines lost since the stream last took a write (0: it is being written)

    def __call__(self, conn: Any, method: Optional[bytes], url: Optional[bytes], protocol: Optional[bytes],
                 status: int, sent: int, seconds: float, user_agent: Optional[bytes], referer: Optional[bytes],
                 client: Any = None) -> None:
        """One line's facts (formatted when the buffer is written): ``method``, ``url`` and
        ``protocol`` (``b"HTTP/1.1"``) as the request line named them, each None where it was
        not read; ``client`` is the ASGI scope's (a trusted proxy's X-Forwarded-For), else the
        connection's peer."""
        self.pending.append((conn.client if client is None else client, method, url, protocol, status, sent, seconds,
                             user_agent, referer, _now()))
        if len(self.pending) >= BUFFER_LINES:
            self.flush()

    def format_line(self, client: Any, method: Optional[bytes], url: Optional[bytes], protocol: Optional[bytes],
                    status: int, sent: int, seconds: float, user_agent: Optional[bytes], referer: Optional[bytes],
                    when: float) -> str:
        """One line in the configured format (no newline); ``when`` is the time.time() of the answer."""
        self._refresh_time(when)
        host = client[0] if client else "-"
        verb = method.decode("latin-1") if method else "-"
        target = url.decode("latin-1") if url else "-"
        if self.format == "json":
            version = _version(protocol)
            path, _, query = target.partition("?")
            # The object json.dumps would write, with the strings escaped by its C encoder.
            return (
                f'{{"time":"{self._iso_time}","client":{_json(host)},"method":{_json(verb)},'
                f'"path":{_json(path)},"query":{_json(query)},"version":{_json(version)},"status":{status},'
                f'"bytes":{sent},"duration_us":{int(seconds * 1e6)},"user_agent":{_json_or_null(user_agent)},'
                f'"referer":{_json_or_null(referer)},"worker":{self.worker}}}'
            )
        # The request line's words as they came (of one cut short, those read; none: "-").
        request = escape_text(" ".join(part.decode("latin-1") for part in (method, url, protocol) if part)) or "-"
        line = f'{host} - - [{self._clf_time}] "{request}" {status} {sent}'
        if self.format == "combined":
            line += f' "{escape_text(_text(referer) or "-")}" "{escape_text(_text(user_agent) or "-")}"'
        return line

    def _refresh_time(self, when: float) -> None:
        second = int(when)
        if second != self._second:
            self._second = second
            stamp = time.gmtime(second)
            self._clf_time = time.strftime("%d/%b/%Y:%H:%M:%S +0000", stamp)
            self._iso_time = time.strftime("%Y-%m-%dT%H:%M:%SZ", stamp)

    def flush(self) -> None:
        """Write the buffered lines (on each tick, when the buffer is full, and at shutdown)."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        if not logger.isEnabledFor(logging.INFO):
            return
        if logs.access_to_uvicorn:
            watches = _watch_handlers(uvicorn_logger)
            for client, method, url, protocol, status, *_ in pending:
                address = "%s:%d" % tuple(client[:2]) if client and client[1] is not None else (client or ("-",))[0]
                # the parts as the common format escapes them: a refused line's words come raw
                uvicorn_logger.info(UVICORN_LINE, address, escape_text(_text(method) or "-"),
                                    escape_text(_text(url) or "-"), escape_text(_version(protocol)), status)
            self._taken(len(pending), _failure(watches))
            return
        lines = [self.format_line(*facts) for facts in pending]
        handlers = logger.handlers
        if len(handlers) == 1 and type(handlers[0]) is AccessHandler and not logger.filters:
            self._write(handlers[0], lines)  # type: ignore[arg-type]
            return
        watches = _watch_handlers(logger)
        for line in lines:
            logger.info(line)
        self._taken(len(lines), _failure(watches))

    def _write(self, handler: AccessHandler, lines: List[str]) -> None:
        """Write ``lines`` to ``handler``'s stream in one write. A stream that cannot take them
        (a pipe whose reader is gone, a full disk) loses them, as nginx loses what its log
        cannot take: said once, as an error on the ``fastserve`` logger, and once more when a
        write succeeds again; the worker serves on (a logging handler's error, raised here,
        stopped its clock: no timeouts, no heartbeat, and a stop ended in a traceback)."""
        try:
            with handler.lock:  # type: ignore[union-attr]
                handler.stream.write("\n".join(lines) + "\n")
                handler.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            self._taken(len(lines), exc)
            return
        self._taken(len(lines), None)

    def _taken(self, count: int, failure: Optional[BaseException]) -> None:
        """``count`` lines were written, or lost to ``failure``: the first loss is said as an
        error, and the return of the log as a warning with the number lost meanwhile."""
        if failure is not None:
            if not self.dropped:
                logging.getLogger("fastserve").error(
                    "worker %d: the access log cannot be written (%s): its lines are dropped until it can be",
                    self.worker, getattr(failure, "strerror", None) or failure)
            self.dropped += count
            return
        if self.dropped:
            logging.getLogger("fastserve").warning("worker %d: the access log is written again; %d lines were "
                                                   "dropped", self.worker, self.dropped)
            self.dropped = 0


class _HandlerErrors:
    """Put in place of a ``--log-config`` handler's ``handleError``: a handler that cannot write
    an access record (a file on a full disk) has the error kept here, for ``AccessLog._taken``
    to say once, where logging printed it with a traceback to stderr for every line; the
    handler's errors on other records are its own as before."""

    def __init__(self, original: Any) -> None:
        self.original = original
        self.failure: Optional[BaseException] = None

    def __call__(self, record: logging.LogRecord) -> None:
        if record.name in (logger.name, uvicorn_logger.name):
            self.failure = sys.exc_info()[1] or OSError("the handler failed")
        else:
            self.original(record)


def _watch_handlers(log: logging.Logger) -> List[_HandlerErrors]:
    """The error watches of the handlers ``log``'s records reach (put in place the first time)."""
    watches = []
    current: Optional[logging.Logger] = log
    while current is not None:
        for handler in current.handlers:
            watch = handler.handleError
            if not isinstance(watch, _HandlerErrors):
                watch = _HandlerErrors(watch)
                handler.handleError = watch  # type: ignore[method-assign]
            watch.failure = None
            watches.append(watch)
        current = current.parent if current.propagate else None
    return watches


def _failure(watches: List[_HandlerErrors]) -> Optional[BaseException]:
    """The first error one of ``watches`` kept since ``_watch_handlers``, if any."""
    return next((watch.failure for watch in watches if watch.failure is not None), None)


_json = json.encoder.encode_basestring  # type: ignore[attr-defined]  # a quoted, escaped JSON string


def _json_or_null(value: Optional[bytes]) -> str:
    return "null" if value is None else _json(value.decode("latin-1"))


def _version(protocol: Optional[bytes]) -> str:
    """The version a request line's protocol names (``"1.1"`` of ``HTTP/1.1``): what follows
    ``HTTP/``, the protocol whole if it is not one, ``-`` if none was read."""
    if not protocol:
        return "-"
    text = protocol.decode("latin-1")
    return text[5:] if text.startswith("HTTP/") else text


def _text(value: Optional[bytes]) -> Optional[str]:
    return None if value is None else value.decode("latin-1")


def escape_text(text: str) -> str:
    """Escape what would break a quoted log field: quotes, backslashes, control characters."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif not char.isprintable():
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)
