"""Checks for the benchmark harness itself: `pytest bench/test_run_bench.py` (a few seconds).

The end-to-end tests start real processes and 1-second wrk runs, so they need wrk and taskset
(bench/run.sh installs both). The round-robin tests replace wrk with a stand-in that records
what it was asked to run.
"""
from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpucap  # noqa: E402
import run_bench  # noqa: E402
from apps.hello import app as hello_app  # noqa: E402
from idle_memory import IdleMemory, measure_idle_memory, open_idle_connections  # noqa: E402
from round_stats import RatioSummary, median_of, per_round_ratios, rotated  # noqa: E402
from run_bench import (  # noqa: E402
    ASGI_RATIOS,
    ASGI_SCENARIOS,
    GROUPS,
    HELLO_APP,
    SCENARIOS,
    GroupOutcome,
    RunningServer,
    ScenarioOutcome,
    ServerOutcome,
    ServerSpec,
    Settings,
    WrkResult,
    asgi_server_specs,
    bench_server,
    bench_servers,
    check_response,
    compute_ratios,
    make_document_root,
    parse_wrk_output,
    plan_groups,
    render_group,
    render_table,
    write_json,
)

WRK_OUTPUT = """\
Running 2s test @ http://127.0.0.1:8080/missing
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms  310.20us   9.87ms   91.02%
    Req/Sec    42.10k     1.20k   44.00k    80.00%
  Latency Distribution
     50%    1.48ms
     75%    1.60ms
     90%    1.79ms
     99%  850.00us
  83764 requests in 2.00s, 12.50MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 83764
Requests/sec:  41882.00
Transfer/sec:      6.25MB
latency-percentile 50 1480
latency-percentile 90 1790
latency-percentile 99 850
latency-percentile 99.9 12345
"""


def test_parse_wrk_output_reads_every_number() -> None:
    result = parse_wrk_output(WRK_OUTPUT)
    assert result.requests_per_sec == 41882.0
    assert result.mib_per_sec == pytest.approx(6.25)
    assert result.p99_ms == pytest.approx(0.85)
    assert result.requests == 83764
    assert result.non_2xx_3xx == 83764
    assert result.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 2}
    assert result.timeouts == 2
    assert (result.p50_ms, result.p90_ms) == (pytest.approx(1.48), pytest.approx(1.79))
    assert result.p999_ms == pytest.approx(12.345)  # from bench/latency.lua's line


def test_parse_wrk_output_without_the_latency_script_has_no_p999() -> None:
    text = "\n".join(line for line in WRK_OUTPUT.splitlines() if not line.startswith("latency-percentile"))
    result = parse_wrk_output(text)
    assert result.p999_ms is None and result.p99_ms == pytest.approx(0.85)


