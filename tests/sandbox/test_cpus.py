"""usable_cpus: the affinity, capped by a cgroup CPU quota (v1 and v2), read from real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox._cpus import cgroup_cpu_quota, usable_cpus
from sandbox._pool import CPUS_PER_SPINNING_CALL, spin_call_limit


def tree(tmp_path: Path, proc_cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(proc_cgroup)
    return root, proc


AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("proc_cgroup", "files", "quota"),
    [
        # cgroup v2, the cgroup's own directory: 1.5 CPUs
        ("0::/kubepods/pod1\n", {"kubepods/pod1/cpu.max": "150000 100000\n"}, 1.5),
        # v2 inside a cgroup namespace: the path is "/", the quota at the mount's root
        ("0::/\n", {"cpu.max": "100000 100000\n"}, 1.0),
        # v2 without a limit
        ("0::/a\n", {"a/cpu.max": "max 100000\n"}, None),
        # cgroup v1, cpu and cpuacct mounted together
        (
            "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n",
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            0.5,
        ),
        # v1, no limit (-1), as on the development VM
        (
            "1:cpu:/\n",
            {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
            None,
        ),
        # v2, the process outside its namespace's root: the path leaves the mount, and
        # what lies outside it is not read
        (
            "0::/../other\n",
            {"cpu.max": "max 100000\n", "../other/cpu.max": "10000 100000\n"},
            None,
        ),
        # nothing readable: no quota known
        ("0::/gone\n", {}, None),
        ("garbage\n", {"cpu.max": "nonsense"}, None),
    ],
)
def test_the_quota_is_read_from_v1_and_v2_files(
    tmp_path: Path, proc_cgroup: str, files: dict[str, str], quota: float | None
) -> None:
    root, proc = tree(tmp_path, proc_cgroup, files)
    assert cgroup_cpu_quota(root, proc) == quota
    expected = AFFINITY if quota is None else min(AFFINITY, max(1, -(-quota // 1)))
    assert usable_cpus(root, proc) == expected


def test_a_quota_caps_the_affinity_rounded_up_and_never_below_one(tmp_path: Path) -> None:
    root, proc = tree(tmp_path, "0::/c\n", {"c/cpu.max": "1000 100000\n"})  # 0.01 CPU
    assert usable_cpus(root, proc) == 1
    root, proc = tree(tmp_path, "0::/d\n", {"d/cpu.max": "999900000 100000\n"})  # 9999 CPUs
    assert usable_cpus(root, proc) == AFFINITY
    assert usable_cpus(tmp_path / "none", tmp_path / "no-such-file") == AFFINITY


def test_calls_spin_up_to_one_per_two_usable_cpus_and_alone_always() -> None:
    assert spin_call_limit() == max(1, usable_cpus() // CPUS_PER_SPINNING_CALL)


@pytest.mark.parametrize(
    ("proc_cgroup", "files", "quota"),
    [
        # v2: the limit is on a parent (a systemd slice with CPUQuota=, a pod), the process in
        # a child with no cpu.max of its own: the parent's quota binds the whole subtree.
        (
            "0::/user.slice/app.scope\n",
            {"user.slice/cpu.max": "100000 100000\n", "user.slice/app.scope/cgroup.procs": ""},
            1.0,
        ),
        # v2: both limited, the parent more tightly; the tighter one wins.
        (
            "0::/pod/ctr\n",
            {"pod/cpu.max": "50000 100000\n", "pod/ctr/cpu.max": "200000 100000\n"},
            0.5,
        ),
        # v2: the child limited, the parent not.
        ("0::/p/c\n", {"p/cpu.max": "max 100000\n", "p/c/cpu.max": "30000 100000\n"}, 0.3),
        # v1: the parent's quota.
        (
            "3:cpu,cpuacct:/docker/abc\n",
            {
                "cpu,cpuacct/docker/cpu.cfs_quota_us": "100000\n",
                "cpu,cpuacct/docker/cpu.cfs_period_us": "100000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "-1\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            1.0,
        ),
        # v1 with a named hierarchy first (no controller): skipped, the cpu line decides.
        (
            "5:name=systemd:/x\n4:cpu:/\n",
            {"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"},
            2.0,
        ),
    ],
)
def test_a_quota_on_an_ancestor_cgroup_caps_its_descendants(
    tmp_path: Path, proc_cgroup: str, files: dict[str, str], quota: float
) -> None:
    root, proc = tree(tmp_path, proc_cgroup, files)
    assert cgroup_cpu_quota(root, proc) == pytest.approx(quota)
