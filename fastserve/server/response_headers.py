"""The header fields the server adds to every response: ``Server``, ``Date`` and ``--header`` ones.

Defined once from the config and read by every face that answers: the ASGI bridge (HTTP and
WebSocket handshakes) and the heads the server writes itself (``wire``: static answers, admin
paths, the connection's own errors). A field the answer sets itself (the app's, or a static
answer's ``Cache-Control`` or ``Content-Type``) wins over the server's field of the same name,
so a response never carries one field twice: two ``Server``, ``Date`` or ``Cache-Control``
(RFC 9110 §10.2.4, §6.6.1, §5.3). ``Vary`` is the exception: a list of the fields the answer
was chosen by (§12.5.5), so the operator's members are added to the answer's own, each once,
in one field (``merged``; ``wire.render_fields`` on the heads the server writes). For a
directory, ``--header Cache-Control`` is its files' cache policy (``app_loader._cache_policy``),
not a field of every answer.
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

from fastserve._speedups.headers import vary_union
from fastserve.config import Config
from fastserve.server.app_loader import names_directory

Field = Tuple[bytes, bytes]

# Representation metadata (RFC 9110 §8.3-8.5) an operator may give as a default: never on a 304,
# which names no representation of its own (§15.4.5) while a cache puts its fields in place of the
# ones it stored (RFC 9111 §4.3.4): a default Content-Type there would relabel a stored file.
NOT_ON_304 = frozenset({b"content-type", b"content-encoding", b"content-language"})

# RFC 9110 §5.6.2 token characters, for header names given on the command line.
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class ServerHeaders:
    """``server``: the ``Server`` value (None: not sent); ``date``: whether ``Date`` is sent;
    ``extra``: the other ``--header`` fields, names lowercased, in the order given (several
    ``Vary`` given as one); ``vary``: the operator's ``Vary`` value, or None.

    Raises ``ValueError`` for a name that is not an RFC 9110 token or a value with CR, LF or NUL.
    """

    def __init__(self, server: Optional[bytes], date: bool, extra: List[Field]) -> None:
        self.server = server
        self.date = date
        self.extra = extra
        self.extra_names = frozenset(name for name, _ in extra)
        self.not_on_304 = self.extra_names & NOT_ON_304
        self.vary: Optional[bytes] = next((value for name, value in extra if name == b"vary"), None)

    @classmethod
    def from_config(cls, config: Config) -> "ServerHeaders":
        server: Optional[bytes] = b"fastserve" if config.server_header else None
        extra: List[Field] = []
        directory = names_directory(config.target)
        for name, value in config.headers:
            field = encode_field(name, value)
            if field[0] == b"server":
                server = field[1]  # --header server:X names the server, even with --no-server-header
            elif field[0] == b"cache-control" and directory:
                continue  # a directory's files' cache policy (app_loader._cache_policy), not every answer's
            elif field[0] == b"vary" and any(name == b"vary" for name, _ in extra):
                extra = [(name, vary_union(value, field[1]) if name == b"vary" else value) for name, value in extra]
            else:
                extra.append(field)
        return cls(server, config.date_header, extra)

    def for_response(self, app_names: Iterable[bytes], date: bytes, status: int = 200) -> List[Field]:
        """The fields to put before the app's own, given the (lowercased) names the app sets and
        the response's status (a 304 gets none of ``NOT_ON_304``)."""
        names = set(app_names)
        if status == 304:
            names |= self.not_on_304
        fields: List[Field] = []
        if self.server is not None and b"server" not in names:
            fields.append((b"server", self.server))
        if self.date and b"date" not in names:
            fields.append((b"date", date))
        for name, value in self.extra:
            if name not in names:
                fields.append((name, value))
        return fields

    def merged(self, app_fields: List[Field]) -> List[Field]:
        """``app_fields`` with the operator's ``Vary`` members merged into the app's
        (``headers.vary_union``), in the place of its first ``Vary`` (any case) and as one field;
        the list itself when there is nothing to merge. ``for_response`` then leaves the
        server's ``Vary`` out, as for any field the app sets."""
        if self.vary is None:
            return app_fields
        out: List[Field] = []
        place = -1
        for name, value in app_fields:
            if bytes(name).lower() != b"vary":
                out.append((name, value))
            elif place < 0:
                place = len(out)
                out.append((name, bytes(value)))
            else:
                out[place] = (out[place][0], vary_union(out[place][1], bytes(value)))
        if place < 0:
            return app_fields
        out[place] = (out[place][0], vary_union(out[place][1], self.vary))
        return out

    def static_fields(self) -> List[Tuple[bytes, bytes, bool]]:
        """``Server`` and ``--header`` fields as ``(lowercased name, b"Name: value\\r\\n", whether
        a 304 leaves it out)``, in order, for the heads the server writes itself
        (``wire.set_server_fields``)."""
        fields = ([(b"server", self.server)] if self.server is not None else []) + self.extra
        return [(name, b"%s: %s\r\n" % (_display_name(name), value), name in NOT_ON_304) for name, value in fields]


def encode_field(name: str, value: str) -> Field:
    """``(name, value)`` as a lowercased wire field; raises ``ValueError`` as ``ServerHeaders`` says."""
    raw_name = name.strip().encode("latin-1")
    raw_value = value.strip().encode("latin-1")
    if not raw_name or any(c not in _TCHAR for c in raw_name):
        raise ValueError(f"{name!r} is not a header name")
    if any(c in raw_value for c in b"\r\n\0"):
        raise ValueError(f"the value of header {name!r} holds CR, LF or NUL")
    return raw_name.lower(), raw_value


def _display_name(name: bytes) -> bytes:
    """``x-frame-options`` -> ``X-Frame-Options`` (names are case-insensitive; this reads as users write)."""
    return b"-".join(part[:1].upper() + part[1:] for part in name.split(b"-"))
