"""Hold a benchmarked server, and every process it starts, to a share of one CPU.

A cgroup of its own per server, with the CPU controller's bandwidth limit: `percent`% of one
CPU in every period of 2.5 ms by default (a short period, so that being throttled costs a
request at most a couple of milliseconds, not the 100 ms of the kernel's default period).
Both layouts are handled:

- cgroup v2: a child of the unified hierarchy's root (``/sys/fs/cgroup``), with ``+cpu`` written
  to the root's ``cgroup.subtree_control`` and the limit in ``cpu.max`` ("quota period");
- cgroup v1: a child of the ``cpu`` controller's hierarchy (``/sys/fs/cgroup/cpu``), the limit in
  ``cpu.cfs_period_us`` and ``cpu.cfs_quota_us``.

v2 is used when its root offers the ``cpu`` controller, else v1. A process joins its cgroup by
writing to ``cgroup.procs`` before it execs the server (:meth:`CapGroup.enter`, as a
``preexec_fn``), so the server and its workers never run uncapped. Anything that goes wrong
(no cgroup hierarchy with the controller, no permission) raises :class:`CpuCapError` with what
to do, so a run never measures uncapped servers under a capped label.

Standard library only, like the rest of the harness.
"""
from __future__ import annotations

import math
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

PERIOD_US = 2500  # the period the cap is enforced over
MIN_QUOTA_US = 1000  # the kernel refuses a quota below 1 ms
MAX_PERIOD_US = 1_000_000  # ... and a period above 1 s
NAME_PREFIX = "fastserve-bench-"  # every cgroup made here: fastserve-bench-<owner pid>-<n>-<label>
MOUNTS = Path("/proc/self/mounts")


class CpuCapError(RuntimeError):
    """The cap cannot be put in place; the message says why and what to do."""


