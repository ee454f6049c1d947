"""Training configuration: YAML -> typed, frozen dataclasses -> CLI overrides -> a frozen copy per run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

T = TypeVar("T")


@dataclass(frozen=True)
class DataConfig:
    name: str = "mnist"
    cache_dir: str = "~/.cache/paddle-classifier-serving/mnist"
    limit_train: int | None = None  # take the first N training images (smoke runs)
    limit_eval: int | None = None  # take the first N validation / test images


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "adam"  # sgd | momentum | adam
    lr: float = 1e-3
    weight_decay: float = 0.0  # L2 regularisation coefficient
    momentum: float = 0.9


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "constant"  # constant | cosine
    warmup_epochs: int = 0


@dataclass(frozen=True)
class AugmentConfig:
    max_shift: int = 0  # random translation in pixels, applied per image per epoch


@dataclass(frozen=True)
class ExportConfig:
    name: str = "model"
    version: int = 1
    models_dir: str = "models"


@dataclass(frozen=True)
class TrainConfig:
    model: str = "lenet"
    epochs: int = 10
    batch_size: int = 128
    seed: int = 42
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_dataclass(cls: type[T], raw: dict[str, Any], where: str = "config") -> T:
    """Nested dict -> dataclass, refusing unknown keys so a typo never silently does nothing."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping, got {type(raw).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    values = {}
    for key, value in raw.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = build_dataclass(hint, value, f"{where}.{key}")
        else:
            values[key] = _coerce(value, hint, f"{where}.{key}")
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    allowed = getattr(hint, "__args__", None) or (hint,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind in (int, str, bool) and type(value) is kind:
            return value
    raise ValueError(f"{where}: {value!r} is not a {hint}")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`a.b=value` strings (value parsed as YAML) applied onto a nested dict."""
    merged = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        node = merged
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(text)
    return merged


def load_config(path: Path | None, overrides: list[str] | None = None) -> TrainConfig:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path else {}
    return build_dataclass(TrainConfig, apply_overrides(raw or {}, overrides or []))


def save_config(config: TrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