def test_latency_script_prints_the_percentiles_the_parser_reads(tmp_path: Path) -> None:
    """wrk runs bench/latency.lua's `done` and prints p99.9 next to its own table."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Answer", (_FixedAnswer,), {"body": b"x" * 100}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = _settings()
        text = run_bench.run_wrk(settings, f"http://127.0.0.1:{server.server_address[1]}/", {}, 1, connections=4)
    finally:
        server.shutdown()
        server.server_close()
    assert "4 connections" in text
    result = parse_wrk_output(text)
    assert result.requests > 0 and result.p999_ms is not None
    assert result.p50_ms is not None and result.p50_ms <= result.p99_ms <= result.p999_ms + 0.01


def test_parse_wrk_output_converts_units() -> None:
    text = (
        WRK_OUTPUT.replace("850.00us", "1.20s")
        .replace("6.25MB", "1.50GB")
        .replace("  Socket errors: connect 0, read 3, write 0, timeout 2\n", "")
        .replace("  Non-2xx or 3xx responses: 83764\n", "")
    )
    result = parse_wrk_output(text)
    assert result.p99_ms == pytest.approx(1200.0)
    assert result.mib_per_sec == pytest.approx(1536.0)
    assert result.non_2xx_3xx == 0
    assert result.socket_error_total == 0


def test_parse_wrk_output_rejects_unknown_text() -> None:
    with pytest.raises(ValueError, match="unrecognised wrk output"):
        parse_wrk_output("wrk: connection refused\n")


def _ok(rps: float, mibs: float, per_cpu: Optional[float] = None) -> ScenarioOutcome:
    """A scenario measured in one round."""
    return ScenarioOutcome("ok", rounds=[WrkResult(rps, mibs, 1.0, 100, 0, {}, per_cpu)])


def _rounds(*rps: Optional[float]) -> ScenarioOutcome:
    """A scenario measured in several rounds (None: that round has no number)."""
    return ScenarioOutcome("ok", rounds=[None if r is None else WrkResult(r, r / 1000, 1.0, 100, 0, {}) for r in rps])


def test_compute_ratios_marks_targets_and_missing_servers() -> None:
    outcomes = {
        "fastserve": ServerOutcome("fastserve", "ok", scenarios={"1k": _ok(90.0, 1, 30.0), "10m": _ok(1, 900.0)}),
        "nginx": ServerOutcome("nginx", "ok", scenarios={"1k": _ok(100.0, 1, 20.0), "10m": _ok(1, 1000.0)}),
        "uvicorn+starlette": ServerOutcome("uvicorn+starlette", "failed", error="boom"),
    }
    ratios = {(r["numerator"], r["denominator"], r["scenario"], r["metric"]): r for r in compute_ratios(outcomes)}
    one_k = ratios[("fastserve", "nginx", "1k", "requests_per_sec")]
    assert one_k["value"] == pytest.approx(0.9) and one_k["met"] is False
    ten_m = ratios[("fastserve", "nginx", "10m", "mib_per_sec")]
    assert ten_m["value"] == pytest.approx(0.9) and ten_m["met"] is True
    assert ratios[("fastserve", "nginx", "304", "requests_per_sec")]["value"] is None
    assert ratios[("fastserve", "uvicorn+starlette", "1k", "requests_per_sec")]["met"] is None
    per_cpu = ratios[("fastserve", "nginx", "1k", "requests_per_cpu_second")]
    assert per_cpu["value"] == pytest.approx(1.5) and per_cpu["met"] is None  # reported, no target
    assert ratios[("fastserve", "nginx", "404", "requests_per_cpu_second")]["value"] is None


def test_session_cpu_seconds_counts_every_process_of_the_session() -> None:
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ntime.sleep(30)"
    script = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {burn!r}])\nexec({burn!r})"
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while run_bench.session_cpu_seconds(process.pid) < 0.6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run_bench.session_cpu_seconds(process.pid) >= 0.6  # parent and child, 0.3 s each at least
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_rounds_where_wrk_was_cpu_bound_are_noted_without_flagging_errors() -> None:
    outcome = ScenarioOutcome("ok", rounds=[
        WrkResult(100.0, 1.0, 1.0, 100, 0, {}, client_cpu_share=0.97),
        WrkResult(100.0, 1.0, 1.0, 100, 0, {}, client_cpu_share=0.50),
        None,
        WrkResult(100.0, 1.0, 1.0, 100, 0, {}, client_cpu_share=0.92),
        WrkResult(100.0, 1.0, 1.0, 100, 0, {}),
    ])  # fmt: skip
    assert outcome.client_bound_rounds() == [1, 4]
    quiet = ScenarioOutcome("ok", rounds=[WrkResult(1.0, 1.0, 1.0, 1, 0, {}, client_cpu_share=0.2)])
    notes = run_bench.render_notes([ServerOutcome("fastserve", "ok", scenarios={"304": outcome, "1k": quiet})])
    assert notes == ("fastserve: wrk used >= 90% of its CPU in rounds of 304 [1, 4]; "
                     "req/s there is the client's limit as much as the server's")
    assert outcome.error_count(SCENARIOS[0]) == 0 and not outcome.problems


def test_error_count_ignores_expected_404s_only() -> None:
    by_name = {s.name: s for s in SCENARIOS}
    outcome = ScenarioOutcome("ok", rounds=[WrkResult(1, 1, 1, 10, 10, {"read": 2})])
    assert outcome.error_count(by_name["404"]) == 2
    assert outcome.error_count(by_name["1k"]) == 12


def test_error_count_adds_up_every_round() -> None:
    one_k = SCENARIOS[0]
    outcome = ScenarioOutcome("ok", rounds=[
        WrkResult(1, 1, 1, 10, 1, {"read": 2, "timeout": 0}),
        None,
        WrkResult(1, 1, 1, 10, 4, {"read": 1, "timeout": 3}),
    ])  # fmt: skip
    assert outcome.error_count(one_k) == 2 + 1 + 1 + 3 + 4
    assert outcome.summary is not None and outcome.summary.socket_errors == {"read": 3, "timeout": 3}


# --------------------------------------------------------------------------- rounds


def test_rotated_puts_each_item_first_once_per_cycle() -> None:
    servers = ["fastserve", "nginx", "uvicorn"]
    orders = [rotated(servers, r) for r in range(4)]
    assert orders == [
        ["fastserve", "nginx", "uvicorn"],
        ["nginx", "uvicorn", "fastserve"],
        ["uvicorn", "fastserve", "nginx"],
        ["fastserve", "nginx", "uvicorn"],
    ]
    assert rotated([], 5) == [] and rotated(["only"], 7) == ["only"]


def test_summary_takes_medians_over_rounds_and_sums_counts() -> None:
    outcome = ScenarioOutcome("ok", rounds=[
        WrkResult(300.0, 3.0, 9.0, 900, 0, {}),
        WrkResult(100.0, 1.0, 1.0, 100, 0, {}),
        None,  # not measured this round: left out, not counted as zero
        WrkResult(200.0, 2.0, 5.0, 400, 0, {}),
    ])  # fmt: skip
    summary = outcome.summary
    assert summary is not None
    assert (summary.requests_per_sec, summary.mib_per_sec, summary.p99_ms) == (200.0, 2.0, 5.0)
    assert summary.requests == 1400
    assert outcome.by_round("requests_per_sec") == [300.0, 100.0, None, 200.0]
    assert ScenarioOutcome("failed").summary is None


def test_summary_p99_leaves_out_rounds_without_a_response() -> None:
    outcome = ScenarioOutcome("ok", rounds=[WrkResult(0.0, 0.0, 0.0, 0, 0, {}), WrkResult(10.0, 1.0, 7.0, 50, 0, {})])
    assert outcome.summary is not None and outcome.summary.p99_ms == 7.0


def test_ratio_is_the_median_of_ratios_within_each_round() -> None:
    outcomes = {
        "fastserve": ServerOutcome("fastserve", "ok", scenarios={"hello": _rounds(100.0, 300.0, 200.0)}),
        "uvicorn": ServerOutcome("uvicorn", "ok", scenarios={"hello": _rounds(100.0, 100.0, 400.0)}),
    }
    row = compute_ratios(outcomes, ASGI_RATIOS)[0]
    # Per round: 1.0, 3.0, 0.5. The ratio of the medians (200 / 100) would say 2.0.
    assert row["per_round"] == [1.0, 3.0, 0.5]
    assert (row["value"], row["min"], row["max"]) == (1.0, 0.5, 3.0)
    assert row["met"] is False  # target 1.5: judged on the median, not on the best round


def test_ratio_skips_rounds_either_side_missed() -> None:
    outcomes = {
        "fastserve": ServerOutcome("fastserve", "ok", scenarios={"hello": _rounds(150.0, None, 160.0, 170.0)}),
        "granian": ServerOutcome("granian", "ok", scenarios={"hello": _rounds(100.0, 100.0, None, 200.0)}),
    }
    row = compute_ratios(outcomes, ASGI_RATIOS)[1]
    assert row["per_round"] == [1.5, None, None, 0.85]
    assert row["value"] == pytest.approx((1.5 + 0.85) / 2) and row["met"] is True  # target 1.1


def test_target_is_met_on_the_median_even_when_one_round_dips() -> None:
    summary = RatioSummary.of([1.30, 0.95, 1.13])
    assert summary.meets(1.0) is True and summary.meets(1.2) is False and summary.meets(None) is None
    assert summary.render() == "1.13x (0.95\u20131.30)"
    assert RatioSummary.of([None, None]).render() == "n/a" and RatioSummary.of([]).meets(1.0) is None


def test_median_of_and_per_round_ratios_handle_gaps() -> None:
    assert median_of([3.0, None, 1.0, 2.0]) == 2.0
    assert median_of([None]) is None
    assert per_round_ratios([1.0, 2.0, None, 4.0], [2.0, 0.0, 1.0, None]) == [0.5, None, None, None]


def test_rounds_and_duration_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BENCH_ROUNDS", "BENCH_DURATION"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert (settings.rounds, settings.duration_s) == (3, 5)
    monkeypatch.setenv("BENCH_ROUNDS", "7")
    assert Settings.from_env().rounds == 7
    for bad in ("0", "-2", "three"):
        monkeypatch.setenv("BENCH_ROUNDS", bad)
        with pytest.raises(SystemExit, match="BENCH_ROUNDS"):
            Settings.from_env()


def test_document_root_has_every_scenario_file(tmp_path: Path) -> None:
    root = tmp_path / "run" / "www"
    (tmp_path / "run").mkdir()
    make_document_root(root)
    for scenario in SCENARIOS:
        target = root / scenario.path.lstrip("/")
        if scenario.path.endswith("/"):
            target = target / "index.html"
        if scenario.expected_status == 404:
            assert not target.exists()
        elif scenario.expected_length:
            assert target.stat().st_size == scenario.expected_length


def _settings() -> Settings:
    settings = Settings.from_env()
    settings.duration_s, settings.warmup_s, settings.rounds = 1, 0, 2
    settings.connections, settings.server_cpu_percent = run_bench.WRK_CONNECTIONS, None
    settings.baseline_python = None
    return settings


def test_server_that_cannot_start_is_reported_failed(tmp_path: Path) -> None:
    spec = ServerSpec("broken", lambda port: [sys.executable, "-c", "import sys; sys.exit(3)"], ["1k", "64k"])
    outcome = bench_server(spec, _settings(), tmp_path, SCENARIOS)
    assert outcome.status == "failed"
    assert "exited with code 3" in (outcome.error or "")
    table = render_table([outcome], SCENARIOS)
    rows = {line.split("|")[0].strip(): line for line in table.splitlines()[3:]}
    assert "failed" in rows["1k"] and "failed" in rows["64k"]
    assert "failed" not in rows["10m"]  # not planned for this server


def test_real_server_is_measured_and_missing_etag_fails_one_scenario(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    root = run_dir / "www"
    make_document_root(root)
    spec = ServerSpec(
        "http.server",
        lambda port: [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(root)],
        ["1k", "304"],
    )
    outcome = bench_server(spec, _settings(), run_dir, SCENARIOS)
    assert outcome.status == "ok"
    one_k = outcome.scenarios["1k"]
    assert one_k.status == "ok" and len(one_k.rounds) == 2 and all(r and r.requests > 0 for r in one_k.rounds)
    # the server's CPU was read from /proc around each run
    assert all(r and r.requests_per_cpu_second and r.requests_per_cpu_second > 0 for r in one_k.rounds)
    assert all(r and r.client_cpu_share is not None and 0 < r.client_cpu_share < 1.5 for r in one_k.rounds)
    conditional = outcome.scenarios["304"]  # this server sends no ETag
    assert conditional.status == "failed" and "no ETag" in (conditional.error or "")
    assert conditional.rounds == []  # a scenario that fails its check is never loaded
    assert one_k.summary is not None
    assert run_bench.metric_value({"s": outcome}, "s", "1k", "requests_per_sec") == one_k.summary.requests_per_sec


# --------------------------------------------------------------------------- the ASGI group


def test_asgi_ratios_compare_fastserve_with_uvicorn_and_granian() -> None:
    outcomes = {
        "fastserve": ServerOutcome("fastserve", "ok", scenarios={"hello": _ok(30_000.0, 4)}),
        "uvicorn": ServerOutcome("uvicorn", "ok", scenarios={"hello": _ok(15_000.0, 2)}),
        "granian": ServerOutcome("granian", "ok", scenarios={"hello": _ok(28_000.0, 4)}),
    }
    ratios = {
        r["denominator"]: r for r in compute_ratios(outcomes, ASGI_RATIOS)
        if r["metric"] == "requests_per_sec" and r["scenario"] == "hello"
    }
    assert set(ratios) == {"uvicorn", "granian"}
    assert ratios["uvicorn"]["value"] == pytest.approx(2.0) and ratios["uvicorn"]["met"] is True
    assert ratios["granian"]["value"] == pytest.approx(30 / 28) and ratios["granian"]["met"] is False
    assert all(r["scenario"] == "hello" and r["metric"] == "requests_per_sec" for r in ratios.values())
    outcomes["granian"] = ServerOutcome("granian", "failed", error="boom")
    assert compute_ratios(outcomes, ASGI_RATIOS)[1]["met"] is None


def test_static_ratios_stay_the_default() -> None:
    outcomes = {"fastserve": ServerOutcome("fastserve", "ok", scenarios={"hello": _ok(1, 1)})}
    assert [(r["denominator"], r["scenario"]) for r in compute_ratios(outcomes)] == [
        ("nginx", "1k"), ("nginx", "304"), ("nginx", "404"), ("nginx", "1k"), ("nginx", "304"),
        ("nginx", "404"), ("nginx", "index"), ("nginx", "64k"), ("nginx", "js-br"), ("nginx", "js-br"),
        ("caddy", "js-br"), ("fastserve-plain", "1k"), ("fastserve-plain", "304"), ("fastserve-plain", "404"),
        ("nginx", "10m"), ("nginx", "1k-c1024"),
        ("nginx", "1k"), ("nginx", "304"), ("nginx", "404"), ("nginx", "64k"),
        ("h2o", "1k"), ("h2o", "304"), ("h2o", "404"), ("h2o", "1k"), ("h2o", "304"), ("h2o", "404"),
        ("h2o", "64k"), ("h2o", "10m"), ("h2o", "1k-c1024"),
        ("uvicorn+starlette", "1k"), ("uvicorn+starlette", "1k"),
    ]  # fmt: skip


def _latency_rounds(*p99s: float) -> ScenarioOutcome:
    return ScenarioOutcome("ok", rounds=[WrkResult(1000.0, 1.0, p, 100, 0, {}) for p in p99s])


def test_latency_ratio_target_is_a_ceiling() -> None:
    outcomes = {
        "fastserve": ServerOutcome("fastserve", "ok", scenarios={"1k-c1024": _latency_rounds(30.0, 14.0, 20.0)}),
        "nginx": ServerOutcome("nginx", "ok", scenarios={"1k-c1024": _latency_rounds(10.0, 10.0, 10.0)}),
        "h2o": ServerOutcome("h2o", "ok", scenarios={"1k-c1024": _latency_rounds(20.0, 20.0, 20.0)}),
    }
    rows = {r["denominator"]: r for r in compute_ratios(outcomes) if r["metric"] == "p99_ms" and r["scenario"] == "1k-c1024"}
    assert rows["nginx"]["value"] == pytest.approx(2.0) and rows["nginx"]["met"] is False  # <= 1.5x
    assert rows["h2o"]["value"] == pytest.approx(1.0) and rows["h2o"]["met"] is True
    rendered = run_bench.render_ratios([rows["nginx"], rows["h2o"]])
    assert "<=1.5x MISSED" in rendered and "<=1.5x met" in rendered
    assert RatioSummary.of([1.2]).meets(1.15, at_most=True) is False
    assert RatioSummary.of([1.1]).meets(1.15, at_most=True) is True


def test_p99_against_nginx_has_the_issues_ceiling_on_every_static_tail_scenario() -> None:
    p99 = {r.scenario: r for r in run_bench.RATIOS if r.denominator == "nginx" and r.metric == "p99_ms"}
    assert set(p99) == {"1k-c1024", "1k", "304", "404", "64k"}
    assert all(r.target == 1.5 and r.at_most for r in p99.values())
    fast = ServerOutcome("fastserve", "ok", scenarios={"304": _latency_rounds(4.0, 6.0), "404": _latency_rounds(3.0, 2.0)})
    nginx = ServerOutcome("nginx", "ok", scenarios={"304": _latency_rounds(2.0, 4.0), "404": _latency_rounds(3.0, 2.0)})
    rows = {r["scenario"]: r for r in compute_ratios({"fastserve": fast, "nginx": nginx})
            if r["metric"] == "p99_ms" and r["denominator"] == "nginx"}
    assert (rows["304"]["value"], rows["304"]["met"]) == (1.75, False)  # per round 2.0 and 1.5
    assert (rows["404"]["value"], rows["404"]["met"]) == (1.0, True)
    assert rows["64k"]["met"] is None  # not measured


def test_asgi_p99_target_is_judged_at_256_connections() -> None:
    rows = {(r.scenario, r.metric): r for r in ASGI_RATIOS if r.denominator == "granian"}
    assert rows[("hello-c256", "p99_ms")].target == 1.5 and rows[("hello-c256", "p99_ms")].at_most
    assert rows[("hello", "p99_ms")].target is None  # reported at 64
    many = next(s for s in ASGI_SCENARIOS if s.name == "hello-c256")
    assert many.connections == 256 and many.expected_body == "Hello, world!"


def test_latency_table_shows_percentiles_and_timeouts() -> None:
    rounds = [
        WrkResult(100.0, 1.0, 40.0, 300, 0, {"timeout": 2}, p50_ms=1.0, p90_ms=9.0, p999_ms=1500.0),
        WrkResult(100.0, 1.0, 60.0, 300, 0, {"timeout": 5}, p50_ms=3.0, p90_ms=11.0, p999_ms=2500.0),
    ]
    outcome = ServerOutcome("fastserve", "ok", planned=["1k", "404"], scenarios={"1k": ScenarioOutcome("ok", rounds=rounds)})
    table = render_table([outcome], [s for s in SCENARIOS if s.name in ("1k", "404")], run_bench.fmt_latency_cell, run_bench.LATENCY_COLUMNS)
    header, _, _, one_k, missing = table.splitlines()
    assert header.split("|")[1].strip() == "fastserve"
    assert one_k.split() == ["1k", "|", "2.00ms", "10.0ms", "50.0ms", "2,000ms", "7"]
    assert "failed" in missing  # planned, never measured
    assert "p99.9" in table and "timeouts" in table


def _plan_names(settings: Settings, tmp_path: Path) -> dict[str, tuple[list[str], list[str]]]:
    return {
        plan.group.name: ([spec.name for spec in plan.specs], [s.name for s in plan.scenarios])
        for plan in plan_groups(settings, tmp_path)
    }


def test_plan_runs_both_groups_by_default(tmp_path: Path) -> None:
    settings = _settings()
    settings.groups = settings.servers = settings.scenarios = None
    plans = _plan_names(settings, tmp_path)
    assert list(plans) == ["static", "asgi", "memory"]
    assert plans["asgi"] == (["fastserve", "uvicorn", "granian"], ["hello", "hello-c256"])
    assert plans["memory"] == (["fastserve", "nginx", "h2o", "uvicorn+starlette"], ["idle"])
    assert plans["static"][1] == [s.name for s in SCENARIOS]
    assert not (tmp_path / "www").exists()  # the document root is written only when static runs


def test_plan_selects_groups_servers_and_scenarios(tmp_path: Path) -> None:
    settings = _settings()
    settings.groups, settings.servers, settings.scenarios = ["asgi"], None, None
    assert list(_plan_names(settings, tmp_path)) == ["asgi"]
    # A server known only to one group drops the other group instead of failing.
    settings.groups, settings.servers = None, ["nginx", "fastserve"]
    assert _plan_names(settings, tmp_path) == {
        "static": (["fastserve", "nginx"], [s.name for s in SCENARIOS]),
        "asgi": (["fastserve"], ["hello", "hello-c256"]),
        "memory": (["fastserve", "nginx"], ["idle"]),
    }
    settings.servers, settings.scenarios = None, ["hello"]
    assert list(_plan_names(settings, tmp_path)) == ["asgi"]


@pytest.mark.parametrize(
    "groups, servers, scenarios, message",
    [
        (["http3"], None, None, "unknown group: http3"),
        (["asgi"], ["nginx"], None, "unknown server: nginx"),
        (["asgi"], None, ["1k"], "unknown scenario: 1k"),
        (None, ["nginx"], ["hello"], "nothing to run"),
    ],
)
def test_plan_rejects_selections_that_name_nothing(tmp_path: Path, groups, servers, scenarios, message) -> None:
    settings = _settings()
    settings.groups, settings.servers, settings.scenarios = groups, servers, scenarios
    with pytest.raises(SystemExit, match=message):
        plan_groups(settings, tmp_path)


def test_asgi_servers_run_the_hello_app_with_one_worker() -> None:
    settings = _settings()
    for spec in asgi_server_specs(settings):
        command = spec.build_command(8123)
        assert HELLO_APP in command and spec.scenario_names == ["hello", "hello-c256"]
        assert command[command.index("--workers") + 1] == "1"
        assert command[command.index("--port") + 1] == "8123"
    granian = asgi_server_specs(settings)[2].build_command(8123)
    assert granian[:3] == [settings.granian_python, "-m", "granian"]
    assert {"--no-access-log", "--no-ws"} <= set(granian) and "asgi" in granian


def _drive(scope: dict, inbound: list[dict]) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return inbound.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(hello_app(scope, receive, send))
    return sent


def test_hello_app_answers_http_and_completes_lifespan() -> None:
    sent = _drive({"type": "http", "method": "GET", "path": "/"}, [{"type": "http.request", "body": b""}])
    assert sent[0]["status"] == 200
    headers = dict(sent[0]["headers"])
    assert headers[b"content-length"] == str(len(sent[1]["body"])).encode()
    assert sent[1]["body"] == ASGI_SCENARIOS[0].expected_body.encode()
    lifespan = _drive({"type": "lifespan"}, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    assert [m["type"] for m in lifespan] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


class _FixedAnswer(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    "body, problem",
    [(b"Hello, world!", None), (b"Hello, World?", "body was b'Hello, World?'"), (b"Hi", "body was 2 bytes")],
)
def test_check_response_compares_the_hello_body(body: bytes, problem) -> None:
    handler = type("Answer", (_FixedAnswer,), {"body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        problems = check_response(ASGI_SCENARIOS[0], server.server_address[1], {})
    finally:
        server.shutdown()
        server.server_close()
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(problem)


def test_group_report_and_json_keep_groups_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    static, asgi, _memory = GROUPS
    fast_static = ServerOutcome("fastserve", "ok", planned=["1k"], scenarios={"1k": _ok(50_000.0, 60)})
    fast_asgi = ServerOutcome("fastserve", "ok", planned=["hello"], scenarios={"hello": _ok(30_000.0, 4)})
    uvicorn = ServerOutcome("uvicorn", "failed", planned=["hello"], error="exited with code 1")
    asgi_ratios = compute_ratios({"fastserve": fast_asgi, "uvicorn": uvicorn}, ASGI_RATIOS)
    groups = [
        GroupOutcome(static, [SCENARIOS[0]], [fast_static], compute_ratios({"fastserve": fast_static})),
        GroupOutcome(asgi, ASGI_SCENARIOS, [fast_asgi, uvicorn], asgi_ratios),
    ]
    report = render_group(groups[1])
    assert "ASGI hello world" in report and "fastserve / granian" in report
    assert "uvicorn: FAILED: exited with code 1" in report
    hello_row = next(line for line in report.splitlines() if line.startswith("hello"))
    assert "30,000" in hello_row and "failed" in hello_row

    monkeypatch.setattr(run_bench, "tool_versions", lambda settings, names=None: {"groups": names})
    path = tmp_path / "result.json"
    write_json(path, _settings(), groups)
    document = json.loads(path.read_text())
    assert document["versions"] == {"groups": ["static", "asgi"]}
    one_k = document["groups"]["static"]["servers"]["fastserve"]["scenarios"]["1k"]
    assert one_k["median"]["requests_per_sec"] == 50_000 and one_k["total"]["errors"] == 0
    assert [r["requests_per_sec"] for r in one_k["rounds"]] == [50_000]
    asgi_record = document["groups"]["asgi"]
    assert asgi_record["servers"]["fastserve"]["scenarios"]["hello"]["median"]["requests_per_sec"] == 30_000
    assert asgi_record["servers"]["uvicorn"]["status"] == "failed"
    assert asgi_record["scenarios"][0]["expected_body"] == "Hello, world!"
    assert [r["met"] for r in asgi_record["ratios"]] == [None] * len(ASGI_RATIOS)


def test_hello_app_is_measured_under_a_real_asgi_server(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")  # the dev venv has it; the bench venvs are not needed here
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "bench").symlink_to(Path(run_bench.BENCH_DIR))  # as main() sets it up
    settings = _settings()
    settings.uvicorn_python = sys.executable
    spec = next(s for s in asgi_server_specs(settings) if s.name == "uvicorn")
    outcome = bench_server(spec, settings, run_dir, ASGI_SCENARIOS)
    assert outcome.status == "ok", outcome.error
    hello = outcome.scenarios["hello"]
    assert hello.status == "ok" and hello.problems == []
    assert hello.summary is not None and hello.summary.requests > 0 and hello.summary.non_2xx_3xx == 0


# --------------------------------------------------------------------------- servers side by side


def _wrk_text(rps: float) -> str:
    clean = WRK_OUTPUT.replace("  Socket errors: connect 0, read 3, write 0, timeout 2\n", "")
    clean = clean.replace("  Non-2xx or 3xx responses: 83764\n", "")
    return clean.replace("Requests/sec:  41882.00", f"Requests/sec:  {rps:.2f}")


class _FakeWrk:
    """Stands in for run_wrk: records (server, path, seconds) and answers with canned output."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.connections: dict[str, set[int]] = {}  # path -> the connection counts asked for
        self.servers: list[RunningServer] = []
        self.on_call = lambda server, call_number: None
        original_init = RunningServer.__init__

        def recording_init(server: RunningServer, *args, **kwargs) -> None:
            original_init(server, *args, **kwargs)
            self.servers.append(server)

        monkeypatch.setattr(RunningServer, "__init__", recording_init)
        monkeypatch.setattr(run_bench, "run_wrk", self)

    def __call__(self, settings: Settings, url: str, headers: dict, duration_s: int, connections: int = 64) -> str:
        port = int(url.split(":")[2].split("/")[0])
        server = next(s for s in self.servers if s.port == port)
        path = "/" + url.split("/", 3)[3]
        self.calls.append((server.spec.name, path, duration_s))
        self.connections.setdefault(path, set()).add(connections)
        self.on_call(server, len(self.calls))
        return _wrk_text(1000.0 * len(self.calls))


