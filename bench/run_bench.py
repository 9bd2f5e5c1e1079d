#!/usr/bin/env python3
"""fastserve's benchmark: fastserve next to the servers people would otherwise use, under wrk.

Two groups of servers and scenarios, each with its own table and ratios:
  static   static files: fastserve, nginx, uvicorn+Starlette's StaticFiles, and the drop-in
  asgi     a framework-less ASGI hello world (bench/apps/hello.py): fastserve, uvicorn, granian

All servers of a group run at once (idle ones cost nothing) and are measured in rounds: in each
round, for each scenario, wrk runs against each server in turn, the order rotating every round.
The table shows medians over rounds; a ratio is the median of ratios taken within one round,
where the two measurements were seconds apart, with the range of those per-round ratios.

Next to req/s the table shows req/CPU-s: requests answered per second of CPU the server's
processes used during the run (user + system, from /proc). With one wrk thread, a server
that answers fast enough leaves wrk's own CPU as the limit; req/s then stops telling such
servers apart, while req/CPU-s still shows which one does less work per request.

Run through ``bash bench/run.sh``, which installs everything first. Standard library only, so
any Python 3.9+ can drive it; the servers themselves run from the interpreters named below.

Environment:
  FASTSERVE_PYTHON   interpreter with fastserve installed (default bench/.venv-fastserve)
  UVICORN_PYTHON     interpreter with uvicorn[standard] + starlette (+ fastserve for the drop-in)
                     (default bench/.venv-uvicorn)
  GRANIAN_PYTHON     interpreter with granian[uvloop] (default bench/.venv-granian)
  BENCH_GROUPS       comma-separated subset of groups to run: static, asgi (default: both)
  BENCH_ROUNDS       rounds; each round measures every scenario on every server (default 3)
  BENCH_DURATION     seconds of one measured wrk run (default 5)
  BENCH_WARMUP       seconds of unmeasured wrk load before a (server, scenario)'s first run
                     (default 2, 0 = none)
  BENCH_ALL=1        run every scenario against uvicorn+fastserve.StaticFiles, not only 1k
  BENCH_SERVERS      comma-separated subset of servers to run, in any group (default: all)
  BENCH_SCENARIOS    comma-separated subset of scenarios to run, in any group (default: all)
  BENCH_SERVER_CPU   CPU the server is pinned to (default 0)
  BENCH_CLIENT_CPU   CPU wrk is pinned to (default 1)
"""
from __future__ import annotations

import datetime
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from round_stats import RatioSummary, median_of, per_round_ratios, rotated

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
HOST = "127.0.0.1"
WRK_THREADS = 1
WRK_CONNECTIONS = 64
WRK_TIMEOUT_S = 10
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
MIB = 1024 * 1024
# wrk using this share of its CPU or more means the client, not the server, set the pace
CLIENT_BOUND_SHARE = 0.9


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


# --------------------------------------------------------------------------- document root


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    expected_status: int
    expected_length: Optional[int]  # body bytes a GET returns; None when not checked
    conditional: bool = False  # send If-None-Match with the server's own ETag
    expected_body: Optional[str] = None  # the exact body (UTF-8) when it is checked too


SMALL_SIZE = 1024
INDEX_HTML = b"<!doctype html>\n<title>fastserve bench</title>\n<p>directory index</p>\n"

SCENARIOS = [
    Scenario("1k", "/small.txt", 200, SMALL_SIZE),
    Scenario("64k", "/64k.bin", 200, 64 * 1024),
    Scenario("10m", "/10m.bin", 200, 10 * MIB),
    Scenario("304", "/small.txt", 304, 0, conditional=True),
    Scenario("404", "/missing", 404, None),
    Scenario("index", "/dir/", 200, len(INDEX_HTML)),
]


