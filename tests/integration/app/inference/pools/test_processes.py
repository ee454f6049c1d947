"""Predictors in child processes, with the bundled LeNet: same answers as in-process, a crash
fails one batch and the next batch gets a fresh child, nothing is left running after close, and
encoded images decoded in the child answer as in-process decoding does."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uvloop

from app.inference.backends import Backend, BackendOptions, BackendSpec, load_backend
from app.inference.handler import HandlerSpec
from app.inference.manifest import load_manifest
from app.inference.model_version import LoadOptions, ModelVersion
from app.inference.pools import ProcessPool, processes
from app.inference.pools.processes import PredictorCrashedError
from app.inference.preprocess import ImageDecodeError, UnsupportedImageError
from tests.conftest import MODELS_DIR, draw_digit_one, encode, png_bytes

LENET_DIR = MODELS_DIR / "mnist-lenet" / "1"
OPTIONS = BackendOptions(device="cpu", cpu_threads=1)


def backend_spec(directory: Path, options: BackendOptions = OPTIONS) -> BackendSpec:
    manifest = json.loads((directory / "manifest.json").read_text())
    return BackendSpec("paddle", directory / manifest["model_file"], directory / manifest["params_file"], options)


def lenet_handler() -> HandlerSpec:
    return HandlerSpec.of(load_manifest(LENET_DIR), 1_000_000)


def local_backend() -> Backend:
    return load_backend(backend_spec(LENET_DIR))


def pids(pool: ProcessPool) -> list[int]:
    return [pid for process in pool.processes if (pid := process.pid) is not None]


def digits(count: int) -> np.ndarray:
    return np.random.default_rng(count).random((count, 1, 28, 28), dtype=np.float32)


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPool]:
    created = ProcessPool(backend_spec(LENET_DIR), lenet_handler(), size=1, name="mnist-lenet/1")
    yield created
    created.close()


def test_process_pool_answers_like_the_in_process_predictor(pool: ProcessPool) -> None:
    local = local_backend()
    for count in (1, 7, 32):
        batch = digits(count)
        np.testing.assert_allclose(pool.run(batch), local.run(batch), rtol=1e-5, atol=1e-6)
    assert pool.input_name == local.input_name


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_process_pool_classify_async_matches_run(pool: ProcessPool, loop: str) -> None:
    """uvloop (what uvicorn runs when it is installed) leaves watched descriptors non-blocking."""
    batch = digits(5)
    large = digits(3000)  # a reply larger than the socket buffer arrives in pieces

    async def outputs(inputs: np.ndarray) -> np.ndarray:
        return (await pool.classify_async(list(inputs))).outputs

    async def one_by_one() -> list[np.ndarray]:
        return [await outputs(batch[i : i + 1]) for i in range(5)] + [await outputs(large)]

    run = uvloop.run if loop == "uvloop" else asyncio.run
    *rows, large_rows = run(one_by_one())
    np.testing.assert_allclose(np.concatenate(rows), pool.run(batch), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(large_rows, pool.run(large), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
def test_process_pool_children_yield_the_cores_to_the_server(pool: ProcessPool) -> None:
    [pid] = pids(pool)
    assert os.sched_getscheduler(pid) == os.SCHED_BATCH  # woken by a request, a child does not preempt the server
    assert os.getpriority(os.PRIO_PROCESS, pid) > os.getpriority(os.PRIO_PROCESS, 0)


def test_process_pool_error_in_the_predictor_fails_only_that_batch(pool: ProcessPool) -> None:
    [pid] = pids(pool)
    with pytest.raises(RuntimeError):
        pool.run(np.zeros((1, 1, 3, 3), dtype=np.float32))  # too small for LeNet's convolutions
    assert pool.run(digits(2)).shape == (2, 10)
    assert pids(pool) == [pid] and pool.restarts == 0  # the same child goes on serving


def test_process_pool_crash_fails_the_batch_then_restarts() -> None:
    pool = ProcessPool(backend_spec(LENET_DIR), lenet_handler(), size=1, name="mnist-lenet/1")
    try:
        [pid] = pids(pool)
        expected = pool.run(digits(3))

        async def crash_mid_batch() -> None:
            os.kill(pid, signal.SIGSTOP)  # hold the child inside this batch, then kill it there
            running = asyncio.ensure_future(pool.classify_async(list(digits(3))))
            await asyncio.sleep(0.2)
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(PredictorCrashedError, match="died"):
                await running

        asyncio.run(crash_mid_batch())
        assert not is_running(pid)
        np.testing.assert_allclose(pool.run(digits(3)), expected, rtol=1e-5, atol=1e-6)
        assert pool.restarts == 1 and pids(pool) != [pid]
    finally:
        pool.close()


def test_process_pool_reports_a_broken_model_and_leaves_no_child(tmp_path: Path) -> None:
    shutil.copytree(LENET_DIR, tmp_path / "1")
    spec = backend_spec(tmp_path / "1")
    spec.params_file.write_bytes(spec.params_file.read_bytes()[:1000])  # truncated weights
    with pytest.raises(RuntimeError) as raised:
        ProcessPool(spec, None, size=1, name="broken/1")
    assert not isinstance(raised.value, PredictorCrashedError)  # Paddle's own message, from the child


def test_process_pool_close_stops_every_child() -> None:
    pool = ProcessPool(backend_spec(LENET_DIR), None, size=2, name="mnist-lenet/1")
    started = pids(pool)
    assert len(started) == 2 and all(is_running(pid) for pid in started)
    pool.close()
    assert not any(is_running(pid) for pid in started)


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_model_version_classify_async_decodes_where_it_predicts_and_fails_only_bad_inputs(mnist, isolation: str) -> None:  # noqa: ANN001
    """Encoded images are decoded beside the predictor (in its child with process isolation); a
    corrupt or foreign file fails only its own input, and arrays pass through as model inputs."""
    model = ModelVersion.load(LENET_DIR, LoadOptions(OPTIONS, 1, 1_000_000, isolation=isolation))
    try:
        good = [png_bytes(mnist.test.images[i]) for i in range(3)]
        array = model.handler.preprocess([good[2]]).arrays[0]
        inputs = [good[0], good[1][:60], b"not an image at all", array, good[2]]
        outcomes = asyncio.run(model.classify_async(inputs))
        assert [type(o.error) for o in outcomes] == [type(None), ImageDecodeError, UnsupportedImageError,
                                                     type(None), type(None)]
        expected = model.classify([good[0], good[2]])  # every stage in this thread
        for index, row in ((0, 0), (3, 1), (4, 1)):
            np.testing.assert_allclose(outcomes[index].probabilities, expected[row].probabilities,
                                       rtol=1e-5, atol=1e-6)
        assert outcomes[0].decode_ms > 0 and outcomes[0].preprocess_ms > 0 and outcomes[0].inference_ms > 0
        assert outcomes[3].decode_ms == 0  # an array needs no decoding
        assert outcomes[1].probabilities is None
        only_bad = asyncio.run(model.classify_async([b"\x89PNG\r\n\x1a\n broken"]))
        assert isinstance(only_bad[0].error, ImageDecodeError)  # a batch with nothing to run still answers
    finally:
        model.close()


def test_process_pool_grows_and_runs_solo_batches_on_the_all_cores_copy() -> None:
    options = BackendOptions(device="cpu", cpu_threads=1, solo_threads=2)
    grown = ProcessPool(backend_spec(LENET_DIR, options), lenet_handler(), size=1, name="mnist-lenet/1")
    try:
        grown.grow(2)
        assert grown.size == 2 and len(set(pids(grown))) == 2
        batch = digits(5)
        expected = local_backend().run(batch)
        for outputs in grown.run_each(batch) + grown.run_each(batch, solo=True):
            np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-5)
        digit = encode(draw_digit_one(), "PNG")
        classified = uvloop.run(grown.classify_async([digit, digit], solo=True))
        assert classified.outputs.shape == (2, 10) and not classified.errors
    finally:
        grown.close()


def test_process_pool_answers_requests_that_arrive_while_it_polls_after_a_lone_batch() -> None:
    """ONNX Runtime's threads sleep after a run, so after a lone batch its predictor polls for the
    next request: one sent at once, one mid-poll and one after the poll has given up all answer."""
    manifest = load_manifest(LENET_DIR)
    spec = BackendSpec("onnxruntime", LENET_DIR / manifest.model_file, LENET_DIR / manifest.params_file,
                       BackendOptions(device="cpu", cpu_threads=1, solo_threads=2),
                       {kind: LENET_DIR / artifact.file for kind, artifact in manifest.runtimes.items()})
    polling = ProcessPool(spec, lenet_handler(), size=1, name="mnist-lenet/1")
    digit = encode(draw_digit_one(), "PNG")

    async def lone_requests() -> list[int]:
        answers = []
        for pause in (0.0, processes.LONE_BATCH_POLL_S / 2, processes.LONE_BATCH_POLL_S * 5):
            await asyncio.sleep(pause)
            classified = await polling.classify_async([digit], solo=True)
            answers.append(int(classified.outputs.argmax()))
        return answers

    try:
        assert uvloop.run(lone_requests()) == [1, 1, 1]
    finally:
        polling.close()
