"""The model repository on disk, models/<name>/<version>/, loaded into classifiers with a status each."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from app.inference.classifier import Classifier, LoadOptions
from app.inference.manifest import NAME_PATTERN

log = logging.getLogger(__name__)

State = Literal["loading", "ready", "failed"]


class ModelNotFoundError(LookupError):
    pass


class ModelNotReadyError(RuntimeError):
    pass


@dataclass
class VersionStatus:
    version: int
    path: Path
    state: State = "loading"
    error: str | None = None
    classifier: Classifier | None = None


@dataclass
class ModelEntry:
    name: str
    versions: dict[int, VersionStatus] = field(default_factory=dict)

    @property
    def default_version(self) -> int | None:
        """The highest version that is ready (so a broken new version never takes the model down),
        else the highest number; it is what /v1/models/{name}/... serves."""
        ready = [v for v, status in self.versions.items() if status.state == "ready"]
        return max(ready or self.versions) if self.versions else None

    @property
    def state(self) -> State:
        default = self.versions.get(self.default_version) if self.versions else None
        return default.state if default else "failed"


def scan_repository(model_dir: Path) -> dict[str, dict[int, Path]]:
    """Directory names that are valid model names, holding integer-named version directories."""
    found: dict[str, dict[int, Path]] = {}
    if not model_dir.is_dir():
        return found
    for model_path in sorted(model_dir.iterdir()):
        if not model_path.is_dir() or not NAME_PATTERN.match(model_path.name):
            continue
        versions = {int(v.name): v for v in model_path.iterdir() if v.is_dir() and v.name.isdigit() and int(v.name) > 0}
        if versions:
            found[model_path.name] = versions
    return found


class ModelRegistry:
    def __init__(self, model_dir: Path, options: LoadOptions) -> None:
        self.model_dir = model_dir
        self.options = options
        self._models: dict[str, ModelEntry] = {}
        self._lock = threading.Lock()
        self.loaded = threading.Event()

    def load_all(self) -> None:
        """Load every version found; a version that fails is recorded with its reason, never raised."""
        try:
            found = scan_repository(self.model_dir)
            with self._lock:
                self._models = {
                    name: ModelEntry(name, {v: VersionStatus(v, path) for v, path in versions.items()})
                    for name, versions in found.items()
                }
            for entry in list(self._models.values()):
                for status in entry.versions.values():
                    self._load_version(entry.name, status)
        finally:
            self.loaded.set()

    def _load_version(self, name: str, status: VersionStatus) -> None:
        try:
            classifier = Classifier.load(status.path, self.options)
            if (classifier.name, classifier.version) != (name, status.version):
                raise ValueError(f"manifest says {classifier.name}/{classifier.version}, "
                                 f"directory is {name}/{status.version}")
        except Exception as exc:  # noqa: BLE001 - any failure to load is reported, not fatal to the service
            status.state, status.error = "failed", f"{type(exc).__name__}: {exc}"
            log.error("model %s version %s failed to load: %s", name, status.version, status.error)
            return
        status.classifier, status.state = classifier, "ready"
        log.info("model %s version %s ready in %.2fs", name, status.version, classifier.load_seconds)

    def models(self) -> list[ModelEntry]:
        with self._lock:
            return list(self._models.values())

    def get(self, name: str, version: int | None = None) -> Classifier:
        with self._lock:
            entry = self._models.get(name)
        if entry is None:
            raise ModelNotFoundError(f"no model named {name!r}")
        number = entry.default_version if version is None else version
        status = entry.versions.get(number) if number is not None else None
        if status is None:
            raise ModelNotFoundError(f"model {name!r} has no version {version}")
        if status.classifier is None:
            raise ModelNotReadyError(f"model {name!r} version {number} is {status.state}"
                                     + (f": {status.error}" if status.error else ""))
        return status.classifier

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready when loading has finished and every model's default version is ready."""
        if not self.loaded.is_set():
            return False, ["models are still loading"]
        models = self.models()
        if not models:
            return False, [f"no models found in {self.model_dir}"]
        problems = [
            f"{entry.name}: version {entry.default_version} {entry.versions[entry.default_version].state}: "
            f"{entry.versions[entry.default_version].error}"
            for entry in models if entry.state != "ready"
        ]
        return not problems, problems
