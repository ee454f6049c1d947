"""The warm-up's choices: math threads, batch size, and how candidates are timed."""

from __future__ import annotations

import pytest

from app.inference.tuning import BatchPolicy, choose_fastest_backend, choose_threads, median_run_ms


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


def test_batch_policy_runs_inline_only_where_a_full_batch_is_faster_than_a_thread_hand_off() -> None:
    assert BatchPolicy(32, "measured", {32: 64_000.0}).runs_inline()  # 0.5 ms a batch
    assert not BatchPolicy(32, "measured", {32: 3_200.0}).runs_inline()  # 10 ms a batch
    assert not BatchPolicy(8, "set by APP_MAX_BATCH_SIZE").runs_inline()  # not measured: never


@pytest.mark.parametrize(("measured", "expected"), [
    ({"paddle": {1: 100.0, 8: 300.0}, "onnxruntime": {1: 150.0, 8: 600.0}, "openvino": {1: 140.0, 8: 590.0}},
     "onnxruntime"),
    # Within 5%: the preferred order decides, not the noise.
    ({"paddle": {1: 100.0, 8: 300.0}, "onnxruntime": {1: 150.0, 8: 600.0}, "openvino": {1: 140.0, 8: 620.0}},
     "onnxruntime"),
    ({"paddle": {1: 100.0, 8: 300.0}, "onnxruntime": {1: 150.0, 8: 600.0}, "openvino": {1: 140.0, 8: 700.0}},
     "openvino"),
    # Faster under load but slower for a lone image than Paddle Inference: not taken.
    ({"paddle": {1: 100.0, 8: 300.0}, "onnxruntime": {1: 90.0, 8: 600.0}}, "paddle"),
    ({"paddle": {1: 100.0, 8: 300.0}}, "paddle"),
])
def test_choose_fastest_backend_needs_a_clear_margin(measured: dict[str, dict[int, float]], expected: str) -> None:
    choice = choose_fastest_backend(measured)
    assert choice.kind == expected and choice.reason.startswith("auto: the most images/s at batch 8")
