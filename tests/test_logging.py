"""--log-level (uvicorn's six levels), --log-config files, and a root logger left alone."""
from __future__ import annotations

import io
import json
import logging
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List

import pytest

from fastserve.server.logs import TRACE
from server_helpers import CliProcess, DocRoot, ServerProcess, fetch, port_from_url, run_cli


def test_trace_level_shows_what_info_hides(docroot: DocRoot, tmp_path: Path) -> None:
    with CliProcess([str(docroot.root), "--port", "0", "--log-level", "trace"], log_path=tmp_path / "a") as srv:
        srv.wait_listening()
        assert srv.stop() == 0
    assert " TRACE worker " in srv.output() and "accepting on http://127.0.0.1:" in srv.output()
    with CliProcess([str(docroot.root), "--port", "0"], log_path=tmp_path / "b") as srv:
        srv.wait_listening()
        assert srv.stop() == 0
    assert "TRACE" not in srv.output()


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(TRACE)
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def echo_body(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    message = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1"), (b"x-b", b"2")]})
    await send({"type": "http.response.body", "body": message["body"]})


@pytest.mark.parametrize("level, traced", [(TRACE, True), (logging.DEBUG, False)])
def test_trace_level_logs_every_asgi_call_and_message(serve, level: int, traced: bool) -> None:
    """As uvicorn's --log-level trace: the scope, each message (bodies and headers by their
    size) and the end of each call, on fastserve.asgi; nothing of it, and no wrapper, above TRACE."""
    parent, kept = logging.getLogger("fastserve"), Kept()
    saved = parent.level
    parent.setLevel(level)
    logging.getLogger("fastserve.asgi").addHandler(kept)
    try:
        server = serve(echo_body)
        response = server.open().request("POST", "/items?q=1", body=b"hello")
        assert (response.status, response.body) == (200, b"hello")
    finally:
        parent.setLevel(saved)
        logging.getLogger("fastserve.asgi").removeHandler(kept)
    if not traced:
        assert kept.lines == [] and server.state.asgi_bridge.app is echo_body
        return
    http = [line for line in kept.lines if not line.startswith("ASGI [1] ")]  # [1]: the lifespan call
    assert http[0].startswith("ASGI [2] started scope={'type': 'http'") and "'path': '/items'" in http[0]
    assert http[1:] == [
        "ASGI [2] receive {'type': 'http.request', 'body': '<5 bytes>', 'more_body': False}",
        "ASGI [2] send {'type': 'http.response.start', 'status': 200, 'headers': '<2 headers>'}",
        "ASGI [2] send {'type': 'http.response.body', 'body': '<5 bytes>'}",
        "ASGI [2] completed",
    ]


@pytest.mark.parametrize("face", ["static", "app"])
@pytest.mark.parametrize("level, traced", [(TRACE, True), (logging.DEBUG, False)])
def test_trace_level_logs_connections_and_the_static_fast_paths_answers(serve, tmp_path: Path, face: str,
                                                                       level: int, traced: bool) -> None:
    """As uvicorn's --log-level trace: each connection made and lost, named by its peer, on both
    faces; and what the static fast path answers (no ASGI call, so the ASGI trace never showed
    it), and a request the connection refuses itself. Nothing of it above TRACE."""
    (tmp_path / "a.txt").write_bytes(b"a" * 100)
    (tmp_path / "big.bin").write_bytes(b"b" * 100_000)
    parent, kept = logging.getLogger("fastserve"), Kept()
    saved = parent.level
    parent.setLevel(level)
    logging.getLogger("fastserve.connection").addHandler(kept)
    try:
        server = serve(tmp_path if face == "static" else echo_body)
        client = server.open()
        if face == "static":
            assert client.request("GET", "/a.txt").status == 200
            assert client.request("GET", "/big.bin", [("Range", "bytes=0-9,20-29")]).status == 206
            assert client.request("HEAD", "/missing").status == 404
        else:
            assert client.request("POST", "/", body=b"x").status == 200
        client.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
        assert client.closed  # 501, and the connection closes: lost
    finally:
        parent.setLevel(saved)
        logging.getLogger("fastserve.connection").removeHandler(kept)
    if not traced:
        assert kept.lines == [] and server.state.tracer is None
        return
    static = [
        "127.0.0.1:40000 - static GET /a.txt: 200 from memory",
        "127.0.0.1:40000 - static GET /big.bin: 206 ranges of the file",
        "127.0.0.1:40000 - static HEAD /missing: 404 from memory",
    ]
    assert kept.lines == [
        "127.0.0.1:40000 - HTTP connection made",
        *(static if face == "static" else []),
        "127.0.0.1:40000 - refused GET /a.txt: 501, closing",
        "127.0.0.1:40000 - HTTP connection lost",
    ]


@pytest.mark.parametrize("sent, traced", [
    (b"\x16\x03\x01\x00\x05hello\r\n\r\n", "refused \\x16\\x03\\x01\\x00\\x05hello -: 400, closing"),
    (b"GET /a\rX: \x1b[2J HTTP/1.1\r\n\r\n", "refused GET /a\\x0dX:: 400, closing"),
])
def test_a_refused_lines_bytes_are_escaped_in_its_trace_line(serve, tmp_path: Path, sent: bytes, traced: str) -> None:
    """A request refused before its head was read is named by the words of its line as they
    came: what is no printable text (a CR, a terminal's escape) is escaped, as in access lines."""
    parent, kept = logging.getLogger("fastserve"), Kept()
    saved = parent.level
    parent.setLevel(TRACE)
    logging.getLogger("fastserve.connection").addHandler(kept)
    try:
        serve(tmp_path).open().send(sent)
    finally:
        parent.setLevel(saved)
        logging.getLogger("fastserve.connection").removeHandler(kept)
    assert "127.0.0.1:40000 - " + traced in kept.lines, kept.lines


def test_uvicorn_shaped_access_records_escape_a_refused_lines_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a --log-config written for uvicorn, the record's parts are escaped as the common
    format escapes them: a refused request's line is named by its words as they came."""
    from fastserve.server import access_log, logs

    monkeypatch.setattr(logs, "access_to_uvicorn", True)
    kept = Kept()
    access_log.uvicorn_logger.addHandler(kept)
    monkeypatch.setattr(access_log.uvicorn_logger, "level", logging.INFO)
    monkeypatch.setattr(access_log.logger, "level", logging.INFO)

    class Conn:
        client = ("127.0.0.1", 5000)

    log = access_log.AccessLog()
    try:
        log(Conn(), b"\x16\x03\x01\x1b[2J", None, None, 400, 175, 0.001, None, None)
        log(Conn(), b"GET", b"/a\rb", b"HTTP/1.1\x00", 400, 175, 0.001, None, None)
        log.flush()
    finally:
        access_log.uvicorn_logger.removeHandler(kept)
    assert kept.lines == ['127.0.0.1:5000 - "\\x16\\x03\\x01\\x1b[2J - HTTP/-" 400',
                          '127.0.0.1:5000 - "GET /a\\x0db HTTP/1.1\\x00" 400']


@pytest.mark.parametrize("level", ["critical", "error", "warning"])
def test_levels_above_info_hide_the_banner(docroot: DocRoot, tmp_path: Path, level: str) -> None:
    with ServerProcess(docroot.root, ["--log-level", level, "--access-log"], log_path=tmp_path / "log") as srv:
        srv.wait_ready()  # no banner to wait for: the port itself
        assert fetch(srv.port, "/small.txt").status == 200
        assert srv.stop() == 0
    assert "fastserve serving" not in srv.output()


CONFIGS = {
    "json": lambda log: json.dumps({
        "version": 1,
        "formatters": {"mine": {"format": "MINE %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log), "formatter": "mine"}},
        "loggers": {"fastserve": {"handlers": ["file"], "level": "INFO"}},
    }),
    "yaml": lambda log: textwrap.dedent(f"""
        version: 1
        formatters:
          mine: {{format: "MINE %(levelname)s %(name)s: %(message)s"}}
        handlers:
          file: {{class: logging.FileHandler, filename: "{log}", formatter: mine}}
        loggers:
          fastserve: {{handlers: [file], level: INFO}}
    """),
    "ini": lambda log: textwrap.dedent(f"""
        [loggers]
        keys=root,fastserve
        [handlers]
        keys=file
        [formatters]
        keys=mine
        [logger_root]
        handlers=
        [logger_fastserve]
        handlers=file
        qualname=fastserve
        level=INFO
        [handler_file]
        class=FileHandler
        args=({str(log)!r},)
        formatter=mine
        [formatter_mine]
        format=MINE %(levelname)s %(name)s: %(message)s
    """),
}


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_log_config_file(docroot: DocRoot, tmp_path: Path, kind: str) -> None:
    written = tmp_path / "written.log"
    config = tmp_path / f"logging.{kind}"
    config.write_text(CONFIGS[kind](written))
    with ServerProcess(docroot.root, ["--log-config", str(config)], log_path=tmp_path / "out") as srv:
        srv.wait_ready()
        assert fetch(srv.port, "/small.txt").status == 200
        assert srv.stop() == 0
    lines = written.read_text().splitlines()
    assert any(line.startswith("MINE INFO fastserve: fastserve serving ") for line in lines), lines
    assert lines[-1] == "MINE INFO fastserve: fastserve stopped"
    assert "fastserve serving" not in srv.output()  # the file's handlers replaced the default ones


def test_a_log_config_written_for_uvicorn_keeps_its_lines(docroot: DocRoot, tmp_path: Path) -> None:
    """uvicorn's own LOGGING_CONFIG, its handlers writing to files: fastserve's lines go to
    uvicorn.error's handler, access lines to uvicorn.access's as uvicorn shapes them (its
    AccessFormatter reads the record's arguments). Before, every line was dropped."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    server_log, access_log = tmp_path / "server.log", tmp_path / "access.log"
    config["handlers"]["default"] = {"class": "logging.FileHandler", "filename": str(server_log),
                                     "formatter": "default"}
    config["handlers"]["access"] = {"class": "logging.FileHandler", "filename": str(access_log),
                                    "formatter": "access"}
    config["formatters"]["default"]["use_colors"] = config["formatters"]["access"]["use_colors"] = False
    path = tmp_path / "uvicorn-logging.json"
    path.write_text(json.dumps(config))
    with ServerProcess(docroot.root, ["--log-config", str(path), "--access-log"], log_path=tmp_path / "out") as srv:
        srv.wait_ready()
        assert fetch(srv.port, "/small.txt?v=2").status == 200
        assert srv.stop() == 0
    lines = server_log.read_text().splitlines()
    assert lines[0].startswith("INFO:     fastserve serving ") and lines[-1] == "INFO:     fastserve stopped", lines
    [line] = access_log.read_text().splitlines()
    assert re.fullmatch(r'INFO:     127\.0\.0\.1:\d+ - "GET /small\.txt\?v=2 HTTP/1\.1" 200( OK)?', line), line
    assert srv.output() == ""


def test_a_log_config_that_reaches_no_handler_is_warned_about(docroot: DocRoot, tmp_path: Path) -> None:
    path = tmp_path / "app-only.json"
    path.write_text(json.dumps({"version": 1, "loggers": {"myapp": {"level": "INFO"}}}))
    with ServerProcess(docroot.root, ["--log-config", str(path)], log_path=tmp_path / "out") as srv:
        srv.wait_ready()
        assert srv.stop() == 0
    assert f"--log-config {path} gives the 'fastserve' logger no handler: its lines are dropped" in srv.output()


# run(log_config=...) as a dict, in a fresh interpreter (it sets up the process's loggers): one
# that reaches no handler, then one written for uvicorn, then the default again.
LOG_CONFIG_DICTS = textwrap.dedent('''
    from fastserve.server import logs

    logs.configure_logging(None, {"version": 1})
    handler = {"h": {"class": "logging.StreamHandler"}}
    logs.configure_logging(None, {"version": 1, "handlers": handler, "loggers": {
        "uvicorn.error": {"handlers": ["h"]}, "uvicorn.access": {"handlers": ["h"]}}})
    print("routed", logs.access_to_uvicorn)
    logs.configure_logging()
    print("default", logs.access_to_uvicorn)
''')


def test_a_log_config_dict_is_named_as_a_dict_and_the_default_routes_access_lines_back() -> None:
    """The warning named a dict ``--log-config dict``, a flag run() has not; and after a config
    written for uvicorn, the default config left access lines going to ``uvicorn.access``."""
    result = subprocess.run([sys.executable, "-c", LOG_CONFIG_DICTS], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "log_config (a dict) gives the 'fastserve' logger no handler: its lines are dropped" in result.stderr
    assert "--log-config" not in result.stderr
    assert result.stdout.split("\n")[:2] == ["routed True", "default False"], result.stdout


def test_log_level_still_applies_over_a_log_config(docroot: DocRoot, tmp_path: Path) -> None:
    written = tmp_path / "written.log"
    config = tmp_path / "logging.json"
    config.write_text(CONFIGS["json"](written))
    with ServerProcess(docroot.root, ["--log-config", str(config), "--log-level", "warning"],
                       log_path=tmp_path / "out") as srv:
        srv.wait_ready()
        assert srv.stop() == 0
    assert "fastserve serving" not in written.read_text()


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("{not json", "logging.json"),
])
def test_bad_log_config_is_one_line(tmp_path: Path, content, message) -> None:
    config = tmp_path / "logging.json"
    if content is not None:
        config.write_text(content)
    result = run_cli([str(tmp_path), "--log-config", str(config)])
    assert result.returncode == 3
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr


def test_root_logger_is_left_to_the_app(tmp_path: Path) -> None:
    (tmp_path / "rootcheck.py").write_text(textwrap.dedent('''
        import logging

        async def app(scope, receive, send):
            root = logging.getLogger()
            body = ("%s %s" % (root.handlers, logging.getLevelName(root.level))).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
    '''))
    with CliProcess(["rootcheck:app", "--port", "0", "--log-level", "debug"], log_path=tmp_path / "log",
                    cwd=tmp_path) as srv:
        port = port_from_url(srv.wait_listening())
        assert fetch(port, "/").body == b"[] WARNING"


def test_an_app_logging_to_uvicorns_logger_is_heard(tmp_path: Path) -> None:
    """Apps written for uvicorn log through ``logging.getLogger("uvicorn.error")``, which uvicorn
    gives a handler; under fastserve their INFO lines were dropped."""
    (tmp_path / "uvlog.py").write_text(textwrap.dedent('''
        import logging

        logger = logging.getLogger("uvicorn.error")

        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            logger.info("the app says hello")
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
    '''))
    with CliProcess(["uvlog:app", "--port", "0"], log_path=tmp_path / "log", cwd=tmp_path) as srv:
        port = port_from_url(srv.wait_listening())
        assert fetch(port, "/").status == 204
        assert srv.stop() == 0
    assert " uvicorn.error INFO the app says hello" in srv.output(), srv.output()


def _rotation_config(server_log: Path, access_log: Path) -> str:
    return json.dumps({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(message)s"}},
        "handlers": {
            "server": {"class": "logging.FileHandler", "filename": str(server_log), "formatter": "plain"},
            "access": {"class": "logging.FileHandler", "filename": str(access_log), "formatter": "plain"},
        },
        "loggers": {
            "fastserve": {"handlers": ["server"], "level": "INFO", "propagate": False},
            "fastserve.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    })


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigusr1_reopens_log_files_after_rotation_and_sigusr2_is_refused(docroot: DocRoot, tmp_path: Path,
                                                                         workers: str) -> None:
    """logrotate's way (as with nginx): move the file, send SIGUSR1, and the next lines go to a
    new file at the configured path; neither SIGUSR1 nor SIGUSR2 ends the server."""
    from test_server_process import wait_for

    server_log, access_log = tmp_path / "server.log", tmp_path / "access.log"
    config = tmp_path / "logging.json"
    config.write_text(_rotation_config(server_log, access_log))
    with ServerProcess(docroot.root, ["--log-config", str(config), "--access-log", "--workers", workers],
                       log_path=tmp_path / "out") as srv:
        srv.wait_ready()
        assert fetch(srv.port, "/small.txt").status == 200
        assert wait_for(lambda: access_log.exists() and "/small.txt" in access_log.read_text(), 5.0)
        access_log.rename(tmp_path / "access.log.1")
        srv.proc.send_signal(signal.SIGUSR1)
        processes = 1 if workers == "1" else 1 + int(workers)  # the supervisor reopens its own too
        assert wait_for(lambda: server_log.read_text().count("log files reopened") == processes, 5.0), (
            server_log.read_text())
        assert fetch(srv.port, "/small.txt?after").status == 200
        assert wait_for(lambda: access_log.exists() and "/small.txt?after" in access_log.read_text(), 5.0)
        assert "?after" not in (tmp_path / "access.log.1").read_text()
        srv.proc.send_signal(signal.SIGUSR2)
        assert wait_for(lambda: "SIGUSR2 ignored" in server_log.read_text(), 5.0)
        assert fetch(srv.port, "/small.txt").status == 200
        assert srv.stop() == 0


def test_an_access_log_nobody_reads_any_more_is_said_once_and_the_worker_serves_on(docroot: DocRoot,
                                                                                    tmp_path: Path) -> None:
    """stdout a pipe whose reader is gone (a log shipper restarted, ``| head``): the write's
    BrokenPipeError escaped the worker's clock tick, which then never ran again (no keep-alive
    timeout, no heartbeat, no more lines), and the stop ended in a traceback. Now the lines are
    dropped, one error line says so, and the worker serves and keeps time as before."""
    import time

    from server_helpers import RawConnection, free_port, server_env, wait_until_accepting

    port = free_port()
    with open(tmp_path / "stderr", "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "fastserve", str(docroot.root), "--port", str(port),
                                 "--access-log", "--keepalive-timeout", "1"],
                                stdout=subprocess.PIPE, stderr=stderr, env=server_env())
    try:
        proc.stdout.close()  # the reader is gone
        wait_until_accepting(port, proc)
        for _ in range(3):  # lines written on the next tick of the clock, and failing there
            assert fetch(port, "/small.txt").status == 200
            time.sleep(0.6)
        with RawConnection(port) as idle:
            assert idle.exchange("GET", "/small.txt").status == 200
            started = time.monotonic()
            assert idle.sock.recv(1) == b""  # closed by the keep-alive timeout: the clock still runs
            assert time.monotonic() - started < 4.5  # (keep-alive timeout 1 s; it never came)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = (tmp_path / "stderr").read_text()
    assert output.count(f"ERROR worker {proc.pid}: the access log cannot be written (Broken pipe): its lines are "
                        "dropped until it can be") == 1, output
    assert "Traceback" not in output and "Exception in callback" not in output, output


def test_access_lines_dropped_while_the_stream_fails_are_counted_when_it_works_again(monkeypatch) -> None:
    from fastserve.server import access_log

    class Flaky:
        failing = True
        written: List[str] = []

        def write(self, text: str) -> None:
            if self.failing:
                raise OSError(28, "No space left on device")
            self.written.append(text)

        def flush(self) -> None:
            pass

    stream = Flaky()
    monkeypatch.setattr(access_log.logger, "handlers", [access_log.AccessHandler(stream)])
    monkeypatch.setattr(access_log.logger, "level", logging.INFO)
    said = Kept()
    monkeypatch.setattr(logging.getLogger("fastserve"), "handlers", [said])

    class Conn:
        client = ("127.0.0.1", 5000)

    log = access_log.AccessLog()
    for status in (200, 404):
        log(Conn(), b"GET", b"/a", b"HTTP/1.1", status, 10, 0.001, None, None)
        log.flush()
    stream.failing = False
    log(Conn(), b"GET", b"/b", b"HTTP/1.1", 200, 10, 0.001, None, None)
    log.flush()
    assert [line.split('"')[1] for line in stream.written] == ["GET /b HTTP/1.1"]
    assert said.lines == [
        f"worker {log.worker}: the access log cannot be written (No space left on device): its lines are dropped "
        "until it can be",
        f"worker {log.worker}: the access log is written again; 2 lines were dropped",
    ]


@pytest.mark.parametrize("route", ["fastserve.access", "uvicorn.access"])
def test_a_log_config_handler_that_cannot_write_access_lines_is_one_error_not_a_traceback_each(
        monkeypatch, capsys, route) -> None:
    """A --log-config file's handler for the access lines (a FileHandler, fastserve's or the
    one a uvicorn config names) on a full disk: logging printed '--- Logging error ---' and a
    traceback to stderr for every line; the lines are dropped and said once, as for stdout.
    The handler's error on any other record is still its own."""
    from fastserve.server import access_log, logs

    class Flaky(io.StringIO):
        failing = True

        def flush(self) -> None:
            if self.failing:
                raise OSError(28, "No space left on device")

    stream = Flaky()
    handler = logging.StreamHandler(stream)
    target = logging.getLogger(route)
    monkeypatch.setattr(target, "handlers", [handler])
    monkeypatch.setattr(target, "propagate", False)
    monkeypatch.setattr(target, "level", logging.INFO)
    monkeypatch.setattr(access_log.logger, "level", logging.INFO)
    monkeypatch.setattr(logs, "access_to_uvicorn", route == "uvicorn.access")
    said = Kept()
    monkeypatch.setattr(logging.getLogger("fastserve"), "handlers", [said])

    class Conn:
        client = ("127.0.0.1", 5000)

    log = access_log.AccessLog()
    for status in (200, 404, 200):
        log(Conn(), b"GET", b"/a", b"HTTP/1.1", status, 10, 0.001, None, None)
        log.flush()
    stream.failing = False
    log(Conn(), b"GET", b"/b", b"HTTP/1.1", 200, 10, 0.001, None, None)
    log.flush()
    assert "/b" in stream.getvalue().splitlines()[-1]
    assert said.lines == [
        f"worker {log.worker}: the access log cannot be written (No space left on device): its lines are dropped "
        "until it can be",
        f"worker {log.worker}: the access log is written again; 3 lines were dropped",
    ]
    assert capsys.readouterr().err == ""
    stream.failing = True
    other = logging.getLogger("tests.elsewhere")  # the same handler, for another logger's record
    monkeypatch.setattr(other, "handlers", [handler])
    monkeypatch.setattr(other, "propagate", False)
    other.error("not an access line")
    assert "--- Logging error ---" in capsys.readouterr().err  # logging's own report, as before
