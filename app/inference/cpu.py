"""The CPUs a process may use, and how long OpenMP's math threads spin between runs."""

from __future__ import annotations

import ctypes
import math
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Literal

_thread_state = threading.local()


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may use: its affinity mask (taskset, docker --cpuset-cpus), capped by
    its cgroup's CPU quota (docker --cpus, Kubernetes limits), neither of which os.cpu_count()
    sees. With APP_CPU_THREADS=0 a compute-heavy model gets one predictor process per CPU: counted
    from os.cpu_count(), a container limited to 2 CPUs on a 64-core host would start 64."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota(cgroup_root)
    return max(1, min(count, math.ceil(quota)) if quota else count)


@lru_cache(maxsize=1)
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The instruction set extensions the CPU reports (Linux); empty where it cannot be read."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def has_bf16() -> bool:
    """bf16 arithmetic in hardware (AVX-512 BF16 or AMX), which a bf16 runtime needs to be fast."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_quota(cgroup_root: Path) -> float | None:
    """CPUs' worth of time per period that the cgroup allows (v2 cpu.max, or v1's cfs files); None
    where there is no limit or no such file."""
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup_root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


@lru_cache(maxsize=1)
def intel_openmp() -> ctypes.CDLL | None:
    """Intel's OpenMP runtime, which Paddle's CPU build loads; None where it is not loaded. Ask
    after the runtime is imported (a predictor's run is): the answer is kept, as `auto` changes the
    blocktime almost every run of a large model."""
    try:
        return ctypes.CDLL("libiomp5.so", mode=os.RTLD_NOLOAD)
    except OSError:
        return None


def set_omp_blocktime(milliseconds: int | None) -> None:
    """Set, for the calling thread's OpenMP team, how long its math threads spin after a run
    (kmp_set_blocktime: the setting is per thread, so it is made in the thread that runs)."""
    if milliseconds is None or getattr(_thread_state, "omp_blocktime_ms", None) == milliseconds:
        return
    runtime = intel_openmp()
    if runtime is not None:
        runtime.kmp_set_blocktime(ctypes.c_int(milliseconds))
    _thread_state.omp_blocktime_ms = milliseconds


def spin_ms(setting: int | Literal["auto"] | None, last_run_ms: float) -> int | None:
    """How long the math threads should spin after the next run.

    Intel's default is 200 ms: after every run each math thread but the caller burns a core for
    0.2 s waiting for more work. Between a small model's sub-millisecond batches that spinning
    takes the core the HTTP server needs. A model whose run takes milliseconds, though, pays to
    wake sleeping threads at every layer, and 0 (sleep between layers too) costs it most. "auto"
    spins for twice the previous run, 1 to 200 ms: short for a small model, long enough to bridge a
    large one's layers and batches."""
    if setting != "auto":
        return setting
    return min(200, max(1, math.ceil(2 * last_run_ms)))
