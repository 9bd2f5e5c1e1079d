"""Everything a server run is told: where to listen, what to serve, and every limit."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

if TYPE_CHECKING:
    import ssl

MIN_TICK = 0.05  # seconds: the shortest clock tick short timeouts can ask for

# The values each numeric setting may take, inclusive: (field, least, most or None). Checked by
# ``Config.problems`` for the CLI and ``fastserve.run`` alike; None (unset) is always allowed.
RANGES: Tuple[Tuple[str, float, Optional[float]], ...] = (
    ("port", 0, 65535), ("fd", 0, None), ("workers", 1, None), ("backlog", 1, None),
    ("graceful_timeout", 0, None), ("shutdown_delay", 0, None), ("limit_max_requests", 1, None),
    ("timeout_worker_healthcheck", 0, None),
    ("limit_max_requests_jitter", 0, None),
    ("max_age", 0, None), ("listing_max_entries", 1, None),
    ("max_header_bytes", 1, None), ("max_header_count", 1, None), ("max_url_length", 1, None),
    ("max_body_size", 0, None), ("max_pipeline", 1, None), ("max_response_buffer", 0, None),
    ("max_connections", 1, None), ("max_ranges", 0, None),
    ("header_timeout", 0, None), ("body_timeout", 0, None), ("keepalive_timeout", 0, None),
    ("send_timeout", 0, None),
    ("ws_max_size", 1, None), ("ws_max_queue", 1, None), ("ws_ping_interval", 0, None), ("ws_ping_timeout", 0, None),
    ("cache_valid", 0, None), ("cache_entries", 1, None), ("cache_bytes", 0, None), ("cache_max_file", 0, None),
    ("compress_bytes", 0, None), ("compress_max_file", 0, None), ("tick_interval", MIN_TICK, None),
)

# The values each setting that picks a way of working may take: the command line's choices, and
# what ``Config.problems`` holds ``fastserve.run``'s keywords to (``log_level`` in any case).
CHOICES: Dict[str, Tuple[Any, ...]] = {
    "access_log_format": ("common", "combined", "json"),
    "log_level": ("critical", "error", "warning", "info", "debug", "trace"),
    "lifespan": ("auto", "on", "off"),
    "ssl_cert_reqs": (0, 1, 2),
    # uvicorn's ssl.PROTOCOL_* numbers fastserve serves (fastserve.server.tls.PROTOCOL_VERSIONS):
    # TLS 1.2 and newer (2, 17) or TLS 1.2 alone (5); TLS 1.0 and 1.1 (3, 4) are refused (RFC 8996),
    # and 16 (PROTOCOL_TLS_CLIENT) cannot serve.
    "ssl_version": (2, 5, 17),
    "etag": ("on", "off"),
    "if_modified_since": ("exact", "before"),
    "dotfiles": ("allow", "deny"),
    "compress": ("on", "off"),
}


def switch(name: str, value: Any, words: Optional[Dict[str, bool]] = None) -> bool:
    """``value`` given for ``name``, a setting that is on or off, as a bool: ``True`` or
    ``False`` (``1`` and ``0`` too), or one of ``words``, the command line's spelling of it
    (``{"allow": True, "deny": False}`` for ``dotfiles``). Raises ``ValueError`` for another
    string and ``TypeError`` for any other value: a string such as ``"deny"`` or ``"false"`` is
    true to Python, so taken as it is it would turn the setting on."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and words:
        if value in words:
            return words[value]
        raise ValueError(f"{name} must be True, False, {' or '.join(map(repr, words))}, not {value!r}")
    raise TypeError(f"{name} must be True or False, not {value!r}")


# uvicorn's names for settings fastserve has under its own: ``--timeout-keep-alive`` on the
# command line, ``timeout_keep_alive=`` for ``fastserve.run``, as ``uvicorn.run`` takes them.
UVICORN_NAMES = {
    "timeout_keep_alive": "keepalive_timeout",
    "timeout_graceful_shutdown": "graceful_timeout",
    "limit_concurrency": "max_connections",
}


