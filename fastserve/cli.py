"""``fastserve [DIR | module:app] [flags]`` (also ``python -m fastserve``).

Every flag can also come from the environment: ``--max-body-size`` from
``FASTSERVE_MAX_BODY_SIZE``, ``--no-html`` from ``FASTSERVE_HTML=false`` (the name follows the
setting, not the spelling of the flag). A flag on the command line wins over its variable.
``WEB_CONCURRENCY`` is the default for ``--workers`` and ``FORWARDED_ALLOW_IPS`` for
``--forwarded-allow-ips`` when neither fastserve's nor uvicorn's variable is set (as uvicorn reads them).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import platform
import sys
from typing import Any, Callable, List, Mapping, NoReturn, Optional, Tuple

import fastserve
from fastserve.config import CHOICES, UVICORN_NAMES, Config

DEFAULTS = Config()
ENV_PREFIX = "FASTSERVE_"
TRUE_WORDS = ("1", "true", "yes", "on")  # booleans in variables, and for uvicorn's BOOL flags
FALSE_WORDS = ("0", "false", "no", "off")
# Repeatable flags take several values from one variable, split on this separator.
ENV_SEPARATORS = {"headers": "\n", "reload_dir": os.pathsep, "reload_include": os.pathsep,
                  "reload_exclude": os.pathsep, "cache_rules": "\n"}  # others: ","

# uvicorn's flags for the same settings, accepted as they are typed in uvicorn's command lines.
UVICORN_SPELLINGS = {ours: ("--" + theirs.replace("_", "-"),) for theirs, ours in UVICORN_NAMES.items()}
# uvicorn reads each of its flags from ``UVICORN_`` and its parameter's name in capitals
# (``UVICORN_PORT``, ``UVICORN_TIMEOUT_KEEP_ALIVE``, ``UVICORN_APP``); fastserve reads them too,
# after its own ``FASTSERVE_`` ones. Where uvicorn's name differs from fastserve's setting:
UVICORN_ENV_PREFIX = "UVICORN_"
UVICORN_ENV_NAMES = {
    "app": "target", "reload_dirs": "reload_dir", "reload_includes": "reload_include",
    "reload_excludes": "reload_exclude", **UVICORN_NAMES,
}

# uvicorn's settings fastserve takes and has no use for (its help for each says why).
ACCEPTED_WITHOUT_EFFECT = ("use_colors", "h11_max_incomplete_event_size")

UVICORN_CHOICES = {
    "--loop": ["auto", "uvloop"],
    "--http": ["auto", "httptools"],
    "--ws": ["auto", "websockets", "websockets-sansio"],
    "--interface": ["auto", "asgi3", "asgi2"],
}

EXAMPLES = """\
examples:
  fastserve ./public                            serve a directory on http://127.0.0.1:8000
  fastserve ./public --host 0.0.0.0 --workers 4 --access-log
  fastserve myapp:app --port 8080               run the ASGI app 'app' of module myapp

"""


class _Parser(argparse.ArgumentParser):
    """argparse with fastserve's manners: examples first, a one-line error with a hint."""

    def format_help(self) -> str:
        return EXAMPLES + super().format_help()

    def error(self, message: str) -> NoReturn:
        hint = _did_you_mean(self, message)
        self.exit(2, f"fastserve: {message}\n{hint}Run 'fastserve --help' to see every flag.\n")


class _Refused(argparse.Action):
    """A uvicorn flag for something fastserve does not do: a usage error that says why."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None) -> None:
        parser.error(f"{option}: {self.help}")


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    if not message.startswith("unrecognized arguments"):
        return ""
    known = [option for action in parser._actions for option in action.option_strings]
    for word in message.split(":", 1)[1].split():
        close = difflib.get_close_matches(word.split("=")[0], known, n=1)
        if close:
            return f"Did you mean {close[0]}?\n"
    return ""


def _header(text: str) -> Tuple[str, str]:
    """``"Name: value"`` -> ``("Name", "value")`` for ``--header``."""
    from fastserve.server.response_headers import encode_field

    name, sep, value = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME:VALUE")
    try:
        encode_field(name, value)
    except (ValueError, UnicodeEncodeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name.strip(), value.strip()


def _boolean(text: str) -> bool:
    """``true``/``false`` (and ``1/yes/on``, ``0/no/off``, any case), as uvicorn's flags take them."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false ({', '.join(TRUE_WORDS + FALSE_WORDS)})")


