"""`python -m training convert`: add the model in ONNX (what ONNX Runtime and OpenVINO read) to an
exported version directory, checked against Paddle Inference on the same inputs, and record it in
the manifest (`runtimes.onnx`, with its SHA-256 in `files`). Export does the same for every new
model when paddle2onnx is installed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from app.inference.backends import BackendOptions, BackendSpec, load_backend
from app.inference.manifest import Manifest, RuntimeArtifact, load_manifest, save_manifest, sha256_file

log = logging.getLogger(__name__)

ONNX_FILE = "inference.onnx"
OPSET = 17
PARITY_INPUTS = 64
# Outputs are logits or probabilities; fp32 conversions differ by rounding (1e-6 to 1e-5).
MAX_ABS_DIFF = 1e-3


def write_onnx(model_file: Path, params_file: Path, target: Path) -> str:
    """Convert the Paddle files to `target`; returns what converted them."""
    # paddle2onnx turns on Polygraphy's automatic pip installs for its constant folding; a
    # conversion must never install anything (the folding's packages are dependencies of the extra).
    import polygraphy.config

    polygraphy.config.AUTOINSTALL_DEPS = False
    import paddle2onnx

    try:
        paddle2onnx.export(str(model_file), str(params_file), str(target), opset_version=OPSET, verbose=False)
    except SystemExit as exc:  # it exits the process on a program it cannot read
        raise RuntimeError(f"paddle2onnx could not convert {model_file.name} (it exited with {exc.code})") from exc
    return f"paddle2onnx {paddle2onnx.__version__}, opset {OPSET}"


def measure_parity(spec: BackendSpec, input_shape: list[int]) -> dict[str, float]:
    """ONNX Runtime against Paddle Inference on the same random inputs in [0, 1)."""
    batch = np.random.default_rng(0).random((PARITY_INPUTS, *input_shape[1:]), dtype=np.float32)
    expected = load_backend(spec).run(batch)
    actual = load_backend(BackendSpec("onnxruntime", spec.model_file, spec.params_file, spec.options,
                                      spec.artifacts)).run(batch)
    return {"inputs": float(PARITY_INPUTS), "max_abs_diff": float(np.abs(actual - expected).max()),
            "top1_agreement": float((actual.argmax(1) == expected.argmax(1)).mean())}


def add_onnx(directory: Path, manifest: Manifest | None = None) -> Manifest:
    """Write directory/inference.onnx, check it, and save the manifest that lists it. A conversion
    that does not agree with Paddle Inference is removed and raised as a ValueError."""
    manifest = manifest or load_manifest(directory)
    target = directory / ONNX_FILE
    try:
        converter = write_onnx(directory / manifest.model_file, directory / manifest.params_file, target)
        spec = BackendSpec("paddle", directory / manifest.model_file, directory / manifest.params_file,
                           BackendOptions("cpu", 1), {"onnx": target})
        parity = measure_parity(spec, manifest.input.shape)
        if parity["top1_agreement"] < 1.0 or parity["max_abs_diff"] > MAX_ABS_DIFF:
            raise ValueError(f"the ONNX conversion does not agree with Paddle Inference: {json.dumps(parity)}")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    updated = manifest.model_copy(update={
        "files": {**manifest.files, ONNX_FILE: sha256_file(target)},
        "runtimes": {**manifest.runtimes, "onnx": RuntimeArtifact(file=ONNX_FILE, converter=converter, parity=parity)},
    })
    save_manifest(directory, Manifest.model_validate(updated.model_dump()))
    log.info("%s: %s, %s", directory, converter, parity)
    return updated


def try_add_onnx(directory: Path, manifest: Manifest) -> Manifest:
    """add_onnx where paddle2onnx and ONNX Runtime are installed; otherwise, or when the conversion
    fails, the manifest as it was (the model serves on Paddle Inference), with the reason logged."""
    try:
        return add_onnx(directory, manifest)
    except ImportError as exc:
        log.info("no ONNX file written (%s): pip install '.[train]' for paddle2onnx", exc.name)
    except Exception as exc:  # noqa: BLE001 - a failed conversion is reported, never fatal to the export
        log.warning("no ONNX file written: the conversion failed: %s: %s", type(exc).__name__, exc)
    return manifest