@dataclass
class Config:
    """Settings for one ``serve()`` run; the CLI flags map one-to-one onto these fields
    (all but ``ssl_context_factory``, a callable that only ``fastserve.run`` takes).

    ``target`` is what to serve: a directory (served by ``StaticFiles`` on the fast path),
    a ``"module:attribute"`` string naming an ASGI app, or an ASGI app object.
    """

    target: Union[str, Callable[..., Any]] = "."  # an ASGI 3 (or 2, wrapped at load) app
    host: str = "127.0.0.1"
    port: int = 8000
    uds: Optional[str] = None  # listen on this unix socket path instead of host:port
    fd: Optional[int] = None  # listen on this inherited descriptor (systemd socket activation)
    workers: int = 1
    backlog: int = 2048
    graceful_timeout: float = 10.0
    shutdown_delay: float = 0.0  # after SIGTERM: seconds of health 503 with the listener still open
    limit_max_requests: Optional[int] = None  # a worker retires (and is replaced) after this many
    limit_max_requests_jitter: int = 0  # each worker's limit is raised by a random 0..N: they retire apart
    timeout_worker_healthcheck: float = 30.0  # s a worker's event loop may stay blocked before it is killed; 0: never
    pid_file: Optional[str] = None
    access_log: bool = False
    access_log_format: str = "common"  # common, combined or json
    admin_prefix: str = "/_fastserve"  # health (and metrics) below it; "" turns them off
    metrics: bool = False  # Prometheus text at {admin_prefix}/metrics
    log_level: Optional[str] = None  # None: "info", unless a log_config file says otherwise
    log_config: Union[str, Dict[str, Any], None] = None  # logging.config file (.json, .yaml/.yml, INI) or dict
    root_path: str = ""

    # loading the app
    factory: bool = False  # target names a callable returning the app
    app_dir: str = ""  # put on sys.path before importing the target ("": the working directory)
    env_file: Optional[str] = None  # KEY=VALUE lines loaded into os.environ before the app
    lifespan: str = "auto"  # "auto": run it if the app speaks it; "on": it must; "off": never
    reset_contextvars: bool = False  # each request's (and WebSocket's) task starts from an empty context
    pathsend: bool = False  # offer apps http.response.pathsend and zerocopysend (uvicorn offers neither)

    # TLS (no certificate: plain HTTP)
    ssl_certfile: Optional[str] = None
    ssl_keyfile: Optional[str] = None  # None: the key is in the certificate file
    ssl_keyfile_password: Optional[str] = None
    ssl_ca_certs: Optional[str] = None  # CAs for client certificates
    ssl_cert_reqs: int = 0  # ssl.CERT_NONE (0), CERT_OPTIONAL (1) or CERT_REQUIRED (2) for clients
    ssl_ciphers: Optional[str] = None  # OpenSSL cipher list; None: OpenSSL's defaults
    ssl_version: int = 17  # uvicorn's --ssl-version: ssl.PROTOCOL_TLS_SERVER (17) or PROTOCOL_TLS (2): TLS 1.2
    # and newer; PROTOCOL_TLSv1_2 (5): TLS 1.2 alone (fastserve.server.tls.PROTOCOL_VERSIONS)
    # run() only, as uvicorn.run takes it: factory(config, default) -> ssl.SSLContext (server.tls.make_context)
    ssl_context_factory: Optional[Callable[["Config", Callable[[], ssl.SSLContext]], ssl.SSLContext]] = None

    # response headers added by the server
    server_header: bool = True
    date_header: bool = True
    headers: List[Tuple[str, str]] = field(default_factory=list)  # (name, value), every response
    proxy_headers: bool = True
    forwarded_allow_ips: str = "127.0.0.1,::1"  # the local proxies, as uvicorn's default

    # static serving (when target is a directory)
    html: bool = True
    follow_symlink: bool = False
    precompressed: bool = True
    max_age: int = 60  # Cache-Control max-age of files neither HTML nor fingerprinted (fastserve.cachepolicy)
    cache_rules: List[Tuple[str, str]] = field(default_factory=list)  # (glob, Cache-Control value), first match wins
    etag: str = "on"  # "off": files are sent without an ETag
    if_modified_since: str = "exact"  # "exact": 304 only for the file's Last-Modified; "before": at or before it
    spa: bool = False  # unknown extension-less paths answered with /index.html (200)
    error_pages: List[Tuple[int, str]] = field(default_factory=list)  # (403 or 404, page below the root)
    dotfiles: str = "deny"  # "deny": a path segment starting with "." is 404 (not /.well-known/); "allow"
    compress: str = "on"  # "on": compressible files get br/zstd/gzip on the fly (fastserve.compression); "off"
    listing: bool = False  # a directory without index answers a listing (HTML, or JSON on request)
    templates: Optional[str] = None  # a directory whose listing.html replaces the packaged one
    listing_max_entries: int = 10_000  # entries read per listed directory; more: the listing says truncated

    # request limits
    max_header_bytes: int = 16 * 1024
    max_header_count: int = 100
    max_url_length: int = 8 * 1024
    max_body_size: int = 100 * 1024 * 1024  # streamed to the app, never held whole
    max_pipeline: int = 64
    max_response_buffer: int = 4 * 1024 * 1024  # response bytes held for a client that is not reading
    max_connections: int = 10_000
    max_ranges: int = 16
    header_timeout: float = 10.0
    body_timeout: float = 10.0  # longest wait between two pieces of a request body
    keepalive_timeout: float = 5.0
    send_timeout: float = 60.0

    # WebSockets (ASGI apps)
    ws_max_size: int = 16 * 1024 * 1024
    ws_max_queue: int = 8  # messages waiting for the app before the connection stops reading
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    ws_per_message_deflate: bool = True

    # the open-file cache
    cache_valid: float = 1.0
    cache_entries: int = 10_000
    cache_bytes: int = 64 * 1024 * 1024
    cache_max_file: int = 16 * 1024  # larger files go out by sendfile (bench/README.md: "Mid-size files")
    compress_bytes: int = 32 * 1024 * 1024  # encodings kept (fastserve.compression.EncodedCache)
    compress_max_file: int = 8 * 1024 * 1024  # largest file compressed on the fly

    # how often timeouts are checked (the coarse clock's tick); see ``clock_tick``
    tick_interval: float = 0.5

    ready_callback: Optional[Callable[[], None]] = None

    def problems(self) -> List[str]:
        """What no server can run with, one sentence per setting, named as its flag: a number
        out of its range (``RANGES``; a NaN is never in range) or of the wrong kind (a fraction
        of a count, a string), a value not among its ``CHOICES``. Empty when all is well."""
        found = []
        for name, least, most in RANGES:
            value = getattr(self, name)
            if value is None:
                continue
            flag = "--" + name.replace("_", "-")
            whole = name in WHOLE_NUMBERS
            if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
                found.append(f"{flag} must be {'a whole number' if whole else 'a number'}, not {value!r}")
            elif not least <= value <= (most if most is not None else float("inf")):
                span = f"between {least:g} and {most:g}" if most is not None else f"at least {least:g}"
                found.append(f"{flag} must be {span}, not {value!r}")
        if self.admin_prefix and not self.admin_prefix.startswith("/"):  # its paths would match no request
            found.append(f"--admin-prefix must begin with '/' ('' turns health and metrics off), "
                         f"not {self.admin_prefix!r}")
        for name, _ in self.headers:
            if name.strip().lower() in FRAMING_FIELDS:
                found.append(f"--header {name.strip()}: the server writes that field itself for each response "
                             f"(it frames the message or the connection); a second one would contradict it")
            elif name.strip().lower() == "date":  # RFC 9110 section 6.6.1: one Date, the origination time
                found.append(f"--header {name.strip()}: the server writes the Date of each response itself "
                             f"(--no-date-header leaves it out)")
        for name in SWITCHES:
            try:
                switch("--" + name.replace("_", "-"), getattr(self, name))
            except TypeError as exc:
                found.append(str(exc))
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if name == "log_level" and (value is None or isinstance(value, str) and value.lower() in choices):
                continue
            if value not in choices or isinstance(value, bool):
                found.append(f"--{name.replace('_', '-')} must be one of {', '.join(map(str, choices))}, not {value!r}")
        found.extend(self._tls_problems())
        if isinstance(self.forwarded_allow_ips, str):
            for item in self.forwarded_allow_ips.split(","):
                if "/" in item:  # meant as a network: one that is none would trust no peer, silently
                    try:
                        ipaddress.ip_network(item.strip(), strict=False)
                    except ValueError:
                        found.append(f"--forwarded-allow-ips: {item.strip()!r} is no network (ADDRESS/PREFIX)")
        return found

    def _tls_problems(self) -> List[str]:
        """TLS settings that no file could make work, refused before anything starts (they were
        found when the context was built, or never): a key without a certificate, a cipher
        list OpenSSL selects nothing from, and client certificates asked for with no CA to
        verify them against (every client that sent one failed its handshake). A file that
        cannot be read is the start's failure (``fastserve.server.tls``), not a usage error."""
        import ssl

        found = []
        if self.ssl_certfile is None and self.ssl_context_factory is None:
            for flag, value in (("--ssl-keyfile", self.ssl_keyfile), ("--ssl-keyfile-password", self.ssl_keyfile_password)):
                if value is not None:
                    found.append(f"{flag} needs --ssl-certfile")
        if isinstance(self.ssl_ciphers, str) and self.ssl_ciphers:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(self.ssl_ciphers)
            except ssl.SSLError:
                found.append(f"--ssl-ciphers {self.ssl_ciphers!r}: OpenSSL selects no cipher from it "
                             f"(`openssl ciphers -v LIST` shows what a list selects)")
        if (self.ssl_certfile is not None and self.ssl_context_factory is None and self.ssl_cert_reqs in (1, 2)
                and not self.ssl_ca_certs):
            found.append(f"--ssl-cert-reqs {self.ssl_cert_reqs} needs --ssl-ca-certs: without the CAs to verify "
                         f"them against, every client certificate fails its handshake")
        return found

    def clock_tick(self) -> float:
        """Seconds between two timeout checks (and access-log flushes): ``tick_interval``, or a
        quarter of the shortest positive header, body, keep-alive or send timeout when that is
        shorter (never below ``MIN_TICK``). The clock is coarse (a connection's times are
        stamped and checked once a tick), so a timeout of T seconds closes a connection within
        one tick of T: a 0.4 s ``--send-timeout`` within 0.3-0.5 s, not 0-0.9 s."""
        timeouts = [t for t in (self.header_timeout, self.body_timeout, self.keepalive_timeout,
                                self.send_timeout) if t > 0]
        return max(MIN_TICK, min([self.tick_interval, *(t / 4 for t in timeouts)]))


# Fields that frame a message or its connection (RFC 9112 sections 6 and 9.6, RFC 9110 section
# 7.6.1): the server writes them for each response, so an operator's --header copy would put a
# second, contradicting length or framing on the wire (a desync for the client or a cache).
FRAMING_FIELDS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
                            "trailer", "proxy-connection"})

# The numeric settings that count (bytes, connections, ...): whole numbers only.
WHOLE_NUMBERS = frozenset(each.name for each in fields(Config) if each.type in ("int", "Optional[int]"))

# The settings that are on or off (``--access-log``, ``--follow-symlink``, ...): True or False.
SWITCHES = tuple(each.name for each in fields(Config) if each.type == "bool")
