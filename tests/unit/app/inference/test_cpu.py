"""What the CPU module counts and sets: usable CPUs under container limits, OpenMP spin time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.inference.cpu import spin_ms, usable_cpus


def test_spin_ms_auto_is_twice_the_last_run_within_bounds() -> None:
    assert [spin_ms("auto", ms) for ms in (0.0, 0.12, 0.7, 4.6, 500.0)] == [1, 1, 2, 10, 200]
    assert spin_ms(7, 500.0) == 7 and spin_ms(None, 5.0) is None


@pytest.mark.parametrize(("files", "expected_cap"), [
    ({"cpu.max": "150000 100000\n"}, 2),  # cgroup v2, docker --cpus 1.5
    ({"cpu.max": "max 100000\n"}, None),  # v2, no limit
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1, --cpus 1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, no limit
    ({}, None),  # no cgroup files at all
])
def test_usable_cpus_honours_the_container_cpu_limit(tmp_path: Path, files: dict[str, str],
                                                       expected_cap: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == (min(affinity, expected_cap) if expected_cap else affinity)
