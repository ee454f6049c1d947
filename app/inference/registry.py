"""The model repository on disk, models/<name>/<version>/, loaded into model versions with a status each.

`reload()` rescans the repository: new and changed versions are loaded and verified off to the
side and swapped in only once they work; removed versions are dropped (requests already holding
that version finish on it). A version that fails keeps serving the copy it had, if any.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from app.inference.manifest import MANIFEST_FILE, NAME_PATTERN
from app.inference.model_version import LoadOptions, ModelVersion
from app.inference.paddleclas import fingerprint_export, is_export

log = logging.getLogger(__name__)

State = Literal["loading", "ready", "failed"]
MODEL_CONFIG_FILE = "model.json"  # optional, in models/<name>/: {"default_version": 2}


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
    model: ModelVersion | None = None
    fingerprint: str = ""  # SHA-256 of the manifest the model was loaded from (fingerprint_version)


@dataclass
class ModelEntry:
    name: str
    versions: dict[int, VersionStatus] = field(default_factory=dict)
    pinned_version: int | None = None  # from models/<name>/model.json

    @property
    def default_version(self) -> int | None:
        """The pinned version if the model directory names one, else the highest version that is
        ready (a broken new version never takes the model down), else the highest number."""
        if self.pinned_version is not None:
            return self.pinned_version
        ready = [v for v, status in self.versions.items() if status.model is not None]
        return max(ready or self.versions) if self.versions else None

    @property
    def state(self) -> State:
        number = self.default_version
        default = self.versions.get(number) if number is not None else None
        if default is None:
            return "failed"
        return "ready" if default.model is not None else default.state


@dataclass(frozen=True)
class ReloadReport:
    loaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def scan_repository(model_dir: Path) -> dict[str, dict[int, Path]]:
    """Directory names that are valid model names, holding integer-named version directories."""
    found: dict[str, dict[int, Path]] = {}
    if not model_dir.is_dir():
        return found
    for model_path in sorted(model_dir.iterdir()):
        if not model_path.is_dir() or not NAME_PATTERN.match(model_path.name):
            continue
        versions = scan_versions(model_path)
        if versions:
            found[model_path.name] = versions
    return found


def scan_versions(model_path: Path) -> dict[int, Path]:
    """A model's version directories by number: directories named by a positive integer."""
    return {int(v.name): v for v in model_path.iterdir()
            if v.is_dir() and v.name.isascii() and v.name.isdigit() and int(v.name) > 0}


def read_pinned_version(model_path: Path) -> int | None:
    path = model_path / MODEL_CONFIG_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("default_version")
    except (OSError, ValueError, AttributeError) as exc:
        log.error("ignoring %s: %s", path, exc)
        return None
    return value if isinstance(value, int) and value > 0 else None