def _file_servers(run_dir: Path, names: list[str]) -> list[ServerSpec]:
    root = run_dir / "www"
    make_document_root(root)
    command = lambda port: [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(root)]  # noqa: E731
    return [ServerSpec(name, command, ["1k", "404"]) for name in names]


def test_servers_run_together_in_rotating_rounds_with_one_warm_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrk = _FakeWrk(monkeypatch)
    settings = _settings()
    settings.rounds, settings.warmup_s, settings.duration_s = 3, 2, 7
    scenarios = [s for s in SCENARIOS if s.name in ("1k", "404")]
    run = bench_servers(_file_servers(tmp_path, ["a", "b"]), settings, tmp_path, scenarios)

    assert [o.status for o in run.servers] == ["ok", "ok"]
    assert run.orders == {"1k": [["a", "b"], ["b", "a"], ["a", "b"]], "404": [["a", "b"], ["b", "a"], ["a", "b"]]}
    warm_ups = [(name, path) for name, path, seconds in wrk.calls if seconds == 2]
    assert warm_ups == [("a", "/small.txt"), ("b", "/small.txt"), ("a", "/missing"), ("b", "/missing")]
    measured = [(name, path) for name, path, seconds in wrk.calls if seconds == 7]
    assert measured == [
        ("a", "/small.txt"), ("b", "/small.txt"), ("a", "/missing"), ("b", "/missing"),
        ("b", "/small.txt"), ("a", "/small.txt"), ("b", "/missing"), ("a", "/missing"),
        ("a", "/small.txt"), ("b", "/small.txt"), ("a", "/missing"), ("b", "/missing"),
    ]  # fmt: skip
    # Each warm-up comes right before that pair's first measured run.
    assert wrk.calls[0] == ("a", "/small.txt", 2) and wrk.calls[1] == ("a", "/small.txt", 7)
    b_one_k = run.servers[1].scenarios["1k"]
    assert len(b_one_k.rounds) == 3 and b_one_k.problems == []
    assert all(s.process.poll() is not None for s in wrk.servers)  # every server stopped
    assert wrk.connections == {"/small.txt": {64}, "/missing": {64}}


