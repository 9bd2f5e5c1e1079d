"""``fastserve.run(app, ...)``: the programmatic way to serve an app."""
import signal
import socket
import subprocess
import sys
import textwrap
import time

import httpx2
import pytest

import fastserve


@pytest.fixture(autouse=True)
def logging_left_alone(monkeypatch):
    """run() sets up fastserve's loggers as the command line does; in this process that would
    outlive the test (other tests' caplog reads fastserve's records through the root logger).
    The subprocess tests below see it done for real."""
    import fastserve.server.logs

    monkeypatch.setattr(fastserve.server.logs, "configure_logging", lambda level=None, config_file=None: None)


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError):
        fastserve.run(object(), no_such_option=1)


def test_uvicorn_run_keywords_set_the_same_settings(monkeypatch):
    """``uvicorn.run(app, timeout_keep_alive=..., ...)`` becomes ``fastserve.run(app, ...)``
    with the same keywords."""
    import fastserve.server.serve

    seen = []
    monkeypatch.setattr(fastserve.server.serve, "serve", lambda config: seen.append(config) or 0)
    assert fastserve.run(".", timeout_keep_alive=7, timeout_graceful_shutdown=3, limit_concurrency=50) == 0
    (config,) = seen
    assert (config.keepalive_timeout, config.graceful_timeout, config.max_connections) == (7, 3, 50)
    with pytest.raises(ValueError, match="--max-connections must be at least 1"):
        fastserve.run(".", limit_concurrency=0)


def test_every_uvicorn_run_keyword_is_taken(monkeypatch):
    """``uvicorn.run``'s keywords that name no fastserve setting used to be a TypeError
    (``loop="uvloop"``, ``http="httptools"``, ``use_colors=...``, ``reload_dirs`` with
    ``reload=False``); they are taken as the command line takes their flags."""
    import fastserve.server.serve

    seen = []
    monkeypatch.setattr(fastserve.server.serve, "serve", lambda config: seen.append(config) or 0)
    assert fastserve.run(".", loop="uvloop", http="httptools", ws="websockets", interface="asgi3", http2=False,
                         use_colors=False, timeout_worker_healthcheck=5, h11_max_incomplete_event_size=1024,
                         reload=False, reload_dirs=["src"], reload_includes=["*.html"], reload_excludes=["x*"],
                         reload_delay=1.0, port=8123) == 0
    assert seen[0].port == 8123
    for option, value in [("loop", "asyncio"), ("http", "h11"), ("http2", True)]:
        with pytest.raises(ValueError, match=option):
            fastserve.run(".", **{option: value})


def test_reload_true_runs_the_reloader_with_the_same_settings_as_flags(monkeypatch):
    """``uvicorn.run("main:app", reload=True, ...)``, the tutorials' idiom, works as
    ``fastserve.run``: the settings become the command line the reloader restarts."""
    import fastserve.cli

    seen = []
    monkeypatch.setattr(fastserve.cli, "main", lambda argv: seen.append(argv) or 0)
    assert fastserve.run("main:app", host="127.0.0.1", port=8001, reload=True, reload_dirs=["src", "lib"],
                         timeout_keep_alive=7, access_log=True, server_header=False) == 0
    (argv,) = seen
    assert argv[0] == "main:app" and argv[-1] == "--reload"
    assert " ".join(argv[1:-1]) == (
        "--host 127.0.0.1 --port 8001 --keepalive-timeout 7 --access-log --no-server-header"
        " --reload-dir src --reload-dir lib"
    )
    assert fastserve.cli.config_from_args(argv[:-1]).keepalive_timeout == 7
    seen.clear()
    fastserve.run("main:app", reload=True, reload_includes=["*.html"], reload_excludes="tmp_*", reload_delay=0.5)
    assert " ".join(seen[0]) == (
        "main:app --reload-delay 0.5 --reload-include *.html --reload-exclude tmp_* --reload")
    with pytest.raises(TypeError, match="import string"):
        fastserve.run(object(), reload=True)
    with pytest.raises(TypeError, match="no_such_option"):
        fastserve.run("main:app", reload=True, no_such_option=1)


def test_run_serves_an_app_object_until_sigterm(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = tmp_path / "serve_it.py"
    script.write_text(textwrap.dedent(f'''
        import sys
        import fastserve

        async def app(scope, receive, send):
            if scope["type"] == "http":
                await send({{"type": "http.response.start", "status": 200, "headers": []}})
                await send({{"type": "http.response.body", "body": b"from run()"}})

        sys.exit(fastserve.run(app, host="127.0.0.1", port={port}, graceful_timeout=2, access_log=True))
    '''))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                assert httpx2.get(f"http://127.0.0.1:{port}/", timeout=2).text == "from run()"
                break
            except httpx2.TransportError:
                assert time.monotonic() < deadline, proc.stdout.read().decode() if proc.poll() is not None else ""
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    # Logged as the command line logs (as uvicorn.run does): it used to write nothing at all.
    output = proc.stdout.read().decode()
    assert f"fastserve serving app on http://127.0.0.1:{port} " in output, output
    assert '"GET / HTTP/1.1" 200 ' in output and "fastserve stopped" in output, output


def test_run_takes_a_log_config_dict_as_uvicorn_run_does(tmp_path):
    log = tmp_path / "server.log"
    script = tmp_path / "serve_dict.py"
    script.write_text(textwrap.dedent(f'''
        import os
        import signal

        import fastserve

        config = {{"version": 1, "formatters": {{"f": {{"format": "DICT %(name)s %(message)s"}}}},
                  "handlers": {{"file": {{"class": "logging.FileHandler", "filename": {str(log)!r}, "formatter": "f"}}}},
                  "loggers": {{"fastserve": {{"handlers": ["file"], "level": "INFO"}}}}}}
        fastserve.run(".", port=0, log_config=config, ready_callback=lambda: os.kill(os.getpid(), signal.SIGTERM))
    '''))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines()
    assert lines[0].startswith("DICT fastserve fastserve serving . on http://127.0.0.1:"), lines
    assert lines[-1] == "DICT fastserve fastserve stopped", lines
