"""Value types the request/response API is built from: URLs, headers, query strings, multi-dicts."""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from shlex import shlex
from typing import Any, BinaryIO, NamedTuple, TypeVar, Union
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from fastserve._interop import ClaimsFrameworkInstances, counts_as, framework_base
from fastserve.concurrency import run_in_threadpool

__all__ = [
    "URL",
    "Address",
    "CommaSeparatedStrings",
    "Headers",
    "ImmutableMultiDict",
    "MultiDict",
    "MutableHeaders",
    "QueryParams",
    "Secret",
    "State",
    "URLPath",
]

KeyT = TypeVar("KeyT")
ValueT = TypeVar("ValueT", covariant=True)


class Address(NamedTuple):
    """A peer or server address: ``scope["client"]`` / ``scope["server"]`` as a named pair."""

    host: str
    port: int


# A named tuple cannot claim another class's instances: where Starlette is installed this is its
# own ``Address``, so ``isinstance(request.client, Address)`` holds for a FastAPI request's too.
Address = framework_base("starlette.datastructures", "Address", Address)  # type: ignore[misc]


# --------------------------------------------------------------------------- Host header checks
# A Host header only becomes part of a URL when it is a well-formed authority: otherwise a client
# could smuggle a path, a query or a second authority into every URL the app builds from it.

_DIGITS = frozenset(string.digits)
_HEXDIGITS = frozenset(string.hexdigits)
_REG_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "._~%!$&'()*+,;=-")
_IPV6_CHARS = _HEXDIGITS | {":", "."}
_IPVFUTURE_CHARS = frozenset(string.ascii_letters + string.digits + "._~!$&'()*+,;=:-")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _is_valid_port(port: str) -> bool:
    if not port or not _DIGITS.issuperset(port):
        return False
    significant = port.lstrip("0")
    return len(significant) <= 5 and int(significant or "0") <= 65535


def _is_valid_ip_literal(literal: str) -> bool:
    """The inside of ``[...]``: an IPv6 address (no zone id) or an ``vX.future`` literal."""
    if literal.startswith("v"):
        version, dot, rest = literal[1:].partition(".")
        return bool(version and dot and rest) and _HEXDIGITS.issuperset(version) and _IPVFUTURE_CHARS.issuperset(rest)
    if ":" not in literal or not _IPV6_CHARS.issuperset(literal):
        return False
    try:
        ipaddress.IPv6Address(literal)
    except ValueError:
        return False
    return True


def is_valid_host_header(value: str) -> bool:
    """True when ``value`` is ``host`` or ``host:port`` with a syntactically valid host and port."""
    if value.startswith("["):
        literal, bracket, rest = value[1:].partition("]")
        if not bracket or not _is_valid_ip_literal(literal):
            return False
    else:
        end = value.find(":")
        literal, rest = (value, "") if end < 0 else (value[:end], value[end:])
        if not literal or not _REG_NAME_CHARS.issuperset(literal):
            return False
    return rest == "" or (rest[0] == ":" and _is_valid_port(rest[1:]))


def _netloc_from_scope(scope: Mapping[str, Any], scheme: str) -> str | None:
    for key, value in scope["headers"]:
        if key == b"host":
            host_header = value.decode("latin-1")
            if is_valid_host_header(host_header):
                return host_header
            break
    server = scope.get("server")
    if server is None:
        return None
    host, port = server
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"


def _url_from_scope(scope: Mapping[str, Any]) -> str:
    scheme = scope.get("scheme", "http")
    # Characters that would end the path if left raw are kept as part of it.
    path = scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    query = scope.get("query_string", b"").decode()
    netloc = _netloc_from_scope(scope, scheme)
    if netloc is not None:
        return SplitResult(scheme, netloc, path, query, "").geturl()
    if path.startswith("//"):
        # With no authority in front, "//x" would read as host "x".
        path = "/%2F" + path[2:]
    return f"{path}?{query}" if query else path


# --------------------------------------------------------------------------- URL


