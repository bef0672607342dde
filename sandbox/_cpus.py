"""How many CPUs this process may use: its affinity, capped by a cgroup CPU quota.

``os.sched_getaffinity`` counts the CPUs the scheduler may place this process on; a
container is more often limited by a CPU *quota* (cgroup v2 ``cpu.max``, v1
``cpu.cfs_quota_us``): 16 CPUs visible, one CPU's worth of time per period usable. What
decides whether a busy-wait pays (``_pool.CPUS_PER_SPINNING_CALL``) is the latter: spinning on
more CPUs than the quota pays for only gets the container throttled.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["usable_cpus"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The CPUs this process may use (at least 1): its affinity, capped by its cgroup's CPU
    quota rounded up (a quota of 1.5 CPUs counts as 2)."""
    cpus = max(1, len(os.sched_getaffinity(0)))
    quota = cgroup_cpu_quota(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (quota / period), None without one.

    The tightest quota of the cgroup and of every ancestor up to the root of the mount: a
    quota binds its whole subtree (a systemd slice with ``CPUQuota=``, a pod around its
    containers), and the process's own cgroup often has none, or no ``cpu.max`` at all.
    Inside a cgroup namespace the path in /proc/self/cgroup is "/" or does not exist in
    the mount: then only the mount's root (the namespace's cgroup) is found. Any file
    missing or unreadable means no quota is known there: the affinity alone decides.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # cgroup v2: "0::/path"
            quota = _tightest(root, path, lambda where: _v2_quota(where / "cpu.max"))
            if quota is not None:
                return quota
        elif "cpu" in controllers.split(","):  # cgroup v1: "N:cpu,cpuacct:/path"
            for mount in (root / "cpu", root / "cpu,cpuacct", root / controllers):
                quota = _tightest(mount, path, _v1_quota)
                if quota is not None:
                    return quota
    return None


def _tightest(mount: Path, path: str, quota_of: Callable[[Path], float | None]) -> float | None:
    """The smallest quota of the cgroup at ``path`` under ``mount`` and of its ancestors.

    A path that leaves its namespace's root ("/../x": the process sits outside it) names
    no directory of the mount: only the mount's root is read then."""
    names = [name for name in path.split("/") if name]
    if ".." in names:
        names = []
    found = [quota_of(mount.joinpath(*names[:depth])) for depth in range(len(names), -1, -1)]
    quotas = [quota for quota in found if quota is not None]
    return min(quotas) if quotas else None


def _v2_quota(path: Path) -> float | None:
    try:
        fields = path.read_text().split()
        if len(fields) != 2 or fields[0] == "max":
            return None
        quota, period = int(fields[0]), int(fields[1])
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_quota(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
