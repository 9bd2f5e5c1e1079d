"""``fastserve.run(app, ...)``: the programmatic way to serve an app."""
import json
import signal
import socket
import subprocess
import sys
import textwrap
import time

import httpx2
import pytest

import fastserve
from server_helpers import free_port


def app_source(body: bytes) -> str:
    """An ASGI app answering ``body``, as a script's source (one line, to put in an f-string)."""
    return ("async def app(scope, receive, send):\n"
            "    if scope['type'] == 'http':\n"
            "        await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
            f"        await send({{'type': 'http.response.body', 'body': {body!r}}})\n")


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
    port = free_port()
    script = tmp_path / "serve_it.py"
    script.write_text(app_source(b"from run()") + textwrap.dedent(f'''
        import sys
        import fastserve

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


FAILED_STARTS = {
    "import": ("'nosuchmodule_for_run:app'", {}, 'Error loading ASGI app. Could not import module "nosuchmodule_for_run".'),
    "port": ("'.'", {"port": "TAKEN"}, "address already in use"),
    "log_config": ("'.'", {"log_config": "'missing.json'"}, "'missing.json' does not exist"),
}


@pytest.mark.parametrize("case", sorted(FAILED_STARTS))
def test_a_failed_start_ends_run_as_it_ends_the_command_line(tmp_path, case):
    """The app cannot be imported, the port is taken, a file a setting names is missing:
    ``fastserve.run`` says why in the command line's one line and ends the process with its
    exit code 3 (as ``uvicorn.run`` exits), where it used to raise a traceback (exit code 1)
    and, from a script that ignored its return value, could even end with 0."""
    target, options, line = FAILED_STARTS[case]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        keywords = ", ".join(f"{name}={value}" for name, value in {"port": 0, **options}.items())
        script = tmp_path / "start.py"
        script.write_text(f"import fastserve\nfastserve.run({target}, {keywords.replace('TAKEN', str(port))})\n")
        by_run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=30)
        flags = {"port": ["--port", str(port)], "log_config": ["--log-config", "missing.json"]}.get(case, [])
        by_cli = subprocess.run([sys.executable, "-m", "fastserve", target.strip("'"), "--port", "0", *flags],
                                cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert (by_run.returncode, by_cli.returncode) == (3, 3), (by_run.stderr, by_cli.stderr)
    assert line in by_run.stderr and "Traceback" not in by_run.stderr, by_run.stderr
    ours = [text for text in by_run.stderr.splitlines() if text.startswith("fastserve: ")]
    assert ours == [text for text in by_cli.stderr.splitlines() if text.startswith("fastserve: ")], by_run.stderr


BAD_OPTIONS = [
    ({"loop": "asyncio"}, "loop='asyncio'"),
    ({"http": "h11"}, "http='h11'"),
    ({"http2": True}, "http2=True"),
    ({"etag": "maybe"}, "--etag must be one of on, off, not 'maybe'"),
    ({"lifespan": "yes"}, "--lifespan must be one of auto, on, off"),
    ({"access_log_format": "xml"}, "--access-log-format must be one of common, combined, json"),
    ({"log_level": "loud"}, "--log-level must be one of critical"),
    ({"ssl_cert_reqs": 7}, "--ssl-cert-reqs must be one of 0, 1, 2, not 7"),
    ({"ssl_version": 3}, "--ssl-version must be one of 2, 5, 17, not 3"),
    ({"ssl_ciphers": "NONE-SUCH"}, "--ssl-ciphers 'NONE-SUCH': OpenSSL selects no cipher"),
    ({"ssl_keyfile": "key.pem"}, "--ssl-keyfile needs --ssl-certfile"),
    ({"forwarded_allow_ips": "10.0.0.0/8,fd00::/129"}, "--forwarded-allow-ips: 'fd00::/129' is no network"),
    ({"dotfiles": "yes"}, "--dotfiles"),
    ({"compress": "gzip"}, "--compress"),
    ({"if_modified_since": "after"}, "--if-modified-since"),
    ({"port": "8000"}, "--port must be a whole number, not '8000'"),
    ({"workers": 2.5}, "--workers must be a whole number, not 2.5"),
    ({"graceful_timeout": "10"}, "--graceful-timeout must be a number"),
    ({"port": 70000}, "--port must be between 0 and 65535"),
    ({"limit_concurrency": 0}, "--max-connections must be at least 1"),
    ({"admin_prefix": "_fastserve"}, "--admin-prefix must begin with '/'"),
    ({"headers": [("Content-Length", "5")]}, "--header Content-Length: the server writes that field itself"),
]


@pytest.mark.parametrize("reload", [False, True], ids=["run", "reload"])
@pytest.mark.parametrize("options, message", BAD_OPTIONS, ids=[next(iter(o)) + "=" + repr(o[next(iter(o))])
                                                                for o, _ in BAD_OPTIONS])
def test_a_bad_keyword_is_a_value_error_with_or_without_reload(monkeypatch, options, message, reload):
    """Each value the command line refuses with a usage error is a ``ValueError`` from run(),
    before anything starts; ``reload=True`` used to hand it to the command line, whose usage
    error ended the process (exit code 2), and values not among a setting's choices
    (``etag="maybe"``) or of the wrong kind were served with, silently."""
    import fastserve.cli
    import fastserve.server.serve

    started = []
    monkeypatch.setattr(fastserve.cli, "main", lambda argv: started.append(argv) or 0)
    monkeypatch.setattr(fastserve.server.serve, "serve", lambda config: started.append(config) or 0)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fastserve.run("main:app", reload=reload, **options)
    assert started == []


def test_the_command_line_offers_the_choices_run_checks():
    """One list per setting: the command line's choices are those ``Config.problems`` checks."""
    from fastserve.cli import build_parser
    from fastserve.config import CHOICES, Config

    offered = {action.dest: tuple(action.choices) for action in build_parser()._actions
               if action.dest in CHOICES and action.choices is not None}
    assert offered == CHOICES
    for name, choices in CHOICES.items():
        assert all(Config(**{name: choice}).problems() == [] for choice in choices)


def reloader_started(monkeypatch) -> list:
    """What ``run(reload=True)`` starts the reloader with, once per call: ``(argv, the Config it
    reads, the log config file's JSON)``; the reloader itself is not run."""
    import fastserve.cli

    seen = []

    def main(argv):
        config = fastserve.cli.config_from_args(argv[:-1])
        with open(config.log_config) as file:
            seen.append((argv, config, json.load(file)))
        return 0

    monkeypatch.setattr(fastserve.cli, "main", main)
    return seen


def test_reload_true_passes_pairs_a_log_config_dict_and_a_level_number_to_its_server(monkeypatch, tmp_path):
    """``run(reload=True)`` hands its settings to the reloader as a command line: ``headers``
    (and the other pairs) used to be written as Python tuples, refused there as usage errors,
    and a ``log_config`` dict as its repr, a file that does not exist. Now each reaches the
    server as the settings ``run`` would serve with; a level number (``logging.DEBUG``, as
    ``uvicorn.run`` takes it) too."""
    import logging

    import fastserve.cli

    log_config = {"version": 1, "loggers": {"fastserve": {"level": "DEBUG"}}}
    seen = reloader_started(monkeypatch)
    assert fastserve.run("main:app", reload=True, headers=[("x-served-by", "edge 1")], error_pages=[(404, "nf.html")],
                         cache_rules=[("*.map", "no-store")], log_config=log_config, log_level=logging.DEBUG) == 0
    ((_, config, file_config),) = seen
    assert config.headers == [("x-served-by", "edge 1")] and config.error_pages == [(404, "nf.html")]
    assert config.cache_rules == [("*.map", "no-store")] and config.log_level == "debug"
    assert file_config == log_config
    with pytest.raises(ValueError, match="must be JSON"):
        fastserve.run("main:app", reload=True, log_config={"version": 1, "filters": {"f": {"()": object()}}})


def test_a_failed_reloader_start_ends_run_with_its_exit_code(monkeypatch):
    import fastserve.cli

    monkeypatch.setattr(fastserve.cli, "main", lambda argv: 3)
    with pytest.raises(SystemExit) as ended:
        fastserve.run("main:app", reload=True)
    assert ended.value.code == 3


def test_run_from_a_thread_serves_without_signal_handlers(tmp_path):
    """``fastserve.run`` called from a thread (a test harness, a desktop app, a notebook), as
    ``uvicorn.run`` can be: Python sets signal handlers in the main thread only, and run()
    failed there at once (ValueError: signal only works in main thread). It serves now, until
    the process ends; what needs signals (workers, the reloader) is a RuntimeError saying so."""
    port = free_port()
    script = tmp_path / "threaded.py"
    script.write_text(app_source(b"from a thread") + textwrap.dedent(f'''
        import threading
        import time
        import urllib.request

        import fastserve


        failed = []

        def serve(target=app, **options):
            try:
                fastserve.run(target, host="127.0.0.1", **options)
            except BaseException as exc:
                failed.append(exc)

        threading.Thread(target=serve, kwargs={{"port": {port}}}, daemon=True).start()
        deadline = time.monotonic() + 15
        while True:
            try:
                print(urllib.request.urlopen("http://127.0.0.1:{port}/", timeout=2).read().decode())
                break
            except OSError:
                assert not failed and time.monotonic() < deadline, failed
                time.sleep(0.1)
        for options in ({{"workers": 2}}, {{"limit_max_requests": 5}}, {{"target": "main:app", "reload": True}}):
            worker = threading.Thread(target=serve, kwargs={{"port": 0, **options}})
            worker.start()
            worker.join(10)
        print([type(exc).__name__ for exc in failed])
    '''))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["from a thread", "['RuntimeError', 'RuntimeError', 'RuntimeError']"], (
        result.stdout, result.stderr)
    assert "from a thread other than the main one: no signal stops it" in result.stderr


def test_a_keyword_given_none_is_one_not_given(monkeypatch):
    """``uvicorn.run``'s keywords default to None (``workers``, ``ssl_keyfile``, ``headers``...),
    and programs pass them so (``workers=None``, ``ssl_keyfile=os.environ.get("KEY")``): run()
    raised a TypeError from deep inside, and with ``reload=True`` wrote ``--workers None`` on its
    server's command line. Each is now fastserve's default, with and without reload=True."""
    import inspect

    import fastserve.cli
    import fastserve.server.serve
    from fastserve.config import Config
    from fastserve.server.logs import AS_THE_PROGRAM_SET_IT

    uvicorn = pytest.importorskip("uvicorn")
    nones = {name: None for name, parameter in inspect.signature(uvicorn.run).parameters.items()
             if parameter.default is None}
    assert {"workers", "ssl_keyfile", "headers", "limit_max_requests", "timeout_graceful_shutdown"} <= set(nones)
    seen = []
    monkeypatch.setattr(fastserve.server.serve, "serve", lambda config: seen.append(config) or 0)
    assert fastserve.run(".", log_config=None, **nones) == 0
    assert seen[0] == Config(target=".", log_config=AS_THE_PROGRAM_SET_IT)

    argvs = reloader_started(monkeypatch)
    assert fastserve.run("main:app", reload=True, port=8001, log_config=None, **nones) == 0
    ((argv, _, log_config),) = argvs
    assert argv == ["main:app", "--port", "8001", "--log-config", argv[4], "--reload"], argv
    assert log_config == AS_THE_PROGRAM_SET_IT


LEFT_TO_THE_PROGRAM = textwrap.dedent('''
    import json, logging, os, signal, sys
    import fastserve


    class Json(logging.Formatter):
        def format(self, record):
            return json.dumps({"logger": record.name, "level": record.levelname, "message": record.getMessage()})


    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(Json())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    fastserve.run(".", port=0, log_config=None, ready_callback=lambda: os.kill(os.getpid(), signal.SIGTERM))
''')


def test_log_config_none_leaves_logging_as_the_program_set_it(tmp_path):
    """``uvicorn.run(app, log_config=None)``, the recipe for an app that formats every record
    itself (JSON, structlog): the server sets up no logging. fastserve set up its own stderr
    handler all the same, so its lines went out in its format, past the program's."""
    result = subprocess.run([sys.executable, "-c", LEFT_TO_THE_PROGRAM], cwd=tmp_path, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["logger"] == "fastserve" and records[0]["message"].startswith("fastserve serving . on "), records
    assert records[-1] == {"logger": "fastserve", "level": "INFO", "message": "fastserve stopped"}, records
    assert "fastserve" not in result.stderr, result.stderr