def quota_and_period(percent: int, period_us: int = PERIOD_US) -> tuple[int, int]:
    """(quota, period) in microseconds for `percent`% (1-100) of one CPU.

    The period is `period_us` (1 ms to 1 s), lengthened where the quota would fall under the
    kernel's 1-ms minimum (at 2.5 ms, caps under 40%: 10% is 1 ms in every 10 ms). Raises
    ValueError for a percentage outside 1-100 or a period outside 1 ms-1 s.
    """
    if not 1 <= percent <= 100:
        raise ValueError(f"a CPU cap is a whole percentage from 1 to 100, got {percent}")
    if not MIN_QUOTA_US <= period_us <= MAX_PERIOD_US:
        raise ValueError(f"a CPU cap's period is 1,000 to 1,000,000 microseconds, got {period_us}")
    period = min(MAX_PERIOD_US, max(period_us, math.ceil(MIN_QUOTA_US * 100 / percent)))
    return max(MIN_QUOTA_US, period * percent // 100), period


@dataclass(frozen=True)
class Cap:
    """`percent`% of one CPU, enforced over periods of `period_us` (or longer: quota_and_period)."""

    percent: int
    period_us: int = PERIOD_US

    def __post_init__(self) -> None:
        quota_and_period(self.percent, self.period_us)  # ValueError when out of range

    @property
    def quota_and_period(self) -> tuple[int, int]:
        return quota_and_period(self.percent, self.period_us)

    def describe(self) -> str:
        """The cap in words, e.g. 40% of one CPU (1 ms per 2.5 ms)."""
        quota, period = self.quota_and_period
        return f"{self.percent}% of one CPU ({quota / 1000:g} ms per {period / 1000:g} ms)"


@dataclass(frozen=True)
class Hierarchy:
    """Where cpu cgroups are made: a cgroup v2 root, or the v1 ``cpu`` controller's root."""

    version: int  # 1 or 2
    root: Path


def find_hierarchy(mounts: Optional[str] = None) -> Hierarchy:
    """The hierarchy to put capped cgroups in, from /proc/self/mounts (or `mounts`, its text).

    A cgroup2 mount whose root offers the ``cpu`` controller comes first; then a v1 ``cgroup``
    mount with the ``cpu`` option. Raises CpuCapError when neither is mounted.
    """
    if mounts is None:
        try:
            mounts = MOUNTS.read_text()
        except OSError as exc:
            raise CpuCapError(f"cannot read {MOUNTS} to find the cgroup hierarchies: {exc}") from exc
    v2: list[Path] = []
    v1: list[Path] = []
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        # /proc/self/mounts writes a space in a path as \040
        mount_point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1]))
        if fields[2] == "cgroup2":
            v2.append(mount_point)
        elif fields[2] == "cgroup" and "cpu" in fields[3].split(","):
            v1.append(mount_point)
    for root in v2:
        try:
            controllers = (root / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if "cpu" in controllers:
            return Hierarchy(2, root)
    if v1:
        return Hierarchy(1, v1[0])
    seen = ", ".join(str(p) for p in v2) or "none"
    raise CpuCapError(
        "no cgroup hierarchy offers the cpu controller (cgroup2 mounts without it: "
        f"{seen}; no cgroup v1 mount with the cpu option): BENCH_SERVER_CPU_PERCENT needs one"
    )


@dataclass(frozen=True)
class Throttling:
    """The cgroup's ``cpu.stat`` counters: enforcement periods, how many of them ran out of
    quota, and the time the group spent held back."""

    periods: int
    throttled_periods: int
    throttled_us: int


def _write(path: Path, text: str, what: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise CpuCapError(f"could not {what} ({path}: {exc.strerror or exc}); capping servers "
                          "needs root, or write access to that cgroup hierarchy") from exc


class CapGroup:
    """One cgroup holding its processes to a share of one CPU (`cap`).

    Make it with :meth:`create`; start a process in it with ``preexec_fn=cap.enter``; read
    :meth:`throttling` around a measurement; :meth:`remove` it when its processes are stopped.
    """

    def __init__(self, hierarchy: Hierarchy, path: Path, cap: Cap) -> None:
        self.hierarchy = hierarchy
        self.path = path
        self.cap = cap
        self.quota_us, self.period_us = cap.quota_and_period

    @classmethod
    def create(cls, label: str, cap: Cap, hierarchy: Optional[Hierarchy] = None,
               owner: Optional[int] = None) -> "CapGroup":
        """A new cgroup named fastserve-bench-<owner pid>-<n>-<label>, held to `cap`.

        Raises CpuCapError if it cannot be made or capped (then nothing is left behind).
        """
        hierarchy = hierarchy or find_hierarchy()
        owner = os.getpid() if owner is None else owner
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "server"
        if hierarchy.version == 2:
            _enable_cpu_controller(hierarchy.root)
        for number in range(1, 10_000):
            path = hierarchy.root / f"{NAME_PREFIX}{owner}-{number}-{safe}"
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise CpuCapError(f"could not make the cgroup {path}: {exc.strerror or exc}; capping "
                                  "servers needs root, or write access to that cgroup hierarchy") from exc
        else:
            raise CpuCapError(f"no free cgroup name for {label!r} under {hierarchy.root}")
        made = cls(hierarchy, path, cap)
        try:
            made._apply()
        except BaseException:
            made.remove()
            raise
        return made

    def _apply(self) -> None:
        if self.hierarchy.version == 2:
            _write(self.path / "cpu.max", f"{self.quota_us} {self.period_us}\n", "set cpu.max")
        else:
            # the period first: a quota longer than the period in force would be refused
            _write(self.path / "cpu.cfs_period_us", f"{self.period_us}\n", "set cpu.cfs_period_us")
            _write(self.path / "cpu.cfs_quota_us", f"{self.quota_us}\n", "set cpu.cfs_quota_us")

    def describe(self) -> str:
        """The cap in words: "40% of one CPU (1 ms per 2.5 ms) in cgroup v1"."""
        return f"{self.cap.describe()} in cgroup v{self.hierarchy.version}"

    def enter(self) -> None:
        """Move the calling process into this cgroup (for Popen's ``preexec_fn``: after the fork,
        before the exec, so the server runs capped from its first instruction)."""
        with open(self.path / "cgroup.procs", "w") as procs:
            procs.write("0\n")  # "0": the writing process itself, in v1 and v2 alike

    def pids(self) -> list[int]:
        """The processes in this cgroup now (none once it has been removed)."""
        try:
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def holds(self, pid: int) -> bool:
        return pid in self.pids()

    def throttling(self) -> Throttling:
        """The counters in ``cpu.stat`` now (v1 gives the throttled time in ns, v2 in µs)."""
        values: dict[str, int] = {}
        for line in (self.path / "cpu.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if value.strip().isdigit():
                values[name] = int(value)
        throttled_us = values["throttled_usec"] if "throttled_usec" in values else values.get("throttled_time", 0) // 1000
        return Throttling(values.get("nr_periods", 0), values.get("nr_throttled", 0), throttled_us)

    def remove(self, timeout_s: float = 5.0) -> None:
        """Delete the cgroup. Processes still in it (what the server left running: they were
        started in it by this harness) are killed first. Idempotent; raises CpuCapError if the
        cgroup is still there after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while self.path.exists():
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise CpuCapError(f"could not remove the cgroup {self.path}: {exc.strerror or exc}") from exc
                time.sleep(0.02)  # a killed process leaves its cgroup when the kernel has reaped it


def _enable_cpu_controller(root: Path) -> None:
    """Make the ``cpu`` controller available to the root's children (cgroup v2).

    Left enabled afterwards: taking it away would uncap any other cgroup that relies on it.
    """
    control = root / "cgroup.subtree_control"
    try:
        enabled = control.read_text().split()
    except OSError as exc:
        raise CpuCapError(f"cannot read {control}: {exc.strerror or exc}") from exc
    if "cpu" not in enabled:
        _write(control, "+cpu\n", "enable the cpu controller for child cgroups")


def remove_leftovers(hierarchy: Optional[Hierarchy] = None, owner: Optional[int] = None) -> list[Path]:
    """Remove cgroups made by this module that are no longer needed; returns what was removed.

    With `owner`, every cgroup of that harness process (its own at the end of a run, whatever
    failed on the way: what is still in them is killed). Without, the empty cgroups of harness
    processes that no longer run (a run that was killed); a cgroup that still holds processes
    is left alone, since they are not this run's.
    """
    try:
        hierarchy = hierarchy or find_hierarchy()
        entries = list(hierarchy.root.iterdir())
    except (CpuCapError, OSError):
        return []
    removed = []
    for path in entries:
        found = re.fullmatch(re.escape(NAME_PREFIX) + r"(\d+)-\d+-.*", path.name)
        if not found or not path.is_dir():
            continue
        pid = int(found.group(1))
        cap = CapGroup(hierarchy, path, Cap(100))
        if owner is not None:
            if pid != owner:
                continue
        elif Path(f"/proc/{pid}").exists() or cap.pids():  # its harness still runs, or something is in it
            continue
        try:
            cap.remove()
        except CpuCapError:
            continue
        removed.append(path)
    return removed
