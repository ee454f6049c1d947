from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from training.__main__ import BUNDLED_CONFIGS, CONFIG_DIR, parse_args
from training.config import load_config, save_config


def test_config_bundled_yaml_files_load() -> None:
    for name, file in BUNDLED_CONFIGS.items():  # each bundled model's config exports under its name
        assert load_config(CONFIG_DIR / file).export.name == name
    assert set(BUNDLED_CONFIGS) == {"mnist-softmax", "mnist-mlp", "mnist-lenet", "hymenoptera"}
    for path in CONFIG_DIR.glob("*.yaml"):  # every shipped config, bundled or example, is valid
        load_config(path)


def test_config_cli_overrides_are_typed() -> None:
    config = load_config(CONFIG_DIR / "mnist_lenet.yaml", ["epochs=2", "optimizer.lr=0.01", "data.limit_train=100"])
    assert config.epochs == 2 and config.optimizer.lr == 0.01 and config.data.limit_train == 100
    assert config.model == "lenet"


@pytest.mark.parametrize("override", ["optimiser.lr=0.1", "epochs=many", "nokey"])
def test_config_rejects_typos_and_bad_values(override: str) -> None:
    with pytest.raises(ValueError):
        load_config(CONFIG_DIR / "mnist_lenet.yaml", [override])


def test_config_frozen_copy_round_trips(tmp_path: Path) -> None:
    config = load_config(CONFIG_DIR / "mnist_mlp.yaml", ["seed=7"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["seed"] == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3  # type: ignore[misc]


def test_config_bundle_takes_some_bundled_models_by_name() -> None:
    assert parse_args(["bundle", "mnist-lenet", "mnist-mlp"]).names == ["mnist-lenet", "mnist-mlp"]
    assert parse_args(["bundle"]).names == []  # all of them
    with pytest.raises(SystemExit):
        parse_args(["bundle", "mnist-resnet"])
