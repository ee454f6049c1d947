"""Train briefly on real MNIST, export, and serve the export through the app: same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import paddle
import pytest
from scipy import ndimage

from app.inference.backends import BackendOptions, run_in_batches
from app.inference.manifest import load_manifest, verify_files
from app.inference.model_version import LoadOptions, ModelVersion
from app.inference.postprocess import softmax
from tests.conftest import MNIST_CACHE, ROOT, png_bytes
from tests.integration.training.test_commands import export_small_ensemble
from training.config import load_config
from training.data.dataset import load_dataset
from training.data.mnist import INPUT_SHAPE, prepare_inputs
from training.engine import predict_logits
from training.export import create_predictor, save_inference_model
from training.models import MODEL_NAMES, create_model
from training.models.registry import Ensemble, FlipAveraged, RotationAveraged, rotation_matrix


def test_export_writes_manifest_with_hashes_metrics_and_provenance(exported: Path) -> None:
    manifest = load_manifest(exported)
    verify_files(exported, manifest)
    assert manifest.name == "smoke-lenet" and manifest.version == 3 and manifest.architecture == "lenet"
    # The int8 copy is kept only where it passes the accuracy gate (the conversion tests check both ways).
    int8 = {"inference.int8.onnx"} if "onnx-int8" in manifest.runtimes else set()
    assert set(manifest.files) == {"inference.json", "inference.pdiparams", "inference.onnx", "samples.npz", *int8}
    assert manifest.samples is not None and manifest.samples.split == "test" and manifest.samples.images == 500
    assert abs(manifest.samples.accuracy - manifest.metrics["test_accuracy"]) < 0.02  # the same images, stored
    onnx = manifest.runtimes["onnx"]  # the training extras convert every export
    assert onnx.file == "inference.onnx" and onnx.converter.startswith("paddle2onnx")
    assert onnx.parity["top1_agreement"] == 1.0 and onnx.parity["max_abs_diff"] < 1e-3
    assert exported.stat().st_mode & 0o005 == 0o005, "other users (the service's) can read the version"
    assert 0.5 < manifest.metrics["test_accuracy"] <= 1.0
    assert manifest.evaluation["images"] == 500
    assert manifest.dataset.sha256 == "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
    assert manifest.training["config"]["epochs"] == 1
    run_dir = Path(manifest.training["run_dir"])
    assert (run_dir / "config.yaml").is_file() and json.loads((run_dir / "metrics.json").read_text())


def test_export_round_trip_matches_dynamic_model(exported: Path, mnist) -> None:  # noqa: ANN001
    manifest = load_manifest(exported)
    network = create_model("lenet", INPUT_SHAPE, 10)
    network.set_state_dict(paddle.load(str(Path(manifest.training["run_dir"]) / "best.pdparams")))
    inputs = prepare_inputs(mnist.test.images[:64], MNIST_CACHE, "roundtrip")
    dynamic = predict_logits(network, inputs)
    model = ModelVersion.load(exported, LoadOptions(BackendOptions("cpu", 2), predictors=1, max_image_pixels=1_000_000))
    served_probs = np.stack([outcome.probabilities for outcome in model.classify(list(inputs))])
    logits = model.pool.run(inputs)
    model.close()
    assert np.abs(logits - dynamic).max() <= 1e-4
    assert np.abs(served_probs - softmax(dynamic)).max() <= 1e-4


def test_export_preprocessing_is_shared_with_training(exported: Path, mnist) -> None:  # noqa: ANN001
    """The service's bytes path and training's array path give the same model input."""
    model = ModelVersion.load(exported, LoadOptions(BackendOptions("cpu", 1), 1, 1_000_000))
    image = mnist.test.images[7]
    from_bytes = model.handler.preprocess([png_bytes(image)]).arrays[0]
    model.close()
    from_array = prepare_inputs(mnist.test.images[7:8], MNIST_CACHE, "shared")[0]
    assert np.abs(from_bytes - from_array).max() < 0.05  # only 8-bit PNG rounding differs


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_registry_builds_every_network(name: str) -> None:
    network = create_model(name, INPUT_SHAPE, 10)
    network.eval()
    assert network(paddle.zeros([2, *INPUT_SHAPE])).shape == [2, 10]


def test_flip_averaged_network_answers_the_mean_of_an_image_and_its_mirror() -> None:
    paddle.seed(0)
    network = create_model("cnn_bn", (3, 32, 32), 2)
    network.eval()
    image = paddle.rand([2, 3, 32, 32])
    averaged = FlipAveraged(network)(image)
    expected = (network(image) + network(paddle.flip(image, axis=[3]))) / 2
    assert np.allclose(averaged.numpy(), expected.numpy(), atol=1e-6)
    mirrored = FlipAveraged(network)(paddle.flip(image, axis=[3]))
    assert np.allclose(averaged.numpy(), mirrored.numpy(), atol=1e-5)  # a mirror image gets the same answer


def test_rotation_matrix_turns_an_image_as_scipy_does() -> None:
    image = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    for degrees in (-20.0, 10.0, 33.0):
        turned = (image.reshape(1, -1) @ rotation_matrix(28, 28, degrees)).reshape(28, 28)
        expected = ndimage.rotate(image, degrees, reshape=False, order=1, mode="grid-constant", cval=0.0)
        assert np.abs(turned - expected).max() < 1e-4


def test_rotation_averaged_network_answers_the_mean_probability_over_its_views(tmp_path: Path) -> None:
    """In the network and in the exported graph alike: the log of the mean of the probabilities
    for the image and the image turned by each angle."""
    paddle.seed(0)
    network = create_model("lenet", INPUT_SHAPE, 10)
    network.eval()
    images = np.random.default_rng(1).random((3, *INPUT_SHAPE)).astype(np.float32)
    views = [images] + [np.stack([ndimage.rotate(image[0], degrees, reshape=False, order=1, mode="grid-constant")[None]
                                  for image in images]) for degrees in (-20.0, 10.0)]
    expected = np.log(np.mean([softmax(network(paddle.to_tensor(view)).numpy()) for view in views], axis=0))
    averaged = RotationAveraged(network, INPUT_SHAPE, [-20.0, 10.0])
    assert np.abs(averaged(paddle.to_tensor(images)).numpy() - expected).max() < 1e-4
    save_inference_model(averaged, INPUT_SHAPE, tmp_path)
    assert np.abs(run_in_batches(create_predictor(tmp_path), images, 2) - expected).max() < 1e-4
    for wrong in ([], [0.0], [60.0]):
        with pytest.raises(ValueError, match="rotation_average"):
            RotationAveraged(network, INPUT_SHAPE, wrong)
    with pytest.raises(ValueError, match="at most 4096 pixels"):  # a photo model's input: 340 MB a turn
        RotationAveraged(network, (3, 96, 96), [10.0])


def test_export_of_an_ensemble_answers_the_mean_of_its_members(tmp_path: Path) -> None:
    """`ensemble: 2` trains two networks from consecutive seeds, each in its own run directory, and
    exports one network whose logits are the mean of theirs (and, with flip_average, of the mirror's)."""
    exported, overrides = export_small_ensemble(tmp_path)
    manifest = load_manifest(exported)
    members = manifest.training["members"]
    assert [m["seed"] for m in members] == [42, 43] and manifest.training["run_dir"] == members[0]["run_dir"]
    assert len({m["run_dir"] for m in members}) == 2 and all(Path(m["run_dir"]).is_dir() for m in members)
    networks = []
    for member in members:
        network = create_model("cnn4", (3, 32, 32), 2)
        network.set_state_dict(paddle.load(str(Path(member["run_dir"]) / "last.pdckpt" / "model.pdparams")))
        networks.append(network)
    data = load_dataset(load_config(ROOT / "training/configs/hymenoptera_cnn.yaml", overrides).data)
    expected = predict_logits(FlipAveraged(Ensemble(networks)), data.test.inputs)
    alone = predict_logits(FlipAveraged(networks[0]), data.test.inputs)
    model = ModelVersion.load(exported, LoadOptions(BackendOptions("cpu", 1), predictors=1, max_image_pixels=1_000_000))
    served = model.pool.run(data.test.inputs)
    model.close()
    assert np.abs(served - expected).max() <= 1e-4 and np.abs(served - alone).max() > 1e-3
    validation = predict_logits(Ensemble(networks), data.val.inputs)
    assert manifest.training["val_accuracy"] == pytest.approx(np.mean(validation.argmax(1) == data.val.labels))
