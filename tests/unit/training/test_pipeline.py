"""Which networks a training run trains (one, or an ensemble's members), and how a retrained
bundled model is compared with the one it replaced."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT
from training.config import load_config
from training.pipeline import compare_accuracy, member_configs, recorded_accuracy


def test_member_configs_gives_each_member_the_next_seed() -> None:
    config = load_config(None, ["ensemble=3", "seed=7", "epochs=2"])
    members = member_configs(config)
    assert [m.seed for m in members] == [7, 8, 9] and all(m.epochs == 2 for m in members)
    assert member_configs(load_config(None, [])) == [load_config(None, [])]


@pytest.mark.parametrize(("overrides", "message"), [
    (["ensemble=0"], "ensemble must be 1 or more"),
    (["ensemble=2", "resume=runs/x"], "resume continues one run"),
])
def test_member_configs_refuses_what_it_cannot_train(overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        member_configs(load_config(None, overrides))


def test_recorded_accuracy_reads_the_manifests_split_and_accuracy(tmp_path: Path) -> None:
    assert recorded_accuracy(ROOT / "models" / "mnist-lenet" / "1") == ("test", 0.9939)
    assert recorded_accuracy(tmp_path / "mnist-lenet" / "1") is None  # nothing there to replace
    shutil.copytree(ROOT / "models" / "hymenoptera" / "1", tmp_path / "h", ignore=shutil.ignore_patterns("*.pd*", "*.onnx"))
    manifest = json.loads((tmp_path / "h" / "manifest.json").read_text())
    manifest["evaluation"]["split"] = "val"
    manifest["metrics"] = {"val_accuracy": 0.75}
    (tmp_path / "h" / "manifest.json").write_text(json.dumps(manifest))
    assert recorded_accuracy(tmp_path / "h") == ("val", 0.75)
    (tmp_path / "h" / "manifest.json").write_text("{")
    assert recorded_accuracy(tmp_path / "h") is None


@pytest.mark.parametrize(("after", "before", "line"), [
    (("test", 0.9924), ("test", 0.9939), "mnist-lenet: test accuracy 99.24%, worse than the model it replaced (99.39%)"),
    (("test", 0.9941), ("test", 0.9939), "mnist-lenet: test accuracy 99.41%, better than the model it replaced (99.39%)"),
    (("test", 0.9939), ("test", 0.9939), "mnist-lenet: test accuracy 99.39%, the same as the model it replaced (99.39%)"),
    (("test", 0.9924), None, "mnist-lenet: test accuracy 99.24% (it replaced no model)"),
    (("test", 0.9924), ("val", 0.99), "mnist-lenet: test accuracy 99.24%; the model it replaced recorded 99.00% on its val split"),
    (None, ("test", 0.9939), "mnist-lenet: exported; its manifest records no accuracy"),
])
def test_compare_accuracy_says_how_the_new_version_measures_against_the_old(
        after: tuple[str, float] | None, before: tuple[str, float] | None, line: str) -> None:
    assert compare_accuracy("mnist-lenet", after, before) == line
