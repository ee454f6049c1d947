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
    label_map_name,
    manifest_for_export,
    read_config_yaml,
    section,
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
        for path in (program, weights, config, *([labels_file] if labels_file else label_map(source, config))):
            shutil.copy2(path, partial / path.name)
        manifest = manifest_for_export(partial, name, version, source=FORMATS[export_format])
        manifest = manifest.model_copy(update={"training": {**manifest.training, "imported_from": source.name}})
        save_manifest(partial, manifest)
        manifest = try_add_onnx(partial, manifest)
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target, manifest


def label_map(source: Path, config: Path) -> list[Path]:
    """The class_id_map_file the deploy config names, where it lies beside the export."""
    name = label_map_name(section(read_config_yaml(config), "PostProcess").get("Topk") or {})
    return [source / name] if name and (source / name).is_file() else []
