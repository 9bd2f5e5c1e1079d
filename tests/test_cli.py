"""The command line: help, version, errors in one line, the banner, FASTSERVE_* variables."""
from __future__ import annotations

import argparse
import os
import signal
import socket
from pathlib import Path
from typing import Tuple

import pytest

from fastserve import __version__
from fastserve.cli import build_parser, config_from_args, env_name, main
from server_helpers import CliProcess, DocRoot, child_pids, fetch, port_from_url, run_cli


def test_version() -> None:
    result = run_cli(["--version"])
    assert result.returncode == 0
    assert result.stdout.startswith(f"fastserve {__version__} with ")


def parsing_ends(args, capsys) -> Tuple[int, str, str]:
    """The exit code, stdout and stderr of ``python -m fastserve ARGS`` when reading the
    arguments ends the run (help, a bad flag), from the CLI's ``main`` in this process:
    ``test_version`` runs the real command."""
    with pytest.raises(SystemExit) as ended:
        main(args)
    out, err = capsys.readouterr()
    return ended.value.code, out, err


def test_help_names_fastserve_and_starts_with_three_examples(capsys) -> None:
    code, out, _ = parsing_ends(["--help"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "examples:"
    assert all(line.startswith("  fastserve ") for line in lines[1:4]), lines[:4]
    assert "usage: fastserve " in out
    assert "python -m" not in out


@pytest.mark.parametrize("args, first_line, hint", [
    (["--wokers", "2"], "fastserve: unrecognized arguments: --wokers", "Did you mean --workers?"),
    (["--port", "eighty"], "fastserve: argument --port: invalid int value: 'eighty'", None),
    (["--log-level", "loud"], "fastserve: argument --log-level: invalid choice: 'loud'", None),
    (["--header", "no colon here"], "fastserve: argument --header: 'no colon here' is not NAME:VALUE", None),
])
def test_a_bad_flag_is_one_line_and_a_hint(args, first_line, hint, capsys) -> None:
    code, out, err = parsing_ends(args, capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines[0].startswith(first_line), lines
    assert lines[-1] == "Run 'fastserve --help' to see every flag."
    assert len(lines) == (3 if hint else 2), lines
    if hint:
        assert lines[1] == hint
    assert "usage:" not in err


def test_a_missing_directory_does_not_exist(tmp_path: Path) -> None:
    result = run_cli([str(tmp_path / "nowhere")])
    assert result.returncode == 3
    assert result.stderr.strip() == f"fastserve: Directory '{tmp_path / 'nowhere'}' does not exist."


def test_a_file_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    result = run_cli([str(tmp_path / "file.txt")])
    assert result.returncode == 3
    assert "is not a directory" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_banner_shows_the_real_port_pid_workers_and_how_to_stop(docroot: DocRoot, tmp_path: Path, workers) -> None:
    with CliProcess([str(docroot.root), "--port", "0", "--workers", workers], log_path=tmp_path / "log") as srv:
        url = srv.wait_listening()
        port = port_from_url(url)
        assert url == f"http://127.0.0.1:{port}" and port != 0
        assert fetch(port, "/small.txt").body == docroot.small
        banner = next(line for line in srv.output().splitlines() if "fastserve serving" in line)
        assert f"pid {srv.proc.pid}" in banner
        assert f"{workers} worker" in banner
        assert "Ctrl+C" in banner and "SIGTERM" in banner
        assert srv.stop() == 0
    output = srv.output()
    assert "shutting down" in output
    assert output.rstrip().endswith("fastserve stopped"), output


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_banner_brackets_an_ipv6_address(docroot: DocRoot, tmp_path: Path) -> None:
    with CliProcess([str(docroot.root), "--host", "::1", "--port", "0"], log_path=tmp_path / "log") as srv:
        url = srv.wait_listening()
        assert url.startswith("http://[::1]:")
        with socket.create_connection(("::1", port_from_url(url)), timeout=5) as sock:
            sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(docroot.small)


# -- uvicorn's spellings ------------------------------------------------------------------------

@pytest.mark.parametrize("uvicorn_flags, fastserve_flags", [
    (["--timeout-keep-alive", "7"], ["--keepalive-timeout", "7"]),
    (["--timeout-graceful-shutdown", "3"], ["--graceful-timeout", "3"]),
    (["--limit-concurrency", "50"], ["--max-connections", "50"]),
    (["--no-access-log"], []),
    (["--access-log", "--no-access-log"], []),
    (["--no-access-log", "--access-log"], ["--access-log"]),
    (["--server-header"], []),
    (["--date-header"], []),
    (["--no-server-header", "--server-header"], []),
    (["--no-date-header", "--no-server-header"], ["--no-server-header", "--no-date-header"]),
    (["--loop", "uvloop", "--http", "httptools", "--ws", "websockets", "--interface", "asgi3"], []),
    (["--loop", "auto", "--http", "auto", "--ws", "websockets-sansio", "--interface", "asgi2"], []),
    (["--ws-per-message-deflate", "false"], ["--no-ws-per-message-deflate"]),
    (["--ws-per-message-deflate", "True"], []),
    (["--no-use-colors"], []),
    (["--use-colors"], []),
])
def test_uvicorn_spellings_set_the_same_settings(uvicorn_flags, fastserve_flags) -> None:
    """An operator's uvicorn command line keeps working: its names for settings fastserve has
    mean the same here."""
    assert config_from_args(["app:app", *uvicorn_flags]) == config_from_args(["app:app", *fastserve_flags])
    assert config_from_args(["app:app", *uvicorn_flags]) != config_from_args(["app:app", "--port", "1"])


@pytest.mark.parametrize("args, message", [
    (["--loop", "asyncio"], "argument --loop: invalid choice: 'asyncio' (choose from 'auto', 'uvloop')"),
    (["--http", "h11"], "argument --http: invalid choice: 'h11'"),
    (["--ws", "none"], "argument --ws: invalid choice: 'none'"),
    (["--interface", "wsgi"], "argument --interface: invalid choice: 'wsgi'"),
    (["--ws-per-message-deflate", "maybe"], "argument --ws-per-message-deflate: 'maybe' is not true or false (1, true"),
])
def test_a_uvicorn_choice_fastserve_does_not_make_is_refused_in_one_line(args, message, capsys) -> None:
    code, _, err = parsing_ends(["app:app", *args], capsys)
    assert code == 2 and err.startswith("fastserve: " + message)


def test_uvicorns_newer_flags_set_what_they_name() -> None:
    config = config_from_args([
        "app:app", "--limit-max-requests", "1000", "--limit-max-requests-jitter", "50", "--ssl-version", "2",
        "--ws-max-queue", "32", "--reset-contextvars", "--timeout-worker-healthcheck", "5",
        "--h11-max-incomplete-event-size", "16384",
    ])
    assert (config.limit_max_requests, config.limit_max_requests_jitter) == (1000, 50)
    assert (config.ssl_version, config.ws_max_queue, config.reset_contextvars) == (2, 32, True)
    assert config.timeout_worker_healthcheck == 5
    # The last one is accepted for uvicorn's command lines and changes nothing (its help says why).
    assert config == config_from_args([
        "app:app", "--limit-max-requests", "1000", "--limit-max-requests-jitter", "50", "--ssl-version", "2",
        "--ws-max-queue", "32", "--reset-contextvars", "--timeout-worker-healthcheck", "5",
    ])


def test_http2_is_refused_in_one_line_that_says_why(monkeypatch, capsys) -> None:
    code, _, err = parsing_ends(["app:app", "--http2"], capsys)
    assert code == 2 and err.startswith("fastserve: --http2: refused: fastserve speaks HTTP/1.1")
    monkeypatch.setenv("FASTSERVE_HTTP2", "true")  # asked for by a variable: refused the same way
    code, _, err = parsing_ends(["app:app"], capsys)
    assert code == 2 and err.startswith("fastserve: FASTSERVE_HTTP2='true': refused: fastserve speaks HTTP/1.1")


@pytest.mark.parametrize("flag, value", [("--limit-max-requests-jitter", "-1"), ("--ws-max-queue", "0")])
def test_uvicorns_newer_numbers_out_of_range_are_usage_errors(flag, value, capsys) -> None:
    assert main(["app:app", flag, value]) == 2
    assert f"{flag} must be at least" in capsys.readouterr().err


def test_each_worker_draws_its_own_request_limit_within_the_jitter() -> None:
    from fastserve.server.worker import worker_request_limit

    assert worker_request_limit(config_from_args(["app:app"])) == 0  # no limit: never retires
    assert worker_request_limit(config_from_args(["app:app", "--limit-max-requests", "100"])) == 100
    jittered = config_from_args(["app:app", "--limit-max-requests", "100", "--limit-max-requests-jitter", "10"])
    drawn = {worker_request_limit(jittered) for _ in range(200)}
    assert drawn <= set(range(100, 111)) and len(drawn) > 5


def test_uvicorn_spellings_reach_a_real_server(tmp_path: Path) -> None:
    with CliProcess(["--port", "0", "--timeout-keep-alive", "0.3", "--no-access-log", "--server-header",
                     "--date-header", "--limit-concurrency", "5", "--timeout-graceful-shutdown", "2",
                     str(tmp_path)], log_path=tmp_path / "server.log") as srv:
        port = port_from_url(srv.wait_listening())
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while True:  # the server closes the idle connection after --timeout-keep-alive
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
    head = reply.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 404 ") and b"\r\nserver: fastserve" in head and b"\r\ndate: " in head


# -- FASTSERVE_* variables -----------------------------------------------------------------------

def _sample(action: argparse.Action) -> tuple:
    """A value for ``action``'s variable, and the setting it must produce."""
    if isinstance(action, argparse._StoreTrueAction):
        return "true", True
    if isinstance(action, argparse._StoreFalseAction):
        return "false", False
    if action.dest == "headers":
        return "X-One: 1\nX-Two: a, b", [("X-One", "1"), ("X-Two", "a, b")]
    if action.dest in ("reload_dir", "reload_include", "reload_exclude"):
        return f"a{os.pathsep}b", ["a", "b"]
    if action.dest == "cache_rules":
        return "*.js=public, max-age=1\n/api/*=no-store", [("*.js", "public, max-age=1"), ("/api/*", "no-store")]
    if action.dest == "error_pages":
        return "404=/e/404.html,403=/e/403.html", [(404, "/e/404.html"), (403, "/e/403.html")]
    if action.choices:
        choice = list(action.choices)[-1]
        return str(choice), choice
    if action.type is int:
        return "7", 7
    if action.type is float:
        return "2.5", 2.5
    return "some-value", "some-value"


def test_every_flag_has_a_variable(monkeypatch) -> None:
    actions = [a for a in build_parser()._actions if a.dest not in ("help", "version", "http2")]
    assert len(actions) > 40
    for action in actions:
        raw, expected = _sample(action)
        monkeypatch.setenv(env_name(action.dest), raw)
        assert getattr(build_parser().parse_args([]), action.dest) == expected, action.dest
        monkeypatch.delenv(env_name(action.dest))


# Every parameter of uvicorn 0.54's command (``uvicorn.main.main.params``), each read by uvicorn
# from UVICORN_<NAME>; "version" and "http2" aside.
UVICORN_PARAMETERS = (
    "app host port uds fd reload reload_dirs reload_includes reload_excludes reload_delay workers loop http "
    "ws ws_max_size ws_max_queue ws_ping_interval ws_ping_timeout ws_per_message_deflate lifespan interface "
    "env_file log_config log_level access_log use_colors proxy_headers server_header date_header "
    "forwarded_allow_ips root_path limit_concurrency backlog limit_max_requests limit_max_requests_jitter "
    "timeout_keep_alive timeout_graceful_shutdown timeout_worker_healthcheck ssl_keyfile ssl_certfile "
    "ssl_keyfile_password ssl_version ssl_cert_reqs ssl_ca_certs ssl_ciphers headers app_dir "
    "h11_max_incomplete_event_size reset_contextvars factory"
).split()


def test_every_uvicorn_variable_sets_its_flag(monkeypatch) -> None:
    """A deployment configured through uvicorn's UVICORN_* variables runs unchanged (they were
    ignored: UVICORN_PORT=8080 served on 8000); repeatable flags split at white space, as
    uvicorn splits them."""
    from fastserve.cli import UVICORN_ENV_NAMES

    by_dest = {}
    for action in build_parser()._actions:
        by_dest.setdefault(action.dest, action)
    for name in UVICORN_PARAMETERS:
        dest = UVICORN_ENV_NAMES.get(name, name)
        action = by_dest[dest]
        if dest in ("reload_dir", "reload_include", "reload_exclude"):
            raw, expected = "a  b", ["a", "b"]
        elif dest == "headers":
            raw, expected = "X-One:1 X-Two:2", [("X-One", "1"), ("X-Two", "2")]
        elif dest == "target":
            raw, expected = "main:app", "main:app"
        else:
            raw, expected = _sample(action)
        monkeypatch.setenv("UVICORN_" + name.upper(), raw)
        assert getattr(build_parser().parse_args([]), dest) == expected, name
        monkeypatch.delenv("UVICORN_" + name.upper())
    monkeypatch.setenv("UVICORN_PORT", "8080")
    monkeypatch.setenv("UVICORN_HTTP2", "false")  # asks for nothing fastserve refuses
    assert config_from_args([]).port == 8080 and config_from_args(["--port", "1"]).port == 1
    monkeypatch.setenv("FASTSERVE_PORT", "9090")  # fastserve's own variable wins
    assert config_from_args([]).port == 9090


def test_local_proxies_are_trusted_by_default() -> None:
    """uvicorn's default: a proxy on 127.0.0.1 or ::1."""
    assert config_from_args([]).forwarded_allow_ips == "127.0.0.1,::1"


def test_the_command_line_wins_over_variables(monkeypatch) -> None:
    monkeypatch.setenv("FASTSERVE_PORT", "9999")
    monkeypatch.setenv("FASTSERVE_HTML", "off")
    assert config_from_args(["--port", "1234"]).port == 1234
    assert config_from_args([]).port == 9999
    assert config_from_args([]).html is False


def test_web_concurrency_is_the_default_for_workers(monkeypatch) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert config_from_args([]).workers == 3
    monkeypatch.setenv("FASTSERVE_WORKERS", "2")
    assert config_from_args([]).workers == 2
    assert config_from_args(["--workers", "1"]).workers == 1


def test_a_bad_web_concurrency_is_one_line_naming_it(monkeypatch, capsys) -> None:
    """The platforms' variable is read as fastserve's own are: ``WEB_CONCURRENCY=four`` used to
    be ignored (one worker, silently)."""
    monkeypatch.setenv("WEB_CONCURRENCY", "four")
    code, _, err = parsing_ends(["--version"], capsys)
    assert code == 2
    assert err.splitlines()[0].startswith("fastserve: WEB_CONCURRENCY='four': ")
    monkeypatch.setenv("UVICORN_WORKERS", "5")  # uvicorn's own variable comes first, as under uvicorn
    assert config_from_args([]).workers == 5


def test_forwarded_allow_ips_comes_from_the_variables_in_uvicorns_order(monkeypatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.0/8")
    assert config_from_args([]).forwarded_allow_ips == "10.0.0.0/8"
    monkeypatch.setenv("UVICORN_FORWARDED_ALLOW_IPS", "*")
    assert config_from_args([]).forwarded_allow_ips == "*"
    assert config_from_args(["--forwarded-allow-ips", "192.0.2.1"]).forwarded_allow_ips == "192.0.2.1"


def test_an_error_page_that_names_no_file_is_warned_about_at_start(docroot: DocRoot, tmp_path: Path) -> None:
    """A typo in ``--error-page`` left the plain 404 answered with no word said."""
    args = [str(docroot.root), "--port", "0", "--error-page", "404=errors/nothere.html",
            "--error-page", "403=small.txt"]
    with CliProcess(args, log_path=tmp_path / "log") as srv:
        port = port_from_url(srv.wait_listening())
        assert fetch(port, "/missing").body == b"Not Found"
        assert srv.stop() == 0
    warnings = [line for line in srv.output().splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and "--error-page 404=errors/nothere.html: no such file in " in warnings[0], warnings


@pytest.mark.parametrize("follow_symlink", [False, True])
def test_an_error_page_is_looked_for_at_start_as_the_cache_looks_for_it(tmp_path: Path, caplog,
                                                                      follow_symlink: bool) -> None:
    """The start-up warning and the open-file cache agree on which pages exist: one that climbs
    out of the served directory, or (without --follow-symlink) a symlink leading out of it, is
    never answered, so it is warned about though a file stands at the joined path."""
    from fastserve._speedups.filecache import FileCache
    from fastserve.config import Config
    from fastserve.server.serve import _report_missing_error_pages

    root = tmp_path / "site"
    (root / "errors").mkdir(parents=True)
    (root / "errors" / "404.html").write_text("gone")
    (tmp_path / "outside.html").write_text("outside")
    (root / "errors" / "link.html").symlink_to(tmp_path / "outside.html")
    pages = ["errors/404.html", "/errors/404.html", "../outside.html", "errors/../../outside.html",
             "errors/link.html", "errors", "errors/none.html"]
    config = Config(target=str(root), follow_symlink=follow_symlink,
                    error_pages=[(404, page) for page in pages])
    with caplog.at_level("WARNING", logger="fastserve"):
        _report_missing_error_pages(config)
    warned = {page for page in pages if any(f"--error-page 404={page}: " in r.getMessage() for r in caplog.records)}
    answered = {page for page in pages
                if FileCache([str(root)], follow_symlink=follow_symlink, error_pages={404: page}).lookup("/x").body
                not in (None, b"Not Found")}
    assert answered == {"errors/404.html", "/errors/404.html"} | ({"errors/link.html"} if follow_symlink else set())
    assert warned == set(pages) - answered


def test_a_bad_variable_is_one_line_naming_it(monkeypatch, capsys) -> None:
    monkeypatch.setenv("FASTSERVE_MAX_BODY_SIZE", "lots")
    code, _, err = parsing_ends(["--version"], capsys)
    assert code == 2
    assert err.splitlines()[0].startswith("fastserve: FASTSERVE_MAX_BODY_SIZE='lots': ")


def test_variables_configure_a_real_server(docroot: DocRoot, tmp_path: Path) -> None:
    env = {"FASTSERVE_PORT": "0", "FASTSERVE_HTML": "false", "FASTSERVE_MAX_URL_LENGTH": "40",
           "WEB_CONCURRENCY": "2"}
    with CliProcess([str(docroot.root)], log_path=tmp_path / "log", env=env) as srv:
        port = port_from_url(srv.wait_listening())
        assert fetch(port, "/small.txt").status == 200
        assert fetch(port, "/dir/").status == 404  # no index.html: html is off
        assert fetch(port, "/" + "x" * 60).status == 414
        assert "2 workers" in srv.output()
        assert len(child_pids(srv.proc.pid)) == 2


def test_sigint_stop_is_logged(docroot: DocRoot, tmp_path: Path) -> None:
    with CliProcess([str(docroot.root), "--port", "0"], log_path=tmp_path / "log") as srv:
        srv.wait_listening()
        srv.proc.send_signal(signal.SIGINT)
        assert srv.wait_exit(5) == 0
    assert "fastserve stopped" in srv.output()


FRAMED = ("the server writes that field itself for each response (it frames the message or the connection); "
          "a second one would contradict it")


@pytest.mark.parametrize("flag, value, message", [
    ("--port", "180710", "--port must be between 0 and 65535, not 180710"),
    ("--port", "-1", "--port must be between 0 and 65535, not -1"),
    ("--fd", "-3", "--fd must be at least 0, not -3"),
    ("--backlog", "-5", "--backlog must be at least 1, not -5"),
    ("--workers", "0", "--workers must be at least 1, not 0"),
    ("--limit-max-requests", "0", "--limit-max-requests must be at least 1, not 0"),
    ("--max-header-bytes", "-1", "--max-header-bytes must be at least 1, not -1"),
    ("--max-connections", "0", "--max-connections must be at least 1, not 0"),
    ("--keepalive-timeout", "-1", "--keepalive-timeout must be at least 0, not -1.0"),
    ("--graceful-timeout", "nan", "--graceful-timeout must be at least 0, not nan"),
    ("--ws-max-size", "0", "--ws-max-size must be at least 1, not 0"),
    ("--max-age", "-1", "--max-age must be at least 0, not -1"),
    ("--listing-max-entries", "0", "--listing-max-entries must be at least 1, not 0"),
    # health and metrics at "health/health" would match no request: they were silently off
    ("--admin-prefix", "health", "--admin-prefix must begin with '/' ('' turns health and metrics off), not 'health'"),
    # a network that is none trusted no proxy, silently (uvicorn refuses it, with a traceback)
    ("--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/33", "--forwarded-allow-ips: '10.0.0.0/33' is no network (ADDRESS/PREFIX)"),
    # a second length or framing beside the server's own: a desync for the client (both faces)
    *[("--header", f"{name}: {value}", f"--header {name}: {FRAMED}") for name, value in [
        ("Content-Length", "5"), ("transfer-encoding", "chunked"), ("Connection", "close"), ("Upgrade", "h2c")]],
    # it went out beside the server's own Date: two for one response
    ("--header", "Date: x", "--header Date: the server writes the Date of each response itself "
                            "(--no-date-header leaves it out)"),
])
def test_a_value_out_of_range_is_a_usage_error_before_anything_starts(flag, value, message, tmp_path, capsys) -> None:
    """Used to be a traceback (--port 180710, --fd -3) or a server running with a limit that
    refuses everything (--max-connections 0, --max-header-bytes -1)."""
    assert main([str(tmp_path), flag, value]) == 2
    assert capsys.readouterr().err.strip() == f"fastserve: {message}"


@pytest.mark.parametrize("name", ["Content-Type", "etag", "Last-Modified", "Accept-Ranges", "Content-Encoding"])
def test_a_header_a_files_answer_sets_itself_is_refused_for_a_directory(name, tmp_path, capsys) -> None:
    """``--header Content-Type: ...`` (or ETag, Accept-Ranges, ...) on a directory went out beside
    the file's own field: two values for one field on every file answer."""
    assert main([str(tmp_path), "--header", f"{name}: x"]) == 3
    assert f"--header {name}: a file's answer sets that field itself" in capsys.readouterr().err


def test_an_app_may_still_be_given_a_default_content_type_by_header() -> None:
    """For an ASGI app the server's --header fields give way to the app's own (ServerHeaders):
    a default Content-Type stays an operator's choice there."""
    from fastserve.config import Config
    from fastserve.server.app_loader import load_app

    async def app(scope, receive, send):  # pragma: no cover - never called
        pass

    config = Config(target=app, headers=[("Content-Type", "application/json")])
    assert config.problems() == [] and load_app(config) is not None


def test_the_defaults_and_the_range_ends_are_in_range() -> None:
    from fastserve.config import RANGES, Config

    assert Config().problems() == []
    assert Config(port=0, backlog=1, max_body_size=0, keepalive_timeout=0).problems() == []
    assert Config(port=65535).problems() == []
    assert {name for name, _, _ in RANGES} <= set(Config.__dataclass_fields__)


def test_run_refuses_a_value_out_of_range() -> None:
    import fastserve

    with pytest.raises(ValueError, match="--port must be between 0 and 65535"):
        fastserve.run(".", port=70000)
