#!/usr/bin/env python3
"""fastserve's benchmark: fastserve next to the servers people would otherwise use, under wrk.

Groups of servers and scenarios, each with its own tables and ratios:
  static   static files: fastserve, nginx, h2o, uvicorn+Starlette's StaticFiles, and the drop-in
  asgi     a framework-less ASGI hello world (bench/apps/hello.py): fastserve, uvicorn, granian
  memory   RSS per idle keep-alive connection (bench/idle_memory.py): fastserve, nginx, h2o,
           uvicorn+Starlette

All servers of a group run at once (idle ones cost nothing) and are measured in rounds: in each
round, for each scenario, wrk runs against each server in turn, the order rotating every round.
The table shows medians over rounds; a ratio is the median of ratios taken within one round,
where the two measurements were seconds apart, with the range of those per-round ratios.

Next to req/s the table shows req/CPU-s: requests answered per second of CPU the server's
processes used during the run (user + system, from /proc). With one wrk thread, a server
that answers fast enough leaves wrk's own CPU as the limit; req/s then stops telling such
servers apart, while req/CPU-s still shows which one does less work per request. A second
table per group gives the latency distribution (p50/p90/p99/p99.9) and wrk's timeouts.

Run through ``bash bench/run.sh``, which installs everything first. Standard library only, so
any Python 3.9+ can drive it; the servers themselves run from the interpreters named below.

Environment:
  FASTSERVE_PYTHON   interpreter with fastserve installed (default bench/.venv-fastserve)
  UVICORN_PYTHON     interpreter with uvicorn[standard] + starlette (+ fastserve for the drop-in)
                     (default bench/.venv-uvicorn)
  GRANIAN_PYTHON     interpreter with granian[uvloop] (default bench/.venv-granian)
  BENCH_BASELINE_PYTHON  interpreter with another fastserve build installed: it runs as
                     fastserve-baseline next to fastserve (static, asgi and memory groups), and
                     the ratios gain fastserve / fastserve-baseline (unset: no baseline)
  BENCH_GROUPS       comma-separated subset of groups to run: static, asgi, memory
                     (default: all three)
  BENCH_ROUNDS       rounds; each round measures every scenario on every server (default 3)
  BENCH_DURATION     seconds of one measured wrk run (default 5)
  BENCH_WARMUP       seconds of unmeasured wrk load before a (server, scenario)'s first run
                     (default 2, 0 = none)
  BENCH_ALL=1        run every scenario against uvicorn+fastserve.StaticFiles, not only 1k
  BENCH_SERVERS      comma-separated subset of servers to run, in any group (default: all)
  BENCH_SCENARIOS    comma-separated subset of scenarios to run, in any group (default: all)
  BENCH_SERVER_CPU   CPU the server is pinned to (default 0)
  BENCH_CLIENT_CPU   CPU wrk is pinned to (default 1)
  BENCH_IDLE_CONNECTIONS  idle connections the memory group opens per server (default 5000)
  BENCH_CONNECTIONS  keep-alive connections wrk holds in each scenario that does not set its own
                     (default 64; 1k-c1024 keeps 1,024 and hello-c256 256)
  BENCH_SERVER_CPU_PERCENT  cap every server (and its workers) at this share of one CPU, 1-100,
                     with a cgroup of its own (bench/cpucap.py; needs root); unset: no cap
  BENCH_SERVER_CPU_PERIOD_US  the period the cap is enforced over (default 2500)
"""
from __future__ import annotations

import datetime
import gzip
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import cpucap
from idle_memory import IdleMemory, measure_idle_memory, session_processes
from round_stats import RatioSummary, median_of, per_round_ratios, rotated

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
HOST = "127.0.0.1"
WRK_THREADS = 1
WRK_CONNECTIONS = 64  # BENCH_CONNECTIONS's default: per scenario unless it says otherwise
WRK_TIMEOUT_S = 10
LATENCY_SCRIPT = BENCH_DIR / "latency.lua"  # makes wrk print p99.9 too
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
MIB = 1024 * 1024
# wrk using this share of its CPU or more means the client, not the server, set the pace
CLIENT_BOUND_SHARE = 0.9
# a capped server using less than this share of its cap was not held by it: not the limit
CAP_BOUND_SHARE = 0.9


# --------------------------------------------------------------------------- configuration


@dataclass
class Settings:
    duration_s: int
    warmup_s: int
    run_all_dropin: bool
    servers: Optional[list[str]]
    scenarios: Optional[list[str]]
    server_cpu: str
    client_cpu: str
    fastserve_python: str
    uvicorn_python: str
    groups: Optional[list[str]] = None
    granian_python: str = str(BENCH_DIR / ".venv-granian" / "bin" / "python")
    rounds: int = 3
    idle_connections: int = 5000  # the memory group's idle connections per server
    connections: int = WRK_CONNECTIONS  # wrk's connections where a scenario does not set its own
    server_cpu_percent: Optional[int] = None  # each server capped at this % of one CPU; None: no cap
    server_cpu_period_us: int = cpucap.PERIOD_US  # ... enforced over periods this long
    # an interpreter with another fastserve build, run as fastserve-baseline; None: no baseline
    baseline_python: Optional[str] = None

    @property
    def cpu_cap(self) -> Optional[cpucap.Cap]:
        """The servers' CPU cap, None for none."""
        if self.server_cpu_percent is None:
            return None
        return cpucap.Cap(self.server_cpu_percent, self.server_cpu_period_us)

    @classmethod
    def from_env(cls) -> "Settings":
        def csv(name: str) -> Optional[list[str]]:
            raw = os.environ.get(name, "").strip()
            return [item.strip() for item in raw.split(",") if item.strip()] or None

        return cls(
            duration_s=int(os.environ.get("BENCH_DURATION", "5")),
            warmup_s=int(os.environ.get("BENCH_WARMUP", "2")),
            run_all_dropin=os.environ.get("BENCH_ALL", "") == "1",
            servers=csv("BENCH_SERVERS"),
            scenarios=csv("BENCH_SCENARIOS"),
            server_cpu=os.environ.get("BENCH_SERVER_CPU", "0"),
            client_cpu=os.environ.get("BENCH_CLIENT_CPU", "1"),
            fastserve_python=os.environ.get(
                "FASTSERVE_PYTHON", str(BENCH_DIR / ".venv-fastserve" / "bin" / "python")
            ),
            uvicorn_python=os.environ.get(
                "UVICORN_PYTHON", str(BENCH_DIR / ".venv-uvicorn" / "bin" / "python")
            ),
            groups=csv("BENCH_GROUPS"),
            granian_python=os.environ.get(
                "GRANIAN_PYTHON", str(BENCH_DIR / ".venv-granian" / "bin" / "python")
            ),
            rounds=positive_int("BENCH_ROUNDS", "3"),
            idle_connections=positive_int("BENCH_IDLE_CONNECTIONS", "5000"),
            connections=positive_int("BENCH_CONNECTIONS", str(WRK_CONNECTIONS)),
            server_cpu_percent=cpu_percent("BENCH_SERVER_CPU_PERCENT"),
            server_cpu_period_us=cpu_period("BENCH_SERVER_CPU_PERIOD_US"),
            baseline_python=interpreter("BENCH_BASELINE_PYTHON"),
        )


def positive_int(name: str, default: str) -> int:
    raw = os.environ.get(name, default).strip() or default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise SystemExit(f"{name} must be a whole number of at least 1, got {raw!r}")
    return value


def interpreter(name: str) -> Optional[str]:
    """An executable named by the environment; unset or empty: None."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    found = shutil.which(raw)
    if found is None:
        raise SystemExit(f"{name}={raw!r} is not an executable (an interpreter with fastserve installed)")
    return raw


def cpu_percent(name: str) -> Optional[int]:
    """A share of one CPU in whole percent (1-100) from the environment; unset or empty: None."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise SystemExit(f"{name} must be a whole percentage from 1 to 100 (of one CPU), got {raw!r}")
    return int(raw)


def cpu_period(name: str) -> int:
    """The CPU cap's period in microseconds (1,000-1,000,000) from the environment."""
    raw = os.environ.get(name, "").strip() or str(cpucap.PERIOD_US)
    if not raw.isdigit() or not cpucap.MIN_QUOTA_US <= int(raw) <= cpucap.MAX_PERIOD_US:
        raise SystemExit(f"{name} must be whole microseconds from 1000 to 1000000, got {raw!r}")
    return int(raw)


# --------------------------------------------------------------------------- document root


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    expected_status: int
    expected_length: Optional[int]  # body bytes a GET returns; None when not checked
    conditional: bool = False  # send If-None-Match with the server's own ETag
    expected_body: Optional[str] = None  # the exact body (UTF-8) when it is checked too
    # keep-alive connections wrk holds open; None: the run's BENCH_CONNECTIONS (see plan_groups)
    connections: Optional[int] = None
    request_headers: tuple[tuple[str, str], ...] = ()  # sent with every request
    # Content-Encoding the answer must have (any of these); () leaves it unchecked
    expected_encodings: tuple[str, ...] = ()


SMALL_SIZE = 1024
INDEX_HTML = b"<!doctype html>\n<title>fastserve bench</title>\n<p>directory index</p>\n"