def fingerprint_version(path: Path) -> str:
    """What tells a reload that a version changed: its manifest, or a PaddleClas/PaddleX export's files."""
    try:
        if is_export(path):
            return fingerprint_export(path)
        return hashlib.sha256((path / MANIFEST_FILE).read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


# An absolute path (a server's directories, Paddle's C++ sources), kept to its last part.
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/[^/\s:'\"\]\[)(,]+)+/([^/\s:'\"\]\[)(,]+)")


def public_reason(exc: BaseException, limit: int = 300) -> str:
    """Why a version failed, as anyone may see it (/v1/models, /readyz): the error's kind and the
    first line of its message, with directories taken off paths. The whole of it is in the log."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {_PATH.sub(lambda m: m.group(1), first_line)}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ModelRegistry:
    def __init__(self, model_dir: Path, options: LoadOptions,
                 on_change: Callable[[str, int, VersionStatus], None] | None = None) -> None:
        self.model_dir = model_dir
        self.options = options
        self._models: dict[str, ModelEntry] = {}
        self._lock = threading.Lock()  # guards _models; loading happens outside it
        self._reload_lock = threading.Lock()  # one reload at a time
        self._on_change = on_change
        self._retired: list[ModelVersion] = []  # replaced or removed, still to be closed
        self.loaded = threading.Event()

    def load_all(self) -> None:
        """The first load; a version that fails is recorded with its reason, never raised."""
        try:
            self.reload()
        finally:
            self.loaded.set()

    def reload(self) -> ReloadReport:
        """Bring the loaded models in line with the directory. Safe to call while serving."""
        with self._reload_lock:
            report = ReloadReport()
            found = scan_repository(self.model_dir)
            for name, versions in found.items():
                for number, path in sorted(versions.items()):
                    self._sync_version(name, number, path, report)
            self._drop_removed(found, report)
            with self._lock:
                for name, entry in self._models.items():
                    entry.pinned_version = read_pinned_version(self.model_dir / name)
            return report

    def _sync_version(self, name: str, number: int, path: Path, report: ReloadReport) -> None:
        key = f"{name}/{number}"
        fingerprint = fingerprint_version(path)
        with self._lock:
            entry = self._models.setdefault(name, ModelEntry(name))
            current = entry.versions.get(number)
            if current is None:
                current = entry.versions[number] = VersionStatus(number, path)
        if current.fingerprint == fingerprint and current.state == "ready":
            report.unchanged.append(key)
            return
        if current.fingerprint == fingerprint and current.state == "failed" and current.model is None:
            report.failed[key] = current.error or "failed"
            return  # same broken files as last time: do not pay the load again
        model: ModelVersion | None = None
        try:
            recorded = current.model.manifest.files if current.model is not None else None
            model = ModelVersion.load(path, self.options, recorded)
            if (model.name, model.version) != (name, number):
                raise ValueError(f"manifest says {model.name}/{model.version}, directory is {key}")
        except Exception as exc:  # noqa: BLE001 - any failure to load is reported, not fatal to the service
            if model is not None:
                model.close()
            log.error("model %s failed to load: %s: %s", key, type(exc).__name__, exc)
            error = public_reason(exc)
            updated = replace(current, error=error, fingerprint=fingerprint,
                              state="ready" if current.model is not None else "failed")
            report.failed[key] = error
        else:
            log.info("model %s ready in %.2fs", key, model.load_seconds)
            updated = VersionStatus(number, path, "ready", None, model, fingerprint)
            report.loaded.append(key)
        with self._lock:
            entry.versions[number] = updated  # the swap: new requests see the new version
            if current.model is not None and current.model is not updated.model:
                self._retire(current.model)
        if self._on_change:
            self._on_change(name, number, updated)

    def _drop_removed(self, found: dict[str, dict[int, Path]], report: ReloadReport) -> None:
        with self._lock:
            for name in list(self._models):
                entry = self._models[name]
                for number in list(entry.versions):
                    if number not in found.get(name, {}):
                        removed = entry.versions.pop(number)
                        if removed.model is not None:
                            self._retire(removed.model)
                        report.removed.append(f"{name}/{number}")
                if not entry.versions:
                    del self._models[name]

    def _retire(self, model: ModelVersion) -> None:
        """From now on no new request may reach it (the service refuses a retired version)."""
        model.retired = True
        self._retired.append(model)

    def take_retired(self) -> list[ModelVersion]:
        """Versions a reload replaced or removed: the caller drains and closes them."""
        with self._lock:
            retired, self._retired = self._retired, []
        return retired

    def close(self) -> None:
        """Stop every model's predictors (at shut-down, after the batchers have drained)."""
        loaded = self.loaded_versions()
        with self._lock:
            loaded += self._retired
            self._models, self._retired = {}, []
        for model in loaded:
            model.close()

    def loaded_versions(self) -> list[ModelVersion]:
        """Every loaded version of every model."""
        with self._lock:
            return [s.model for e in self._models.values() for s in e.versions.values() if s.model]

    def models(self) -> list[ModelEntry]:
        with self._lock:
            return list(self._models.values())

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        with self._lock:
            entry = self._models.get(name)
            if entry is None:
                raise ModelNotFoundError(f"no model named {name!r}")
            number = entry.default_version if version is None else version
            status = entry.versions.get(number) if number is not None else None
        if status is None:
            raise ModelNotFoundError(f"model {name!r} has no version {number}")
        if status.model is None:
            raise ModelNotReadyError(f"model {name!r} version {number} is {status.state}"
                                     + (f": {status.error}" if status.error else ""))
        return status.model

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready when loading has finished and every model's default version can serve."""
        if not self.loaded.is_set():
            return False, ["models are still loading"]
        models = self.models()
        if not models:
            return False, ["no models found in the model directory (APP_MODEL_DIR)"]
        problems = []
        for entry in models:
            if entry.state != "ready":
                number = entry.default_version
                status = entry.versions.get(number) if number is not None else None
                reason = f"{status.state}: {status.error}" if status else "missing"
                problems.append(f"{entry.name}: version {entry.default_version} {reason}")
        return not problems, problems