def test_each_scenario_gets_its_own_number_of_connections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrk = _FakeWrk(monkeypatch)
    settings = _settings()
    settings.rounds, settings.warmup_s = 1, 1
    many = next(s for s in SCENARIOS if s.name == "1k-c1024")
    assert (many.path, many.connections, many.expected_length) == ("/small.txt", 1024, 1024)
    specs = [ServerSpec("a", spec.build_command, ["1k-c1024", "404"]) for spec in _file_servers(tmp_path, ["a"])]
    bench_servers(specs, settings, tmp_path, [many, next(s for s in SCENARIOS if s.name == "404")])
    assert wrk.connections == {"/small.txt": {1024}, "/missing": {64}}  # warm-up and measured runs alike


def test_server_that_dies_between_rounds_is_failed_and_left_out_of_ratios(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrk = _FakeWrk(monkeypatch)

    def kill_b_in_round_two(server: RunningServer, call_number: int) -> None:
        if server.spec.name == "nginx" and call_number == 5:  # round 1: 2 calls each; round 2: nginx first
            server.process.kill()
            server.process.wait()

    wrk.on_call = kill_b_in_round_two
    settings = _settings()
    settings.rounds, settings.warmup_s = 3, 1
    run = bench_servers(_file_servers(tmp_path, ["fastserve", "nginx"]), settings, tmp_path, [SCENARIOS[0]])
    fastserve, nginx = run.servers
    assert fastserve.status == "ok" and len(fastserve.scenarios["1k"].measured) == 3
    assert nginx.status == "failed" and "died during 1k in round 2" in (nginx.error or "")
    assert nginx.scenarios["1k"].rounds[2] is None  # not loaded again after it died
    assert run.orders["1k"] == [["fastserve", "nginx"], ["nginx", "fastserve"], ["fastserve"]]
    row = compute_ratios({o.name: o for o in run.servers})[0]
    assert row["value"] is None and row["met"] is None


# --------------------------------------------------------------------------- h2o


def test_h2o_gets_a_filled_in_config_with_the_same_document_root(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    specs = {spec.name: spec for spec in run_bench.static_group_specs(_settings(), run_dir)}
    h2o = specs["h2o"]
    h2o.prepare(8123)
    config = (run_dir / "h2o.conf").read_text()
    assert "@" not in config.replace("# ", "")  # every token filled (comments aside)
    assert "port: 8123" in config and f"file.dir: {run_dir / 'www'}" in config
    assert "num-threads: 1" in config and "access-log" not in config
    assert config.startswith("user: root") == (os.geteuid() == 0)
    assert h2o.build_command(8123)[1:] == ["-c", str(run_dir / "h2o.conf")]
    assert h2o.scenario_names == [n for n in specs["nginx"].scenario_names if n not in run_bench.COMPRESSION_SCENARIOS]


@pytest.mark.skipif(shutil.which("h2o") is None, reason="h2o is installed by bench/run.sh")
def test_h2o_serves_every_static_scenario(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_bench.write_document_root(run_dir)
    spec = next(s for s in run_bench.static_group_specs(_settings(), run_dir) if s.name == "h2o")
    server = RunningServer(spec, _settings(), run_dir)
    try:
        server.wait_until_accepting()
        for scenario in SCENARIOS:
            if scenario.name not in spec.scenario_names:
                continue
            headers = run_bench.scenario_headers(scenario, server.port)
            assert check_response(scenario, server.port, headers) == [], scenario.name
    finally:
        server.stop()


@pytest.mark.parametrize("name,binary,encoding", [("nginx", "nginx", "gzip"), ("caddy", "caddy", "gzip")])
def test_compressing_servers_answer_js_br_encoded(tmp_path: Path, name: str, binary: str, encoding: str) -> None:
    if shutil.which(binary) is None and not os.path.exists(f"/usr/sbin/{binary}"):
        pytest.skip(f"{binary} is installed by bench/run.sh")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_bench.write_document_root(run_dir)
    spec = next(s for s in run_bench.static_group_specs(_settings(), run_dir) if s.name == name)
    assert "js-br" in spec.scenario_names
    server = RunningServer(spec, _settings(), run_dir)
    try:
        server.wait_until_accepting()
        scenario = next(s for s in SCENARIOS if s.name == "js-br")
        headers = run_bench.scenario_headers(scenario, server.port)
        assert check_response(scenario, server.port, headers) == []
        answer = run_bench.probe(server.port, scenario.path, headers)
        assert answer.encoding == encoding
        assert gzip.decompress(answer.body) == (run_dir / "www" / "app.js").read_bytes()
    finally:
        server.stop()


# --------------------------------------------------------------------------- the memory group

KEEP_ALIVE_SERVER = """
import asyncio, sys
BODY = b"x" * 1024
ANSWER = b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(BODY), BODY)
held = []
class Hold(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.extra = bytearray(int(sys.argv[2]))  # what each connection costs this server
        held.append(self)
    def data_received(self, data):
        self.transport.write(ANSWER)
async def main():
    server = await asyncio.get_running_loop().create_server(Hold, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""


def _idle_memory_of(tmp_path: Path, command: Callable[[int], list[str]], count: int) -> IdleMemory:
    server = RunningServer(ServerSpec("server", command, ["idle"]), _settings(), tmp_path)
    try:
        server.wait_until_accepting()
        return measure_idle_memory(server.process.pid, "127.0.0.1", server.port, "/small.txt", count, 30.0)
    finally:
        server.stop()


def test_idle_memory_counts_what_each_connection_costs(tmp_path: Path) -> None:
    result = _idle_memory_of(tmp_path, lambda port: [sys.executable, "-c", KEEP_ALIVE_SERVER, str(port), "65536"], 50)
    assert (result.connections, result.opened, result.still_open, result.error) == (50, 50, 50, None)
    assert result.rss_before > 0
    # 64 KiB held per connection (bytearray pages touched when zeroed): the growth shows it.
    assert result.per_connection is not None and 60 * 1024 <= result.per_connection <= 200 * 1024


def test_idle_memory_counts_connections_the_server_closed(tmp_path: Path) -> None:
    root = tmp_path / "www"
    make_document_root(root)
    # http.server answers HTTP/1.0 and closes: it holds nothing for idle clients, and must not
    # look as if it did.
    result = _idle_memory_of(tmp_path, lambda port: [
        sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(root),
    ], 20)  # fmt: skip
    assert (result.opened, result.still_open) == (20, 0)
    report = run_bench.render_idle_memory([ServerOutcome("closes", "ok")], {"closes": result})
    assert "closes: closed 20 idle connections during the step" in report


def test_idle_memory_stops_at_the_deadline(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # accepts (in the kernel) but never answers
    try:
        sockets, problem = open_idle_connections("127.0.0.1", listener.getsockname()[1], "/", 5, time.monotonic() + 0.3)
    finally:
        listener.close()
    assert sockets == [] and problem is not None and "deadline" in problem


def test_memory_group_servers_keep_idle_clients_longer_than_the_step(tmp_path: Path) -> None:
    specs = {spec.name: spec for spec in run_bench.memory_group_specs(_settings(), tmp_path)}
    assert list(specs) == ["fastserve", "nginx", "h2o", "uvicorn+starlette"]
    fastserve = specs["fastserve"].build_command(8123)
    assert float(fastserve[fastserve.index("--keepalive-timeout") + 1]) > run_bench.IDLE_TIME_LIMIT_S
    uvicorn = specs["uvicorn+starlette"].build_command(8123)
    assert float(uvicorn[uvicorn.index("--timeout-keep-alive") + 1]) > run_bench.IDLE_TIME_LIMIT_S
    for template in ("nginx.conf.template", "h2o.conf.template"):
        text = (Path(run_bench.BENCH_DIR) / template).read_text()
        seconds = re.search(r"(?:keepalive_timeout|http1-request-timeout):? (\d+)", text)
        assert seconds and int(seconds.group(1)) > run_bench.IDLE_TIME_LIMIT_S, template
    # the static group's own commands are left as they are
    static = {spec.name: spec for spec in run_bench.static_group_specs(_settings(), tmp_path)}
    assert "--keepalive-timeout" not in static["fastserve"].build_command(8123)


def test_memory_group_report_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    memory = next(g for g in GROUPS if g.name == "memory")
    outcomes = [ServerOutcome("fastserve", "ok"), ServerOutcome("nginx", "ok"), ServerOutcome("h2o", "failed", error="boom")]
    idle = {
        "fastserve": IdleMemory(1000, 1000, 1000, 30 * 1024 * 1024, 30 * 1024 * 1024 + 1000 * 1536, 0.5),
        "nginx": IdleMemory(1000, 1000, 1000, 10 * 1024 * 1024, 10 * 1024 * 1024 + 1000 * 600, 0.4),
    }
    group = GroupOutcome(memory, memory.scenarios, outcomes, [], idle_memory=idle)
    report = render_group(group)
    assert "capped" not in report
    capped = render_group(GroupOutcome(memory, memory.scenarios, outcomes, [], idle_memory=idle, cpu_cap=cpucap.Cap(40)))
    # under the table, the cap alone: no wrk here, so nothing about req/s or p99
    assert "\nservers capped at 40% of one CPU (1 ms per 2.5 ms) each, in a cgroup of their own\n\nnotes:" in capped
    assert "req/CPU-s" not in capped
    rows = {line.split()[0]: line.split() for line in report.splitlines() if line and line.split()[0] in idle}
    assert rows["fastserve"][1:3] == ["1000", "1000"] and "1.50" in rows["fastserve"]
    assert "0.59" in rows["nginx"]
    assert "at most 2 KiB per idle connection: met" in report and "h2o: FAILED: boom" in report

    monkeypatch.setattr(run_bench, "tool_versions", lambda settings, names=None: {})
    path = tmp_path / "result.json"
    write_json(path, _settings(), [group])
    record = json.loads(path.read_text())["groups"]["memory"]["servers"]
    assert record["fastserve"]["idle"]["per_connection_bytes"] == 1536
    assert record["nginx"]["idle"]["still_open"] == 1000 and record["h2o"]["idle"] is None


def test_open_file_limit_is_raised_for_the_largest_scenario() -> None:
    soft, hard = run_bench.resource.getrlimit(run_bench.resource.RLIMIT_NOFILE)
    assert run_bench.raise_open_file_limit(min(soft, 64)) == soft  # enough already: unchanged
    if hard != run_bench.resource.RLIM_INFINITY and soft < hard:
        assert run_bench.raise_open_file_limit(soft + 1) >= soft + 1


# --------------------------------------------------------------------------- the listen queue


def test_a_full_listen_queue_is_counted() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # never accepts: the second or third handshake finds the queue full
    clients = []
    before = run_bench.listen_overflows()
    try:
        for _ in range(8):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(listener.getsockname())
            clients.append(client)
        deadline = time.monotonic() + 5
        while run_bench.listen_overflows() == before and time.monotonic() < deadline:
            time.sleep(0.01)
        after = run_bench.listen_overflows()
    finally:
        for client in clients:
            client.close()
        listener.close()
    assert before is not None and after is not None and after > before


def test_rounds_with_listen_queue_overflows_are_noted() -> None:
    rounds = [
        WrkResult(100.0, 1.0, 1.0, 100, 0, {}, listen_overflows=0),
        WrkResult(100.0, 1.0, 1.0, 100, 0, {}, listen_overflows=37),
        None,
    ]
    outcome = ServerOutcome("fastserve", "ok", scenarios={"1k-c1024": ScenarioOutcome("ok", rounds=rounds)})
    notes = run_bench.render_notes([outcome])
    assert notes.startswith("fastserve: a listen queue overflowed during 1k-c1024 {2: 37}")
    assert outcome.scenarios["1k-c1024"].problems == []  # a note, not an error


# --------------------------------------------------------------------------- connections and the CPU cap


def test_connections_and_cpu_cap_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BENCH_CONNECTIONS", "BENCH_SERVER_CPU_PERCENT", "BENCH_SERVER_CPU_PERIOD_US"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert (settings.connections, settings.server_cpu_percent, settings.cpu_cap) == (64, None, None)  # no cap unless asked
    monkeypatch.setenv("BENCH_CONNECTIONS", "256")
    monkeypatch.setenv("BENCH_SERVER_CPU_PERCENT", "40")
    settings = Settings.from_env()
    assert (settings.connections, settings.cpu_cap) == (256, cpucap.Cap(40, 2500))
    monkeypatch.setenv("BENCH_SERVER_CPU_PERIOD_US", "10000")
    assert Settings.from_env().cpu_cap == cpucap.Cap(40, 10_000)
    for bad in ("999", "2000000", "2.5ms"):
        monkeypatch.setenv("BENCH_SERVER_CPU_PERIOD_US", bad)
        with pytest.raises(SystemExit, match="BENCH_SERVER_CPU_PERIOD_US must be whole microseconds"):
            Settings.from_env()
    monkeypatch.delenv("BENCH_SERVER_CPU_PERIOD_US")
    monkeypatch.setenv("BENCH_SERVER_CPU_PERCENT", " ")
    assert Settings.from_env().server_cpu_percent is None
    for bad in ("0", "101", "40%", "0.5", "-1"):
        monkeypatch.setenv("BENCH_SERVER_CPU_PERCENT", bad)
        with pytest.raises(SystemExit, match="BENCH_SERVER_CPU_PERCENT must be a whole percentage from 1 to 100"):
            Settings.from_env()
    monkeypatch.delenv("BENCH_SERVER_CPU_PERCENT")
    monkeypatch.setenv("BENCH_CONNECTIONS", "0")
    with pytest.raises(SystemExit, match="BENCH_CONNECTIONS"):
        Settings.from_env()


def test_bench_connections_apply_where_a_scenario_sets_none(tmp_path: Path) -> None:
    settings = _settings()
    settings.groups, settings.servers, settings.scenarios = ["static", "asgi"], None, None

    def connections() -> dict[str, Optional[int]]:
        return {s.name: s.connections for plan in plan_groups(settings, tmp_path) for s in plan.scenarios}

    default = connections()
    assert default["1k"] == default["304"] == default["hello"] == 64
    assert (default["1k-c1024"], default["hello-c256"]) == (1024, 256)
    settings.connections = 256
    wide = connections()
    assert wide["1k"] == wide["304"] == wide["404"] == wide["64k"] == wide["hello"] == 256
    assert (wide["1k-c1024"], wide["hello-c256"]) == (1024, 256)  # their own counts stay
    legend = run_bench.wrk_legend(settings, [s for plan in plan_groups(settings, tmp_path) for s in plan.scenarios])
    assert "wrk -t1 -c256 (-c1024 in 1k-c1024) -d1s" in legend
    assert "capped" not in legend


def test_bench_connections_reach_wrk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrk = _FakeWrk(monkeypatch)
    settings = _settings()
    settings.rounds, settings.warmup_s, settings.connections = 1, 1, 256
    settings.groups, settings.servers, settings.scenarios = ["static"], None, ["1k-c1024", "404"]
    plan = plan_groups(settings, tmp_path)[0]
    specs = [ServerSpec("a", spec.build_command, ["1k-c1024", "404"]) for spec in _file_servers(tmp_path, ["a"])]
    bench_servers(specs, settings, tmp_path, plan.scenarios)
    assert wrk.connections == {"/small.txt": {1024}, "/missing": {256}}  # warm-up and measured runs alike


def _capped_round(share: float, throttled: int = 100) -> WrkResult:
    return WrkResult(10_000.0, 1.0, 20.0, 10_000, 0, {}, 25_000.0, server_cpu_share=share,
                     cap_periods=400, throttled_periods=throttled)


def test_capped_report_says_the_cap_in_the_header_and_under_each_table(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    static = GROUPS[0]
    one_k = next(s for s in SCENARIOS if s.name == "1k")
    fastserve = ServerOutcome("fastserve", "ok", planned=["1k"], scenarios={
        "1k": ScenarioOutcome("ok", rounds=[_capped_round(0.40), _capped_round(0.21, 0), _capped_round(0.30, 300)]),
    })  # fmt: skip
    group = GroupOutcome(static, [one_k], [fastserve], compute_ratios({"fastserve": fastserve}),
                         cpu_cap=cpucap.Cap(40))
    cap_line = ("servers capped at 40% of one CPU (1 ms per 2.5 ms) each, in a cgroup of their own: "
                "req/s ~ req/CPU-s x 0.40 for every server, and p99 measures the server's own queueing")
    report = render_group(group)
    throughput, latency = report.split("\n\nlatency:")
    assert throughput.splitlines()[-1] == cap_line
    assert latency.split("\n\n")[0].splitlines()[-1] == cap_line
    # round 2 the client held back (never throttled), round 3 other work on its CPU (throttled often)
    assert ("fastserve: used under 90% of its 40% CPU cap in 1k round 2 (21% of a CPU, throttled in 0% "
            "of periods), 1k round 3 (30% of a CPU, throttled in 75% of periods); where it was throttled "
            "often, other work on its CPU took the rest, where seldom, the client was the limit: either way "
            "req/s there is below req/CPU-s x 0.40 and p99 is not the server's own queueing alone") in report
    settings = _settings()
    settings.server_cpu_percent, settings.connections = 40, 256
    assert cap_line in run_bench.wrk_legend(settings, [one_k]).splitlines()
    assert "capped" not in render_group(replace_cpu_cap(group, None))

    monkeypatch.setattr(run_bench, "tool_versions", lambda settings, names=None: {})
    path = tmp_path / "result.json"
    write_json(path, settings, [group])
    document = json.loads(path.read_text())
    assert document["settings"]["server_cpu_percent"] == 40 and document["settings"]["wrk_connections"] == 256
    cap = document["settings"]["cpu_cap"]
    assert (cap["percent"], cap["quota_us"], cap["period_us"]) == (40, 1000, 2500)
    rounds = document["groups"]["static"]["servers"]["fastserve"]["scenarios"]["1k"]["rounds"]
    assert [(r["server_cpu_share"], r["throttled_periods"]) for r in rounds] == [(0.4, 100), (0.21, 0), (0.3, 300)]


def replace_cpu_cap(group: GroupOutcome, cap: Optional[cpucap.Cap]) -> GroupOutcome:
    return GroupOutcome(group.group, group.scenarios, group.servers, group.ratios, group.orders,
                        group.idle_memory, cpu_cap=cap)


def test_a_cap_that_cannot_be_made_stops_the_run_before_any_server_runs_uncapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_mounted = cpucap.Hierarchy(1, tmp_path / "no-cgroup-here")
    monkeypatch.setattr(cpucap, "find_hierarchy", lambda mounts=None: not_mounted)
    started: list[int] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *args, **kwargs: started.append(1))
    settings = _settings()
    settings.server_cpu_percent = 40
    with pytest.raises(cpucap.CpuCapError, match="could not make the cgroup"):
        bench_servers(_file_servers(tmp_path, ["a", "b"]), settings, tmp_path, [SCENARIOS[0]])
    assert started == []
    with pytest.raises(SystemExit, match="BENCH_SERVER_CPU_PERCENT=40: could not make the cgroup"):
        run_bench.check_cpu_cap(cpucap.Cap(40))


def _capped_hierarchy() -> cpucap.Hierarchy:
    if os.geteuid() != 0:
        pytest.skip("capping a server makes a cgroup, which needs root")
    try:
        return cpucap.find_hierarchy()
    except cpucap.CpuCapError as exc:
        pytest.skip(str(exc))


def test_a_capped_server_runs_in_its_cgroup_and_the_cgroup_goes_with_it(tmp_path: Path) -> None:
    hierarchy = _capped_hierarchy()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    root = run_dir / "www"
    make_document_root(root)
    # a server that starts a worker, as fastserve --workers 2 or nginx do: both must be capped
    serve = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); " \
            f"sys.argv = ['http.server', sys.argv[1], '--bind', '127.0.0.1', '-d', {str(root)!r}]; " \
            "import runpy; runpy.run_module('http.server', run_name='__main__')"
    spec = ServerSpec("capped http.server", lambda port: [sys.executable, "-c", serve, str(port)], ["1k"])
    settings = _settings()
    settings.rounds, settings.server_cpu_percent = 1, 40
    server = RunningServer(spec, settings, run_dir)
    try:
        assert server.cgroup is not None and server.cgroup.path.parent == hierarchy.root
        server.wait_until_accepting()
        deadline = time.monotonic() + 10
        while len(server.cgroup.pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        pids = server.cgroup.pids()
        assert server.process.pid in pids and len(pids) == 2  # the server and its worker
        target = run_bench.Target(server, ServerOutcome(spec.name, "ok", scenarios={"1k": ScenarioOutcome("ok")}),
                                  SCENARIOS[0], {})
        run_bench.measure(target, settings, 0)
        result = target.outcome.scenarios["1k"].rounds[0]
        assert result is not None and result.requests > 0
        assert result.cap_periods and result.throttled_periods is not None
        assert result.server_cpu_share is not None and result.server_cpu_share < 0.6  # held near 40%
    finally:
        server.stop()
    assert not server.cgroup.path.exists()  # removed once the server and its worker were stopped
    assert all(not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
               for pid in pids)


# --------------------------------------------------------------------------- a baseline fastserve build


def _with_baseline(python: str = sys.executable) -> Settings:
    settings = _settings()
    settings.groups = settings.servers = settings.scenarios = None
    settings.fastserve_python, settings.baseline_python = sys.executable, python
    return settings


def test_baseline_python_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BENCH_BASELINE_PYTHON", raising=False)
    assert Settings.from_env().baseline_python is None
    monkeypatch.setenv("BENCH_BASELINE_PYTHON", f" {sys.executable} ")
    assert Settings.from_env().baseline_python == sys.executable
    for bad in (str(tmp_path / "no-such-python"), str(tmp_path)):
        monkeypatch.setenv("BENCH_BASELINE_PYTHON", bad)
        with pytest.raises(SystemExit, match="BENCH_BASELINE_PYTHON=.* is not an executable"):
            Settings.from_env()


def test_baseline_runs_as_fastserve_does_in_every_group_with_fastserve(tmp_path: Path) -> None:
    plans = {plan.group.name: plan for plan in plan_groups(_with_baseline("/opt/old/bin/python"), tmp_path)}
    assert [spec.name for spec in plans["static"].specs][:3] == ["fastserve", "fastserve-baseline", "fastserve-plain"]
    assert [spec.name for spec in plans["asgi"].specs] == ["fastserve", "fastserve-baseline", "uvicorn", "granian"]
    assert [spec.name for spec in plans["memory"].specs][:2] == ["fastserve", "fastserve-baseline"]
    for plan in plans.values():
        specs = {spec.name: spec for spec in plan.specs}
        new, old = specs["fastserve"], specs["fastserve-baseline"]
        # the same command and scenarios; only the interpreter (the fastserve build) differs
        assert old.build_command(8123) == ["/opt/old/bin/python", *new.build_command(8123)[1:]]
        assert new.build_command(8123)[0] != "/opt/old/bin/python"
        assert old.scenario_names == new.scenario_names
    memory_command = {spec.name: spec for spec in plans["memory"].specs}["fastserve-baseline"].build_command(8123)
    assert memory_command[memory_command.index("--keepalive-timeout") + 1] == "120"
    # without it, nothing changes: no baseline server, no baseline ratios
    for plan in plan_groups(_with_baseline(None), tmp_path):  # type: ignore[arg-type]
        assert "fastserve-baseline" not in [spec.name for spec in plan.specs]
        assert plan.ratios == plan.group.ratios


def test_baseline_ratios_cover_each_scenario_it_runs_without_targets(tmp_path: Path) -> None:
    settings = _with_baseline()
    plans = {plan.group.name: plan for plan in plan_groups(settings, tmp_path)}
    static, asgi = plans["static"], plans["asgi"]
    assert static.ratios[:len(run_bench.RATIOS)] == run_bench.RATIOS
    baseline = [(r.scenario, r.metric) for r in static.ratios if r.denominator == "fastserve-baseline"]
    throughput = {"64k": "mib_per_sec", "10m": "mib_per_sec"}
    assert baseline == [(s.name, m) for s in SCENARIOS
                        for m in (throughput.get(s.name, "requests_per_sec"), "requests_per_cpu_second", "p99_ms")]
    assert all(r.numerator == "fastserve" and r.target is None for r in static.ratios[len(run_bench.RATIOS):])
    assert [(r.scenario, r.metric) for r in asgi.ratios if r.denominator == "fastserve-baseline"] == [
        ("hello", "requests_per_sec"), ("hello", "requests_per_cpu_second"), ("hello", "p99_ms"),
        ("hello-c256", "requests_per_sec"), ("hello-c256", "requests_per_cpu_second"), ("hello-c256", "p99_ms"),
    ]  # fmt: skip
    assert plans["memory"].ratios == []
    # only the scenarios selected; and none where the baseline is not selected
    settings.groups, settings.scenarios = ["static"], ["304", "64k"]
    static = plan_groups(settings, tmp_path)[0]
    assert [(r.scenario, r.metric) for r in static.ratios if r.denominator == "fastserve-baseline"] == [
        ("64k", "mib_per_sec"), ("64k", "requests_per_cpu_second"), ("64k", "p99_ms"),
        ("304", "requests_per_sec"), ("304", "requests_per_cpu_second"), ("304", "p99_ms"),
    ]  # fmt: skip
    settings.servers = ["fastserve", "nginx"]
    assert plan_groups(settings, tmp_path)[0].ratios == run_bench.RATIOS


def test_bench_servers_names_the_baseline_only_when_it_is_given(tmp_path: Path) -> None:
    settings = _with_baseline(None)  # type: ignore[arg-type]
    settings.servers = ["fastserve", "fastserve-baseline"]
    with pytest.raises(SystemExit, match="fastserve-baseline runs only with BENCH_BASELINE_PYTHON set"):
        plan_groups(settings, tmp_path)
    settings.baseline_python = sys.executable
    assert _plan_names(settings, tmp_path) == {
        "static": (["fastserve", "fastserve-baseline"], [s.name for s in SCENARIOS]),
        "asgi": (["fastserve", "fastserve-baseline"], ["hello", "hello-c256"]),
        "memory": (["fastserve", "fastserve-baseline"], ["idle"]),
    }


def test_baseline_ratios_are_taken_within_each_round_and_reported() -> None:
    outcomes = {
        "fastserve": ServerOutcome("fastserve", "ok", planned=["1k"], scenarios={"1k": _rounds(120.0, 90.0, 110.0)}),
        "fastserve-baseline": ServerOutcome("fastserve-baseline", "ok", planned=["1k"],
                                            scenarios={"1k": _rounds(100.0, 100.0, 100.0)}),
    }
    one_k = next(s for s in SCENARIOS if s.name == "1k")
    rows = compute_ratios(outcomes, run_bench.baseline_ratios([one_k]))
    assert rows[0]["per_round"] == [1.2, 0.9, 1.1] and rows[0]["value"] == pytest.approx(1.1)
    assert rows[0]["met"] is None and rows[2]["metric"] == "p99_ms"  # a before/after: no target
    assert "fastserve / fastserve-baseline" in run_bench.render_ratios(rows)
    assert "(no target)" in run_bench.render_ratios(rows).splitlines()[1]


def test_memory_report_compares_the_two_builds() -> None:
    idle = {
        "fastserve": IdleMemory(1000, 1000, 1000, 30 * 1024 * 1024, 30 * 1024 * 1024 + 1000 * 1536, 0.5),
        "fastserve-baseline": IdleMemory(1000, 1000, 1000, 30 * 1024 * 1024, 30 * 1024 * 1024 + 1000 * 4096, 0.5),
    }
    report = run_bench.render_idle_memory([ServerOutcome(name, "ok") for name in idle], idle)
    rows = {line.split()[0]: line.split() for line in report.splitlines() if "MiB" in line}
    assert "4.00" in rows["fastserve-baseline"] and "1.50" in rows["fastserve"]
    assert "fastserve / fastserve-baseline per idle connection: 0.38x (no target)" in report
    del idle["fastserve-baseline"]
    assert "fastserve-baseline" not in run_bench.render_idle_memory([ServerOutcome("fastserve", "ok")], idle)


def _fake_interpreter(tmp_path: Path, direct_url: dict) -> str:
    """An 'interpreter' that answers the direct_url.json question with `direct_url`."""
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\ncat <<'END'\n{json.dumps(direct_url)}\nEND\n")
    python.chmod(0o755)
    return str(python)


def test_installed_from_reads_pips_record_and_the_checkouts_commit(tmp_path: Path) -> None:
    checkout = tmp_path / "old"
    checkout.mkdir()
    (checkout / "setup.py").write_text("# old\n")
    git = ["git", "-C", str(checkout), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "setup.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "old"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    python = _fake_interpreter(tmp_path, {"url": f"file://{checkout}", "dir_info": {}})
    record = run_bench.installed_from(python)
    assert record == {"url": f"file://{checkout}", "editable": False, "git_commit": commit, "git_dirty": False}
    assert run_bench.describe_build(python, record) == f"{python} (from {checkout}, git {commit[:10]})"
    (checkout / "setup.py").write_text("# changed\n")
    assert run_bench.installed_from(python)["git_dirty"] is True
    vcs = _fake_interpreter(tmp_path, {"url": "https://example.invalid/fastserve.git",
                                       "vcs_info": {"vcs": "git", "commit_id": "abc123"}})
    assert run_bench.installed_from(vcs)["git_commit"] == "abc123"
    silent = _fake_interpreter(tmp_path, {})
    assert run_bench.installed_from(silent) is None
    assert run_bench.describe_build(silent, None).endswith("(install source not recorded)")


def test_a_checkout_ahead_on_pythonpath_is_the_build_described(tmp_path: Path) -> None:
    """A baseline run as the same venv with another checkout on PYTHONPATH (a wrapper script)
    is described by that checkout, not by what pip installed into the venv."""
    checkout = tmp_path / "baseline"
    (checkout / "fastserve").mkdir(parents=True)
    (checkout / "fastserve" / "__init__.py").write_text("")
    git = ["git", "-C", str(checkout), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "fastserve"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "baseline"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    wrapper = tmp_path / "baseline-python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={checkout} exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    if run_bench.installed_from(sys.executable) is None:
        pytest.fail("this interpreter's fastserve has no pip record to compare with (install it with pip)")
    record = run_bench.installed_from(str(wrapper))
    assert record is not None and record["url"] == f"file://{checkout}" and record["git_commit"] == commit
    assert run_bench.describe_build(str(wrapper), record) == f"{wrapper} (from {checkout}, git {commit[:10]})"


def test_json_records_the_baseline_build_as_it_records_fastserves(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # run from a checkout: its fastserve.egg-info must not answer for what the interpreters have
    decoy = tmp_path / "checkout" / "fastserve.egg-info"
    decoy.mkdir(parents=True)
    (decoy / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: fastserve\nVersion: 9.9.9\n")
    monkeypatch.chdir(decoy.parent)
    venv = tmp_path / "old-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".fastserve-source-digest").write_text("feedface\n")  # as bench/run.sh stamps its venvs
    python = venv / "bin" / "python"  # (this interpreter, under another venv's name)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    settings = _with_baseline(str(python))
    versions = run_bench.tool_versions(settings, ["static"])
    assert versions["fastserve_baseline_source_digest"] == "feedface"
    assert versions["fastserve_baseline_python"] == versions["fastserve_python"]  # (here the same build)
    assert versions["fastserve_baseline_installed_from"] == versions["fastserve_installed_from"]
    assert "9.9.9" not in str(versions["fastserve_python"])
    settings.baseline_python = None
    assert not any(key.startswith("fastserve_baseline") for key in run_bench.tool_versions(settings, ["static"]))


def test_two_fastserve_builds_are_measured_side_by_side(tmp_path: Path) -> None:
    """A real short run: fastserve and fastserve-baseline (here the same build) in rotating rounds."""
    if subprocess.run([sys.executable, "-c", "import fastserve"], cwd=tmp_path, capture_output=True).returncode:
        pytest.skip("fastserve is not installed in this interpreter (pip install -e .)")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    settings = _with_baseline()
    settings.groups, settings.servers, settings.scenarios = ["static"], ["fastserve", "fastserve-baseline"], ["1k"]
    plan = plan_groups(settings, run_dir)[0]
    group = run_bench.run_group(plan, settings, run_dir)
    assert [o.status for o in group.servers] == ["ok", "ok"]
    assert group.orders == {"1k": [["fastserve", "fastserve-baseline"], ["fastserve-baseline", "fastserve"]]}
    for outcome in group.servers:
        assert outcome.command[3:6] == [sys.executable, "-m", "fastserve"]  # after taskset -c <cpu>
        rounds = outcome.scenarios["1k"].rounds
        assert len(rounds) == 2 and all(r is not None and r.requests > 0 for r in rounds)
    rows = [r for r in group.ratios if r["denominator"] == "fastserve-baseline"]
    assert [r["metric"] for r in rows] == ["requests_per_sec", "requests_per_cpu_second", "p99_ms"]
    assert all(len(r["per_round"]) == 2 and None not in r["per_round"] and r["met"] is None for r in rows)
    report = render_group(group)
    assert report.splitlines()[2].split("|")[2].strip() == "fastserve-baseline"
    assert "fastserve / fastserve-baseline" in report