SCENARIOS = [
    Scenario("1k", "/small.txt", 200, SMALL_SIZE),
    # Many clients on one core: does every connection get its turn (p99, p99.9, timeouts)?
    Scenario("1k-c1024", "/small.txt", 200, SMALL_SIZE, connections=1024),
    Scenario("64k", "/64k.bin", 200, 64 * 1024),
    Scenario("10m", "/10m.bin", 200, 10 * MIB),
    Scenario("304", "/small.txt", 304, 0, conditional=True),
    Scenario("404", "/missing", 404, None),
    Scenario("index", "/dir/", 200, len(INDEX_HTML)),
    # A 64 KiB script to a browser: fastserve compresses it on the fly (once; br, the client's
    # best), nginx sends its gzip_static sibling (made with gzip -9), Caddy encodes per request.
    Scenario("js-br", "/app.js", 200, None, request_headers=(("Accept-Encoding", "br, gzip"),),
             expected_encodings=("br", "gzip")),
]
PLAIN = "fastserve-plain"  # fastserve with the origin features off (cache policy, dotfile checks, compression)
BASELINE = "fastserve-baseline"  # another fastserve build (BENCH_BASELINE_PYTHON), run like fastserve
# Only the servers configured to compress run js-br (h2o and uvicorn would send it unencoded).
COMPRESSION_SCENARIOS = {"js-br"}
JS_SIZE = 64 * 1024


def script_text(size: int) -> bytes:
    """A deterministic script of ``size`` bytes that compresses about as well as real bundles (4-5x)."""
    import random

    rng = random.Random(64)
    names = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 12))) for _ in range(400)]
    out, total = [], 0
    while total < size:
        line = f"function {rng.choice(names)}({rng.choice(names)}, {rng.choice(names)}) {{ return " \
               f"{rng.choice(names)}.{rng.choice(names)}({rng.randint(0, 99999)}); }}\n"
        out.append(line)
        total += len(line)
    return "".join(out).encode()[:size]