@counts_as("starlette.datastructures", "URL")
class URL(metaclass=ClaimsFrameworkInstances):
    """An immutable URL string with parsed, read-only components.

    Build from a string (``URL("https://example.com/a?b=1")``), from an ASGI scope
    (``URL(scope=scope)``), or from components (``URL(scheme="https", netloc="x", path="/")``).
    """

    def __init__(self, url: str = "", scope: MutableMapping[str, Any] | None = None, **components: Any) -> None:
        if scope is not None:
            assert not url, 'Cannot set both "url" and "scope".'
            assert not components, 'Cannot set both "scope" and "**components".'
            url = _url_from_scope(scope)
        elif components:
            assert not url, 'Cannot set both "url" and "**components".'
            url = URL("").replace(**components).components.geturl()
        self._url = url

    @property
    def components(self) -> SplitResult:
        parsed = self.__dict__.get("_components")
        if parsed is None:
            parsed = self._components = urlsplit(self._url)
        return parsed

    @property
    def scheme(self) -> str:
        return self.components.scheme

    @property
    def netloc(self) -> str:
        return self.components.netloc

    @property
    def path(self) -> str:
        return self.components.path

    @property
    def query(self) -> str:
        return self.components.query

    @property
    def fragment(self) -> str:
        return self.components.fragment

    @property
    def username(self) -> str | None:
        return self.components.username

    @property
    def password(self) -> str | None:
        return self.components.password

    @property
    def hostname(self) -> str | None:
        return self.components.hostname

    @property
    def port(self) -> int | None:
        return self.components.port

    @property
    def is_secure(self) -> bool:
        return self.scheme in ("https", "wss")

    def replace(self, **kwargs: Any) -> URL:
        """A copy with some components changed: any ``SplitResult`` field, or the netloc parts
        ``username``, ``password``, ``hostname`` and ``port`` (``port=None`` drops the port)."""
        if {"username", "password", "hostname", "port"} & kwargs.keys():
            kwargs["netloc"] = self._netloc_with(
                hostname=kwargs.pop("hostname", None),
                port=kwargs.pop("port", self.port),
                username=kwargs.pop("username", self.username),
                password=kwargs.pop("password", self.password),
            )
        return type(self)(self.components._replace(**kwargs).geturl())

    def _netloc_with(self, hostname: str | None, port: int | None, username: str | None, password: str | None) -> str:
        if hostname is None:
            # Keep the host exactly as written (case, brackets), minus userinfo and port.
            hostname = self.netloc.rpartition("@")[2]
            if hostname and not hostname.endswith("]"):
                hostname = hostname.rsplit(":", 1)[0]
        elif ":" in hostname and not hostname.startswith("["):
            try:
                ipaddress.IPv6Address(hostname)
            except ValueError:
                pass
            else:
                hostname = f"[{hostname}]"
        netloc = hostname if port is None else f"{hostname}:{port}"
        if username is not None:
            userinfo = username if password is None else f"{username}:{password}"
            netloc = f"{userinfo}@{netloc}"
        return netloc

    def include_query_params(self, **kwargs: Any) -> URL:
        """Set the given query parameters (replacing every value of each), keeping the others."""
        params = MultiDict(parse_qsl(self.query, keep_blank_values=True))
        params.update({str(key): str(value) for key, value in kwargs.items()})
        return self.replace(query=urlencode(params.multi_items()))

    def replace_query_params(self, **kwargs: Any) -> URL:
        """Replace the whole query string with the given parameters."""
        return self.replace(query=urlencode([(str(key), str(value)) for key, value in kwargs.items()]))

    def remove_query_params(self, keys: str | Sequence[str]) -> URL:
        """Drop every value of the given query parameter name(s)."""
        if isinstance(keys, str):
            keys = [keys]
        params = MultiDict(parse_qsl(self.query, keep_blank_values=True))
        for key in keys:
            params.pop(key, None)
        return self.replace(query=urlencode(params.multi_items()))

    def __eq__(self, other: Any) -> bool:
        return str(self) == str(other)

    __hash__ = None  # type: ignore[assignment]  # equal to plain strings, so it cannot hash like one

    def __str__(self) -> str:
        return self._url

    def __repr__(self) -> str:
        url = str(self.replace(password="********")) if self.password else self._url
        return f"{type(self).__name__}({url!r})"


