"""``--metrics``: Prometheus text at ``{admin prefix}/metrics``, summed over every worker.

Each worker counts into its slot of one shared memory block (``fastserve._speedups.counters``),
mapped before the workers are forked; a replacement worker takes over its predecessor's slot
and keeps adding, so counters never go backwards. A scrape, whichever worker answers it, reads
all slots and renders them with ``prometheus_client``'s metric families and exposition format
(``pip install 'fastserve[metrics]'``). Beside them, each process's ``process_*`` families
(``_Processes``) and ``python_info``.
"""
from __future__ import annotations

import mmap
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

from fastserve._speedups import counters as layout
from fastserve._speedups.counters import Counters
from fastserve._speedups.staticanswer import compression_totals


class MetricsUnavailable(Exception):
    """``--metrics`` without prometheus-client installed; the message says what to install."""


class SharedCounters:
    """The shared block: ``slots`` slots of ``layout.SLOT_BYTES`` bytes, inherited by forked workers."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.block = mmap.mmap(-1, slots * layout.SLOT_BYTES)  # anonymous and shared across fork
        self.view = memoryview(self.block)

    def _bytes(self, index: int) -> memoryview:
        """Slot ``index``'s bytes in the block."""
        start = index * layout.SLOT_BYTES
        return self.view[start:start + layout.SLOT_BYTES]

    def slot(self, index: int) -> Counters:
        """The counters of slot ``index``, claimed by the calling process."""
        counters = Counters(self._bytes(index))
        counters.set(layout.OWNER_PID, os.getpid())
        return counters

    def add(self, index: int, value: int, amount: int = 1) -> None:
        """Add ``amount`` to value ``value`` of slot ``index`` (the supervisor's own counts)."""
        self._bytes(index).cast("q")[value] += amount

    def owners(self) -> List[Tuple[int, int]]:
        """``(slot, pid)`` of each slot some worker has claimed (that worker may have ended since)."""
        found = []
        for index in range(self.slots):
            pid = self._bytes(index).cast("q")[layout.OWNER_PID]
            if pid > 0:
                found.append((index, pid))
        return found

    def totals(self) -> List[int]:
        """Every value summed over the slots; gauges only over slots whose worker is alive."""
        total = [0] * layout.SLOT_VALUES
        gauges = (layout.CONNECTIONS,)
        for index in range(self.slots):
            values = self._bytes(index).cast("q")
            alive = _alive(values[layout.OWNER_PID])
            for i in range(layout.SLOT_VALUES):
                if i in gauges and not alive:
                    continue
                total[i] += values[i]
        return total


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Metrics:
    """One worker's metrics: its own ``counters`` and the exposition of all of them."""

    def __init__(self, shared: SharedCounters, slot: int) -> None:
        try:
            from prometheus_client import CollectorRegistry, generate_latest
            from prometheus_client.exposition import CONTENT_TYPE_LATEST
        except ImportError:
            raise MetricsUnavailable("--metrics needs prometheus-client: pip install 'fastserve[metrics]'") from None
        self.shared = shared
        self.counters = shared.slot(slot)
        self.content_type = CONTENT_TYPE_LATEST.encode("latin-1")
        self._generate = generate_latest
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(shared))
        self.registry.register(_Processes(shared, SUPERVISOR))
        from prometheus_client import PlatformCollector

        PlatformCollector(registry=self.registry)  # python_info, the same for every process

    def update(self, connections: int, cache: Any) -> None:
        """On each tick: the gauges and the open-file cache figures of this worker."""
        self.counters.set(layout.CONNECTIONS, connections)
        if cache is not None:
            self.counters.set(layout.CACHE_HITS, cache.hits)
            self.counters.set(layout.CACHE_MISSES, cache.misses)
            self.counters.set(layout.CACHE_EVICTIONS, cache.evictions)
            answers, saved = compression_totals()
            self.counters.set(layout.COMPRESSED_ANSWERS, answers)
            self.counters.set(layout.COMPRESSION_SAVED_BYTES, saved)

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every worker's figures."""
        return self._generate(self.registry)