def make_document_root(root: Path) -> None:
    """Write the files every scenario asks for; /missing deliberately does not exist."""
    root.mkdir(parents=True)
    line = b"fastserve benchmark payload, one kilobyte of plain text.\n"
    (root / "small.txt").write_bytes((line * (SMALL_SIZE // len(line) + 1))[:SMALL_SIZE])
    (root / "64k.bin").write_bytes(os.urandom(64 * 1024))
    (root / "10m.bin").write_bytes(os.urandom(10 * MIB))
    (root / "dir").mkdir()
    (root / "dir" / "index.html").write_bytes(INDEX_HTML)
    # js-br: fastserve and Caddy compress app.js themselves; nginx serves gzip_static/app.js.gz
    # (a sibling in a folder of its own, so fastserve does not send it as its own sibling).
    script = script_text(JS_SIZE)
    (root / "app.js").write_bytes(script)
    (root / "gzip_static").mkdir()
    (root / "gzip_static" / "app.js").write_bytes(script)
    (root / "gzip_static" / "app.js.gz").write_bytes(gzip.compress(script, compresslevel=9, mtime=0))
    # nginx workers and any unprivileged server must be able to read everything.
    for path in [root.parent, root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


# --------------------------------------------------------------------------- servers


@dataclass
class ServerSpec:
    name: str
    build_command: Callable[[int], list[str]]  # port -> argv (before CPU pinning)
    scenario_names: list[str]
    env: dict[str, str] = field(default_factory=dict)
    prepare: Optional[Callable[[int], None]] = None  # port -> None, e.g. write a config file


def fastserve_command(python: str, target: str, port: int, *flags: str) -> list[str]:
    """`python -m fastserve <target>` (a directory or module:app) on `port`, one worker."""
    return [python, "-m", "fastserve", target, "--host", HOST, "--port", str(port), "--workers", "1", *flags]


def fastserve_specs(settings: Settings, target: str, scenario_names: list[str]) -> list[ServerSpec]:
    """fastserve serving `target`; with BENCH_BASELINE_PYTHON set, also fastserve-baseline: the
    same command and scenarios under that interpreter's fastserve build."""
    builds = [("fastserve", settings.fastserve_python)]
    if settings.baseline_python is not None:
        builds.append((BASELINE, settings.baseline_python))
    return [
        ServerSpec(name, lambda port, python=python: fastserve_command(python, target, port), list(scenario_names))
        for name, python in builds
    ]


def server_specs(settings: Settings, run_dir: Path, doc_root: Path) -> list[ServerSpec]:
    all_names = [s.name for s in SCENARIOS]
    plain_names = [name for name in all_names if name not in COMPRESSION_SCENARIOS]
    uvicorn_env = {"BENCH_ROOT": str(doc_root)}

    def uvicorn_command(app: str) -> Callable[[int], list[str]]:
        return lambda port: [
            settings.uvicorn_python, "-m", "uvicorn", app,
            "--host", HOST, "--port", str(port), "--workers", "1",
            "--no-access-log", "--loop", "uvloop", "--http", "httptools",
        ]  # fmt: skip

    nginx_conf = run_dir / "nginx.conf"
    h2o_conf = run_dir / "h2o.conf"
    caddy_conf = run_dir / "Caddyfile"

    def write_nginx_conf(port: int) -> None:
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (run_dir / "nginx-tmp" / sub).mkdir(parents=True, exist_ok=True)
        fill_template("nginx.conf.template", nginx_conf, run_dir, doc_root, port)

    def write_h2o_conf(port: int) -> None:
        fill_template("h2o.conf.template", h2o_conf, run_dir, doc_root, port)
        if os.geteuid() == 0:
            # Started as root without `user`, h2o drops to nobody; nginx's config says `user root`
            # too. (As anyone else, h2o must not be given a user: it could not switch.)
            h2o_conf.write_text("user: root\n" + h2o_conf.read_text())

    def write_caddy_conf(port: int) -> None:
        fill_template("Caddyfile.template", caddy_conf, run_dir, doc_root, port)

    nginx_binary = shutil.which("nginx") or "/usr/sbin/nginx"
    caddy_binary = shutil.which("caddy") or "/usr/bin/caddy"
    h2o_binary = shutil.which("h2o") or "/usr/bin/h2o"
    return [
        *fastserve_specs(settings, str(doc_root), all_names),
        # The same build without what a static origin adds per file (no Cache-Control, dotfiles
        # served, no compression): what those features cost, measured side by side.
        ServerSpec(
            PLAIN,
            lambda port: fastserve_command(
                settings.fastserve_python, str(doc_root), port,
                "--cache-rule", "*=", "--dotfiles", "allow", "--compress", "off",
            ),  # fmt: skip
            ["1k", "304", "404"],
        ),
        ServerSpec(
            "nginx",
            lambda port: [
                nginx_binary, "-p", str(run_dir), "-e", str(run_dir / "nginx-error.log"),
                "-c", str(nginx_conf), "-g", "daemon off;",
            ],  # fmt: skip
            all_names,
            prepare=write_nginx_conf,
        ),
        ServerSpec(
            "h2o",
            lambda port: [h2o_binary, "-c", str(h2o_conf)],
            plain_names,
            prepare=write_h2o_conf,
        ),
        ServerSpec(
            "uvicorn+starlette",
            uvicorn_command("bench.apps.starlette_static:app"),
            plain_names,
            env=uvicorn_env,
        ),
        ServerSpec(
            "uvicorn+fastserve.StaticFiles",
            uvicorn_command("bench.apps.fastserve_static:app"),
            plain_names if settings.run_all_dropin else ["1k"],
            env=uvicorn_env,
        ),
        ServerSpec(
            "caddy",
            lambda port: [caddy_binary, "run", "--config", str(caddy_conf), "--adapter", "caddyfile"],
            sorted(COMPRESSION_SCENARIOS),
            env={"HOME": str(run_dir), "XDG_DATA_HOME": str(run_dir / "caddy-data"),
                 "XDG_CONFIG_HOME": str(run_dir / "caddy-config"), "GOMAXPROCS": "1"},
            prepare=write_caddy_conf,
        ),
    ]


def fill_template(name: str, destination: Path, run_dir: Path, doc_root: Path, port: int) -> None:
    """Write bench/<name> to `destination` with its @RUN_DIR@, @DOC_ROOT@ and @PORT@ filled in."""
    text = (BENCH_DIR / name).read_text()
    for token, value in {"@RUN_DIR@": str(run_dir), "@DOC_ROOT@": str(doc_root), "@PORT@": str(port)}.items():
        text = text.replace(token, value)
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise RuntimeError(f"{name} has unfilled tokens: {leftover}")
    destination.write_text(text)


# --------------------------------------------------------------------------- the ASGI group

HELLO_BODY = "Hello, world!"
HELLO_APP = "bench.apps.hello:app"
ASGI_SCENARIOS = [
    Scenario("hello", "/", 200, len(HELLO_BODY), expected_body=HELLO_BODY),
    # Four times the clients on the same core: is the app's turn still fair (p99, p99.9)?
    Scenario("hello-c256", "/", 200, len(HELLO_BODY), expected_body=HELLO_BODY, connections=256),
]


def asgi_server_specs(settings: Settings) -> list[ServerSpec]:
    """The same hello-world app under each ASGI server: one worker, uvloop, no access log."""
    names = [s.name for s in ASGI_SCENARIOS]
    return [
        *fastserve_specs(settings, HELLO_APP, names),
        ServerSpec(
            "uvicorn",
            lambda port: [
                settings.uvicorn_python, "-m", "uvicorn", HELLO_APP,
                "--host", HOST, "--port", str(port), "--workers", "1",
                "--no-access-log", "--loop", "uvloop", "--http", "httptools",
            ],  # fmt: skip
            names,
        ),
        ServerSpec(
            "granian",
            # Runtime threads, blocking threads and runtime mode stay at granian's defaults
            # (bench/README.md lists them). HTTP/1 only, like the other two: no protocol sniffing.
            lambda port: [
                settings.granian_python, "-m", "granian", "--interface", "asgi",
                "--host", HOST, "--port", str(port), "--workers", "1",
                "--loop", "uvloop", "--http", "1", "--no-ws", "--no-access-log", HELLO_APP,
            ],  # fmt: skip
            names,
        ),
    ]


class ServerFailed(Exception):
    """The server did not come up; the message says why (with its log tail)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 8) -> str:
    """The end of a server's log, without the import machinery's frames (never the cause)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    useful = [line for line in text.splitlines() if "<frozen importlib" not in line]
    return "\n".join(useful[-lines:])


class RunningServer:
    """One server process in its own process group, pinned to the server CPU.

    Under BENCH_SERVER_CPU_PERCENT it also runs in a cgroup of its own capped at that share of
    one CPU (`cgroup`), joined before the server's first instruction, with every process it starts.
    Raises cpucap.CpuCapError when the cap cannot be put in place.
    """

    def __init__(self, spec: ServerSpec, settings: Settings, run_dir: Path) -> None:
        self.spec = spec
        self.port = free_port()
        self.log_path = run_dir / "logs" / f"{spec.name}.log"
        self.log_path.parent.mkdir(exist_ok=True)
        if spec.prepare:
            spec.prepare(self.port)
        self.command = ["taskset", "-c", settings.server_cpu, *spec.build_command(self.port)]
        self.cgroup: Optional[cpucap.CapGroup] = None
        if settings.cpu_cap is not None:
            self.cgroup = cpucap.CapGroup.create(spec.name, settings.cpu_cap)
        # cwd is the run dir: `bench` there links to this directory, and nothing shadows the
        # installed fastserve the way the repository checkout would.
        try:
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    self.command,
                    cwd=run_dir,
                    env={**os.environ, **spec.env},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=None if self.cgroup is None else self.cgroup.enter,
                )
            if self.cgroup is not None and not self.cgroup.holds(self.process.pid):
                raise cpucap.CpuCapError(f"{spec.name} (pid {self.process.pid}) is not in {self.cgroup.path}")
        except BaseException:
            if hasattr(self, "process"):
                self.stop()
            elif self.cgroup is not None:
                self.cgroup.remove()
            raise

    def wait_until_accepting(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServerFailed(f"exited with code {code} before accepting\n{log_tail(self.log_path)}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise ServerFailed(f"port {self.port} not accepting after {timeout_s:.0f}s\n{log_tail(self.log_path)}")

    def stop(self) -> None:
        """Stop the server's process group, then remove its cgroup (and what is left in it)."""
        try:
            self._stop_processes()
        finally:
            if self.cgroup is not None:
                self.cgroup.remove()

    def _stop_processes(self) -> None:
        if self.process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait_s)
                return
            except subprocess.TimeoutExpired:
                continue


# --------------------------------------------------------------------------- probing


@dataclass
class Probe:
    status: int
    body_length: int
    etag: Optional[str]
    body: bytes = b""
    encoding: Optional[str] = None


def probe(port: int, path: str, headers: Optional[dict[str, str]] = None) -> Probe:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return Probe(response.status, len(body), response.getheader("ETag"), body, response.getheader("Content-Encoding"))
    finally:
        conn.close()


def scenario_headers(scenario: Scenario, port: int) -> dict[str, str]:
    """Extra request headers; for the conditional scenario, the ETag this server hands out."""
    if not scenario.conditional:
        return dict(scenario.request_headers)
    etag = probe(port, scenario.path).etag
    if not etag:
        raise ValueError(f"GET {scenario.path} returned no ETag, cannot build a conditional request")
    return {"If-None-Match": etag}


def check_response(scenario: Scenario, port: int, headers: dict[str, str]) -> list[str]:
    """One request before the load: problems that would make the numbers meaningless."""
    result = probe(port, scenario.path, headers)
    deadline = time.monotonic() + 10
    while scenario.expected_encodings and result.encoding is None and time.monotonic() < deadline:
        time.sleep(0.05)  # a server compressing on the fly may answer unencoded while it does
        result = probe(port, scenario.path, headers)
    problems = []
    if scenario.expected_encodings and result.encoding not in scenario.expected_encodings:
        problems.append(f"Content-Encoding was {result.encoding!r}, expected one of {scenario.expected_encodings}")
    if result.status != scenario.expected_status:
        problems.append(f"answered {result.status}, expected {scenario.expected_status}")
    elif scenario.expected_length is not None and result.body_length != scenario.expected_length:
        problems.append(f"body was {result.body_length} bytes, expected {scenario.expected_length}")
    elif scenario.expected_body is not None and result.body != scenario.expected_body.encode():
        problems.append(f"body was {result.body[:60]!r}, expected {scenario.expected_body.encode()!r}")
    return problems


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests_per_sec: float
    mib_per_sec: float
    p99_ms: float
    requests: int
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    # requests per second of server CPU (user + system) during the run; None when not taken
    requests_per_cpu_second: Optional[float] = None
    # share of one CPU that wrk itself used during the run; None when not taken
    client_cpu_share: Optional[float] = None
    # the rest of the latency distribution; None when wrk did not print it
    p50_ms: Optional[float] = None
    p90_ms: Optional[float] = None
    p999_ms: Optional[float] = None
    # handshakes the kernel dropped because a listen queue was full during the run (machine-wide
    # counter: on a quiet machine, the server's); None when not read
    listen_overflows: Optional[int] = None
    # share of one CPU the server's processes used during the run; None when not taken
    server_cpu_share: Optional[float] = None
    # under a CPU cap: enforcement periods in the run, and how many of them ran out of quota
    # (the server held back); None without a cap
    cap_periods: Optional[int] = None
    throttled_periods: Optional[int] = None

    @property
    def socket_error_total(self) -> int:
        return sum(self.socket_errors.values())

    @property
    def timeouts(self) -> int:
        """Responses slower than wrk's --timeout: counted here, left out of the percentiles."""
        return self.socket_errors.get("timeout", 0)


_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_BINARY_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_wrk_output(text: str) -> WrkResult:
    """Pull the numbers out of `wrk --latency` output (binary units: wrk's MB is MiB).

    p50, p90 and p99 come from wrk's latency table; p99.9 from the lines bench/latency.lua
    adds ("latency-percentile 99.9 <microseconds>"), None without them.
    """

    def find(pattern: str) -> Optional[re.Match[str]]:
        return re.search(pattern, text, re.MULTILINE)

    def percentile_ms(label: str) -> Optional[float]:
        found = find(rf"^\s+{label}%\s+([\d.]+)(us|ms|s|m|h)\s*$")
        return float(found.group(1)) * _TIME_UNITS_MS[found.group(2)] if found else None

    rps = find(r"^Requests/sec:\s+([\d.]+)")
    transfer = find(r"^Transfer/sec:\s+([\d.]+)([KMGT]?)B")
    p99 = percentile_ms("99")
    total = find(r"^\s*(\d+) requests in ")
    if not (rps and transfer and p99 is not None and total):
        raise ValueError("unrecognised wrk output:\n" + text)
    p999 = find(r"^latency-percentile 99\.9 (\d+)$")
    sockets = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    non_ok = find(r"Non-2xx or 3xx responses: (\d+)")
    socket_counts = [int(n) for n in sockets.groups()] if sockets else [0, 0, 0, 0]
    return WrkResult(
        requests_per_sec=float(rps.group(1)),
        mib_per_sec=float(transfer.group(1)) * _BINARY_UNITS[transfer.group(2)] / MIB,
        p99_ms=p99,
        requests=int(total.group(1)),
        non_2xx_3xx=int(non_ok.group(1)) if non_ok else 0,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), socket_counts)),
        p50_ms=percentile_ms("50"),
        p90_ms=percentile_ms("90"),
        p999_ms=int(p999.group(1)) / 1000 if p999 else None,
    )


def session_cpu_seconds(session_id: int) -> float:
    """User + system CPU time used so far by the live processes of one session.

    Each server starts in a session of its own, so this covers a master and its workers.
    """
    # after "pid (comm)": state ppid pgrp session ... utime(14th) stime(15th)
    ticks = sum(int(fields[11]) + int(fields[12]) for _, fields in session_processes(session_id))
    return ticks / os.sysconf("SC_CLK_TCK")


def listen_overflows() -> Optional[int]:
    """The kernel's count of handshakes dropped because an accept queue was full (TcpExt
    ListenOverflows in /proc/net/netstat: this network namespace, every listener); None if absent.

    A client whose handshake is dropped that way believes it is connected and sends its request,
    which waits until the kernel retries the handshake (about a second): a tail no server code
    shows.
    """
    try:
        with open("/proc/net/netstat") as netstat:
            lines = [line.split() for line in netstat if line.startswith("TcpExt:")]
        names, values = lines[0], lines[1]
        return int(values[names.index("ListenOverflows")])
    except (OSError, IndexError, ValueError):
        return None


def children_cpu_seconds() -> float:
    """User + system CPU time of the finished child processes (wrk runs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(settings: Settings, url: str, headers: dict[str, str], duration_s: int,
            connections: int = WRK_CONNECTIONS) -> str:
    command = [
        "taskset", "-c", settings.client_cpu, "wrk",
        f"-t{WRK_THREADS}", f"-c{connections}", f"-d{duration_s}s", "--latency",
        "-s", str(LATENCY_SCRIPT),
        # 64 connections each pulling 10 MiB at once take longer than wrk's default 2 s.
        f"--timeout={WRK_TIMEOUT_S}s",
    ]  # fmt: skip
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk exited {completed.returncode}: {completed.stderr.strip()}")
    return completed.stdout


# --------------------------------------------------------------------------- servers measured in rounds


@dataclass
class ScenarioOutcome:
    """One (server, scenario): its check, then one wrk run per round."""

    status: str  # "ok" (at least one round measured) or "failed"
    rounds: list[Optional[WrkResult]] = field(default_factory=list)  # by round; None: no number
    problems: list[str] = field(default_factory=list)  # flagged: wrong answers, errors
    error: Optional[str] = None

    @property
    def measured(self) -> list[WrkResult]:
        return [r for r in self.rounds if r is not None]

    @property
    def summary(self) -> Optional[WrkResult]:
        """The rounds in one: median req/s, MiB/s and p99; requests and errors summed."""
        measured = self.measured
        if not measured:
            return None
        socket_errors: dict[str, int] = {}
        for r in measured:
            for kind, count in r.socket_errors.items():
                socket_errors[kind] = socket_errors.get(kind, 0) + count
        # A round that completed no request has no latency to speak of.
        answered = [r for r in measured if r.requests]
        p99 = median_of([r.p99_ms for r in answered])
        return WrkResult(
            requests_per_sec=median_of([r.requests_per_sec for r in measured]) or 0.0,
            mib_per_sec=median_of([r.mib_per_sec for r in measured]) or 0.0,
            p99_ms=p99 if p99 is not None else 0.0,
            requests=sum(r.requests for r in measured),
            non_2xx_3xx=sum(r.non_2xx_3xx for r in measured),
            socket_errors=socket_errors,
            requests_per_cpu_second=median_of(
                [r.requests_per_cpu_second for r in measured if r.requests_per_cpu_second is not None]
            ),
            p50_ms=median_of([r.p50_ms for r in answered]),
            p90_ms=median_of([r.p90_ms for r in answered]),
            p999_ms=median_of([r.p999_ms for r in answered]),
        )

    def client_bound_rounds(self) -> list[int]:
        """Rounds (from 1) in which wrk used most of its CPU: there req/s is wrk's ceiling too."""
        return [
            i + 1 for i, r in enumerate(self.rounds)
            if r is not None and r.client_cpu_share is not None and r.client_cpu_share >= CLIENT_BOUND_SHARE
        ]

    def short_of_cap_rounds(self, percent: int) -> dict[int, WrkResult]:
        """Round (from 1) -> its result, where a server capped at `percent`% of one CPU used under
        90% of that: the cap was not all that held it (the client, or other work on its CPU)."""
        return {
            i + 1: r for i, r in enumerate(self.rounds)
            if r is not None and r.server_cpu_share is not None and r.server_cpu_share < CAP_BOUND_SHARE * percent / 100
        }  # fmt: skip

    def overflow_rounds(self) -> dict[int, int]:
        """Round (from 1) -> handshakes dropped on a full listen queue during it, where any were."""
        return {i + 1: r.listen_overflows for i, r in enumerate(self.rounds) if r is not None and r.listen_overflows}

    def by_round(self, metric: str) -> list[Optional[float]]:
        """`metric` ("requests_per_sec", "mib_per_sec", ...) of each round, None where not measured."""
        return [None if r is None else getattr(r, metric) for r in self.rounds]

    def error_count(self, scenario: Scenario) -> int:
        """Socket errors, plus non-2xx/3xx answers unless an error status is the point (all rounds)."""
        total = self.summary
        if total is None:
            return 0
        expected_errors = scenario.expected_status >= 400
        return total.socket_error_total + (0 if expected_errors else total.non_2xx_3xx)


@dataclass
class ServerOutcome:
    name: str
    status: str  # "ok", "failed" or "skipped"
    planned: list[str] = field(default_factory=list)  # scenario names this server runs
    command: list[str] = field(default_factory=list)
    error: Optional[str] = None
    scenarios: dict[str, ScenarioOutcome] = field(default_factory=dict)

    def fail(self, error: str) -> None:
        self.status, self.error = "failed", error
        print(f"[bench] {self.name}: FAILED: {error.splitlines()[0]}", file=sys.stderr, flush=True)


@dataclass
class Target:
    """A (server, scenario) that passed its check and gets one wrk run per round."""

    server: RunningServer
    outcome: ServerOutcome
    scenario: Scenario
    headers: dict[str, str]
    warmed_up: bool = False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.port}{self.scenario.path}"


