"""Checks for bench/cpucap.py: `pytest bench/test_cpucap.py`.

Most run on a stand-in cgroup tree in a temporary folder (the files the kernel would show, as
plain files), so they need no root; the last ones make real cgroups and are skipped, with the
reason, where this process may not (not root, or no hierarchy with the cpu controller).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpucap  # noqa: E402
from cpucap import Cap, CapGroup, CpuCapError, Hierarchy, Throttling, find_hierarchy, quota_and_period  # noqa: E402


@pytest.mark.parametrize(
    "percent, expected",
    [
        (40, (1000, 2500)),  # the short period: a stall costs at most 1.5 ms
        (100, (2500, 2500)),
        (50, (1250, 2500)),
        (10, (1000, 10_000)),  # under 40% the period grows so the quota stays at the kernel's 1 ms
        (3, (1000, 33_334)),
        (1, (1000, 100_000)),
    ],
)
def test_quota_and_period(percent: int, expected: tuple[int, int]) -> None:
    quota, period = quota_and_period(percent)
    assert (quota, period) == expected
    assert quota >= cpucap.MIN_QUOTA_US and period <= cpucap.MAX_PERIOD_US
    assert abs(quota / period - percent / 100) < 0.001


@pytest.mark.parametrize(
    "percent, period, expected",
    [
        (40, 10_000, (4000, 10_000)),  # a longer period, asked for
        (40, 1000, (1000, 2500)),  # too short for a 1-ms quota: lengthened
        (1, 1_000_000, (10_000, 1_000_000)),
        (100, 1000, (1000, 1000)),
    ],
)
def test_quota_and_period_with_a_period_of_ones_own(percent: int, period: int, expected: tuple[int, int]) -> None:
    assert quota_and_period(percent, period) == expected
    assert Cap(percent, period).quota_and_period == expected


@pytest.mark.parametrize("percent, period, message", [
    (0, 2500, "1 to 100"), (-5, 2500, "1 to 100"), (101, 2500, "1 to 100"),
    (40, 999, "1,000 to 1,000,000"), (40, 1_000_001, "1,000 to 1,000,000"),
])  # fmt: skip
def test_quota_and_period_rejects_what_the_kernel_would(percent: int, period: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        quota_and_period(percent, period)
    with pytest.raises(ValueError, match=message):
        Cap(percent, period)


def _mount_line(kind: str, path: Path, options: str) -> str:
    return f"{kind} {str(path).replace(' ', chr(92) + '040')} {kind} {options} 0 0"


def test_hybrid_layout_uses_the_v1_cpu_controller(tmp_path: Path) -> None:
    """This machine's layout: cgroup2 at .../unified without cpu, cpu on its own v1 mount."""
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("hugetlb\n")
    mounts = "\n".join([
        "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0",
        _mount_line("cgroup", tmp_path / "cpuacct", "rw,relatime,cpuacct"),
        _mount_line("cgroup", tmp_path / "cpuset", "rw,relatime,cpuset"),
        _mount_line("cgroup", tmp_path / "cpu", "rw,relatime,cpu"),
        _mount_line("cgroup2", unified, "rw,relatime"),
    ])  # fmt: skip
    assert find_hierarchy(mounts) == Hierarchy(1, tmp_path / "cpu")


def test_v2_comes_first_when_it_offers_cpu(tmp_path: Path) -> None:
    root = tmp_path / "cgroup root"  # a space, written \040 in /proc/self/mounts
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    mounts = "\n".join([
        _mount_line("cgroup", tmp_path / "v1", "rw,cpu,cpuacct"),
        _mount_line("cgroup2", root, "rw,nosuid,nodev,noexec,relatime"),
    ])  # fmt: skip
    assert find_hierarchy(mounts) == Hierarchy(2, root)


def test_no_cpu_controller_is_a_clear_error(tmp_path: Path) -> None:
    mounts = "\n".join([
        _mount_line("cgroup", tmp_path / "cpuacct", "rw,cpuacct"),
        _mount_line("cgroup", tmp_path / "cpuset", "rw,cpuset"),
    ])  # fmt: skip
    with pytest.raises(CpuCapError, match="no cgroup hierarchy offers the cpu controller.*BENCH_SERVER_CPU_PERCENT"):
        find_hierarchy(mounts)


def test_v2_cap_enables_the_controller_and_writes_cpu_max(tmp_path: Path) -> None:
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")
    cap = CapGroup.create("uvicorn+fastserve.StaticFiles", Cap(40), Hierarchy(2, tmp_path), owner=4242)
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu\n"
    assert cap.path.parent == tmp_path
    assert cap.path.name == "fastserve-bench-4242-1-uvicorn-fastserve.StaticFiles"
    assert (cap.path / "cpu.max").read_text() == "1000 2500\n"
    assert not (cap.path / "cpu.cfs_quota_us").exists()
    # a second cgroup for the same server gets a name of its own; the controller is left as found
    (tmp_path / "cgroup.subtree_control").write_text("cpu memory\n")
    second = CapGroup.create("uvicorn+fastserve.StaticFiles", Cap(25), Hierarchy(2, tmp_path), owner=4242)
    assert second.path.name == "fastserve-bench-4242-2-uvicorn-fastserve.StaticFiles"
    assert (second.path / "cpu.max").read_text() == "1000 4000\n"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "cpu memory\n"
    assert second.describe() == "25% of one CPU (1 ms per 4 ms) in cgroup v2"


