"""How a model version tunes itself at warm-up: the math threads per predictor (the batch size is
covered beside the batcher), and the pool it keeps."""

from __future__ import annotations

import pytest
import uvloop

from app.inference import tuning
from app.inference.backends import BackendOptions
from app.inference.model_version import LoadOptions, ModelVersion
from app.inference.pools import ProcessPool
from app.inference.tuning import choose_threads
from tests.conftest import MODELS_DIR, draw_digit_one, encode

LENET_DIR = MODELS_DIR / "mnist-lenet" / "1"


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_model_version_load_measures_threads_and_serves_from_the_pool_it_kept(isolation: str) -> None:
    options = LoadOptions(BackendOptions("cpu", 1, solo_threads=2), 1, 1_000_000, isolation=isolation,
                          measure_threads=True)
    model = ModelVersion.load(LENET_DIR, options)
    try:
        policy = model.thread_policy
        assert set(policy.batch_one_ms) == {1, 2} and all(ms > 0 for ms in policy.batch_one_ms.values())
        solo = choose_threads(policy.batch_one_ms) == 2
        assert policy.solo_threads == (2 if solo else 0) and "measured" in policy.reason
        # Where the solo copy pays, one predictor process per core runs batches side by side.
        assert model.pool.size == (2 if solo and isolation == "process" else 1)
        info = model.describe()
        assert info["cpu_threads"] == 1 and info["batch_one_ms_by_threads"].keys() == {"1", "2"}
        assert info["solo_threads"] == (2 if solo else None) and info["predictors"] == model.pool.size
        measured = model.batch_policy.measured_images_per_second  # on the kept pool
        assert list(measured) == sorted(measured) and all(rate > 0 for rate in measured.values())
        [outcome] = model.classify([encode(draw_digit_one(), "PNG")])
        assert outcome.probabilities is not None and outcome.probabilities.shape == (10,)
    finally:
        model.close()


def test_model_version_load_keeps_fixed_threads_without_measuring() -> None:
    model = ModelVersion.load(LENET_DIR, LoadOptions(BackendOptions("cpu", 2), 1, 1_000_000))
    try:
        assert model.describe()["cpu_threads"] == 2 and not model.thread_policy.batch_one_ms
    finally:
        model.close()


def test_model_version_load_gives_a_model_whose_threads_pay_one_process_per_core(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # As measured for MobileNetV2: all cores run a lone image faster than one (LeNet is too small to).
    monkeypatch.setattr(tuning, "median_run_ms",
                        lambda runs, *args, **kwargs: {key: 4.0 if key == 2 else 6.0 for key in runs})
    warmed: list[tuple[bool, int]] = []
    run_each = ProcessPool.run_each
    monkeypatch.setattr(ProcessPool, "run_each", lambda pool, batch, solo=False, start=0: (
        warmed.append((solo, start)) or run_each(pool, batch, solo, start)))
    options = LoadOptions(BackendOptions("cpu", 1, solo_threads=2), 1, 1_000_000, isolation="process",
                          measure_threads=True)
    model = ModelVersion.load(LENET_DIR, options)
    try:
        assert model.thread_policy.solo_threads == 2 and model.pool.size == 2
        # Both copies of the first process are warmed at load, then both of the one added for the second core.
        assert warmed == [(False, 0), (True, 0), (False, 1), (True, 1)]
        assert model.runs_solo(alone=True) and not model.runs_solo(alone=False)
        digit = encode(draw_digit_one(), "PNG")
        for alone in (True, False):
            outcomes = uvloop.run(model.classify_async([digit, digit], alone))
            assert [int(o.probabilities.argmax()) for o in outcomes] == [1, 1]
    finally:
        model.close()