@dataclass
class RoundsRun:
    servers: list[ServerOutcome]
    orders: dict[str, list[list[str]]]  # scenario -> the server order of each round


def start_servers(specs: list[ServerSpec], outcomes: list[ServerOutcome], settings: Settings,
                  run_dir: Path) -> dict[str, RunningServer]:
    """Start every planned server at once, then wait for each; the ones that fail are marked."""
    started: dict[str, RunningServer] = {}
    for spec, outcome in zip(specs, outcomes):
        if outcome.status != "ok":
            continue
        print(f"[bench] {spec.name}: starting", file=sys.stderr, flush=True)
        try:
            started[spec.name] = RunningServer(spec, settings, run_dir)
            outcome.command = started[spec.name].command
        except cpucap.CpuCapError:
            raise  # never measure uncapped servers under a capped run's label
        except Exception as exc:
            outcome.fail(f"{type(exc).__name__}: {exc}")
    for name, server in list(started.items()):
        outcome = next(o for o in outcomes if o.name == name)
        try:
            server.wait_until_accepting()
        except ServerFailed as exc:
            outcome.fail(str(exc))
            server.stop()
    return started


def check_targets(scenarios: list[Scenario], outcomes: list[ServerOutcome],
                  servers: dict[str, RunningServer]) -> dict[str, list[Target]]:
    """The check request of every (server, scenario); scenario name -> what will be measured."""
    targets: dict[str, list[Target]] = {s.name: [] for s in scenarios}
    for outcome in outcomes:
        if outcome.status != "ok":
            continue
        server = servers[outcome.name]
        for scenario in scenarios:
            if scenario.name not in outcome.planned:
                continue
            try:
                headers = scenario_headers(scenario, server.port)
                problems = check_response(scenario, server.port, headers)
            except Exception as exc:  # one broken scenario must not sink the whole run
                outcome.scenarios[scenario.name] = ScenarioOutcome("failed", error=f"{type(exc).__name__}: {exc}")
                continue
            outcome.scenarios[scenario.name] = ScenarioOutcome("ok", problems=problems)
            targets[scenario.name].append(Target(server, outcome, scenario, headers))
    return targets


def measure(target: Target, settings: Settings, round_index: int) -> None:
    """One round's wrk run for one target, after the warm-up if this is its first run."""
    scenario_outcome = target.outcome.scenarios[target.scenario.name]
    connections = target.scenario.connections or settings.connections
    result: Optional[WrkResult] = None
    try:
        if not target.warmed_up and settings.warmup_s > 0:
            run_wrk(settings, target.url, target.headers, settings.warmup_s, connections)
        target.warmed_up = True
        session_id = target.server.process.pid
        cgroup = target.server.cgroup
        cpu_before = session_cpu_seconds(session_id)
        client_before = children_cpu_seconds()
        overflows_before = listen_overflows()
        throttling_before = cgroup.throttling() if cgroup else None
        result = parse_wrk_output(run_wrk(settings, target.url, target.headers, settings.duration_s, connections))
        overflows_after = listen_overflows()
        if overflows_before is not None and overflows_after is not None:
            result.listen_overflows = overflows_after - overflows_before
        if cgroup and throttling_before:
            throttling = cgroup.throttling()
            result.cap_periods = throttling.periods - throttling_before.periods
            result.throttled_periods = throttling.throttled_periods - throttling_before.throttled_periods
        result.client_cpu_share = (children_cpu_seconds() - client_before) / settings.duration_s
        cpu_used = session_cpu_seconds(session_id) - cpu_before
        result.server_cpu_share = cpu_used / settings.duration_s
        if cpu_used > 0:
            result.requests_per_cpu_second = result.requests / cpu_used
    except Exception as exc:
        scenario_outcome.problems.append(f"round {round_index + 1}: {type(exc).__name__}: {exc}")
    scenario_outcome.rounds.append(result)
    if target.server.process.poll() is not None:
        target.outcome.fail(
            f"died during {target.scenario.name} in round {round_index + 1}\n{log_tail(target.server.log_path)}"
        )


def finish_scenario(scenario: Scenario, outcome: ScenarioOutcome) -> None:
    """Turn what the rounds left into a status and the notes a reader needs."""
    if not outcome.measured:
        outcome.status = "failed"
        outcome.error = "; ".join(outcome.problems) or "no round was measured"
        outcome.problems = []
        return
    empty = [i + 1 for i, r in enumerate(outcome.rounds) if r is not None and r.requests == 0]
    if empty:
        outcome.problems.append(f"no response completed in round(s) {empty}; raise BENCH_DURATION")
    total = outcome.summary
    assert total is not None
    if total.socket_error_total:
        outcome.problems.append(f"socket errors over all rounds {total.socket_errors}")
    if scenario.expected_status < 400 and total.non_2xx_3xx:
        outcome.problems.append(f"{total.non_2xx_3xx} non-2xx/3xx responses over all rounds")


def bench_servers(specs: list[ServerSpec], settings: Settings, run_dir: Path,
                  scenarios: list[Scenario]) -> RoundsRun:
    """Start the servers together, check them, then measure them side by side in rounds."""
    outcomes = []
    for spec in specs:
        planned = [s.name for s in scenarios if s.name in spec.scenario_names]
        outcomes.append(ServerOutcome(spec.name, "ok" if planned else "skipped", planned=planned))
    orders: dict[str, list[list[str]]] = {s.name: [] for s in scenarios}
    servers: dict[str, RunningServer] = {}
    try:
        servers = start_servers(specs, outcomes, settings, run_dir)
        targets = check_targets(scenarios, outcomes, servers)
        for round_index in range(settings.rounds):
            for scenario in scenarios:
                order = [t for t in rotated(targets[scenario.name], round_index) if t.outcome.status == "ok"]
                if not order:
                    continue
                names = [t.outcome.name for t in order]
                print(f"[bench] round {round_index + 1}/{settings.rounds} {scenario.name}: {', '.join(names)}",
                      file=sys.stderr, flush=True)
                orders[scenario.name].append(names)
                for target in order:
                    measure(target, settings, round_index)
                # A server that died misses the later rounds; keep its round slots aligned.
                for target in targets[scenario.name]:
                    rounds = target.outcome.scenarios[scenario.name].rounds
                    rounds.extend([None] * (round_index + 1 - len(rounds)))
    finally:
        for server in servers.values():
            server.stop()
    for outcome in outcomes:
        for scenario in scenarios:
            if scenario.name in outcome.scenarios and outcome.scenarios[scenario.name].status == "ok":
                finish_scenario(scenario, outcome.scenarios[scenario.name])
    return RoundsRun(outcomes, {name: order for name, order in orders.items() if order})


