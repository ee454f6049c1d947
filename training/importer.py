"""`python -m training import`: a PaddleClas or PaddleX classification export made into a versioned
model directory of this project, with a full manifest (its provenance says where it came from) and,
where paddle2onnx is installed, the ONNX file that the other runtimes read.

The service also serves such an export dropped into models/<name>/<version>/ as it is (see
app/inference/paddleclas.py); importing writes down, once, what it would otherwise work out at every
start, and lets the hashes be checked from then on."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.inference.manifest import Manifest, save_manifest
from app.inference.paddleclas import (
    FORMATS,
    ExportError,
    find_deploy_config,
    find_model_files,
    manifest_for_export,
)
from app.inference.registry import scan_repository
from training.convert import try_add_onnx


def next_version(models_dir: Path, name: str) -> int:
    return max(scan_repository(models_dir).get(name, {}), default=0) + 1


def import_export(source: Path, export_format: str, name: str, models_dir: Path,
                  labels_file: Path | None = None, version: int | None = None) -> tuple[Path, Manifest]:
    """Copy the export's files into models_dir/name/<version>/ and write its manifest; the version
    directory appears only once it is complete."""
    if export_format not in FORMATS:
        raise ValueError(f"--from must be one of {sorted(FORMATS)}")
    config = find_deploy_config(source)
    if config is None:
        raise ExportError(f"{source} has no deploy config (inference.yml or inference_cls.yaml)")
    program, weights = find_model_files(source)
    version = version or next_version(models_dir, name)
    target = models_dir / name / str(version)
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    partial = models_dir / name / f".{version}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        for path in (program, weights, config, *([labels_file] if labels_file else [])):
            shutil.copy2(path, partial / path.name)
        copy_label_map(source, config, partial)
        manifest = manifest_for_export(partial, name, version, source=FORMATS[export_format])
        manifest = manifest.model_copy(update={"training": {**manifest.training, "imported_from": source.name}})
        save_manifest(partial, manifest)
        manifest = try_add_onnx(partial, manifest)
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target, manifest


def copy_label_map(source: Path, config: Path, target: Path) -> None:
    """A class_id_map_file that lies beside the export travels with it (one given with --labels is
    already there)."""
    for path in source.iterdir():
        if path.is_file() and path.suffix == ".txt" and not (target / path.name).exists() \
                and path.name in config.read_text(encoding="utf-8"):
            shutil.copy2(path, target / path.name)