def _cache_rule(text: str) -> Tuple[str, str]:
    """``"GLOB=VALUE"`` -> ``("GLOB", "VALUE")`` for ``--cache-rule``."""
    from fastserve.cachepolicy import CachePolicy

    glob, sep, value = text.partition("=")
    if not sep or not glob.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not GLOB=VALUE")
    try:
        CachePolicy(rules=[(glob.strip(), value)])
    except (ValueError, UnicodeEncodeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return glob.strip(), value.strip()


def _error_page(text: str) -> Tuple[int, str]:
    """``"CODE=PATH"`` -> ``(CODE, "PATH")`` for ``--error-page``; CODE is 404 or 403."""
    code, sep, page = text.partition("=")
    if not sep or code.strip() not in ("403", "404") or not page.strip().strip("/"):
        raise argparse.ArgumentTypeError(f"{text!r} is not 404=PATH or 403=PATH")
    return int(code), page.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fastserve",
        usage="%(prog)s [DIR | module:app] [flags]",
        description="Serve a directory (static files, fast path) or run an ASGI app ('module:app').",
        epilog="Every flag can also be set in the environment: FASTSERVE_ and the setting's name in capitals "
               "(FASTSERVE_PORT=8080, FASTSERVE_HTML=false for --no-html), or uvicorn's UVICORN_ variables "
               "(UVICORN_PORT, UVICORN_APP); a flag wins over its variable.",
        allow_abbrev=False,
    )
    parser.add_argument("target", nargs="?", default=".", help="directory to serve, or module:app (default: .)")
    parser.add_argument("--version", action="version", version=_version_line(),
                        help="print fastserve's version and exit")
    listen = parser.add_argument_group("listening")
    listen.add_argument("--host", default=DEFAULTS.host, help="address to bind (default: %(default)s)")
    listen.add_argument("--port", type=int, default=DEFAULTS.port,
                        help="port to bind; 0 picks a free one (default: %(default)s)")
    listen.add_argument("--uds", default=None, metavar="PATH", help="listen on this unix domain socket instead")
    listen.add_argument("--fd", type=int, default=None, metavar="N",
                        help="listen on this inherited descriptor (systemd socket activation)")
    listen.add_argument("--backlog", type=int, default=DEFAULTS.backlog,
                        help="connections the kernel queues before they are accepted (default: %(default)s)")
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--ssl-certfile", default=None, metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    tls.add_argument("--ssl-keyfile", default=None, metavar="FILE",
                     help="its private key (default: in the certificate file)")
    tls.add_argument("--ssl-keyfile-password", default=None, metavar="PASSWORD", help="the key's password")
    tls.add_argument("--ssl-ca-certs", default=None, metavar="FILE", help="CA certificates for client certificates")
    tls.add_argument("--ssl-cert-reqs", type=int, default=DEFAULTS.ssl_cert_reqs, choices=CHOICES["ssl_cert_reqs"],
                     help="client certificates: 0 none, 1 optional, 2 required (default: %(default)s)")
    tls.add_argument("--ssl-ciphers", default=None, metavar="LIST", help="OpenSSL cipher list (default: OpenSSL's)")
    tls.add_argument("--ssl-version", type=int, default=DEFAULTS.ssl_version, metavar="N",
                     choices=CHOICES["ssl_version"],
                     help="uvicorn's ssl.PROTOCOL_* number: 17 or 2, TLS 1.2 and newer; 5, TLS 1.2 alone; "
                          "TLS 1.0 and 1.1 are refused (default: %(default)s)")
    process = parser.add_argument_group("processes")
    process.add_argument("--workers", type=int, default=DEFAULTS.workers,
                         help="worker processes; SIGTTIN to the server adds one, SIGTTOU removes one "
                              "(default: $WEB_CONCURRENCY or 1)")
    process.add_argument("--graceful-timeout", *UVICORN_SPELLINGS["graceful_timeout"], type=float,
                         default=DEFAULTS.graceful_timeout,
                         help="seconds to finish in-flight responses on SIGTERM/SIGINT (default: %(default)s)")
    process.add_argument("--shutdown-delay", type=float, default=DEFAULTS.shutdown_delay, metavar="S",
                         help="after SIGTERM, answer health with 503 and keep accepting for S seconds "
                              "before closing the listener (default: %(default)s)")
    process.add_argument("--limit-max-requests", type=int, default=None, metavar="N",
                         help="a worker that has answered N requests retires and is replaced")
    process.add_argument("--limit-max-requests-jitter", type=int, default=DEFAULTS.limit_max_requests_jitter,
                         metavar="N", help="each worker retires after a random 0..N more requests, so workers "
                                           "started together are not replaced together (default: %(default)s)")
    process.add_argument("--timeout-worker-healthcheck", type=float, default=DEFAULTS.timeout_worker_healthcheck,
                         metavar="S",
                         help="with --workers: a worker whose event loop has not run for S seconds (an app "
                              "blocking it, a stopped process) is killed and replaced; 0: never "
                              "(default: %(default)s)")
    process.add_argument("--pid-file", default=None, metavar="PATH",
                         help="write the server's process id here (removed on exit)")
    process.add_argument("--reload", action="store_true",
                         help="development: restart when a watched file (*.py, --reload-include) below --reload-dir "
                              "changes (pip install 'fastserve[reload]')")
    process.add_argument("--reload-dir", action="append", default=None,
                         help="directory to watch with --reload (repeatable; default: the current directory)")
    process.add_argument("--reload-include", action="append", default=None, metavar="GLOB",
                         help="with --reload, also files whose name matches GLOB (repeatable; *.py always, "
                              "unless excluded)")
    process.add_argument("--reload-exclude", action="append", default=None, metavar="GLOB",
                         help="with --reload, not files (or directories) whose name matches GLOB (repeatable; "
                              "always .*, *.py[cod], .sw.*, ~*, unless included)")
    process.add_argument("--reload-delay", type=float, default=0.25, metavar="S",
                         help="with --reload, the longest wait before the reloader looks at its server again; "
                              "less than 0.05 counts as 0.05 (default: %(default)s)")
    logs = parser.add_argument_group("logging")
    logs.add_argument("--log-level", default=None, choices=CHOICES["log_level"],
                      help="level of fastserve's loggers (default: info)")
    logs.add_argument("--log-config", default=None, metavar="FILE",
                      help="logging configuration: dictConfig .json/.yaml, or an INI file")
    logs.add_argument("--use-colors", dest="use_colors", action="store_true",
                      help="uvicorn's flag, accepted: fastserve's log lines have no colors")
    logs.add_argument("--no-use-colors", dest="use_colors", action="store_false", help="the same")
    logs.add_argument("--access-log", action="store_true", help="log every request (off by default)")
    logs.add_argument("--no-access-log", dest="access_log", action="store_false", help="do not (the default)")
    logs.add_argument("--access-log-format", default=DEFAULTS.access_log_format, choices=CHOICES["access_log_format"],
                      help="access log lines: NCSA common or combined, or one JSON object (default: %(default)s)")
    admin = parser.add_argument_group("health and metrics")
    admin.add_argument("--admin-prefix", default=DEFAULTS.admin_prefix, metavar="PATH",
                       help="health at PATH/health, metrics at PATH/metrics; '' turns them off (default: %(default)s)")
    admin.add_argument("--metrics", action="store_true",
                       help="Prometheus metrics at PATH/metrics, summed over all workers")
    app = parser.add_argument_group("apps")
    app.add_argument("--factory", action="store_true",
                     help="module:name is a function that returns the app")
    app.add_argument("--app-dir", default=DEFAULTS.app_dir, metavar="DIR",
                     help="import module:app from this directory (default: the current directory)")
    app.add_argument("--env-file", default=None, metavar="FILE",
                     help="load KEY=VALUE lines into the environment before the app is imported")
    app.add_argument("--lifespan", default=DEFAULTS.lifespan, choices=CHOICES["lifespan"],
                     help="run the app's lifespan: auto (if it speaks it), on (it must), off (default: %(default)s)")
    app.add_argument("--reset-contextvars", action="store_true",
                     help="run each request (and WebSocket) in a fresh contextvars.Context, hiding context "
                          "set outside it")
    app.add_argument("--pathsend", action="store_true",
                     help="offer apps the http.response.pathsend and zerocopysend extensions (FileResponse by "
                          "sendfile); a middleware that rewrites bodies, such as GZipMiddleware, then no longer "
                          "sees the file's bytes (off: as uvicorn)")
    app.add_argument("--root-path", default=DEFAULTS.root_path, help="ASGI root_path for apps mounted below /")
    app.add_argument("--proxy-headers", dest="proxy_headers", action="store_true", default=DEFAULTS.proxy_headers,
                     help="take the client and scheme from X-Forwarded-For/-Proto (default: on)")
    app.add_argument("--no-proxy-headers", dest="proxy_headers", action="store_false")
    app.add_argument("--forwarded-allow-ips",
                     default=DEFAULTS.forwarded_allow_ips,
                     help="comma-separated addresses/networks (or *) whose proxy headers are trusted "
                          "(default: $FORWARDED_ALLOW_IPS or %(default)s)")
    # uvicorn's implementation choices: fastserve is always uvloop, its own HTTP/1.1 reader,
    # websockets' sans-I/O protocol and ASGI 3 (2 wrapped), so those values are accepted as
    # they are typed in uvicorn's command lines, and any other is refused in one line.
    for flag, choices in UVICORN_CHOICES.items():
        app.add_argument(flag, default="auto", choices=choices,
                         help=f"uvicorn's {flag}, accepted for what fastserve does: {', '.join(choices)}")
    app.add_argument("--h11-max-incomplete-event-size", type=int, default=None, metavar="BYTES",
                     help="uvicorn's limit for its h11 parser, accepted: fastserve's is --max-header-bytes")
    app.add_argument("--http2", action=_Refused, nargs=0,
                     help="refused: fastserve speaks HTTP/1.1 (put an HTTP/2 proxy or CDN in front)")
    responses = parser.add_argument_group("responses")
    responses.add_argument("--header", dest="headers", action="append", type=_header, default=None,
                           metavar="NAME:VALUE", help="add this header to every response (repeatable)")
    responses.add_argument("--no-server-header", dest="server_header", action="store_false",
                           help="do not send 'Server: fastserve'")
    responses.add_argument("--no-date-header", dest="date_header", action="store_false",
                           help="do not send a Date header")
    responses.add_argument("--server-header", dest="server_header", action="store_true",
                           default=DEFAULTS.server_header, help="send 'Server: fastserve' (the default)")
    responses.add_argument("--date-header", dest="date_header", action="store_true",
                           default=DEFAULTS.date_header, help="send a Date header (the default)")
    static = parser.add_argument_group("directories")
    static.add_argument("--no-html", dest="html", action="store_false",
                        help="do not serve index.html / 404.html")
    static.add_argument("--no-precompressed", dest="precompressed", action="store_false",
                        help="do not serve file.br / file.zst / file.gz to clients that accept them")
    static.add_argument("--max-age", type=int, default=DEFAULTS.max_age, metavar="S",
                        help="Cache-Control max-age of files that are neither HTML (no-cache) nor "
                             "fingerprinted (immutable, a year) (default: %(default)s)")
    static.add_argument("--cache-rule", dest="cache_rules", action="append", type=_cache_rule, default=None,
                        metavar="GLOB=VALUE",
                        help="Cache-Control VALUE for files matching GLOB (a path with '/', else the name); "
                             "first match wins; an empty VALUE sends none (repeatable)")
    static.add_argument("--etag", default=DEFAULTS.etag, choices=CHOICES["etag"],
                        help="send a strong ETag with files (default: %(default)s)")
    static.add_argument("--if-modified-since", default=DEFAULTS.if_modified_since, choices=CHOICES["if_modified_since"],
                        help="304 when the file's Last-Modified is the date given (exact) or at or before it "
                             "(before); a future date never gives 304 (default: %(default)s)")
    static.add_argument("--spa", action="store_true",
                        help="single-page app: a GET/HEAD of a missing path without an extension gets /index.html (200)")
    static.add_argument("--error-page", dest="error_pages", action="append", type=_error_page, default=None,
                        metavar="CODE=PATH",
                        help="answer 404 or 403 with this page from the root (repeatable)")
    static.add_argument("--dotfiles", default=DEFAULTS.dotfiles, choices=CHOICES["dotfiles"],
                        help="serve paths with a segment starting with '.' (allow), or answer them 404 "
                             "except below /.well-known/ (deny) (default: %(default)s)")
    static.add_argument("--compress", default=DEFAULTS.compress, choices=CHOICES["compress"],
                        help="compress text, JavaScript, JSON, XML, SVG, wasm and fonts of more than 1 KiB "
                             "on the fly (br, zstd or gzip, as Accept-Encoding prefers), once per file "
                             "version (default: %(default)s)")
    static.add_argument("--follow-symlink", action="store_true", help="serve symlinks that point outside the root")
    static.add_argument("--listing", action="store_true",
                        help="a directory without index.html answers a listing of its files (HTML, or JSON "
                             "for Accept: application/json) instead of 404")
    static.add_argument("--templates", default=None, metavar="DIR",
                        help="a directory whose listing.html replaces the packaged listing template")
    static.add_argument("--listing-max-entries", type=int, default=DEFAULTS.listing_max_entries, metavar="N",
                        help="entries read per listed directory; a listing of more says it is truncated "
                             "(default: %(default)s)")
    websockets = parser.add_argument_group("websockets")
    websockets.add_argument("--ws-max-size", type=int, default=DEFAULTS.ws_max_size,
                            help="largest message accepted, bytes (close 1009) (default: %(default)s)")
    websockets.add_argument("--ws-max-queue", type=int, default=DEFAULTS.ws_max_queue, metavar="N",
                            help="messages waiting for the app before the connection stops reading "
                                 "(default: %(default)s)")
    websockets.add_argument("--ws-ping-interval", type=float, default=DEFAULTS.ws_ping_interval,
                            help="seconds between pings; 0 turns pings off (default: %(default)s)")
    websockets.add_argument("--ws-ping-timeout", type=float, default=DEFAULTS.ws_ping_timeout,
                            help="seconds to wait for a pong before closing (default: %(default)s)")
    websockets.add_argument("--no-ws-per-message-deflate", dest="ws_per_message_deflate", action="store_false",
                            help="do not offer permessage-deflate compression")
    websockets.add_argument("--ws-per-message-deflate", dest="ws_per_message_deflate", type=_boolean,
                            choices=[True, False], metavar="BOOL",
                            help="uvicorn's spelling: true offers permessage-deflate (the default), false does not")
    limits = parser.add_argument_group("limits")
    for name, help_text in [
        ("max_header_bytes", "request line + headers, bytes (431)"),
        ("max_header_count", "number of request headers (431)"),
        ("max_url_length", "request-target length, bytes (414)"),
        ("max_body_size", "request body, bytes (413)"),
        ("max_pipeline", "responses queued per connection before reading pauses"),
        ("max_response_buffer", "response bytes one connection holds for a client that is not reading; "
                                "past it reading pauses until the client drains"),
        ("max_connections", "open connections per worker (503 beyond; the open-file limit is raised to fit)"),
        ("max_ranges", "ranges honoured in one Range header (more: the whole file)"),
        ("cache_entries", "open-file cache entries"),
        ("cache_bytes", "open-file cache body bytes"),
        ("cache_max_file", "largest file whose body is cached in memory"),
        ("compress_bytes", "bytes of on-the-fly encodings kept in memory"),
        ("compress_max_file", "largest file compressed on the fly"),
    ]:
        limits.add_argument("--" + name.replace("_", "-"), *UVICORN_SPELLINGS.get(name, ()), type=int,
                            default=getattr(DEFAULTS, name),
                            help=f"{help_text} (default: %(default)s)")
    for name, help_text in [
        ("header_timeout", "seconds to receive a request's headers, from its first byte (408, then close)"),
        ("body_timeout", "seconds a request body may stall between two reads (408, then close)"),
        ("keepalive_timeout", "seconds an idle keep-alive connection stays open"),
        ("send_timeout", "seconds a client may stop reading a response before it is dropped"),
        ("cache_valid", "seconds before a cached file is checked again with stat"),
    ]:
        limits.add_argument("--" + name.replace("_", "-"), *UVICORN_SPELLINGS.get(name, ()), type=float,
                            default=getattr(DEFAULTS, name),
                            help=f"{help_text} (default: %(default)s)")
    _defaults_from_environment(parser, os.environ)
    return parser