def bench_server(spec: ServerSpec, settings: Settings, run_dir: Path, scenarios: list[Scenario]) -> ServerOutcome:
    """One server alone through the same rounds (what the harness's own tests use)."""
    return bench_servers([spec], settings, run_dir, scenarios).servers[0]


# --------------------------------------------------------------------------- ratios and targets


@dataclass(frozen=True)
class RatioSpec:
    numerator: str
    denominator: str
    scenario: str
    metric: str  # "requests_per_sec", "mib_per_sec", "requests_per_cpu_second" or "p99_ms"
    target: Optional[float]
    at_most: bool = False  # the target is a ceiling (latency), not a floor


FASTSERVE, NGINX, H2O, CADDY = "fastserve", "nginx", "h2o", "caddy"
UVICORN, DROPIN = "uvicorn+starlette", "uvicorn+fastserve.StaticFiles"
RPS, MIBS, RPCPU, P99 = "requests_per_sec", "mib_per_sec", "requests_per_cpu_second", "p99_ms"

RATIOS = [
    RatioSpec(FASTSERVE, NGINX, "1k", RPS, 1.0),
    RatioSpec(FASTSERVE, NGINX, "304", RPS, 1.0),
    RatioSpec(FASTSERVE, NGINX, "404", RPS, 1.0),
    RatioSpec(FASTSERVE, NGINX, "1k", RPCPU, None),
    RatioSpec(FASTSERVE, NGINX, "304", RPCPU, 1.15),
    RatioSpec(FASTSERVE, NGINX, "404", RPCPU, None),
    RatioSpec(FASTSERVE, NGINX, "index", RPS, None),
    RatioSpec(FASTSERVE, NGINX, "64k", MIBS, 1.0),
    RatioSpec(FASTSERVE, NGINX, "js-br", RPS, 1.0),
    RatioSpec(FASTSERVE, NGINX, "js-br", RPCPU, None),
    RatioSpec(FASTSERVE, CADDY, "js-br", RPS, None),
    RatioSpec(FASTSERVE, PLAIN, "1k", RPCPU, 0.95),
    RatioSpec(FASTSERVE, PLAIN, "304", RPCPU, 0.95),
    RatioSpec(FASTSERVE, PLAIN, "404", RPCPU, 0.95),
    RatioSpec(FASTSERVE, NGINX, "10m", MIBS, 0.8),
    # issue 13's tail targets, at whatever BENCH_CONNECTIONS the run uses (its figures: 256,
    # with BENCH_SERVER_CPU_PERCENT set so that the server, not wrk, is the limit)
    RatioSpec(FASTSERVE, NGINX, "1k-c1024", P99, 1.5, at_most=True),
    RatioSpec(FASTSERVE, NGINX, "1k", P99, 1.5, at_most=True),
    RatioSpec(FASTSERVE, NGINX, "304", P99, 1.5, at_most=True),
    RatioSpec(FASTSERVE, NGINX, "404", P99, 1.5, at_most=True),
    RatioSpec(FASTSERVE, NGINX, "64k", P99, 1.5, at_most=True),
    RatioSpec(FASTSERVE, H2O, "1k", RPS, None),
    RatioSpec(FASTSERVE, H2O, "304", RPS, None),
    RatioSpec(FASTSERVE, H2O, "404", RPS, None),
    RatioSpec(FASTSERVE, H2O, "1k", RPCPU, None),
    RatioSpec(FASTSERVE, H2O, "304", RPCPU, None),
    RatioSpec(FASTSERVE, H2O, "404", RPCPU, 1.0),
    RatioSpec(FASTSERVE, H2O, "64k", MIBS, None),
    RatioSpec(FASTSERVE, H2O, "10m", MIBS, None),
    RatioSpec(FASTSERVE, H2O, "1k-c1024", P99, 1.5, at_most=True),
    RatioSpec(FASTSERVE, UVICORN, "1k", RPS, 20.0),
    RatioSpec(DROPIN, UVICORN, "1k", RPS, 3.0),
]

ASGI_RATIOS = [
    RatioSpec(FASTSERVE, "uvicorn", "hello", RPS, 1.5),
    RatioSpec(FASTSERVE, "granian", "hello", RPS, 1.1),
    RatioSpec(FASTSERVE, "uvicorn", "hello", RPCPU, None),
    RatioSpec(FASTSERVE, "granian", "hello", RPCPU, None),
    RatioSpec(FASTSERVE, "granian", "hello", P99, None),
    RatioSpec(FASTSERVE, "granian", "hello-c256", RPS, None),
    RatioSpec(FASTSERVE, "granian", "hello-c256", P99, 1.5, at_most=True),
]


# scenarios whose throughput is read in MiB/s (large bodies); the others' in req/s
BYTES_SCENARIOS = {"64k", "10m"}


def baseline_ratios(scenarios: list[Scenario]) -> list[RatioSpec]:
    """fastserve / fastserve-baseline on each of `scenarios`: throughput (MiB/s for the large
    files, req/s otherwise), req/CPU-s and p99; reported, no target (a before/after)."""
    return [
        RatioSpec(FASTSERVE, BASELINE, s.name, metric, None)
        for s in scenarios
        for metric in (MIBS if s.name in BYTES_SCENARIOS else RPS, RPCPU, P99)
    ]


def metric_by_round(outcomes: dict[str, ServerOutcome], server: str, scenario: str, metric: str) -> list[Optional[float]]:
    """`metric` of each round for one (server, scenario); empty if the server failed or never ran it."""
    outcome = outcomes.get(server)
    if outcome is None or outcome.status != "ok":
        return []
    scenario_outcome = outcome.scenarios.get(scenario)
    if scenario_outcome is None or scenario_outcome.status != "ok":
        return []
    return scenario_outcome.by_round(metric)


def metric_value(outcomes: dict[str, ServerOutcome], server: str, scenario: str, metric: str) -> Optional[float]:
    """The median of `metric` over the rounds (None if not measured)."""
    return median_of(metric_by_round(outcomes, server, scenario, metric))


def compute_ratios(outcomes: dict[str, ServerOutcome], specs: Optional[list[RatioSpec]] = None) -> list[dict]:
    """Each ratio of `specs` (default: the static group's) from one group's outcomes.

    The ratio is taken within each round, where both servers were measured seconds apart; the
    row holds the median of those ("value", the one a target is judged on), their min and max,
    and every per-round ratio.
    """
    rows = []
    for spec in RATIOS if specs is None else specs:
        summary = RatioSummary.of(per_round_ratios(
            metric_by_round(outcomes, spec.numerator, spec.scenario, spec.metric),
            metric_by_round(outcomes, spec.denominator, spec.scenario, spec.metric),
        ))  # fmt: skip
        rows.append({
            **asdict(spec),
            "value": summary.median,
            "min": summary.low,
            "max": summary.high,
            "per_round": summary.per_round,
            "met": summary.meets(spec.target, spec.at_most),
        })  # fmt: skip
    return rows


# --------------------------------------------------------------------------- groups


@dataclass
class BenchGroup:
    """Servers, scenarios and ratios that make one table; BENCH_GROUPS picks groups by name."""

    name: str
    title: str
    scenarios: list[Scenario]
    ratios: list[RatioSpec]
    build_specs: Callable[[Settings, Path], list[ServerSpec]]  # (settings, run dir) -> servers
    prepare: Optional[Callable[[Path], None]] = None  # run dir -> None, once, before its servers
    # (plan, settings, run dir) -> outcome, for a group measured otherwise than by wrk in rounds
    measure: Optional[Callable[["GroupPlan", Settings, Path], "GroupOutcome"]] = None


def static_group_specs(settings: Settings, run_dir: Path) -> list[ServerSpec]:
    return server_specs(settings, run_dir, run_dir / "www")


def write_document_root(run_dir: Path) -> None:
    """The static files, once per run (the static and memory groups share them)."""
    if not (run_dir / "www").exists():
        make_document_root(run_dir / "www")


# --------------------------------------------------------------------------- the memory group

IDLE_SCENARIOS = [Scenario("idle", "/small.txt", 200, SMALL_SIZE)]
IDLE_TIME_LIMIT_S = 45.0  # to open one server's connections; its keep-alive timeout is longer
# Servers whose default keep-alive timeout (5 s) is shorter than the step get this one.
IDLE_KEEPALIVE_FLAGS = {
    FASTSERVE: ["--keepalive-timeout", "120"],
    BASELINE: ["--keepalive-timeout", "120"],
    UVICORN: ["--timeout-keep-alive", "120"],
}  # nginx and h2o keep an idle connection 65 s (their templates)


def memory_group_specs(settings: Settings, run_dir: Path) -> list[ServerSpec]:
    """fastserve (and fastserve-baseline, where it runs), nginx, h2o and uvicorn+Starlette as in
    the static group, idle clients kept."""
    specs = []
    for spec in static_group_specs(settings, run_dir):
        if spec.name not in (FASTSERVE, BASELINE, NGINX, H2O, UVICORN):
            continue
        flags = IDLE_KEEPALIVE_FLAGS.get(spec.name, [])
        specs.append(replace(
            spec,
            build_command=lambda port, build=spec.build_command, flags=flags: [*build(port), *flags],
            scenario_names=[s.name for s in IDLE_SCENARIOS],
        ))  # fmt: skip
    return specs


