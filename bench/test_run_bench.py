"""Checks for the benchmark harness itself: `pytest bench/test_run_bench.py` (a few seconds).

The end-to-end tests start real processes and a 1-second wrk run, so they need wrk and taskset
(bench/run.sh installs both).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench  # noqa: E402
from run_bench import (  # noqa: E402
    SCENARIOS,
    ScenarioOutcome,
    ServerOutcome,
    ServerSpec,
    Settings,
    WrkResult,
    bench_server,
    compute_ratios,
    make_document_root,
    parse_wrk_output,
    render_table,
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
"""


def test_parse_wrk_output_reads_every_number() -> None:
    result = parse_wrk_output(WRK_OUTPUT)
    assert result.requests_per_sec == 41882.0
    assert result.mib_per_sec == pytest.approx(6.25)
    assert result.p99_ms == pytest.approx(0.85)
    assert result.requests == 83764
    assert result.non_2xx_3xx == 83764
    assert result.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 2}


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


def _ok(rps: float, mibs: float) -> ScenarioOutcome:
    return ScenarioOutcome("ok", WrkResult(rps, mibs, 1.0, 100, 0, {}))


def test_compute_ratios_marks_targets_and_missing_servers() -> None:
    outcomes = {
        "fastserve": ServerOutcome("fastserve", "ok", scenarios={"1k": _ok(90.0, 1), "10m": _ok(1, 900.0)}),
        "nginx": ServerOutcome("nginx", "ok", scenarios={"1k": _ok(100.0, 1), "10m": _ok(1, 1000.0)}),
        "uvicorn+starlette": ServerOutcome("uvicorn+starlette", "failed", error="boom"),
    }
    ratios = {(r["numerator"], r["denominator"], r["scenario"]): r for r in compute_ratios(outcomes)}
    one_k = ratios[("fastserve", "nginx", "1k")]
    assert one_k["value"] == pytest.approx(0.9) and one_k["met"] is False
    ten_m = ratios[("fastserve", "nginx", "10m")]
    assert ten_m["metric"] == "mib_per_sec"
    assert ten_m["value"] == pytest.approx(0.9) and ten_m["met"] is True
    assert ratios[("fastserve", "nginx", "304")]["value"] is None
    assert ratios[("fastserve", "uvicorn+starlette", "1k")]["met"] is None


def test_error_count_ignores_expected_404s_only() -> None:
    by_name = {s.name: s for s in SCENARIOS}
    outcome = ScenarioOutcome("ok", WrkResult(1, 1, 1, 10, 10, {"read": 2}))
    assert outcome.error_count(by_name["404"]) == 2
    assert outcome.error_count(by_name["1k"]) == 12


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
    settings.duration_s, settings.warmup_s = 1, 0
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
    assert one_k.status == "ok" and one_k.result is not None and one_k.result.requests > 0
    conditional = outcome.scenarios["304"]  # this server sends no ETag
    assert conditional.status == "failed" and "no ETag" in (conditional.error or "")
    assert run_bench.metric_value({"s": outcome}, "s", "1k", "requests_per_sec") == one_k.result.requests_per_sec
