"""--metrics: Prometheus text at /_fastserve/metrics, summed over workers; --limit-max-requests."""
from __future__ import annotations

import asyncio
import platform
import re
import time
from pathlib import Path
from typing import Dict, Tuple

import pytest

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from inprocess import cli_options  # noqa: E402
from server_helpers import (  # noqa: E402
    CliProcess,
    DocRoot,
    RawConnection,
    RawResponse,
    ServerProcess,
    child_pids,
    fetch,
    port_from_url,
)

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def parse_samples(response: RawResponse) -> Samples:
    """The samples of one /_fastserve/metrics answer, by name and labels."""
    assert response.status == 200
    assert response.header("content-type").startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def scrape(port: int) -> Samples:
    return parse_samples(fetch(port, "/_fastserve/metrics"))


def scrape_on(conn: RawConnection) -> Samples:
    """A scrape on a connection already open (where a new one would be refused)."""
    return parse_samples(conn.exchange("GET", "/_fastserve/metrics"))


def requests(samples: Samples, status: str, method: str) -> float:
    return samples.get(("fastserve_requests_total", (("method", method), ("status", status))), 0.0)


@pytest.mark.parametrize("workers", ["1", "3"])
def test_static_metrics_summed_over_workers(docroot: DocRoot, tmp_path: Path, workers: str) -> None:
    args = [str(docroot.root), "--port", "0", "--metrics", "--workers", workers]
    with CliProcess(args, log_path=tmp_path / "log") as srv:
        port = port_from_url(srv.wait_listening())
        before = scrape(port)
        sent = 0
        for _ in range(10):  # fresh connections: the kernel spreads them over the workers
            for target, headers in [("/small.txt", []), ("/missing", []), ("/small.txt", [("If-None-Match", "*")])]:
                response = fetch(port, target, headers=headers)
                sent += len(response.raw_head) + len(response.body)
        with RawConnection(port) as conn:
            conn.send(b"DELETE /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            deleted = conn.read_response()
            sent += len(deleted.raw_head) + len(deleted.body)
        # The gauges and cache figures are refreshed on each worker's tick (0.5 s): scrape
        # until every worker's figures are in; each scrape before the last is a GET 200 too.
        scrapes = 1
        deadline = time.monotonic() + 5
        after = scrape(port)
        while not (after[("fastserve_open_file_cache_total", (("result", "hit"),))] >= 20
                   and after[("fastserve_open_file_cache_total", (("result", "miss"),))] >= 2
                   and after[("fastserve_open_connections", ())] >= 1):
            assert time.monotonic() < deadline, after
            time.sleep(0.05)
            after = scrape(port)
            scrapes += 1
    diff = {key: value - before.get(key, 0.0) for key, value in after.items()}
    assert requests(diff, "2xx", "GET") == 10 + scrapes
    assert requests(diff, "4xx", "GET") == 10
    assert requests(diff, "3xx", "GET") == 10
    assert requests(diff, "4xx", "DELETE") == 1
    assert diff[("fastserve_response_bytes_total", ())] >= sent
    assert diff[("fastserve_request_duration_seconds_count", ())] == 31 + scrapes
    assert after[("fastserve_request_duration_seconds_bucket", (("le", "+Inf"),))] == \
        after[("fastserve_request_duration_seconds_count", ())]
    assert after[("fastserve_open_file_cache_total", (("result", "hit"),))] >= 20
    assert after[("fastserve_open_file_cache_total", (("result", "miss"),))] >= 2
    assert after[("fastserve_open_connections", ())] >= 1  # the scraping connection


async def busy_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await asyncio.sleep(0.03)
    await send({"type": "http.response.start", "status": 503, "headers": []})
    await send({"type": "http.response.body", "body": b"busy"})


def test_app_metrics_and_the_latency_histogram(serve) -> None:
    # In-process: one worker's counters and histogram, timed by the real clock as in a worker.
    _, options = cli_options("metricsapp:app", "--metrics")
    client = serve(busy_app, **options).open()
    for count in range(1, 4):
        client.send(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert client.wait_for(count)[-1].status == 503
    samples = parse_samples(client.request("GET", "/_fastserve/metrics"))
    assert requests(samples, "5xx", "POST") == 3
    assert samples[("fastserve_request_duration_seconds_bucket", (("le", "0.025"),))] <= 1  # only scrapes
    # Each answer took at least the app's 30 ms; a loaded machine may add to that, so the
    # bound checked above them is a generous one.
    assert samples[("fastserve_request_duration_seconds_bucket", (("le", "1.0"),))] >= 3
    assert samples[("fastserve_request_duration_seconds_sum", ())] >= 0.09


def test_no_metrics_without_the_flag(server: ServerProcess) -> None:
    assert fetch(server.port, "/_fastserve/metrics").status == 404  # the shared server runs without --metrics


@pytest.mark.parametrize("workers", ["1", "2"])
def test_limit_max_requests_retires_and_replaces_workers(docroot: DocRoot, tmp_path: Path, workers: str) -> None:
    args = [str(docroot.root), "--port", "0", "--workers", workers, "--limit-max-requests", "5", "--metrics"]
    with CliProcess(args, log_path=tmp_path / "log") as srv:
        port = port_from_url(srv.wait_listening())  # once one worker accepts; the others may still be forking
        deadline = time.monotonic() + 10
        while len(set(child_pids(srv.pid))) < int(workers):
            assert time.monotonic() < deadline, "the workers did not all start\n" + srv.output()
            time.sleep(0.02)
        first = set(child_pids(srv.pid))
        assert len(first) == int(workers)
        served = 0
        deadline = time.monotonic() + 15
        while served < 5 * int(workers) + 3:
            assert time.monotonic() < deadline, srv.output()
            response = fetch(port, "/small.txt", timeout=2)  # a retiring worker's replacement listens first
            assert response.status == 200
            served += 1
        assert srv.output().count("(--limit-max-requests): retiring") >= 1
        # The retiring worker tells the supervisor through a pipe: its replacement is forked
        # a moment after the request that reached the limit was answered.
        deadline = time.monotonic() + 10
        while not set(child_pids(srv.pid)) - first:
            assert time.monotonic() < deadline, "no worker was replaced\n" + srv.output()
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while len(set(child_pids(srv.pid))) != int(workers):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        total = scrape(port)
        assert requests(total, "2xx", "GET") >= served  # the counters of retired workers are kept
        assert srv.stop() == 0


def test_worker_restarts_are_counted(docroot: DocRoot, tmp_path: Path) -> None:
    """A worker that dies (here: killed) and is replaced is counted, so an operator can alert on
    a crash loop that the server itself survives; a retirement is no restart."""
    import os
    import signal

    from test_server_process import wait_for

    args = [str(docroot.root), "--port", "0", "--metrics", "--workers", "2"]
    with CliProcess(args, log_path=tmp_path / "log") as srv:
        port = port_from_url(srv.wait_listening())
        assert wait_for(lambda: len(child_pids(srv.pid)) == 2, 10.0)
        assert scrape(port)[("fastserve_worker_restarts_total", ())] == 0
        first = child_pids(srv.pid)
        os.kill(first[0], signal.SIGKILL)
        assert wait_for(lambda: len(child_pids(srv.pid)) == 2 and child_pids(srv.pid) != first, 10.0)
        assert scrape(port)[("fastserve_worker_restarts_total", ())] == 1


PROCESS_FAMILIES = {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
                    "process_open_fds", "process_max_fds", "process_start_time_seconds"}


def started_at(pid: int) -> float:
    """When process ``pid`` started, in seconds since the epoch (as /proc tells it)."""
    import os

    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def process_samples(samples: Samples) -> Dict[str, Dict[str, float]]:
    """The process_* samples of a scrape: family name -> worker label ('' for none) -> value."""
    found: Dict[str, Dict[str, float]] = {}
    for (name, labels), value in samples.items():
        if name.startswith("process_"):
            found.setdefault(name, {})[dict(labels).get("worker", "")] = value
            assert set(dict(labels)) <= {"worker"}, (name, labels)
    return found


def test_a_lone_server_has_the_process_metrics_of_any_exporter(docroot: DocRoot, tmp_path: Path) -> None:
    """process_* as prometheus-client's ProcessCollector gives them for one process: no label,
    and the figures of the server's own process."""
    import os

    with CliProcess([str(docroot.root), "--port", "0", "--metrics"], log_path=tmp_path / "log") as srv:
        port = port_from_url(srv.wait_listening())
        with RawConnection(port) as held:  # one descriptor more, while it is open
            assert held.exchange("GET", "/small.txt").status == 200
            processes = process_samples(scrape(port))
            fds = len(os.listdir(f"/proc/{srv.pid}/fd"))
            rss = int(Path(f"/proc/{srv.pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        assert set(processes) == PROCESS_FAMILIES
        assert all(set(by_worker) == {""} for by_worker in processes.values()), processes
        assert abs(processes["process_start_time_seconds"][""] - started_at(srv.pid)) < 0.02
        assert abs(processes["process_open_fds"][""] - fds) <= 2  # the scrape's own connection came and went
        assert 0.5 * rss < processes["process_resident_memory_bytes"][""] < 2 * rss
        assert processes["process_cpu_seconds_total"][""] > 0
        [python] = [labels for name, labels in scrape(port) if name == "python_info"]
        assert dict(python)["version"] == platform.python_version()
        assert srv.stop() == 0


def test_each_process_of_a_supervised_server_has_its_process_metrics_by_slot(docroot: DocRoot,
                                                                              tmp_path: Path) -> None:
    """With workers: one series per process, labelled worker="supervisor" or the worker's slot;
    a worker replaced keeps its slot's label (its start time says it is a new process), and a
    dead worker's series are gone with it, so the series never multiply."""
    import os
    import signal

    from test_server_process import wait_for

    args = [str(docroot.root), "--port", "0", "--metrics", "--workers", "2"]
    with CliProcess(args, log_path=tmp_path / "log") as srv:
        port = port_from_url(srv.wait_listening())
        assert wait_for(lambda: len(child_pids(srv.pid)) == 2, 10.0)

        def started() -> Dict[str, float]:
            processes = process_samples(scrape(port))
            assert set(processes) == PROCESS_FAMILIES, processes
            labels = {label for by_worker in processes.values() for label in by_worker}
            assert labels <= {"supervisor", "0", "1"}, labels
            return processes["process_start_time_seconds"]

        def matches(workers: list) -> bool:
            times = started()
            return (set(times) == {"supervisor", "0", "1"}
                    and abs(times["supervisor"] - started_at(srv.pid)) < 0.02
                    and all(abs(a - b) < 0.02 for a, b in zip(sorted([times["0"], times["1"]]),
                                                               sorted(started_at(pid) for pid in workers))))

        first = child_pids(srv.pid)
        assert len(first) == 2 and wait_for(lambda: matches(first), 5.0), started()
        before = started()
        os.kill(first[0], signal.SIGKILL)
        assert wait_for(lambda: len(child_pids(srv.pid)) == 2 and child_pids(srv.pid) != first, 10.0)
        after = child_pids(srv.pid)
        assert wait_for(lambda: matches(after), 5.0), (started(), after)
        changed = [label for label in ("0", "1") if started()[label] != before[label]]
        assert len(changed) == 1, (before, started())
        assert srv.stop() == 0


def test_connections_refused_at_max_connections_are_counted_and_said(docroot: DocRoot, tmp_path: Path) -> None:
    """A connection past --max-connections is answered 503 before any request is read, so no
    access line names it: the worker's warning and fastserve_refused_connections_total do."""
    from test_server_process import wait_for

    def the_one_place(port: int) -> Tuple[RawConnection, Samples]:
        """A connection holding the worker's one place (the readiness probe's, or the last
        one, may hold it a moment longer), and the scrape it made."""
        while True:
            conn = RawConnection(port)
            response = conn.exchange("GET", "/_fastserve/metrics")
            if response.status == 200:
                return conn, parse_samples(response)
            conn.close()
            time.sleep(0.05)

    args = [str(docroot.root), "--port", "0", "--metrics", "--access-log", "--max-connections", "1",
            "--keepalive-timeout", "3"]
    refused_total = ("fastserve_refused_connections_total", ())
    said = re.compile(r"WARNING worker \d+: --max-connections 1 reached: (\d+) connections? answered 503 and closed")
    with CliProcess(args, log_path=tmp_path / "log") as srv:
        port = port_from_url(srv.wait_listening())
        held, before = the_one_place(port)
        with held:
            for _ in range(3):
                with RawConnection(port) as refused:
                    assert refused.read_response().status == 503
        assert wait_for(lambda: said.search(srv.output()), 5.0), srv.output()
        last, after = the_one_place(port)
        last.close()
        assert after[refused_total] - before[refused_total] == 3
        assert 1 <= sum(int(count) for count in said.findall(srv.output())) <= after[refused_total]  # (10 s apart)
        assert srv.stop() == 0
    assert " 503 " not in "".join(line for line in srv.output().splitlines() if '"GET ' in line)  # no access line
