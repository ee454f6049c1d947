"""Preprocessing unit tests: polarity, crop, fit, centring, EXIF, exotic modes, decode errors."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from app.inference.preprocess import (
    IMAGE_STEP_FACTORIES,
    ImageDecodeError,
    ImageTooLargeError,
    PreprocessError,
    Preprocessor,
    UnsupportedImageError,
    build_steps,
    center_by_mass,
    check_specs,
    crop_to_content,
    fit_into_box,
    image_to_array,
    invert_if_light_background,
    load_image,
    normalize_contrast,
    open_image,
    sample_linear,
)
from tests.conftest import ROOT, draw_digit_one, encode, png_bytes
from training.data.mnist import create_preprocessor

LIMIT = 10_000_000


def decode(data: bytes, max_pixels: int = LIMIT) -> Image.Image:
    """Decoding as every preprocessor does it: the header and its limits, then the pixels."""
    return load_image(open_image(data, max_pixels))


def centre_of_mass(array: np.ndarray) -> tuple[float, float]:
    weight = array.reshape(array.shape[-2], array.shape[-1])
    total = weight.sum()
    ys, xs = np.indices(weight.shape)
    return float((ys * weight).sum() / total), float((xs * weight).sum() / total)


def test_invert_if_light_background_inverts_ink_on_paper() -> None:
    paper = np.full((10, 10, 1), 0.9, dtype=np.float32)
    paper[4:6, 4:6] = 0.1
    out = invert_if_light_background()(paper)
    assert out[0, 0, 0] == pytest.approx(0.1) and out[5, 5, 0] == pytest.approx(0.9)


def test_invert_if_light_background_keeps_light_on_dark() -> None:
    dark = np.zeros((10, 10, 1), dtype=np.float32)
    dark[4:6, 4:6] = 1.0
    assert np.array_equal(invert_if_light_background()(dark), dark)


def test_normalize_contrast_maps_background_to_zero_and_stroke_to_one() -> None:
    grey = np.full((20, 20, 1), 0.3, dtype=np.float32)
    grey[5:15, 9:11] = 0.7
    out = normalize_contrast()(grey)
    assert out[0, 0, 0] == 0.0 and out[10, 10, 0] == pytest.approx(1.0)


def test_normalize_contrast_rejects_blank_image() -> None:
    with pytest.raises(PreprocessError):
        normalize_contrast()(np.full((20, 20, 1), 0.5, dtype=np.float32))


def test_crop_to_content_returns_bounding_box() -> None:
    array = np.zeros((30, 30, 1), dtype=np.float32)
    array[5:12, 20:23] = 1.0
    assert crop_to_content()(array).shape == (7, 3, 1)


def test_fit_into_box_keeps_aspect_ratio() -> None:
    tall = np.ones((100, 25, 1), dtype=np.float32)
    assert fit_into_box(20)(tall).shape == (20, 5, 1)


def test_center_by_mass_puts_mass_in_the_middle() -> None:
    blob = np.zeros((20, 10, 1), dtype=np.float32)
    blob[:, :3] = 1.0  # mass on the left edge of the box
    out = center_by_mass(28)(blob)
    cy, cx = centre_of_mass(out[:, :, 0])
    assert abs(cy - 13.5) <= 0.5 and abs(cx - 13.5) <= 0.5


@pytest.mark.parametrize(("spec", "reason"), [
    (("sharpen", {}), "unknown preprocessing op"),
    (("fit_into_box", {"width": 3}), "width: Extra inputs are not permitted"),
    (("resize", {"size": [20000, 20000]}), "less than or equal to 4096"),
    (("resize", {"size": [64]}), "at least 2 items"),
    (("center_crop", {"size": -1}), "greater than or equal to 1"),
    (("fit_into_box", {"size": 20.5}), "valid integer"),
    (("limit_size", {"max_side": "640"}), "valid integer"),
    (("normalize", {"mean": [float("nan")], "std": [1.0]}), "finite number"),
    (("normalize", {"mean": [0.5], "std": [0.0]}), "greater than 0"),
    (("select_digit", {"floor": 2.0}), "less than or equal to 1"),
    (("resize_short", {"size": 64, "resample": "box"}), "'bilinear', 'bicubic' or 'lanczos'"),
    (("resize", {"size": [8, 8], "antialias": False, "resample": "bicubic"}), "antialias false samples bilinear only"),
])
def test_check_specs_refuses_unknown_ops_and_out_of_bounds_parameters(spec: tuple, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_specs([spec])


def test_check_specs_fills_in_defaults() -> None:
    [(op, params)] = check_specs([("select_digit", {})])
    assert op == "select_digit" and params == {"floor": 0.1, "reach": 0.25, "min_share": 0.03}


def test_preprocessor_photo_of_dark_ink_matches_mnist_polarity() -> None:
    out = create_preprocessor()(encode(draw_digit_one(), "PNG"))
    assert out.shape == (1, 28, 28)
    assert out[0, 0, 0] == 0.0 and out.max() > 0.9
    cy, cx = centre_of_mass(out)
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1
    rows = np.flatnonzero(out[0].max(axis=1) > 0.2)
    assert 18 <= rows[-1] - rows[0] + 1 <= 21  # the stroke was fitted into the 20-pixel box


def test_preprocessor_honours_exif_orientation() -> None:
    # A horizontal stroke stored with EXIF orientation 6 (rotate 90° clockwise to view): upright it is vertical.
    lying = draw_digit_one().rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(lying.convert("RGB"), "JPEG", exif=exif.tobytes(), quality=95)
    out = create_preprocessor()(data)[0]
    rows = np.flatnonzero(out.max(axis=1) > 0.2)
    cols = np.flatnonzero(out.max(axis=0) > 0.2)
    assert len(rows) > 2 * len(cols), "EXIF rotation was ignored: the stroke is still horizontal"


def test_preprocessor_reads_an_iphone_heic_upright() -> None:
    # An iPhone saves HEIC with the turn to view it recorded in the file, as a camera does in EXIF.
    lying = draw_digit_one().rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(lying.convert("RGB"), "HEIF", exif=exif.tobytes(), quality=90)
    assert data[4:12] == b"ftypheic"
    out = create_preprocessor()(data)[0]
    rows = np.flatnonzero(out.max(axis=1) > 0.2)
    cols = np.flatnonzero(out.max(axis=0) > 0.2)
    assert len(rows) > 2 * len(cols), "the HEIC's rotation was ignored: the stroke is still horizontal"


def test_preprocessor_reads_avif_as_it_reads_png() -> None:
    image = draw_digit_one().convert("RGB")
    from_avif = create_preprocessor()(encode(image, "AVIF", quality=95))
    from_png = create_preprocessor()(encode(image, "PNG"))
    assert np.abs(from_avif - from_png).mean() < 0.02


def test_image_to_array_lays_transparency_on_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((3, 3), (0, 0, 0, 255))
    array = image_to_array(rgba, "L")
    assert array[0, 0, 0] == pytest.approx(1.0) and array[3, 3, 0] == pytest.approx(0.0)


def test_image_to_array_scales_16_bit_greyscale() -> None:
    image = Image.fromarray(np.array([[0, 65535], [32768, 0]], dtype=np.uint16))
    data = encode(image, "PNG")
    array = image_to_array(decode(data), "L")
    assert array.max() == pytest.approx(1.0) and array[1, 0, 0] == pytest.approx(0.5, abs=0.01)


def test_image_to_array_converts_cmyk_to_rgb() -> None:
    cmyk = Image.new("CMYK", (4, 4), (0, 0, 0, 0))  # no ink: white
    array = image_to_array(decode(encode(cmyk, "JPEG")), "RGB")
    assert array.shape == (4, 4, 3) and array.min() > 0.95


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", ImageDecodeError),
        (b"\x00\x01garbage" * 50, UnsupportedImageError),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", UnsupportedImageError),
        (png_bytes(np.random.default_rng(0).random((64, 64)))[:500], ImageDecodeError),
        (encode(draw_digit_one().convert("RGB"), "HEIF")[:400], ImageDecodeError),
        (encode(draw_digit_one().convert("RGB"), "AVIF")[:40], ImageDecodeError),
    ],
    ids=["empty", "random", "pdf", "truncated-png", "truncated-heic", "avif-header-only"],
)
def test_decode_rejects_bad_bytes(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode(data)


def test_decode_image_checks_pixel_limit_before_decoding() -> None:
    data = encode(Image.new("L", (400, 300)), "PNG")
    with pytest.raises(ImageTooLargeError, match="120000"):
        decode(data, max_pixels=100_000)


def test_decode_image_checks_heic_pixel_limit_before_decoding() -> None:
    data = encode(Image.new("RGB", (400, 300)), "HEIF")
    with pytest.raises(ImageTooLargeError, match="120000"):
        decode(data, max_pixels=100_000)


def test_decode_image_takes_first_frame_of_animation() -> None:
    frames = [Image.new("L", (16, 16), value) for value in (0, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert decode(buffer.getvalue()).convert("L").getpixel((0, 0)) == 0


def test_preprocessor_rgb_pipeline_produces_model_shape() -> None:
    pre = Preprocessor.create("RGB", (3, 32, 32),
                              [("resize_short", {"size": 36}), ("center_crop", {"size": 32}),
                               ("normalize", {"mean": [0.5] * 3, "std": [0.25] * 3})], LIMIT)
    out = pre(encode(Image.new("RGB", (80, 50), (255, 128, 0)), "JPEG"))
    assert out.shape == (3, 32, 32)
    assert out[0].mean() == pytest.approx(2.0, abs=0.05)


def test_preprocessor_8bit_resize_path_matches_float_path() -> None:
    rng = np.random.default_rng(1)
    photo = Image.fromarray((rng.random((300, 400, 3)) * 255).astype(np.uint8)).filter(
        __import__("PIL.ImageFilter", fromlist=["GaussianBlur"]).GaussianBlur(3))
    specs = [("resize_short", {"size": 64}), ("center_crop", {"size": 56})]
    fast = Preprocessor.create("RGB", (3, 56, 56), specs, LIMIT)
    assert fast.image_steps and fast.affine is not None
    exact = Preprocessor("RGB", (3, 56, 56), tuple(build_steps(specs)), LIMIT)
    difference = np.abs(fast.process_image(photo) - exact.process_image(photo))
    assert difference.mean() < 0.01 and difference.max() < 0.1


@pytest.mark.parametrize("color_mode", ["RGB", "L"])
def test_preprocessor_fused_crop_and_normalize_match_step_by_step(color_mode: str) -> None:
    rng = np.random.default_rng(2)
    photo = Image.fromarray((rng.random((375, 500, 3)) * 255).astype(np.uint8)).filter(
        __import__("PIL.ImageFilter", fromlist=["GaussianBlur"]).GaussianBlur(2))
    channels = 3 if color_mode == "RGB" else 1
    norm = {"mean": [0.485, 0.456, 0.406][:channels], "std": [0.229, 0.224, 0.225][:channels]}
    fused = Preprocessor.create(color_mode, (channels, 224, 224), [("resize_short", {"size": 256}),
                                ("center_crop", {"size": 224}), ("normalize", norm)], LIMIT)
    assert len(fused.image_steps) == 1 and fused.affine is not None  # one resize, one multiply-add
    step_by_step = Preprocessor(color_mode, (channels, 224, 224), tuple(build_steps([("normalize", norm)])), LIMIT,
                                (IMAGE_STEP_FACTORIES["resize_short"](256), IMAGE_STEP_FACTORIES["center_crop"](224)))
    out, reference = fused.process_image(photo), step_by_step.process_image(photo)
    assert out.shape == reference.shape == (channels, 224, 224) and out.dtype == np.float32
    assert out.flags["C_CONTIGUOUS"]  # the layout the predictor takes, with no copy
    # Pixels differ by at most one 8-bit step (x 1/std after normalising).
    assert np.abs(out - reference).max() <= 1.01 / 255 / min(norm["std"])


def opencv_linear(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """OpenCV's INTER_LINEAR as its documentation defines it: each output pixel's centre mapped
    back to (x + 0.5) * scale - 0.5, clamped to the edges, between its four nearest source pixels."""
    source = pixels.astype(np.float64)

    def axis(out: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.clip((np.arange(out) + 0.5) * size / out - 0.5, 0, size - 1)
        low = np.floor(position).astype(int)
        return low, np.minimum(low + 1, size - 1), position - low

    y0, y1, fy = axis(height, pixels.shape[0])
    x0, x1, fx = axis(width, pixels.shape[1])
    fx, fy = fx[None, :, None], fy[:, None, None]
    top = source[y0][:, x0] * (1 - fx) + source[y0][:, x1] * fx
    bottom = source[y1][:, x0] * (1 - fx) + source[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


@pytest.mark.parametrize(("source", "target"), [((500, 375), (341, 256)), ((4000, 3000), (341, 256)),
                                                 ((60, 45), (256, 192)), ((257, 256), (256, 255))])
def test_sample_linear_is_opencv_inter_linear_to_one_level(source: tuple[int, int], target: tuple[int, int]) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (source[1], source[0], 3)).astype(np.uint8)
    ours = np.asarray(sample_linear(Image.fromarray(pixels), target), dtype=np.float64)
    assert np.abs(ours - opencv_linear(pixels, *target)).max() < 1.0 + 1e-6


def test_sample_linear_box_is_that_part_of_the_whole() -> None:
    pixels = np.random.default_rng(4).integers(0, 256, (300, 400, 3)).astype(np.uint8)
    whole = np.asarray(sample_linear(Image.fromarray(pixels), (341, 256)))
    part = np.asarray(sample_linear(Image.fromarray(pixels), (341, 256), (58, 16, 282, 240)))
    assert np.abs(part.astype(int) - whole[16:240, 58:282]).max() <= 1


def test_preprocessor_without_antialias_decodes_jpegs_at_full_size() -> None:
    specs = [("resize_short", {"size": 64, "antialias": False}), ("center_crop", {"size": 56})]
    assert not Preprocessor.create("RGB", (3, 56, 56), specs, LIMIT).draft
    assert Preprocessor.create("RGB", (3, 56, 56), [("resize_short", {"size": 64}), ("center_crop", {"size": 56})],
                               LIMIT).draft
    array_path = Preprocessor("RGB", (3, 56, 56), tuple(build_steps(check_specs(specs))), LIMIT)
    photo = Image.fromarray(np.random.default_rng(5).integers(0, 256, (120, 160, 3)).astype(np.uint8))
    image_path = Preprocessor.create("RGB", (3, 56, 56), specs, LIMIT)
    assert np.abs(array_path.process_image(photo) - image_path.process_image(photo)).max() <= 1.01 / 255


def test_preprocessor_create_registers_every_format_before_the_first_request() -> None:
    # A fresh interpreter: in this one, other tests have long since loaded Pillow's plugins.
    script = (
        "from PIL import Image\n"
        "from app.inference.preprocess import Preprocessor\n"
        "assert 'TIFF' not in Image.OPEN\n"
        "Preprocessor.create('L', (1, 28, 28), (('resize', {'size': [28, 28]}),), 1_000_000)\n"
        "assert {'TIFF', 'WEBP', 'PNG', 'JPEG'} <= set(Image.OPEN), sorted(Image.OPEN)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