def measure_memory_group(plan: "GroupPlan", settings: Settings, run_dir: Path) -> "GroupOutcome":
    """Every server started at once; then, one at a time, its idle connections are measured."""
    scenario = plan.scenarios[0]
    outcomes = [ServerOutcome(spec.name, "ok", planned=[scenario.name]) for spec in plan.specs]
    idle: dict[str, IdleMemory] = {}
    servers: dict[str, RunningServer] = {}
    try:
        servers = start_servers(plan.specs, outcomes, settings, run_dir)
        for outcome in outcomes:
            if outcome.status != "ok":
                continue
            server = servers[outcome.name]
            try:
                problems = check_response(scenario, server.port, {})
            except OSError as exc:
                problems = [f"{type(exc).__name__}: {exc}"]
            if problems:
                outcome.fail("; ".join(problems))
                continue
            print(f"[bench] {outcome.name}: {settings.idle_connections} idle connections",
                  file=sys.stderr, flush=True)
            idle[outcome.name] = measure_idle_memory(
                server.process.pid, HOST, server.port, scenario.path, settings.idle_connections,
                IDLE_TIME_LIMIT_S,
            )  # fmt: skip
            if server.process.poll() is not None:
                outcome.fail(f"died while holding idle connections\n{log_tail(server.log_path)}")
    finally:
        for server in servers.values():
            server.stop()
    return GroupOutcome(plan.group, plan.scenarios, outcomes, [], idle_memory=idle,
                        cpu_cap=settings.cpu_cap)


IDLE_TARGET_BYTES = 2048  # fastserve's target: at most 2 KiB per idle connection


def render_idle_memory(outcomes: list[ServerOutcome], idle: dict[str, IdleMemory]) -> str:
    """One row per server: connections held, RSS before and after, growth per connection."""
    lines = [f"{'server':<20} {'opened':>7} {'still open':>10} {'RSS before':>11} {'RSS after':>10} "
             f"{'per connection':>15} {'opening took':>12}"]
    for outcome in outcomes:
        result = idle.get(outcome.name)
        if result is None:
            lines.append(f"{outcome.name:<20} {'failed':>7}")
            continue
        per = result.per_connection
        lines.append(
            f"{outcome.name:<20} {result.opened:>7} {result.still_open:>10} "
            f"{result.rss_before / MIB:>7.1f} MiB {result.rss_after / MIB:>6.1f} MiB "
            f"{'-' if per is None else f'{per / 1024:.2f} KiB':>15} {result.seconds:>11.1f}s"
        )
    fastserve = idle.get(FASTSERVE)
    if fastserve is not None and fastserve.per_connection is not None:
        verdict = "met" if fastserve.per_connection <= IDLE_TARGET_BYTES else "MISSED"
        lines.append(f"target (fastserve): at most {IDLE_TARGET_BYTES // 1024} KiB per idle connection: {verdict}")
        baseline = idle.get(BASELINE)
        if baseline is not None and baseline.per_connection:
            lines.append(f"fastserve / {BASELINE} per idle connection: "
                         f"{fastserve.per_connection / baseline.per_connection:.2f}x (no target)")
    for name, result in idle.items():
        if result.error:
            lines.append(f"{name}: opened {result.opened} of {result.connections}: {result.error}")
        if result.still_open < result.opened:
            lines.append(f"{name}: closed {result.opened - result.still_open} idle connections during the step")
    return "\n".join(lines)


GROUPS = [
    BenchGroup(
        "static", "static files", SCENARIOS, RATIOS, static_group_specs, prepare=write_document_root,
    ),  # fmt: skip
    BenchGroup(
        "asgi", "ASGI hello world", ASGI_SCENARIOS, ASGI_RATIOS,
        lambda settings, _run_dir: asgi_server_specs(settings),
    ),  # fmt: skip
    BenchGroup(
        "memory", "memory per idle keep-alive connection", IDLE_SCENARIOS, [], memory_group_specs,
        prepare=write_document_root, measure=measure_memory_group,
    ),  # fmt: skip
]


@dataclass
class GroupPlan:
    group: BenchGroup
    specs: list[ServerSpec]
    scenarios: list[Scenario]
    ratios: list[RatioSpec] = field(default_factory=list)  # the group's, and the baseline's if it runs


@dataclass
class GroupOutcome:
    group: BenchGroup
    scenarios: list[Scenario]
    servers: list[ServerOutcome]
    ratios: list[dict]
    orders: dict[str, list[list[str]]] = field(default_factory=dict)  # scenario -> order per round
    idle_memory: Optional[dict[str, IdleMemory]] = None  # the memory group's results, by server
    cpu_cap: Optional[cpucap.Cap] = None  # the servers' CPU cap (BENCH_SERVER_CPU_PERCENT); None: none


def check_known(names: Optional[list[str]], known: set[str], what: str) -> None:
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def plan_groups(settings: Settings, run_dir: Path, groups: Optional[list[BenchGroup]] = None) -> list[GroupPlan]:
    """The groups to run, each with the servers and scenarios BENCH_SERVERS/BENCH_SCENARIOS keep.

    A server or scenario name only has to exist in one of the chosen groups; a group left with
    no server or no scenario is dropped, and if nothing at all is left that is an error. A
    scenario that does not set its own connections gets BENCH_CONNECTIONS's. Where
    fastserve-baseline runs, the group's ratios gain fastserve / fastserve-baseline on each
    scenario of the group it runs.
    """
    if BASELINE in (settings.servers or []) and settings.baseline_python is None:
        raise SystemExit(f"{BASELINE} runs only with BENCH_BASELINE_PYTHON set "
                         "(an interpreter with the other fastserve build installed)")
    chosen = select(GROUPS if groups is None else groups, settings.groups, "group")
    built = [(group, group.build_specs(settings, run_dir)) for group in chosen]
    check_known(settings.servers, {spec.name for _, specs in built for spec in specs}, "server")
    check_known(settings.scenarios, {s.name for group in chosen for s in group.scenarios}, "scenario")
    plans = []
    for group, specs in built:
        kept_specs = [spec for spec in specs if settings.servers is None or spec.name in settings.servers]
        kept_scenarios = [
            s if s.connections else replace(s, connections=settings.connections)  # BENCH_CONNECTIONS
            for s in group.scenarios if settings.scenarios is None or s.name in settings.scenarios
        ]  # fmt: skip
        if kept_specs and kept_scenarios:
            ratios = list(group.ratios)
            baseline = next((spec for spec in kept_specs if spec.name == BASELINE), None)
            if baseline is not None and group.ratios:  # (a group without wrk ratios shows its own)
                ratios += baseline_ratios([s for s in kept_scenarios if s.name in baseline.scenario_names])
            plans.append(GroupPlan(group, kept_specs, kept_scenarios, ratios))
    if not plans:
        raise SystemExit("nothing to run: no group has both a selected server and a selected scenario")
    return plans


def run_group(plan: GroupPlan, settings: Settings, run_dir: Path) -> GroupOutcome:
    print(f"[bench] group {plan.group.name}: {plan.group.title}", file=sys.stderr, flush=True)
    if plan.group.prepare:
        plan.group.prepare(run_dir)
    if plan.group.measure is not None:
        return plan.group.measure(plan, settings, run_dir)
    run = bench_servers(plan.specs, settings, run_dir, plan.scenarios)
    ratios = compute_ratios({o.name: o for o in run.servers}, plan.ratios)
    return GroupOutcome(plan.group, plan.scenarios, run.servers, ratios, run.orders,
                        cpu_cap=settings.cpu_cap)


# --------------------------------------------------------------------------- report


def fmt_ms(value: Optional[float]) -> str:
    """A latency: two decimals under 10 ms, one under a second, whole milliseconds above."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}ms"
    return f"{value:.1f}ms" if value < 1000 else f"{value:,.0f}ms"


def table_cell(values: Callable[[ScenarioOutcome, WrkResult, Scenario], list[str]]
               ) -> Callable[[ServerOutcome, Scenario], list[str]]:
    """A table's cell function: `values` for a measured (server, scenario), else "-" or "failed"."""

    def cell(outcome: ServerOutcome, scenario: Scenario) -> list[str]:
        if scenario.name not in outcome.planned:
            return ["-", "", "", "", ""]
        scenario_outcome = outcome.scenarios.get(scenario.name)
        if scenario_outcome is None or scenario_outcome.summary is None:  # failed before or during it
            return ["failed", "", "", "", ""]
        return values(scenario_outcome, scenario_outcome.summary, scenario)

    return cell


@table_cell
def fmt_cell(scenario_outcome: ScenarioOutcome, r: WrkResult, scenario: Scenario) -> list[str]:
    errors = str(scenario_outcome.error_count(scenario))
    if scenario_outcome.problems:
        errors += "!"
    p99 = fmt_ms(r.p99_ms) if r.requests else "-"
    per_cpu = "-" if r.requests_per_cpu_second is None else f"{r.requests_per_cpu_second:,.0f}"
    return [f"{r.requests_per_sec:,.0f}", per_cpu, f"{r.mib_per_sec:,.1f}", p99, errors]


@table_cell
def fmt_latency_cell(_outcome: ScenarioOutcome, r: WrkResult, _scenario: Scenario) -> list[str]:
    """p50, p90, p99, p99.9 (medians over rounds) and wrk's timeouts (total over rounds)."""
    if not r.requests:
        return ["-", "-", "-", "-", str(r.timeouts)]
    return [fmt_ms(r.p50_ms), fmt_ms(r.p90_ms), fmt_ms(r.p99_ms), fmt_ms(r.p999_ms), str(r.timeouts)]


# (sub-headers, widths) of the two tables of a group
THROUGHPUT_COLUMNS = (["req/s", "req/CPU-s", "MiB/s", "p99", "errors"], [10, 10, 9, 10, 7])
LATENCY_COLUMNS = (["p50", "p90", "p99", "p99.9", "timeouts"], [9, 9, 9, 10, 8])