@counts_as("starlette.datastructures", "URLPath")
class URLPath(str, metaclass=ClaimsFrameworkInstances):
    """A path produced by URL reversal, which may also carry the protocol and host it belongs to."""

    protocol: str
    host: str

    def __new__(cls, path: str, protocol: str = "", host: str = "") -> URLPath:
        assert protocol in ("http", "websocket", ""), f"Unknown protocol {protocol!r}"
        path = path.replace("\\", "%5C")
        if path.startswith("//"):
            path = "/%2F" + path[2:]
        return str.__new__(cls, path)

    def __init__(self, path: str, protocol: str = "", host: str = "") -> None:
        self.protocol = protocol
        self.host = host

    def make_absolute_url(self, base_url: str | URL) -> URL:
        if isinstance(base_url, str):
            base_url = URL(base_url)
        scheme = base_url.scheme
        if self.protocol == "http":
            scheme = "https" if base_url.is_secure else "http"
        elif self.protocol == "websocket":
            scheme = "wss" if base_url.is_secure else "ws"
        path = base_url.path.rstrip("/") + str(self)
        return URL(scheme=scheme, netloc=self.host or base_url.netloc, path=path)


# --------------------------------------------------------------------------- small value types


@counts_as("starlette.datastructures", "Secret")
class Secret(metaclass=ClaimsFrameworkInstances):
    """A string that keeps itself out of reprs and tracebacks; ``str(secret)`` gives the value."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}('**********')"

    def __str__(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)


@counts_as("starlette.datastructures", "CommaSeparatedStrings")
class CommaSeparatedStrings(Sequence[str], metaclass=ClaimsFrameworkInstances):
    """``"a, 'b,c', d"`` -> ``["a", "b,c", "d"]``: comma-separated, quotes group, items stripped."""

    def __init__(self, value: str | Sequence[str]) -> None:
        if isinstance(value, str):
            lexer = shlex(value, posix=True)
            lexer.whitespace = ","
            lexer.whitespace_split = True
            self._items = [item.strip() for item in lexer]
        else:
            self._items = list(value)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: Any) -> Any:
        return self._items[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"

    def __str__(self) -> str:
        return ", ".join(repr(item) for item in self._items)


@counts_as("starlette.datastructures", "State")
class State(metaclass=ClaimsFrameworkInstances):
    """Attribute (and item) access to a dict: ``request.state.user``, ``app.state.db``."""

    _state: dict[str, Any]

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "_state", {} if state is None else state)

    def __setattr__(self, key: str, value: Any) -> None:
        self._state[key] = value

    def __getattr__(self, key: str) -> Any:
        try:
            return self._state[key]
        except KeyError:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{key}'") from None

    def __delattr__(self, key: str) -> None:
        del self._state[key]

    def __getitem__(self, key: str) -> Any:
        return self._state[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._state[key] = value

    def __delitem__(self, key: str) -> None:
        del self._state[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)


# --------------------------------------------------------------------------- multi-dicts


def _pairs_of(value: Any) -> list[tuple[Any, Any]]:
    """Every (key, value) pair of a multi-dict, a mapping or an iterable of pairs, in order."""
    if not value:
        return []
    if hasattr(value, "multi_items"):
        return list(value.multi_items())
    if hasattr(value, "items"):
        return list(value.items())
    return list(value)


@counts_as("starlette.datastructures", "ImmutableMultiDict")
class ImmutableMultiDict(Mapping[KeyT, ValueT], metaclass=ClaimsFrameworkInstances):
    """A read-only mapping that remembers every value given for a key.

    ``d[key]`` and ``items()`` give the last value for each key; ``getlist(key)`` and
    ``multi_items()`` give all of them, in the order they came.
    """

    _dict: dict[KeyT, ValueT]
    _list: list[tuple[KeyT, ValueT]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        assert len(args) < 2, "Too many arguments."
        pairs = _pairs_of(args[0] if args else [])
        if kwargs:
            pairs += list(kwargs.items())
        self._list = pairs
        self._dict = dict(pairs)

    def getlist(self, key: Any) -> list[ValueT]:
        return [value for item_key, value in self._list if item_key == key]

    def keys(self):  # type: ignore[override]
        return self._dict.keys()

    def values(self):  # type: ignore[override]
        return self._dict.values()

    def items(self):  # type: ignore[override]
        return self._dict.items()

    def multi_items(self) -> list[tuple[KeyT, ValueT]]:
        return list(self._list)

    def __getitem__(self, key: KeyT) -> ValueT:
        return self._dict[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._dict

    def __iter__(self) -> Iterator[KeyT]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def __eq__(self, other: Any) -> bool:
        # Order between different keys does not matter; order among one key's values does.
        # Of one kind as Starlette decides it: the other is an instance of this one's class (a
        # framework's multi-dict counts as its fastserve namesake). Where the other is the
        # framework's, its class decides, as its own __eq__ does when asked first, so either
        # order answers alike (a bare ImmutableMultiDict of Starlette's takes any of ours).
        framework_side = not isinstance(type(other), ClaimsFrameworkInstances)
        if not (isinstance(self, type(other)) if framework_side else isinstance(other, type(self))):
            return False
        return sorted(self._list, key=_first) == sorted(other._list, key=_first)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.multi_items()!r})"


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


@counts_as("starlette.datastructures", "MultiDict")
class MultiDict(ImmutableMultiDict[Any, Any]):
    """A mutable :class:`ImmutableMultiDict`."""

    def __setitem__(self, key: Any, value: Any) -> None:
        self.setlist(key, [value])

    def __delitem__(self, key: Any) -> None:
        del self._dict[key]
        self._list = [(k, v) for k, v in self._list if k != key]

    def pop(self, key: Any, default: Any = None) -> Any:
        self._list = [(k, v) for k, v in self._list if k != key]
        return self._dict.pop(key, default)

    def popitem(self) -> tuple[Any, Any]:
        key, value = self._dict.popitem()
        self._list = [(k, v) for k, v in self._list if k != key]
        return key, value

    def poplist(self, key: Any) -> list[Any]:
        values = self.getlist(key)
        self.pop(key)
        return values

    def clear(self) -> None:
        self._dict.clear()
        self._list.clear()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self._dict:
            self._dict[key] = default
            self._list.append((key, default))
        return self._dict[key]

    def setlist(self, key: Any, values: list[Any]) -> None:
        """Replace every value of ``key`` with ``values`` (moved to the end); empty removes the key."""
        if not values:
            self.pop(key, None)
            return
        self._list = [(k, v) for k, v in self._list if k != key]
        self._list.extend((key, value) for value in values)
        self._dict[key] = values[-1]

    def append(self, key: Any, value: Any) -> None:
        self._list.append((key, value))
        self._dict[key] = value

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Replace the values of every key the arguments name (keeping all of theirs)."""
        incoming = MultiDict(*args, **kwargs)
        self._list = [(k, v) for k, v in self._list if k not in incoming._dict]
        self._list.extend(incoming._list)
        self._dict.update(incoming._dict)


