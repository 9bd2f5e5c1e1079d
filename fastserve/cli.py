"""``python -m fastserve [DIR | module:app] [flags]``."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import List, Optional

from fastserve.config import Config
from fastserve.server.app_loader import AppLoadError

DEFAULTS = Config()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastserve",
        description="Serve a directory (static files, fast path) or run an ASGI app ('module:app').",
    )
    parser.add_argument("target", nargs="?", default=".", help="directory to serve, or module:app (default: .)")
    parser.add_argument("--host", default=DEFAULTS.host, help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULTS.port, help="port to bind (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=DEFAULTS.workers, help="worker processes (default: %(default)s)")
    parser.add_argument("--graceful-timeout", type=float, default=DEFAULTS.graceful_timeout,
                        help="seconds to finish in-flight responses on SIGTERM/SIGINT (default: %(default)s)")
    parser.add_argument("--access-log", action="store_true", help="log every request (off by default)")
    parser.add_argument("--reload", action="store_true",
                        help="development: restart when a .py file below --reload-dir changes")
    parser.add_argument("--reload-dir", action="append", default=None,
                        help="directory to watch with --reload (repeatable; default: the current directory)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--root-path", default=DEFAULTS.root_path, help="ASGI root_path for apps mounted below /")
    parser.add_argument("--proxy-headers", dest="proxy_headers", action="store_true", default=DEFAULTS.proxy_headers,
                        help="ASGI apps: take the client and scheme from X-Forwarded-For/-Proto (default: on)")
    parser.add_argument("--no-proxy-headers", dest="proxy_headers", action="store_false")
    parser.add_argument("--forwarded-allow-ips", default=os.environ.get("FORWARDED_ALLOW_IPS", DEFAULTS.forwarded_allow_ips),
                        help="comma-separated addresses/networks (or *) whose proxy headers are trusted "
                             "(default: $FORWARDED_ALLOW_IPS or %(default)s)")
    parser.add_argument("--no-html", dest="html", action="store_false",
                        help="directories: do not serve index.html / 404.html")
    parser.add_argument("--no-precompressed", dest="precompressed", action="store_false",
                        help="directories: do not serve file.br / file.zst / file.gz to clients that accept them")
    parser.add_argument("--follow-symlink", action="store_true",
                        help="directories: serve symlinks that point outside the root")
    websockets = parser.add_argument_group("websockets")
    websockets.add_argument("--ws-max-size", type=int, default=DEFAULTS.ws_max_size,
                            help="largest message accepted, bytes (close 1009) (default: %(default)s)")
    websockets.add_argument("--ws-ping-interval", type=float, default=DEFAULTS.ws_ping_interval,
                            help="seconds between pings; 0 turns pings off (default: %(default)s)")
    websockets.add_argument("--ws-ping-timeout", type=float, default=DEFAULTS.ws_ping_timeout,
                            help="seconds to wait for a pong before closing (default: %(default)s)")
    websockets.add_argument("--no-ws-per-message-deflate", dest="ws_per_message_deflate", action="store_false",
                            help="do not offer permessage-deflate compression")
    limits = parser.add_argument_group("limits")
    for name, help_text in [
        ("max_header_bytes", "request line + headers, bytes (431)"),
        ("max_header_count", "number of request headers (431)"),
        ("max_url_length", "request-target length, bytes (414)"),
        ("max_body_size", "request body, bytes (413)"),
        ("max_pipeline", "responses queued per connection before reading pauses"),
        ("max_connections", "open connections per worker (503 beyond)"),
        ("max_ranges", "ranges honoured in one Range header (more: the whole file)"),
        ("cache_entries", "open-file cache entries"),
        ("cache_bytes", "open-file cache body bytes"),
        ("cache_max_file", "largest file whose body is cached in memory"),
    ]:
        limits.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(DEFAULTS, name),
                            help=f"{help_text} (default: %(default)s)")
    for name, help_text in [
        ("header_timeout", "seconds to receive a request's headers (408, then close)"),
        ("keepalive_timeout", "seconds an idle keep-alive connection stays open"),
        ("send_timeout", "seconds a client may stop reading a response before it is dropped"),
        ("cache_valid", "seconds before a cached file is checked again with stat"),
    ]:
        limits.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(DEFAULTS, name),
                            help=f"{help_text} (default: %(default)s)")
    return parser


def config_from_args(argv: Optional[List[str]] = None) -> Config:
    args = vars(build_parser().parse_args(argv))
    fields = {f.name for f in dataclasses.fields(Config)}
    return Config(**{key: value for key, value in args.items() if key in fields})


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import fastserve._speedups  # noqa: F401  (says in one line when the extensions are not built)
    except ImportError as exc:
        print(f"fastserve: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    if args.reload:
        from pathlib import Path

        from fastserve.server.reload import Reloader

        directories = [Path(d) for d in (args.reload_dir or ["."])]
        return Reloader(sys.argv[1:] if argv is None else list(argv), directories).run()
    config = config_from_args(argv)
    if config.workers < 1:
        print("fastserve: --workers must be at least 1", file=sys.stderr)
        return 2
    from fastserve.server.asgi import LifespanFailure
    from fastserve.server.serve import serve
    from fastserve.server.supervisor import STARTUP_FAILED

    try:
        return serve(config)
    except AppLoadError as exc:
        print(f"fastserve: {exc}", file=sys.stderr)
        return 2
    except LifespanFailure as exc:
        print(f"fastserve: {exc}", file=sys.stderr)
        return STARTUP_FAILED
    except OSError as exc:
        print(f"fastserve: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
