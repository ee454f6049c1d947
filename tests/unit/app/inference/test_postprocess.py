from __future__ import annotations

import numpy as np
import pytest

from app.inference.postprocess import softmax, to_probabilities, top_k

LABELS = ["cat", "dog", "owl"]


def test_softmax_rows_sum_to_one_even_for_huge_logits() -> None:
    probs = softmax(np.array([[1000.0, 1001.0, 999.0], [0.0, 0.0, 0.0]]))
    assert np.allclose(probs.sum(axis=1), 1.0) and np.isfinite(probs).all()
    assert probs[1] == pytest.approx([1 / 3] * 3)


def test_to_probabilities_passes_softmax_outputs_through() -> None:
    row = np.array([[0.2, 0.3, 0.5]])
    assert np.allclose(to_probabilities(row, "softmax"), row)


def test_top_k_is_sorted_with_labels() -> None:
    predictions = top_k(np.array([0.1, 0.7, 0.2]), LABELS, 3)
    assert [p.label for p in predictions] == ["dog", "owl", "cat"]
    assert [p.class_id for p in predictions] == [1, 2, 0]
    assert predictions[0].score == pytest.approx(0.7)


def test_top_k_ties_keep_lower_class_first() -> None:
    assert [p.class_id for p in top_k(np.array([0.4, 0.2, 0.4]), LABELS, 2)] == [0, 2]


@pytest.mark.parametrize("k", [0, -1, 4])
def test_top_k_rejects_k_out_of_range(k: int) -> None:
    with pytest.raises(ValueError):
        top_k(np.array([0.1, 0.7, 0.2]), LABELS, k)