@counts_as("starlette.datastructures", "QueryParams")
class QueryParams(ImmutableMultiDict[str, str]):
    """The parsed query string: an immutable multi-dict of ``str`` to ``str``.

    Accepts a query string (``str`` or latin-1 ``bytes``), a mapping, or a list of pairs.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        assert len(args) < 2, "Too many arguments."
        value = args[0] if args else []
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str):
            value = parse_qsl(value, keep_blank_values=True)
        super().__init__(value, **kwargs)
        self._list = [(str(k), str(v)) for k, v in self._list]
        self._dict = {str(k): str(v) for k, v in self._dict.items()}

    def __str__(self) -> str:
        return urlencode(self._list)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


# --------------------------------------------------------------------------- headers


def _header_key(key: str) -> bytes:
    return key.lower().encode("latin-1")


@counts_as("starlette.datastructures", "Headers")
class Headers(Mapping[str, str], metaclass=ClaimsFrameworkInstances):
    """Read-only, case-insensitive HTTP headers that keep repeated fields.

    Stored as the ASGI list of lower-cased ``(name, value)`` byte pairs. Build from a
    ``headers=`` mapping, a ``raw=`` list (used as is, not copied) or an ASGI ``scope=``.
    """

    def __init__(
        self,
        headers: Mapping[str, str] | None = None,
        raw: list[tuple[bytes, bytes]] | None = None,
        scope: MutableMapping[str, Any] | None = None,
    ) -> None:
        self._list: list[tuple[bytes, bytes]] = []
        if headers is not None:
            assert raw is None, 'Cannot set both "headers" and "raw".'
            assert scope is None, 'Cannot set both "headers" and "scope".'
            self._list = [(_header_key(key), value.encode("latin-1")) for key, value in headers.items()]
        elif raw is not None:
            assert scope is None, 'Cannot set both "raw" and "scope".'
            self._list = raw
        elif scope is not None:
            # Share one list with the scope, so later readers see the same headers.
            self._list = scope["headers"] = list(scope["headers"])

    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        return list(self._list)

    def keys(self) -> list[str]:  # type: ignore[override]
        return [key.decode("latin-1") for key, _ in self._list]

    def values(self) -> list[str]:  # type: ignore[override]
        return [value.decode("latin-1") for _, value in self._list]

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return [(key.decode("latin-1"), value.decode("latin-1")) for key, value in self._list]

    def getlist(self, key: str) -> list[str]:
        """Every value of header ``key``, in order (``[]`` when absent)."""
        wanted = _header_key(key)
        return [value.decode("latin-1") for name, value in self._list if name == wanted]

    def mutablecopy(self) -> MutableHeaders:
        return MutableHeaders(raw=list(self._list))

    def __getitem__(self, key: str) -> str:
        wanted = _header_key(key)
        for name, value in self._list:
            if name == wanted:
                return value.decode("latin-1")
        raise KeyError(key)

    def __contains__(self, key: Any) -> bool:
        if not isinstance(key, str):
            return False
        wanted = _header_key(key)
        return any(name == wanted for name, _ in self._list)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._list)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Headers):
            return False
        return sorted(self._list) == sorted(other._list)

    def __repr__(self) -> str:
        as_dict = dict(self.items())
        if len(as_dict) == len(self._list):
            return f"{type(self).__name__}({as_dict!r})"
        return f"{type(self).__name__}(raw={self.raw!r})"


@counts_as("starlette.datastructures", "MutableHeaders")
class MutableHeaders(Headers):
    """Headers that can be changed in place; ``raw`` is the live list, not a copy."""

    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        return self._list

    def __setitem__(self, key: str, value: str) -> None:
        """Set header ``key`` to one ``value``: the first occurrence keeps its place, repeats go."""
        name = _header_key(key)
        encoded = value.encode("latin-1")
        positions = [index for index, (item_name, _) in enumerate(self._list) if item_name == name]
        if not positions:
            self._list.append((name, encoded))
            return
        for index in reversed(positions[1:]):
            del self._list[index]
        self._list[positions[0]] = (name, encoded)

    def __delitem__(self, key: str) -> None:
        """Remove every occurrence of header ``key`` (no error when absent)."""
        name = _header_key(key)
        self._list[:] = [item for item in self._list if item[0] != name]

    def __ior__(self, other: Mapping[str, str]) -> MutableHeaders:
        if not isinstance(other, Mapping):
            raise TypeError(f"Expected a mapping but got {type(other).__name__}")
        self.update(other)
        return self

    def __or__(self, other: Mapping[str, str]) -> MutableHeaders:
        if not isinstance(other, Mapping):
            raise TypeError(f"Expected a mapping but got {type(other).__name__}")
        combined = self.mutablecopy()
        combined.update(other)
        return combined

    def setdefault(self, key: str, value: str) -> str:
        """Add ``key: value`` unless the header is present; return the value now in force."""
        name = _header_key(key)
        for item_name, item_value in self._list:
            if item_name == name:
                return item_value.decode("latin-1")
        self._list.append((name, value.encode("latin-1")))
        return value

    def update(self, other: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        pairs = other.items() if isinstance(other, Mapping) else other
        for key, value in pairs:
            self[key] = value

    def append(self, key: str, value: str) -> None:
        """Add another ``key: value`` field, keeping the ones already there."""
        self._list.append((_header_key(key), value.encode("latin-1")))

    def add_vary_header(self, vary: str) -> None:
        """Add ``vary`` to the Vary header (merging existing Vary fields into one)."""
        self["vary"] = ", ".join([*self.getlist("vary"), vary])


# --------------------------------------------------------------------------- uploaded files and forms


_FrameworkUploadFile = framework_base("starlette.datastructures", "UploadFile", None)


class UploadFile(_FrameworkUploadFile or object, metaclass=ClaimsFrameworkInstances):  # type: ignore[misc]
    """A file that arrived in a multipart form (or any binary file you wrap).

    ``file`` is the underlying binary file; the async methods wrap it. Uploads are spooled to a
    ``SpooledTemporaryFile``: while it is still in memory its methods cannot block, so they are
    called directly; once it has rolled over to disk (or for any other file object, which may be
    on disk) each call runs in a worker thread so a slow disk never stalls the event loop.

    As an endpoint parameter of a FastAPI app (``file: UploadFile``,
    ``files: list[UploadFile] = File(...)``) it is recognised as an upload like
    ``fastapi.UploadFile``: it derives from Starlette's class where Starlette is installed (every
    method is fastserve's own) and tells pydantic how to validate and document it; the endpoint
    receives the upload the framework parsed. An upload Starlette's form parser made is an
    instance of this class too (``isinstance(value, UploadFile)`` over ``await request.form()``
    answers as with Starlette's import).
    """

    _framework_class = _FrameworkUploadFile

    def __init__(
        self,
        file: BinaryIO,
        *,
        size: int | None = None,
        filename: str | None = None,
        headers: Headers | None = None,
    ) -> None:
        self.file = file
        self.size = size
        self.filename = filename
        self.headers = headers or Headers()
        # The spool threshold (0: never rolls), read once rather than on every write.
        self._max_mem_size: int = getattr(file, "_max_size", 0)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type", None)

    @property
    def _in_memory(self) -> bool:
        # Only a SpooledTemporaryFile has ``_rolled``; anything else may be on disk.
        return not getattr(self.file, "_rolled", True)

    def _write_may_block(self, length: int) -> bool:
        """True when writing ``length`` more bytes touches the disk (already rolled, or rolls now)."""
        if not self._in_memory:
            return True
        return bool(self._max_mem_size) and self.file.tell() + length > self._max_mem_size

    async def write(self, data: bytes) -> None:
        if self.size is not None:
            self.size += len(data)
        if self._write_may_block(len(data)):
            await run_in_threadpool(self.file.write, data)
        else:
            self.file.write(data)

    async def read(self, size: int = -1) -> bytes:
        if self._in_memory:
            return self.file.read(size)
        return await run_in_threadpool(self.file.read, size)

    async def seek(self, offset: int) -> None:
        if self._in_memory:
            self.file.seek(offset)
        else:
            await run_in_threadpool(self.file.seek, offset)

    async def close(self) -> None:
        if self._in_memory:
            self.file.close()
        else:
            await run_in_threadpool(self.file.close)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(filename={self.filename!r}, size={self.size!r}, headers={self.headers!r})"

    # pydantic's hooks, used when FastAPI builds a parameter or an OpenAPI schema from this class.

    @classmethod
    def _validate(cls, value: Any, _info: Any = None) -> Any:
        if not isinstance(value, _UPLOAD_CLASSES):
            raise ValueError(f"Expected UploadFile, received: {type(value)}")
        return value

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.with_info_plain_validator_function(cls._validate)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        # The schema FastAPI documents its own UploadFile with, so the OpenAPI documents match.
        fastapi_upload = framework_base("fastapi.datastructures", "UploadFile", None)
        if fastapi_upload is not None and hasattr(fastapi_upload, "__get_pydantic_json_schema__"):
            return fastapi_upload.__get_pydantic_json_schema__(schema, handler)  # type: ignore[no-any-return]
        return {"type": "string", "contentMediaType": "application/octet-stream"}


# What a parameter annotated ``UploadFile`` accepts: fastserve's uploads and, through the base,
# the ones Starlette's form parser made for a FastAPI app.
_UPLOAD_CLASSES = tuple({UploadFile, *UploadFile.__bases__} - {object})


@counts_as("starlette.datastructures", "FormData")
class FormData(ImmutableMultiDict[str, Union[UploadFile, str]]):
    """A parsed form: an immutable multi-dict of field name to ``str`` or :class:`UploadFile`."""

    def __init__(
        self,
        *args: FormData | Mapping[str, str | UploadFile] | list[tuple[str, str | UploadFile]],
        **kwargs: str | UploadFile,
    ) -> None:
        super().__init__(*args, **kwargs)

    async def close(self) -> None:
        """Close every uploaded file in the form."""
        for _, value in self.multi_items():
            if isinstance(value, UploadFile):
                await value.close()


__all__ += ["FormData", "UploadFile"]