def _version_line() -> str:
    return (f"fastserve {fastserve.__version__} with {platform.python_implementation()} "
            f"{platform.python_version()} on {platform.system()}")


def env_name(dest: str) -> str:
    """The environment variable that sets the flag whose setting is ``dest``."""
    return ENV_PREFIX + dest.upper()


def uvicorn_env_name(dest: str) -> str:
    """The variable uvicorn reads for the flag whose fastserve setting is ``dest``."""
    theirs = {ours: theirs for theirs, ours in UVICORN_ENV_NAMES.items()}.get(dest, dest)
    return UVICORN_ENV_PREFIX + theirs.upper()


# Variables the platforms set, read (as uvicorn reads them) after fastserve's and uvicorn's own.
PLATFORM_VARIABLES = {"workers": "WEB_CONCURRENCY", "forwarded_allow_ips": "FORWARDED_ALLOW_IPS"}


def _defaults_from_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Turn each ``FASTSERVE_<SETTING>`` variable, else uvicorn's ``UVICORN_<NAME>``, else the
    platform's (``PLATFORM_VARIABLES``), into its flag's default; a bad value is a usage error
    naming the variable."""
    for action in parser._actions:
        if action.dest in ("help", "version"):
            continue
        names = [env_name(action.dest), uvicorn_env_name(action.dest)]
        if action.dest in PLATFORM_VARIABLES:
            names.append(PLATFORM_VARIABLES[action.dest])
        name = next((each for each in names if each in environ), None)
        if name is None:
            continue
        uvicorns = name != names[0]
        raw = environ[name]
        try:
            if isinstance(action, _Refused) and uvicorns and not _boolean(raw):
                continue  # UVICORN_HTTP2=false: asks for nothing fastserve refuses
            parser.set_defaults(**{action.dest: _env_value(action, raw, uvicorns)})
        except (ValueError, argparse.ArgumentTypeError) as exc:
            parser.error(f"{name}={raw!r}: {exc}")


def _env_value(action: argparse.Action, raw: str, uvicorns: bool = False) -> Any:
    """The setting ``raw`` gives; a repeatable flag's values are split as fastserve splits them
    (``ENV_SEPARATORS``), or, from a ``UVICORN_`` variable, at white space, as uvicorn does."""
    if isinstance(action, _Refused):
        raise ValueError(action.help)
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return _boolean(raw)
    convert: Callable[[str], Any] = action.type if callable(action.type) else str
    if isinstance(action, argparse._AppendAction):
        parts = raw.split() if uvicorns else raw.split(ENV_SEPARATORS.get(action.dest, ","))
        return [convert(part) for part in parts if part.strip()]
    value = convert(raw.strip())
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"choose from {', '.join(map(str, action.choices))}")
    return value


def config_from_args(argv: Optional[List[str]] = None) -> Config:
    args = vars(build_parser().parse_args(argv))
    args["headers"] = args["headers"] or []
    args["cache_rules"] = args["cache_rules"] or []
    args["error_pages"] = args["error_pages"] or []
    fields = {f.name for f in dataclasses.fields(Config)}
    return Config(**{key: value for key, value in args.items() if key in fields})


# The repeatable flags whose values are pairs, and what joins the two on the command line.
PAIR_SEPARATORS = {"headers": ":", "cache_rules": "=", "error_pages": "="}


def command_line(target: str, options: Mapping[str, Any]) -> List[str]:
    """The command line (after the program name) that serves ``target`` with ``options``:
    ``Config`` field names (or uvicorn's, ``UVICORN_NAMES``) as keywords, each written as the
    flag that sets it. ``TypeError`` for a keyword no flag sets."""
    actions: dict = {}
    for action in build_parser()._actions:
        if action.option_strings:
            actions.setdefault(action.dest, []).append(action)
    argv = [target]
    for name, value in options.items():
        found = actions.get(UVICORN_NAMES.get(name, name))
        if found is None:
            raise TypeError(f"run() got an unexpected keyword argument {name!r}")
        action = found[0]
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(flag if value else "--no-" + flag[2:])
        elif action.nargs == 0:  # --x / --no-x as two flags setting the same value
            argv += [each.option_strings[0] for each in found if each.const == bool(value)][:1]
        elif isinstance(action, argparse._AppendAction):
            for item in value:  # a pair as the flag spells it: NAME:VALUE, GLOB=VALUE, CODE=PATH
                text = PAIR_SEPARATORS[action.dest].join(map(str, item)) if isinstance(item, tuple) else str(item)
                argv += [flag, text]
        else:
            argv += [flag, str(value)]
    return argv


# Exit codes, as uvicorn's: 2 for a flag or value refused before anything is tried (argparse's
# usage error), 3 (uvicorn's STARTUP_FAILURE) for a start that failed: the app cannot be loaded
# or its lifespan startup failed, the socket cannot be opened, a file the flags name cannot be
# used. An error the app's own module raises at import is its traceback and 1, as under uvicorn.
USAGE_ERROR = 2


def _refused(problem: object, code: int) -> int:
    print(f"fastserve: {problem}", file=sys.stderr)
    return code


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import fastserve._speedups  # noqa: F401  (says in one line when the extensions are not built)
    except ImportError as exc:
        return _refused(exc, 1)
    from fastserve.server.supervisor import STARTUP_FAILED

    config = config_from_args(argv)
    for problem in config.problems():
        return _refused(problem, USAGE_ERROR)
    failed = _start_logging(config)
    if failed:
        return failed
    if args.reload:
        from pathlib import Path

        from fastserve.server.listen import ListenError, open_listener, remove_socket_file
        from fastserve.server.reload import Reloader, ReloadUnavailable, WatchedFiles, require_watchfiles
        from fastserve.server.serve import PidFileError

        directories = [Path(d) for d in (args.reload_dir or ["."])]
        try:
            require_watchfiles()
        except ReloadUnavailable as exc:
            return _refused(exc, STARTUP_FAILED)
        missing = next((d for d in directories if not d.is_dir()), None)
        if missing is not None:  # watchfiles would fail on it with a traceback
            return _refused(f"--reload-dir {missing} is not a directory", STARTUP_FAILED)
        try:
            listener = open_listener(config)  # held across restarts: no request is refused meanwhile
        except ListenError as exc:
            return _refused(exc, STARTUP_FAILED)
        watched = WatchedFiles(directories, args.reload_include or [], args.reload_exclude or [])
        try:
            return Reloader(sys.argv[1:] if argv is None else list(argv), watched, args.reload_delay,
                            listener=listener, pid_path=config.pid_file).run()
        except PidFileError as exc:
            return _refused(exc, STARTUP_FAILED)
        finally:
            listener.close()
            remove_socket_file(config)
    return serve_reporting_errors(config)


def command() -> int:
    """The ``fastserve`` command (and ``python -m fastserve``): ``main()``, then the process's end."""
    return _past_leftover_threads(main())


def _past_leftover_threads(code: int) -> int:
    """``code``, once the command is done; but when threads the app started still run (a
    synchronous endpoint or startup in a thread pool, which a stop cannot cancel; a thread its
    module started, and a start that failed), the process ends here with ``code``, after a
    warning naming them: Python would wait for each of them at exit, past --graceful-timeout
    and without a word (an executor's threads too). Only for the command: ``main()`` called in
    a program returns."""
    import logging
    import threading

    left = [thread for thread in threading.enumerate()
            if thread is not threading.main_thread() and not thread.daemon and thread.is_alive()]
    if not left:
        return code
    logging.getLogger("fastserve").warning(
        "%d thread%s the app started still run%s (%s): exiting without waiting for %s",
        len(left), "" if len(left) == 1 else "s", "s" if len(left) == 1 else "",
        ", ".join(thread.name for thread in left), "it" if len(left) == 1 else "them")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve_logged(config: Config) -> int:
    """What ``fastserve`` and ``fastserve.run`` do with settings already checked
    (``Config.problems``): set up logging as they ask, then serve. Returns the exit code: 0
    after a clean stop, 3 after one line on stderr saying why the start failed."""
    return _start_logging(config) or serve_reporting_errors(config)


def _start_logging(config: Config) -> int:
    """``configure_logging`` for ``config``; 0, or 3 when its ``--log-config`` cannot be used."""
    from fastserve.server.logs import LogConfigError, configure_logging
    from fastserve.server.supervisor import STARTUP_FAILED

    try:
        configure_logging(config.log_level, config.log_config)
    except LogConfigError as exc:
        return _refused(exc, STARTUP_FAILED)
    return 0


def serve_reporting_errors(config: Config) -> int:
    """``serve(config)``, with what stopped its start said in one line and exit code 3."""
    from fastserve.server.app_loader import AppLoadError
    from fastserve.server.asgi import LifespanFailure
    from fastserve.server.listen import ListenError
    from fastserve.server.metrics import MetricsUnavailable
    from fastserve.server.serve import PidFileError, serve
    from fastserve.server.supervisor import STARTUP_FAILED
    from fastserve.server.tls import TlsConfigError

    try:
        return serve(config)
    except (AppLoadError, LifespanFailure, TlsConfigError, MetricsUnavailable, ListenError, PidFileError) as exc:
        return _refused(exc, STARTUP_FAILED)