def render_table(outcomes: list[ServerOutcome], scenarios: list[Scenario],
                 cell: Callable[[ServerOutcome, Scenario], list[str]] = fmt_cell,
                 columns: tuple[list[str], list[int]] = THROUGHPUT_COLUMNS) -> str:
    sub_headers, widths = columns
    group_width = sum(widths) + len(widths) - 1
    name_width = max([8] + [len(s.name) for s in scenarios])
    lines = [
        f"{'scenario':<{name_width}} | " + " | ".join(o.name[:group_width].ljust(group_width) for o in outcomes),
        f"{'':<{name_width}} | " + " | ".join(" ".join(h.rjust(w) for h, w in zip(sub_headers, widths)) for _ in outcomes),
        "-" * (name_width + 1) + "+-" + "-+-".join("-" * group_width for _ in outcomes),
    ]
    for scenario in scenarios:
        cells = []
        for outcome in outcomes:
            values = cell(outcome, scenario)
            cells.append(" ".join(v.rjust(w) for v, w in zip(values, widths)))
        lines.append(f"{scenario.name:<{name_width}} | " + " | ".join(cells))
    return "\n".join(lines)


def render_ratios(ratios: list[dict]) -> str:
    lines = [f"{'ratio':<50} {'scenario':<9} {'metric':<9} {'median (min-max per round)':>26}  target"]
    for row in ratios:
        label = f"{row['numerator']} / {row['denominator']}"
        metric = {RPS: "req/s", MIBS: "MiB/s", RPCPU: "req/CPU-s", P99: "p99"}[row["metric"]]
        value = RatioSummary(row["value"], row["min"], row["max"], row["per_round"]).render()
        if row["target"] is None:
            target = "(no target)"
        else:
            verdict = {True: "met", False: "MISSED", None: "not measured"}[row["met"]]
            bound = "<=" if row.get("at_most") else ">="
            places = 1 if round(row["target"], 1) == row["target"] else 2
            target = f"{bound}{row['target']:.{places}f}x {verdict}"
        lines.append(f"{label:<50} {row['scenario']:<9} {metric:<9} {value:>26}  {target}")
    return "\n".join(lines)


def short_of_cap_note(outcome: ServerOutcome, cap: cpucap.Cap) -> Optional[str]:
    """The note on a capped server's rounds that got under 90% of its cap, None if none did."""
    marked = []
    for name, scenario_outcome in outcome.scenarios.items():
        rounds = scenario_outcome.short_of_cap_rounds(cap.percent)
        for number, r in rounds.items():
            throttled = "" if not r.cap_periods or r.throttled_periods is None else \
                f", throttled in {r.throttled_periods / r.cap_periods:.0%} of periods"
            marked.append(f"{name} round {number} ({r.server_cpu_share:.0%} of a CPU{throttled})")
    if not marked:
        return None
    return (f"{outcome.name}: used under {CAP_BOUND_SHARE:.0%} of its {cap.percent}% CPU cap in "
            f"{', '.join(marked)}; where it was throttled often, other work on its CPU took the rest, "
            f"where seldom, the client was the limit: either way req/s there is below req/CPU-s x "
            f"{cap.percent / 100:.2f} and p99 is not the server's own queueing alone")


def render_notes(outcomes: list[ServerOutcome], cap: Optional[cpucap.Cap] = None) -> str:
    notes = []
    for outcome in outcomes:
        if outcome.error:
            notes.append(f"{outcome.name}: FAILED: {outcome.error}")
        for name, scenario_outcome in outcome.scenarios.items():
            if scenario_outcome.error:
                notes.append(f"{outcome.name} {name}: FAILED: {scenario_outcome.error}")
            for problem in scenario_outcome.problems:
                notes.append(f"{outcome.name} {name}: {problem}")
        # (which rounds of a scenario, how a note about them reads)
        for rounds_of, text in (
            (ScenarioOutcome.client_bound_rounds,
             f"wrk used >= {CLIENT_BOUND_SHARE:.0%} of its CPU in rounds of {{}}; "
             "req/s there is the client's limit as much as the server's"),
            (ScenarioOutcome.overflow_rounds,
             "a listen queue overflowed during {} (round: dropped handshakes); those clients "
             "waited for the kernel to retry (about 1 s), which shows in p99.9"),
        ):  # fmt: skip
            marked = [f"{name} {rounds}" for name, so in outcome.scenarios.items() if (rounds := rounds_of(so))]
            if marked:
                notes.append(f"{outcome.name}: " + text.format(", ".join(marked)))
        if cap is not None and (note := short_of_cap_note(outcome, cap)):
            notes.append(note)
    return "\n".join(note.replace("\n", "\n    ") for note in notes)


# where interpreters are asked about their fastserve: a checkout's fastserve.egg-info in the
# working directory would answer for whatever the interpreter has installed
NEUTRAL_DIR = "/"
_DIRECT_URL = (
    "import importlib.metadata as m\n"
    "try: print(m.distribution('fastserve').read_text('direct_url.json') or '')\n"
    "except m.PackageNotFoundError: pass\n"
)