def test_v1_cap_writes_the_cfs_period_and_quota(tmp_path: Path) -> None:
    cap = CapGroup.create("nginx", Cap(40), Hierarchy(1, tmp_path), owner=7)
    assert cap.path == tmp_path / "fastserve-bench-7-1-nginx"
    assert (cap.path / "cpu.cfs_period_us").read_text() == "2500\n"
    assert (cap.path / "cpu.cfs_quota_us").read_text() == "1000\n"
    assert not (cap.path / "cpu.max").exists()
    assert not (tmp_path / "cgroup.subtree_control").exists()  # v1 has no such switch
    longer = CapGroup.create("nginx", Cap(40, 10_000), Hierarchy(1, tmp_path), owner=7)
    assert (longer.path / "cpu.cfs_period_us").read_text() == "10000\n"
    assert (longer.path / "cpu.cfs_quota_us").read_text() == "4000\n"


def test_enter_writes_the_calling_process_into_cgroup_procs(tmp_path: Path) -> None:
    cap = CapGroup.create("h2o", Cap(40), Hierarchy(1, tmp_path), owner=7)
    cap.enter()
    assert (cap.path / "cgroup.procs").read_text() == "0\n"  # the kernel reads "0" as the writer


@pytest.mark.parametrize("version", [1, 2])
def test_a_hierarchy_that_cannot_be_written_is_a_clear_error(tmp_path: Path, version: int) -> None:
    missing = tmp_path / "not-mounted"
    with pytest.raises(CpuCapError, match="cannot read|could not make the cgroup"):
        CapGroup.create("fastserve", Cap(40), Hierarchy(version, missing))
    assert not missing.exists()


def test_throttling_reads_cpu_stat_of_either_version(tmp_path: Path) -> None:
    cap = CapGroup.create("fastserve", Cap(40), Hierarchy(1, tmp_path), owner=7)
    (cap.path / "cpu.stat").write_text(
        "nr_periods 458\nnr_throttled 356\nthrottled_time 696305123\nnr_bursts 0\nburst_time 0\n"
    )
    assert cap.throttling() == Throttling(458, 356, 696305)  # v1: nanoseconds
    (cap.path / "cpu.stat").write_text(
        "usage_usec 1000\nuser_usec 900\nsystem_usec 100\nnr_periods 10\nnr_throttled 4\nthrottled_usec 3500\n"
    )
    assert cap.throttling() == Throttling(10, 4, 3500)  # v2: microseconds


# --------------------------------------------------------------------------- real cgroups


def _real_hierarchy() -> Hierarchy:
    if os.geteuid() != 0:
        pytest.skip("making a cgroup needs root")
    try:
        return find_hierarchy()
    except CpuCapError as exc:
        pytest.skip(str(exc))


BUSY = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass\n"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_real_cgroup_holds_a_busy_process_to_its_share_and_is_removed() -> None:
    hierarchy = _real_hierarchy()
    cap = CapGroup.create("test-busy", Cap(40), hierarchy)
    process = None
    try:
        assert cap.path.parent == hierarchy.root and cap.path.is_dir()
        process = subprocess.Popen([sys.executable, "-c", BUSY], preexec_fn=cap.enter)
        assert cap.holds(process.pid)
        assert cap.path.name in Path(f"/proc/{process.pid}/cgroup").read_text()
        before, started = cap.throttling(), time.monotonic()
        cpu_before = _cpu_seconds(process.pid)
        time.sleep(0.5)
        share = (_cpu_seconds(process.pid) - cpu_before) / (time.monotonic() - started)
        after = cap.throttling()
        assert after.throttled_periods > before.throttled_periods  # the quota ran out, period after period
        assert share < 0.6  # 40% of one CPU, with a tick's worth of accounting slack
        cap.remove()  # with the busy process still in it: it is killed first
        assert process.wait(5) == -9
        assert not cap.path.exists()
        cap.remove()  # idempotent
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        cap.remove()


def test_leftovers_of_this_run_are_removed_and_other_runs_are_left_alone() -> None:
    hierarchy = _real_hierarchy()
    mine = CapGroup.create("left-behind", Cap(40), hierarchy)
    # a cgroup of a harness that still runs (this test's parent process stands in for it)
    running_owner = CapGroup.create("other-run", Cap(40), hierarchy, owner=os.getppid())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_owner = CapGroup.create("killed-run", Cap(40), hierarchy, owner=int(dead.stdout))
    try:
        removed = cpucap.remove_leftovers(hierarchy)  # empty cgroups of harnesses that are gone
        assert dead_owner.path in removed and not dead_owner.path.exists()
        assert mine.path.exists() and running_owner.path.exists()
        assert cpucap.remove_leftovers(hierarchy, owner=os.getpid()) == [mine.path]
        assert not mine.path.exists() and running_owner.path.exists()
    finally:
        for cap in (mine, running_owner, dead_owner):
            cap.remove()