def make_document_root(root: Path) -> None:
    """Write the files every scenario asks for; /missing deliberately does not exist."""
    root.mkdir(parents=True)
    line = b"fastserve benchmark payload, one kilobyte of plain text.\n"
    (root / "small.txt").write_bytes((line * (SMALL_SIZE // len(line) + 1))[:SMALL_SIZE])
    (root / "64k.bin").write_bytes(os.urandom(64 * 1024))
    (root / "10m.bin").write_bytes(os.urandom(10 * MIB))
    (root / "dir").mkdir()
    (root / "dir" / "index.html").write_bytes(INDEX_HTML)
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


def server_specs(settings: Settings, run_dir: Path, doc_root: Path) -> list[ServerSpec]:
    all_names = [s.name for s in SCENARIOS]
    uvicorn_env = {"BENCH_ROOT": str(doc_root)}

    def uvicorn_command(app: str) -> Callable[[int], list[str]]:
        return lambda port: [
            settings.uvicorn_python, "-m", "uvicorn", app,
            "--host", HOST, "--port", str(port), "--workers", "1",
            "--no-access-log", "--loop", "uvloop", "--http", "httptools",
        ]  # fmt: skip

    nginx_conf = run_dir / "nginx.conf"

    def write_nginx_conf(port: int) -> None:
        template = (BENCH_DIR / "nginx.conf.template").read_text()
        values = {"@RUN_DIR@": str(run_dir), "@DOC_ROOT@": str(doc_root), "@PORT@": str(port)}
        for token, value in values.items():
            template = template.replace(token, value)
        leftover = re.findall(r"@[A-Z_]+@", template)
        if leftover:
            raise RuntimeError(f"nginx.conf.template has unfilled tokens: {leftover}")
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (run_dir / "nginx-tmp" / sub).mkdir(parents=True, exist_ok=True)
        nginx_conf.write_text(template)

    nginx_binary = shutil.which("nginx") or "/usr/sbin/nginx"
    return [
        ServerSpec(
            "fastserve",
            lambda port: [
                settings.fastserve_python, "-m", "fastserve", str(doc_root),
                "--host", HOST, "--port", str(port), "--workers", "1",
            ],  # fmt: skip
            all_names,
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
            "uvicorn+starlette",
            uvicorn_command("bench.apps.starlette_static:app"),
            all_names,
            env=uvicorn_env,
        ),
        ServerSpec(
            "uvicorn+fastserve.StaticFiles",
            uvicorn_command("bench.apps.fastserve_static:app"),
            all_names if settings.run_all_dropin else ["1k"],
            env=uvicorn_env,
        ),
    ]


# --------------------------------------------------------------------------- the ASGI group

HELLO_BODY = "Hello, world!"
HELLO_APP = "bench.apps.hello:app"
ASGI_SCENARIOS = [Scenario("hello", "/", 200, len(HELLO_BODY), expected_body=HELLO_BODY)]


def asgi_server_specs(settings: Settings) -> list[ServerSpec]:
    """The same hello-world app under each ASGI server: one worker, uvloop, no access log."""
    names = [s.name for s in ASGI_SCENARIOS]
    return [
        ServerSpec(
            "fastserve",
            lambda port: [
                settings.fastserve_python, "-m", "fastserve", HELLO_APP,
                "--host", HOST, "--port", str(port), "--workers", "1",
            ],  # fmt: skip
            names,
        ),
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
    """One server process in its own process group, pinned to the server CPU."""

    def __init__(self, spec: ServerSpec, settings: Settings, run_dir: Path) -> None:
        self.spec = spec
        self.port = free_port()
        self.log_path = run_dir / "logs" / f"{spec.name}.log"
        self.log_path.parent.mkdir(exist_ok=True)
        if spec.prepare:
            spec.prepare(self.port)
        self.command = ["taskset", "-c", settings.server_cpu, *spec.build_command(self.port)]
        # cwd is the run dir: `bench` there links to this directory, and nothing shadows the
        # installed fastserve the way the repository checkout would.
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=run_dir,
                env={**os.environ, **spec.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

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


def probe(port: int, path: str, headers: Optional[dict[str, str]] = None) -> Probe:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return Probe(response.status, len(body), response.getheader("ETag"), body)
    finally:
        conn.close()


def scenario_headers(scenario: Scenario, port: int) -> dict[str, str]:
    """Extra request headers; for the conditional scenario, the ETag this server hands out."""
    if not scenario.conditional:
        return {}
    etag = probe(port, scenario.path).etag
    if not etag:
        raise ValueError(f"GET {scenario.path} returned no ETag, cannot build a conditional request")
    return {"If-None-Match": etag}


def check_response(scenario: Scenario, port: int, headers: dict[str, str]) -> list[str]:
    """One request before the load: problems that would make the numbers meaningless."""
    result = probe(port, scenario.path, headers)
    problems = []
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

    @property
    def socket_error_total(self) -> int:
        return sum(self.socket_errors.values())


_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_BINARY_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_wrk_output(text: str) -> WrkResult:
    """Pull the numbers out of `wrk --latency` output (binary units: wrk's MB is MiB)."""

    def find(pattern: str) -> Optional[re.Match[str]]:
        return re.search(pattern, text, re.MULTILINE)

    rps = find(r"^Requests/sec:\s+([\d.]+)")
    transfer = find(r"^Transfer/sec:\s+([\d.]+)([KMGT]?)B")
    p99 = find(r"^\s+99%\s+([\d.]+)(us|ms|s|m|h)\s*$")
    total = find(r"^\s*(\d+) requests in ")
    if not (rps and transfer and p99 and total):
        raise ValueError("unrecognised wrk output:\n" + text)
    sockets = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    non_ok = find(r"Non-2xx or 3xx responses: (\d+)")
    socket_counts = [int(n) for n in sockets.groups()] if sockets else [0, 0, 0, 0]
    return WrkResult(
        requests_per_sec=float(rps.group(1)),
        mib_per_sec=float(transfer.group(1)) * _BINARY_UNITS[transfer.group(2)] / MIB,
        p99_ms=float(p99.group(1)) * _TIME_UNITS_MS[p99.group(2)],
        requests=int(total.group(1)),
        non_2xx_3xx=int(non_ok.group(1)) if non_ok else 0,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), socket_counts)),
    )


def session_cpu_seconds(session_id: int) -> float:
    """User + system CPU time used so far by the live processes of one session.

    Each server starts in a session of its own, so this covers a master and its workers.
    """
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(os.path.join(entry.path, "stat")) as stat:
                # after "pid (comm)": state ppid pgrp session ... utime(14th) stime(15th)
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session_id:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User + system CPU time of the finished child processes (wrk runs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(settings: Settings, url: str, headers: dict[str, str], duration_s: int) -> str:
    command = [
        "taskset", "-c", settings.client_cpu, "wrk",
        f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{duration_s}s", "--latency",
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
        p99 = median_of([r.p99_ms for r in measured if r.requests])
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
        )

    def client_bound_rounds(self) -> list[int]:
        """Rounds (from 1) in which wrk used most of its CPU: there req/s is wrk's ceiling too."""
        return [
            i + 1 for i, r in enumerate(self.rounds)
            if r is not None and r.client_cpu_share is not None and r.client_cpu_share >= CLIENT_BOUND_SHARE
        ]

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
    result: Optional[WrkResult] = None
    try:
        if not target.warmed_up and settings.warmup_s > 0:
            run_wrk(settings, target.url, target.headers, settings.warmup_s)
        target.warmed_up = True
        session_id = target.server.process.pid
        cpu_before = session_cpu_seconds(session_id)
        client_before = children_cpu_seconds()
        result = parse_wrk_output(run_wrk(settings, target.url, target.headers, settings.duration_s))
        result.client_cpu_share = (children_cpu_seconds() - client_before) / settings.duration_s
        cpu_used = session_cpu_seconds(session_id) - cpu_before
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
    metric: str  # "requests_per_sec", "mib_per_sec" or "requests_per_cpu_second"
    target: Optional[float]


FASTSERVE, NGINX, UVICORN, DROPIN = "fastserve", "nginx", "uvicorn+starlette", "uvicorn+fastserve.StaticFiles"
RPS, MIBS, RPCPU = "requests_per_sec", "mib_per_sec", "requests_per_cpu_second"

RATIOS = [
    RatioSpec(FASTSERVE, NGINX, "1k", RPS, 1.0),
    RatioSpec(FASTSERVE, NGINX, "304", RPS, 1.0),
    RatioSpec(FASTSERVE, NGINX, "404", RPS, 1.0),
    RatioSpec(FASTSERVE, NGINX, "1k", RPCPU, None),
    RatioSpec(FASTSERVE, NGINX, "304", RPCPU, None),
    RatioSpec(FASTSERVE, NGINX, "404", RPCPU, None),
    RatioSpec(FASTSERVE, NGINX, "index", RPS, None),
    RatioSpec(FASTSERVE, NGINX, "64k", RPS, None),
    RatioSpec(FASTSERVE, NGINX, "10m", MIBS, 0.8),
    RatioSpec(FASTSERVE, UVICORN, "1k", RPS, 20.0),
    RatioSpec(DROPIN, UVICORN, "1k", RPS, 3.0),
]

ASGI_RATIOS = [
    RatioSpec(FASTSERVE, "uvicorn", "hello", RPS, 1.5),
    RatioSpec(FASTSERVE, "granian", "hello", RPS, 1.1),
    RatioSpec(FASTSERVE, "uvicorn", "hello", RPCPU, None),
    RatioSpec(FASTSERVE, "granian", "hello", RPCPU, None),
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
            "met": summary.meets(spec.target),
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


def static_group_specs(settings: Settings, run_dir: Path) -> list[ServerSpec]:
    return server_specs(settings, run_dir, run_dir / "www")


GROUPS = [
    BenchGroup(
        "static", "static files", SCENARIOS, RATIOS, static_group_specs,
        prepare=lambda run_dir: make_document_root(run_dir / "www"),
    ),  # fmt: skip
    BenchGroup(
        "asgi", "ASGI hello world", ASGI_SCENARIOS, ASGI_RATIOS,
        lambda settings, _run_dir: asgi_server_specs(settings),
    ),  # fmt: skip
]


@dataclass
class GroupPlan:
    group: BenchGroup
    specs: list[ServerSpec]
    scenarios: list[Scenario]


@dataclass
class GroupOutcome:
    group: BenchGroup
    scenarios: list[Scenario]
    servers: list[ServerOutcome]
    ratios: list[dict]
    orders: dict[str, list[list[str]]] = field(default_factory=dict)  # scenario -> order per round


def check_known(names: Optional[list[str]], known: set[str], what: str) -> None:
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def plan_groups(settings: Settings, run_dir: Path, groups: Optional[list[BenchGroup]] = None) -> list[GroupPlan]:
    """The groups to run, each with the servers and scenarios BENCH_SERVERS/BENCH_SCENARIOS keep.

    A server or scenario name only has to exist in one of the chosen groups; a group left with
    no server or no scenario is dropped, and if nothing at all is left that is an error.
    """
    chosen = select(GROUPS if groups is None else groups, settings.groups, "group")
    built = [(group, group.build_specs(settings, run_dir)) for group in chosen]
    check_known(settings.servers, {spec.name for _, specs in built for spec in specs}, "server")
    check_known(settings.scenarios, {s.name for group in chosen for s in group.scenarios}, "scenario")
    plans = []
    for group, specs in built:
        kept_specs = [spec for spec in specs if settings.servers is None or spec.name in settings.servers]
        kept_scenarios = [s for s in group.scenarios if settings.scenarios is None or s.name in settings.scenarios]
        if kept_specs and kept_scenarios:
            plans.append(GroupPlan(group, kept_specs, kept_scenarios))
    if not plans:
        raise SystemExit("nothing to run: no group has both a selected server and a selected scenario")
    return plans


def run_group(plan: GroupPlan, settings: Settings, run_dir: Path) -> GroupOutcome:
    print(f"[bench] group {plan.group.name}: {plan.group.title}", file=sys.stderr, flush=True)
    if plan.group.prepare:
        plan.group.prepare(run_dir)
    run = bench_servers(plan.specs, settings, run_dir, plan.scenarios)
    ratios = compute_ratios({o.name: o for o in run.servers}, plan.group.ratios)
    return GroupOutcome(plan.group, plan.scenarios, run.servers, ratios, run.orders)


# --------------------------------------------------------------------------- report


def fmt_cell(outcome: ServerOutcome, scenario: Scenario) -> list[str]:
    if scenario.name not in outcome.planned:
        return ["-", "", "", "", ""]
    scenario_outcome = outcome.scenarios.get(scenario.name)
    if scenario_outcome is None:  # the server failed before reaching this scenario
        return ["failed", "", "", "", ""]
    r = scenario_outcome.summary
    if r is None:
        return ["failed", "", "", "", ""]
    errors = str(scenario_outcome.error_count(scenario))
    if scenario_outcome.problems:
        errors += "!"
    p99 = f"{r.p99_ms:.2f}ms" if r.requests else "-"
    per_cpu = "-" if r.requests_per_cpu_second is None else f"{r.requests_per_cpu_second:,.0f}"
    return [f"{r.requests_per_sec:,.0f}", per_cpu, f"{r.mib_per_sec:,.1f}", p99, errors]


def render_table(outcomes: list[ServerOutcome], scenarios: list[Scenario]) -> str:
    sub_headers = ["req/s", "req/CPU-s", "MiB/s", "p99", "errors"]
    widths = [10, 10, 9, 10, 7]
    group_width = sum(widths) + len(widths) - 1
    lines = [
        "scenario | " + " | ".join(o.name[:group_width].ljust(group_width) for o in outcomes),
        "         | " + " | ".join(" ".join(h.rjust(w) for h, w in zip(sub_headers, widths)) for _ in outcomes),
        "---------+-" + "-+-".join("-" * group_width for _ in outcomes),
    ]
    for scenario in scenarios:
        cells = []
        for outcome in outcomes:
            values = fmt_cell(outcome, scenario)
            cells.append(" ".join(v.rjust(w) for v, w in zip(values, widths)))
        lines.append(f"{scenario.name:<8} | " + " | ".join(cells))
    return "\n".join(lines)


def render_ratios(ratios: list[dict]) -> str:
    lines = [f"{'ratio':<50} {'scenario':<9} {'metric':<9} {'median (min-max per round)':>26}  target"]
    for row in ratios:
        label = f"{row['numerator']} / {row['denominator']}"
        metric = {RPS: "req/s", MIBS: "MiB/s", RPCPU: "req/CPU-s"}[row["metric"]]
        value = RatioSummary(row["value"], row["min"], row["max"], row["per_round"]).render()
        if row["target"] is None:
            target = "(no target)"
        else:
            verdict = {True: "met", False: "MISSED", None: "not measured"}[row["met"]]
            target = f">={row['target']:.1f}x {verdict}"
        lines.append(f"{label:<50} {row['scenario']:<9} {metric:<9} {value:>26}  {target}")
    return "\n".join(lines)


def render_notes(outcomes: list[ServerOutcome]) -> str:
    notes = []
    for outcome in outcomes:
        if outcome.error:
            notes.append(f"{outcome.name}: FAILED: {outcome.error}")
        for name, scenario_outcome in outcome.scenarios.items():
            if scenario_outcome.error:
                notes.append(f"{outcome.name} {name}: FAILED: {scenario_outcome.error}")
            for problem in scenario_outcome.problems:
                notes.append(f"{outcome.name} {name}: {problem}")
        client_bound = [
            f"{name} {rounds}" for name, scenario_outcome in outcome.scenarios.items()
            if (rounds := scenario_outcome.client_bound_rounds())
        ]
        if client_bound:
            notes.append(
                f"{outcome.name}: wrk used >= {CLIENT_BOUND_SHARE:.0%} of its CPU in rounds of "
                f"{', '.join(client_bound)}; req/s there is the client's limit as much as the server's"
            )
    return "\n".join(note.replace("\n", "\n    ") for note in notes)


def tool_versions(settings: Settings, group_names: Optional[list[str]] = None) -> dict[str, Optional[str]]:
    """Best-effort versions of everything measured, for the JSON record."""

    def capture(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
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
        "uvicorn_python": package_versions(
            settings.uvicorn_python, ["uvicorn", "starlette", "uvloop", "httptools", "fastserve"]
        ),
    }
    if group_names is None or "asgi" in group_names:
        versions["granian_python"] = package_versions(settings.granian_python, ["granian", "uvloop"])
    return versions


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
        }  # fmt: skip
        record["total"] = None if summary is None else {
            "requests": summary.requests,
            "non_2xx_3xx": summary.non_2xx_3xx,
            "socket_errors": summary.socket_errors,
            "errors": scenario_outcome.error_count(scenario),
        }  # fmt: skip
        return record

    def group_record(group: GroupOutcome) -> dict:
        return {
            "title": group.group.title,
            "scenarios": [asdict(s) for s in group.scenarios],
            "servers": {
                o.name: {
                    "status": o.status,
                    "planned": o.planned,
                    "command": o.command,
                    "error": o.error,
                    "scenarios": {
                        s.name: scenario_record(s, o.scenarios[s.name])
                        for s in group.scenarios
                        if s.name in o.scenarios
                    },
                }
                for o in group.servers
            },
            "round_orders": group.orders,
            "ratios": group.ratios,
        }

    document = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {
            "rounds": settings.rounds,
            "duration_s": settings.duration_s,
            "warmup_s": settings.warmup_s,
            "wrk_threads": WRK_THREADS,
            "wrk_connections": WRK_CONNECTIONS,
            "server_cpu": settings.server_cpu,
            "client_cpu": settings.client_cpu,
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
    parts = [
        f"== {group.group.title} (BENCH_GROUPS={group.group.name})",
        render_table(shown, group.scenarios),
        render_ratios(group.ratios),
    ]
    notes = render_notes(group.servers)
    if notes:
        parts.append("notes:\n" + notes)
    return "\n\n".join(parts)


def main() -> int:
    settings = Settings.from_env()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: run bench/run.sh, which installs it")

    run_dir = Path(tempfile.mkdtemp(prefix="fastserve-bench-"))
    try:
        (run_dir / "bench").symlink_to(BENCH_DIR)  # so `bench.apps.*` imports from the run dir
        plans = plan_groups(settings, run_dir)
        groups = [run_group(plan, settings, run_dir) for plan in plans]
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)

    print()
    print(
        f"{settings.rounds} rounds of wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{settings.duration_s}s --latency "
        f"per server and scenario (warm-up {settings.warmup_s}s before the first); "
        f"servers on CPU {settings.server_cpu}, wrk on CPU {settings.client_cpu}"
    )
    print("req/s, MiB/s, p99 = median over rounds; errors = total over rounds of socket errors + non-2xx/3xx")
    print("answers (404s not counted in the 404 row); '!' = see notes")
    print("ratio = median of the ratios taken within each round (min-max of those in brackets);")
    print("a target is met when the median meets it")
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
