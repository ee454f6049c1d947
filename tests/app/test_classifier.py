"""How a classifier tunes itself at warm-up: the math threads per predictor (the batch size is
covered beside the batcher)."""

from __future__ import annotations

import pytest
import uvloop

from app.inference import classifier as classifier_module
from app.inference.classifier import Classifier, LoadOptions, choose_threads, median_run_ms
from app.inference.predictor import RuntimeOptions
from app.inference.predictor_process import ProcessPool
from tests.conftest import MODELS_DIR, draw_digit_one, encode

LENET_DIR = MODELS_DIR / "mnist-lenet" / "1"


@pytest.mark.parametrize(("batch_one_ms", "expected"), [
    ({1: 0.13, 2: 0.22}, 1),  # LeNet on this machine: a second thread only slows one image down
    ({1: 6.4, 2: 4.7}, 2),  # MobileNetV2: 1.37x faster on two
    ({1: 1.0, 2: 1.0}, 1),  # no faster: not worth a core
    ({1: 4.0, 4: 3.0}, 4),
])
def test_choose_threads_keeps_threads_only_where_they_speed_up_one_image(batch_one_ms: dict[int, float],
                                                                          expected: int) -> None:
    assert choose_threads(batch_one_ms) == expected


def test_median_run_ms_times_the_candidates_in_turns_after_one_untimed_call_each() -> None:
    calls: list[str] = []
    medians = median_run_ms({"big": lambda: calls.append("big"), "small": lambda: calls.append("small")},
                            min_runs=3, budget_seconds=0.0)
    # Taking turns, a busy spell on the machine slows every candidate alike, not just one of them.
    assert calls == ["big", "small"] * 4
    assert set(medians) == {"big", "small"} and all(ms >= 0 for ms in medians.values())


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_classifier_load_measures_threads_and_serves_from_the_pool_it_kept(isolation: str) -> None:
    options = LoadOptions(RuntimeOptions("cpu", 1, solo_threads=2), 1, 1_000_000, isolation=isolation,
                          measure_threads=True)
    classifier = Classifier.load(LENET_DIR, options)
    try:
        policy = classifier.thread_policy
        assert set(policy.batch_one_ms) == {1, 2} and all(ms > 0 for ms in policy.batch_one_ms.values())
        solo = choose_threads(policy.batch_one_ms) == 2
        assert policy.solo_threads == (2 if solo else 0) and "measured" in policy.reason
        # Where the solo copy pays, one predictor process per core runs batches side by side.
        assert classifier.pool.size == (2 if solo and isolation == "process" else 1)
        info = classifier.runtime_info()
        assert info["cpu_threads"] == 1 and info["batch_one_ms_by_threads"].keys() == {"1", "2"}
        assert info["solo_threads"] == (2 if solo else None) and info["predictors"] == classifier.pool.size
        measured = classifier.batch_policy.measured_images_per_second  # on the kept pool
        assert list(measured) == sorted(measured) and all(rate > 0 for rate in measured.values())
        assert classifier.predict(classifier.preprocess(encode(draw_digit_one(), "PNG"))[None]).shape == (1, 10)
    finally:
        classifier.close()


def test_classifier_load_keeps_fixed_threads_without_measuring() -> None:
    classifier = Classifier.load(LENET_DIR, LoadOptions(RuntimeOptions("cpu", 2), 1, 1_000_000))
    try:
        assert classifier.runtime_info()["cpu_threads"] == 2 and not classifier.thread_policy.batch_one_ms
    finally:
        classifier.close()


def test_classifier_load_gives_a_model_whose_threads_pay_one_process_per_core(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # As measured for MobileNetV2: all cores run a lone image faster than one (LeNet is too small to).
    monkeypatch.setattr(classifier_module, "median_run_ms",
                        lambda runs, *args, **kwargs: {key: 4.0 if key == 2 else 6.0 for key in runs})
    warmed: list[tuple[bool, int]] = []
    run_each = ProcessPool.run_each
    monkeypatch.setattr(ProcessPool, "run_each", lambda pool, batch, solo=False, start=0: (
        warmed.append((solo, start)) or run_each(pool, batch, solo, start)))
    options = LoadOptions(RuntimeOptions("cpu", 1, solo_threads=2), 1, 1_000_000, isolation="process",
                          measure_threads=True)
    classifier = Classifier.load(LENET_DIR, options)
    try:
        assert classifier.thread_policy.solo_threads == 2 and classifier.pool.size == 2
        # Both copies of the first process are warmed at load, then both of the one added for the second core.
        assert warmed == [(False, 0), (True, 0), (False, 1), (True, 1)]
        assert classifier.runs_solo(alone=True) and not classifier.runs_solo(alone=False)
        digit = encode(draw_digit_one(), "PNG")
        for alone in (True, False):
            outcomes = uvloop.run(classifier.classify_async([digit, digit], alone))
            assert [int(o.probabilities.argmax()) for o in outcomes] == [1, 1]
    finally:
        classifier.close()
