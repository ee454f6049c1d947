"""How a predictor process keeps its heap, and waits for the next request."""

from __future__ import annotations

import mmap
import multiprocessing
import time

import pytest

from app.inference.pools import processes
from app.inference.pools.processes import HeapKeeper


def test_heap_keeper_trims_only_once_the_process_has_grown_past_its_allowance(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = iter([300.0, 250.0, 260.0, 313.0, 600.0, 280.0, 330.0])  # each read of the resident size
    trims: list[int] = []
    monkeypatch.setattr(processes, "resident_mb", lambda: next(sizes))
    monkeypatch.setattr(processes, "trim_heap", lambda: trims.append(1))
    keeper = HeapKeeper(growth_mb=64.0)
    assert keeper.resident_mb_after_batch() == 250.0 and len(trims) == 1  # the first batch sets the size at rest
    assert keeper.resident_mb_after_batch() == 260.0  # batches that reuse the same pages: no trim
    assert keeper.resident_mb_after_batch() == 313.0 and len(trims) == 1
    assert keeper.resident_mb_after_batch() == 280.0 and len(trims) == 2  # a huge image's decode: handed back
    assert keeper.resident_mb_after_batch() == 330.0 and len(trims) == 2  # measured from the new size at rest


def test_resident_mb_reads_this_process_size() -> None:
    first = processes.resident_mb()
    # Fresh pages from the kernel: a malloc'd block may reuse freed pages that are resident already
    # (a heap grown by earlier tests that load models in this process).
    ballast = mmap.mmap(-1, 64 * 2**20)
    for offset in range(0, len(ballast), mmap.PAGESIZE):
        ballast[offset] = 1  # written, so resident
    assert processes.resident_mb() > first + 50
    ballast.close()


def test_poll_for_request_returns_once_a_request_waits() -> None:
    server, predictor = multiprocessing.Pipe(duplex=True)
    started = time.perf_counter()
    processes.poll_for_request(predictor, 0.05)
    assert time.perf_counter() - started >= 0.05  # nothing came: it polled the whole time
    server.send_bytes(b"{}")
    started = time.perf_counter()
    processes.poll_for_request(predictor, 10.0)
    assert time.perf_counter() - started < 5.0
    assert predictor.recv_bytes() == b"{}"  # left for the predictor's loop to read
