"""How many threads torch may use in this worker: its share of the CPUs, not all of them.

Unset, torch starts one intra-op thread per core. On a worker that shares its cores (two
Airflow tasks on a 2-core machine, a scheduler beside it), those threads spin-wait for cores
that are busy, and a film's region placement took 17-62 s instead of 1.4 s. The share is
the CPUs this process may run on (its affinity, capped by a cgroup CPU quota) divided by the
load on them (the larger of the one-minute load average and the processes runnable right now,
this one included), at least one thread.
``DIPRO_MODEL__TORCH_THREADS`` overrides it. Torch is imported only when the threads are set.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
PROC_LOADAVG = Path("/proc/loadavg")


def cpu_count() -> int:
    """The CPUs this process may use: its affinity, capped by a cgroup v2 quota if any."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = max(1, cpus or 1)
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def cpu_share(load: float | None = None) -> int:
    """Threads for this worker: its CPUs over the load on them (see the module docstring)."""
    cpus = cpu_count()
    running = _load() if load is None else load
    return max(1, min(cpus, math.floor(cpus / max(1.0, running))))


def _load() -> float:
    """The one-minute load average, or the processes runnable now when more (it lags)."""
    one_minute = os.getloadavg()[0]
    try:
        runnable = int(PROC_LOADAVG.read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        runnable = 0
    return max(one_minute, float(runnable))


def use_torch_threads(requested: int | None = None) -> int:
    """Set torch's intra-op threads to ``requested``, else to :func:`cpu_share`; return it."""
    import torch

    threads = requested or cpu_share()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
        logger.info("torch intra-op threads: %d", threads)
    return threads