class _Collector:
    def __init__(self, shared: SharedCounters) -> None:
        self.shared = shared

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        total = self.shared.totals()
        requests = CounterMetricFamily(
            "fastserve_requests", "Requests answered, by status class and method.", labels=["status", "method"]
        )
        for k, klass in enumerate(layout.STATUS_CLASSES):
            for m, method in enumerate(layout.METHODS):
                value = total[layout.REQUESTS + k * len(layout.METHODS) + m]
                if value:
                    requests.add_metric([klass, method], value)
        yield requests
        yield CounterMetricFamily("fastserve_response_bytes", "Response bytes sent, heads included.",
                                  value=total[layout.BYTES_SENT])
        buckets, running = [], 0
        for i, bound in enumerate(layout.LATENCY_BOUNDS + (float("inf"),)):
            running += total[layout.LATENCY + i]
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        yield HistogramMetricFamily(
            "fastserve_request_duration_seconds",
            "From a request's head to its response handed to the connection.",
            buckets=buckets, sum_value=total[layout.LATENCY_SUM_NS] / 1e9,
        )
        yield GaugeMetricFamily("fastserve_open_connections", "Open client connections.",
                                value=total[layout.CONNECTIONS])
        cache = CounterMetricFamily("fastserve_open_file_cache", "Open-file cache lookups and evictions.",
                                    labels=["result"])
        cache.add_metric(["hit"], total[layout.CACHE_HITS])
        cache.add_metric(["miss"], total[layout.CACHE_MISSES])
        cache.add_metric(["eviction"], total[layout.CACHE_EVICTIONS])
        yield cache
        yield CounterMetricFamily("fastserve_worker_restarts",
                                  "Workers replaced after they died, were killed or failed to start (not retirements).",
                                  value=total[layout.WORKER_RESTARTS])
        yield CounterMetricFamily("fastserve_refused_connections",
                                  "Connections answered 503 and closed at once: the worker had --max-connections open.",
                                  value=total[layout.REFUSED_CONNECTIONS])
        yield CounterMetricFamily("fastserve_compressed_responses", "GET answers sent in an encoding made on the fly.",
                                  value=total[layout.COMPRESSED_ANSWERS])
        yield CounterMetricFamily("fastserve_compression_saved_bytes",
                                  "Bytes the on-the-fly encodings saved over sending the files unencoded.",
                                  value=total[layout.COMPRESSION_SAVED_BYTES])


class _Processes:
    """``process_*`` (prometheus-client's ``ProcessCollector``: CPU seconds, resident and virtual
    memory, open and most descriptors, start time) for each of the server's processes.

    A lone server is one process: its families carry no label, as any exporter's do. Under a
    supervisor (``--workers N``, ``--limit-max-requests``) every process has its series, labelled
    ``worker``: the slot's number (``"0"`` .. ``"N-1"``, more after SIGTTIN) for the worker
    serving it now, ``"supervisor"`` for the supervisor. A slot keeps its label across the
    workers that serve it one after another, so the series are as many as the slots; a
    replacement shows as a counter reset and a new ``process_start_time_seconds``, as a restarted
    process does. A retiring worker leaves its slot's series to its replacement as soon as the
    replacement starts. Each is read from ``/proc`` at the scrape (Linux; none elsewhere).
    """

    def __init__(self, shared: SharedCounters, supervisor: Optional[int]) -> None:
        from prometheus_client import ProcessCollector

        self.shared = shared
        self.supervisor = supervisor
        self.pid: Any = "self"
        self.reader = ProcessCollector(pid=lambda: self.pid, registry=None)

    def collect(self) -> Iterator[Any]:
        if self.supervisor is None:
            self.pid = "self"
            yield from self.reader.collect()
            return
        from prometheus_client.metrics_core import Metric

        families: Dict[str, Any] = {}
        for label, pid in self.processes():
            self.pid = pid
            for family in self.reader.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation, family.type)
                for sample in family.samples:
                    merged.samples.append(sample._replace(labels={**sample.labels, "worker": label}))
        yield from families.values()

    def processes(self) -> List[Tuple[str, int]]:
        """``(label, pid)`` of the supervisor and of each slot's worker that is alive: a child of
        the supervisor (a slot's recorded pid may have ended, or been reused by another process)."""
        supervisor = self.supervisor
        assert supervisor is not None
        found = [("supervisor", supervisor)]
        for slot, pid in self.shared.owners():
            if _parent(pid) == supervisor:
                found.append((str(slot), pid))
        return found


def _parent(pid: int) -> Optional[int]:
    """The parent process of ``pid`` (``/proc/PID/stat``), or None when there is none to read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


SHARED: Optional[SharedCounters] = None  # mapped by the main process before workers fork
SUPERVISOR: Optional[int] = None  # in a worker forked by a supervisor: the supervisor's pid
SLOT = 0  # this process's slot (set in each forked worker)
ADDED_SLOTS = 64  # slots beyond --workers, for the workers SIGTTIN may add


def prepare(config: Any) -> None:
    """In the main process: check prometheus-client is there and map the block (``--metrics`` only)."""
    global SHARED
    if not config.metrics:
        return
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise MetricsUnavailable("--metrics needs prometheus-client: pip install 'fastserve[metrics]'") from None
    SHARED = SharedCounters(max(1, config.workers) + ADDED_SLOTS)


def count_restart(slot: int) -> None:
    """In the supervisor: a worker of ``slot`` is being replaced after it died (``--metrics`` only)."""
    if SHARED is not None:
        SHARED.add(slot, layout.WORKER_RESTARTS)


def for_worker(config: Any) -> Optional[Metrics]:
    """This worker's ``Metrics`` (None without ``--metrics``)."""
    if not config.metrics:
        return None
    shared = SHARED if SHARED is not None else SharedCounters(1)  # fastserve.run() without prepare()
    return Metrics(shared, SLOT)