def installed_from(python: str) -> Optional[dict]:
    """Where the fastserve in `python` was installed from (pip's direct_url.json): `url`,
    `editable`, and for a local directory that is a git checkout, its `git_commit` and whether it
    has uncommitted changes (`git_dirty`), read now (a non-editable install may predate them).
    None when pip recorded nothing (installed from an index) or it cannot be read."""
    try:
        done = subprocess.run([python, "-c", _DIRECT_URL], capture_output=True, text=True, timeout=30,
                              check=False, cwd=NEUTRAL_DIR)
        direct = json.loads(done.stdout) if done.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if not isinstance(direct, dict) or "url" not in direct:
        return None
    record = {"url": direct["url"], "editable": bool(direct.get("dir_info", {}).get("editable")),
              "git_commit": direct.get("vcs_info", {}).get("commit_id"), "git_dirty": None}
    local = direct["url"][len("file://"):] if direct["url"].startswith("file://") else None
    imported = imported_from(python)
    if imported is not None and local is not None and Path(imported) != Path(local):
        # another checkout ahead of the installed one (PYTHONPATH: a baseline build): that one runs
        record.update(url="file://" + imported, editable=False, git_commit=None)
        local = imported
    if record["git_commit"] is None and local and Path(local).is_dir():
        def git(*args: str) -> Optional[str]:
            try:
                done = subprocess.run(["git", "-C", local, *args], capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                return None
            return done.stdout.strip() if done.returncode == 0 else None

        record["git_commit"] = git("rev-parse", "HEAD")
        if record["git_commit"] is not None:
            status = git("status", "--porcelain", "--untracked-files=no")
            record["git_dirty"] = None if status is None else bool(status)
    return record


def imported_from(python: str) -> Optional[str]:
    """The directory holding the ``fastserve`` package `python` imports (from NEUTRAL_DIR), or None."""
    try:
        done = subprocess.run([python, "-c", "import fastserve, os; print(os.path.dirname(os.path.dirname("
                               "os.path.abspath(fastserve.__file__))))"], capture_output=True, text=True,
                              timeout=30, check=False, cwd=NEUTRAL_DIR)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = done.stdout.strip() if done.returncode == 0 else ""
    return found if found and Path(found, "fastserve", "__init__.py").is_file() else None


def describe_build(python: str, source: Optional[dict]) -> str:
    """One line on a fastserve build: its interpreter and where it came from."""
    if source is None:
        return f"{python} (install source not recorded)"
    where = source["url"].removeprefix("file://")
    commit = "" if not source["git_commit"] else f", git {source['git_commit'][:10]}" + \
        (" with uncommitted changes" if source["git_dirty"] else "")
    return f"{python} (from {where}{', editable' if source['editable'] else ''}{commit})"


def tool_versions(settings: Settings, group_names: Optional[list[str]] = None) -> dict[str, object]:
    """Best-effort versions of everything measured, for the JSON record."""

    def capture(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False, cwd=NEUTRAL_DIR)
        except OSError as exc:
            return f"unavailable: {exc}"
        output = (done.stdout + done.stderr).strip()
        return output.splitlines()[0] if output else ""

    def package_versions(python: str, names: list[str]) -> str:
        code = (
            "import importlib.metadata as m, platform\n"
            f"names = {names!r}\n"
            "found = []\n"
            "for n in names:\n"
            "    try: found.append(f'{n} {m.version(n)}')\n"
            "    except m.PackageNotFoundError: found.append(f'{n} missing')\n"
            "print('python ' + platform.python_version() + ', ' + ', '.join(found))\n"
        )
        return capture([python, "-c", code])

    def source_digest(python: str) -> Optional[str]:
        # bench/run.sh records which source tree it installed into each of its venvs.
        stamp = Path(python).parent.parent / ".fastserve-source-digest"
        return stamp.read_text().strip() if stamp.is_file() else None

    versions = {
        "fastserve_source_digest": source_digest(settings.fastserve_python),
        "nginx": capture([shutil.which("nginx") or "/usr/sbin/nginx", "-v"]),
        "wrk": capture(["wrk", "-v"]),
        "fastserve_python": package_versions(settings.fastserve_python, ["fastserve"]),
        "fastserve_installed_from": installed_from(settings.fastserve_python),
        "uvicorn_python": package_versions(
            settings.uvicorn_python, ["uvicorn", "starlette", "uvloop", "httptools", "fastserve"]
        ),
    }
    if group_names is None or "asgi" in group_names:
        versions["granian_python"] = package_versions(settings.granian_python, ["granian", "uvloop"])
    if settings.baseline_python is not None:  # fastserve-baseline: recorded as fastserve is
        versions["fastserve_baseline_source_digest"] = source_digest(settings.baseline_python)
        versions["fastserve_baseline_python"] = package_versions(settings.baseline_python, ["fastserve"])
        versions["fastserve_baseline_installed_from"] = installed_from(settings.baseline_python)
    return versions


def cap_record(cap: Optional[cpucap.Cap]) -> Optional[dict]:
    """How the servers' CPU cap was enforced, for the JSON record (None: no cap)."""
    if cap is None:
        return None
    quota_us, period_us = cap.quota_and_period
    try:
        version: Optional[int] = cpucap.find_hierarchy().version
    except cpucap.CpuCapError:
        version = None
    return {"percent": cap.percent, "quota_us": quota_us, "period_us": period_us, "cgroup_version": version}


def write_json(path: Path, settings: Settings, groups: list[GroupOutcome]) -> None:
    def scenario_record(scenario: Scenario, scenario_outcome: ScenarioOutcome) -> dict:
        record = asdict(scenario_outcome)  # status, rounds (every round's raw numbers), problems, error
        record["flagged"] = bool(scenario_outcome.problems or scenario_outcome.error)
        summary = scenario_outcome.summary
        record["median"] = None if summary is None else {
            "requests_per_sec": summary.requests_per_sec,
            "mib_per_sec": summary.mib_per_sec,
            "p99_ms": summary.p99_ms,
            "requests_per_cpu_second": summary.requests_per_cpu_second,
            "p50_ms": summary.p50_ms,
            "p90_ms": summary.p90_ms,
            "p999_ms": summary.p999_ms,
        }  # fmt: skip
        record["total"] = None if summary is None else {
            "requests": summary.requests,
            "non_2xx_3xx": summary.non_2xx_3xx,
            "socket_errors": summary.socket_errors,
            "timeouts": summary.timeouts,
            "errors": scenario_outcome.error_count(scenario),
        }  # fmt: skip
        return record

    def server_record(group: GroupOutcome, o: ServerOutcome) -> dict:
        record = {"status": o.status, "planned": o.planned, "command": o.command, "error": o.error}
        if group.idle_memory is not None:
            idle = group.idle_memory.get(o.name)
            record["idle"] = None if idle is None else {**asdict(idle), "per_connection_bytes": idle.per_connection}
        else:
            record["scenarios"] = {
                s.name: scenario_record(s, o.scenarios[s.name]) for s in group.scenarios if s.name in o.scenarios
            }
        return record

    def group_record(group: GroupOutcome) -> dict:
        record = {
            "title": group.group.title,
            "scenarios": [asdict(s) for s in group.scenarios],
            "servers": {o.name: server_record(group, o) for o in group.servers},
        }
        if group.idle_memory is None:
            record.update(round_orders=group.orders, ratios=group.ratios)
        return record

    document = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {
            "rounds": settings.rounds,
            "duration_s": settings.duration_s,
            "warmup_s": settings.warmup_s,
            "wrk_threads": WRK_THREADS,
            "wrk_connections": settings.connections,  # BENCH_CONNECTIONS; groups.*.scenarios[].connections per scenario
            "wrk_timeout_s": WRK_TIMEOUT_S,
            "idle_connections": settings.idle_connections,
            "open_file_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "somaxconn": read_int("/proc/sys/net/core/somaxconn"),
            "server_cpu": settings.server_cpu,
            "client_cpu": settings.client_cpu,
            "server_cpu_percent": settings.server_cpu_percent,  # BENCH_SERVER_CPU_PERCENT; null: no cap
            "cpu_cap": cap_record(settings.cpu_cap),
        },
        "versions": tool_versions(settings, [g.group.name for g in groups]),
        "groups": {g.group.name: group_record(g) for g in groups},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


# --------------------------------------------------------------------------- main


def select(items: list, names: Optional[list[str]], what: str) -> list:
    if names is None:
        return items
    check_known(names, {item.name for item in items}, what)
    return [item for item in items if item.name in names]


def render_group(group: GroupOutcome) -> str:
    """One group's section of the report: its table, its ratios, and its notes."""
    shown = [o for o in group.servers if o.status != "skipped"]
    title = f"== {group.group.title} (BENCH_GROUPS={group.group.name})"
    # under each table, when the servers were capped: what req/s and p99 then mean
    capped = "" if group.cpu_cap is None else "\n" + cap_legend(group.cpu_cap, wrk=group.idle_memory is None)
    if group.idle_memory is not None:
        parts = [title, render_idle_memory(shown, group.idle_memory) + capped]
        notes = render_notes(group.servers)
        return "\n\n".join(parts + (["notes:\n" + notes] if notes else []))
    parts = [
        title,
        render_table(shown, group.scenarios) + capped,
        "latency: percentiles are medians over rounds; timeouts (responses slower than "
        f"{WRK_TIMEOUT_S}s, left out of the percentiles) are totals\n"
        + render_table(shown, group.scenarios, fmt_latency_cell, LATENCY_COLUMNS) + capped,
        render_ratios(group.ratios),
    ]
    notes = render_notes(group.servers, group.cpu_cap)
    if notes:
        parts.append("notes:\n" + notes)
    return "\n\n".join(parts)


def cap_legend(cap: cpucap.Cap, wrk: bool = True) -> str:
    """One line on what the servers' CPU cap means for the numbers beside it (`wrk`: a wrk table)."""
    capped = f"servers capped at {cap.describe()} each, in a cgroup of their own"
    if not wrk:
        return capped
    return (f"{capped}: req/s ~ req/CPU-s x {cap.percent / 100:.2f} for every server, and p99 measures "
            "the server's own queueing")


def wrk_legend(settings: Settings, scenarios: list[Scenario]) -> str:
    """What the wrk groups' tables and ratios show."""
    connections = settings.connections
    others = [f"-c{s.connections} in {s.name}" for s in scenarios if s.connections not in (None, connections)]
    return "\n".join([
        f"{settings.rounds} rounds of wrk -t{WRK_THREADS} -c{connections}"
        f"{' (' + ', '.join(others) + ')' if others else ''} -d{settings.duration_s}s --latency "
        f"per server and scenario (warm-up {settings.warmup_s}s before the first); "
        f"servers on CPU {settings.server_cpu}, wrk on CPU {settings.client_cpu}",
        *([] if settings.cpu_cap is None else [cap_legend(settings.cpu_cap)]),
        "req/s, MiB/s, p50..p99.9 = median over rounds; errors = total over rounds of socket errors "
        "+ non-2xx/3xx answers (404s not counted in the 404 row); '!' = see notes",
        "ratio = median of the ratios taken within each round (min-max of those in brackets);",
        "a target is met when the median meets it (<=: for latency, when it does not exceed it)",
    ])  # fmt: skip


def read_int(path: str) -> Optional[int]:
    try:
        with open(path) as file:
            return int(file.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def raise_open_file_limit(wanted: int) -> int:
    """Let this process, and what it starts (wrk, the servers), hold `wanted` descriptors.

    Raises the soft limit (and the hard one, where allowed); returns the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):  # not allowed to raise the hard limit: go as far as it
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def check_cpu_cap(cap: cpucap.Cap) -> None:
    """Fail the run before anything starts if servers cannot be held to `cap` (a cgroup is made
    and removed again); also removes empty cgroups that killed runs left behind."""
    cpucap.remove_leftovers()
    try:
        group = cpucap.CapGroup.create("check", cap)
    except cpucap.CpuCapError as exc:
        raise SystemExit(f"BENCH_SERVER_CPU_PERCENT={cap.percent}: {exc}") from exc
    group.remove()
    print(f"[bench] servers capped at {group.describe()}", file=sys.stderr, flush=True)


def main() -> int:
    settings = Settings.from_env()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: run bench/run.sh, which installs it")
    # Descriptors for the busiest scenario's (or the memory group's) connections, plus the rest.
    wanted = max([s.connections or 0 for group in GROUPS for s in group.scenarios]
                 + [settings.connections, settings.idle_connections]) + 1024
    limit = raise_open_file_limit(wanted)
    if limit < wanted:
        print(f"[bench] open-file limit is {limit}, under the {wanted} the largest scenario needs; "
              "its servers may refuse connections", file=sys.stderr, flush=True)

    if settings.cpu_cap is not None:
        check_cpu_cap(settings.cpu_cap)
    # A SIGTERM ends the run as Ctrl-C does: servers stopped, their cgroups removed.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    run_dir = Path(tempfile.mkdtemp(prefix="fastserve-bench-"))
    try:
        (run_dir / "bench").symlink_to(BENCH_DIR)  # so `bench.apps.*` imports from the run dir
        plans = plan_groups(settings, run_dir)
        groups = [run_group(plan, settings, run_dir) for plan in plans]
    except cpucap.CpuCapError as exc:
        raise SystemExit(f"BENCH_SERVER_CPU_PERCENT={settings.server_cpu_percent}: {exc}") from exc
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        if settings.cpu_cap is not None:
            cpucap.remove_leftovers(owner=os.getpid())

    wrk_plans = [plan for plan in plans if plan.group.measure is None]
    if wrk_plans:
        print()
        print(wrk_legend(settings, [s for plan in wrk_plans for s in plan.scenarios]))
    if len(wrk_plans) < len(plans):
        print()
        print(f"memory: RSS of the server's processes before and after opening {settings.idle_connections} "
              "keep-alive connections that each had one GET /small.txt answered and then stay quiet")
    if settings.baseline_python is not None and any(spec.name == BASELINE for plan in plans for spec in plan.specs):
        print()
        print(f"fastserve: {describe_build(settings.fastserve_python, installed_from(settings.fastserve_python))}")
        print(f"{BASELINE}: {describe_build(settings.baseline_python, installed_from(settings.baseline_python))}")
    for group in groups:
        print()
        print(render_group(group))

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = RESULTS_DIR / f"{stamp}.json"
    write_json(json_path, settings, groups)
    print()
    print(f"results: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
