"""`python -m training convert`: add the model in ONNX (what ONNX Runtime and OpenVINO read) to an
exported version directory, checked against Paddle Inference on the same inputs, and record it in
the manifest (`runtimes.onnx`, with its SHA-256 in `files`); then an int8 copy of it, quantised after
training and calibrated on training images (`runtimes.onnx-int8`), kept only where it classifies
the model's stored test images as Paddle Inference does (the accuracy gate of
app/inference/samples.py). Export does the same for every new model when paddle2onnx is installed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from app.inference.backends import BackendOptions, BackendSpec, load_backend
from app.inference.manifest import Manifest, RuntimeArtifact, load_manifest, save_manifest, sha256_file
from app.inference.samples import GateResult, gate_backends

log = logging.getLogger(__name__)

ONNX_FILE = "inference.onnx"
INT8_FILE = "inference.int8.onnx"
CALIBRATION_IMAGES = 256
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
    return record_runtime(directory, manifest, "onnx", RuntimeArtifact(file=ONNX_FILE, converter=converter,
                                                                       parity=parity))


def record_runtime(directory: Path, manifest: Manifest, kind: str, artifact: RuntimeArtifact) -> Manifest:
    """List a runtime's file (already in `directory`) with its SHA-256 in the manifest, and save it."""
    updated = manifest.model_copy(update={
        "files": {**manifest.files, artifact.file: sha256_file(directory / artifact.file)},
        "runtimes": {**manifest.runtimes, kind: artifact},
    })
    save_manifest(directory, Manifest.model_validate(updated.model_dump()))
    log.info("%s: %s, %s", directory, artifact.converter, artifact.parity)
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


class CalibrationBatches:
    """Training images, as model inputs, one at a time: what the quantiser reads to find each
    activation's range (onnxruntime.quantization.CalibrationDataReader's protocol). One image per
    batch, as its histogram calibrators need every batch the same shape."""

    def __init__(self, input_name: str, inputs: np.ndarray) -> None:
        self._batches = iter([{input_name: np.ascontiguousarray(inputs[i : i + 1], dtype=np.float32)}
                              for i in range(len(inputs))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def write_int8(onnx_file: Path, calibration: np.ndarray, target: Path) -> str:
    """Quantise the ONNX model to int8 (QDQ: int8 weights per output channel, uint8 activations whose
    ranges come from `calibration`); returns what quantised it."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    input_name = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    prepared = target.with_suffix(".prepared.onnx")
    try:
        # Shape inference and graph folding first, as the quantiser's documentation asks.
        quant_pre_process(str(onnx_file), str(prepared))
        quantize_static(str(prepared), str(target), CalibrationBatches(input_name, calibration),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, calibrate_method=CalibrationMethod.MinMax)
    finally:
        prepared.unlink(missing_ok=True)
    return (f"onnxruntime {onnxruntime.__version__} static quantization: QDQ, int8 weights per channel, uint8 "
            f"activations, MinMax ranges from {len(calibration)} training images")


def measure_int8_parity(directory: Path, manifest: Manifest, target: Path) -> GateResult:
    """The accuracy gate on the int8 file in ONNX Runtime, on the model's stored test images."""
    assert manifest.samples is not None
    options = BackendOptions("cpu", 1)
    reference = load_backend(BackendSpec("paddle", directory / manifest.model_file, directory / manifest.params_file,
                                         options))
    int8 = load_backend(BackendSpec("onnxruntime-int8", directory / manifest.model_file,
                                    directory / manifest.params_file, options, {"onnx-int8": target}))
    return gate_backends({"int8": int8}, reference, directory / manifest.samples.file)["int8"]


def add_int8(directory: Path, calibration: np.ndarray, manifest: Manifest | None = None) -> Manifest:
    """Write directory/inference.int8.onnx from the ONNX file, calibrated on `calibration` (training
    images as model inputs), and save the manifest that lists it. It needs the ONNX file and the
    stored test images; one that does not pass the accuracy gate on them is removed and raised as a
    ValueError."""
    manifest = manifest or load_manifest(directory)
    if "onnx" not in manifest.runtimes:
        raise ValueError("the model has no ONNX file to quantise: python -m training convert adds one")
    if manifest.samples is None:
        raise ValueError("the model stores no test images to check an int8 copy on: python -m training samples")
    target = directory / INT8_FILE
    try:
        converter = write_int8(directory / manifest.runtimes["onnx"].file, calibration, target)
        gate = measure_int8_parity(directory, manifest, target)
        parity = {"inputs": float(gate.images), "top1_agreement": round(gate.agreement, 4),
                  "accuracy": round(gate.accuracy, 4), "paddle_fp32_accuracy": round(gate.reference_accuracy, 4)}
        if not gate.passed:
            raise ValueError(f"the int8 copy does not classify the stored test images as Paddle Inference does: "
                             f"{json.dumps(parity)}")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return record_runtime(directory, manifest, "onnx-int8", RuntimeArtifact(file=INT8_FILE, converter=converter,
                                                                            parity=parity))


def try_add_int8(directory: Path, calibration: np.ndarray, manifest: Manifest) -> Manifest:
    """add_int8, or where it cannot be made or fails the gate, the manifest as it was, the reason logged."""
    try:
        return add_int8(directory, calibration, manifest)
    except ImportError as exc:
        log.info("no int8 file written (%s is not installed)", exc.name)
    except Exception as exc:  # noqa: BLE001 - a failed quantisation is reported, never fatal to the export
        log.warning("no int8 file written: %s: %s", type(exc).__name__, exc)
    return manifest
