"""Encoded image bytes -> float32 CHW array, following the steps a manifest declares.

Pillow and numpy only. Decoding is always the same (limits, EXIF orientation, first frame); the
steps after it come from the manifest, so the model says how it wants its input, and training
uses this same module to evaluate and predict exactly as the service does.

Arrays between steps are float32, HxWxC, values in [0, 1] unless a step (normalize) says otherwise.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.inference.document import flatten_background, level_ruling, remove_lines, select_digit, thicken_strokes
from app.inference.input_errors import ImageDecodeError, ImageTooLargeError, PreprocessError, UnsupportedImageError

# Formats we decode. Others Pillow knows (EPS runs Ghostscript, for one) are refused on purpose.
# HEIF is what an iPhone's camera saves (.heic); Pillow reads AVIF itself.
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "HEIF", "AVIF")
# Only the primary image: a HEIC's thumbnail, depth map and auxiliary images are never decoded.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

Array = np.ndarray
Step = Callable[[Array], Array]
Mapper = Callable[..., Iterable[Any]]
Input = bytes | np.ndarray  # an encoded image, or a model-ready (C, H, W) array


class ExplainedImage(bytes):
    """An encoded image whose model input is wanted back too (explain=input): it is decoded and
    preprocessed where the predictor runs, like any other, and the array comes back with it."""


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Read the header only (cheap) and enforce the limits; the pixels are decoded by load_image."""
    if not data:
        raise ImageDecodeError("the file is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"the image has too many pixels ({exc})") from exc
    except UnidentifiedImageError as exc:
        if looks_like_image(data):
            raise ImageDecodeError("the image header is corrupt (the file starts like an image but is not readable)") from exc
        raise UnsupportedImageError(f"not a supported image format (accepted: {', '.join(ALLOWED_FORMATS)})") from exc
    except Exception as exc:  # noqa: BLE001 - any parser failure on client bytes is the client's error
        raise ImageDecodeError(f"the image header is unreadable: {exc}") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    if width < 1 or height < 1:
        raise ImageDecodeError("the image has no pixels")
    return image


_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
# The major brands of HEIC and AVIF files (an ISO media file's first box, ftyp).
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis")


def looks_like_image(data: bytes) -> bool:
    """Starts with an accepted format's signature: a corrupt image (400), not a wrong type (415)."""
    if data.startswith(_MAGIC):
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return True
    return len(data) > 2 and data[0:1] == b"P" and data[1:2] in b"123456" and data[2:3].isspace()


def load_image(image: Image.Image, draft_to: tuple[int, int] | None = None) -> Image.Image:
    """Decode the pixels of an image from open_image: first frame, upright per EXIF. A JPEG decodes
    at a reduced scale (DCT scaling: 1/2, 1/4, 1/8) down to no less than `draft_to` (width, height):
    a 12-megapixel photo then costs about what a one-megapixel one does."""
    try:
        if draft_to is not None and image.format == "JPEG":
            image.draft(image.mode, draft_to)
        image.seek(0)  # animated GIF / multi-page TIFF: the first frame
        image.load()
        # Phone photos store "rotate me" in EXIF instead of rotating pixels; people expect it honoured.
        return ImageOps.exif_transpose(image) or image
    except Exception as exc:  # noqa: BLE001 - truncated data, bad EXIF, decoder errors
        raise ImageDecodeError(f"the image data is truncated or corrupt: {exc}") from exc


def image_to_array(image: Image.Image, color_mode: str) -> Array:
    """Pillow image of any mode -> float32 HxWxC in [0, 1]; transparency is laid on white paper."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(image, dtype=np.float32)
        scale = 65535.0 if grey.max(initial=0) > 255 else 255.0
        grey = np.clip(grey / scale, 0.0, 1.0)[:, :, None]
        return grey if color_mode == "L" else np.repeat(grey, 3, axis=2)
    if image.mode == "F":
        grey = np.asarray(image, dtype=np.float32)
        grey = grey / 255.0 if grey.max(initial=0) > 1.0 else grey
        grey = np.clip(grey, 0.0, 1.0)[:, :, None]
        return grey if color_mode == "L" else np.repeat(grey, 3, axis=2)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    converted = image.convert(color_mode)
    array = np.asarray(converted, dtype=np.float32) / 255.0
    return array[:, :, None] if array.ndim == 2 else array


def flatten_to_8bit(image: Image.Image, color_mode: str) -> Image.Image:
    """Any mode -> 8-bit L or RGB, by the same rules as image_to_array (transparency on white)."""
    if image.mode == color_mode:
        return image
    array = image_to_array(image, color_mode)
    pixels = np.round(array * 255).astype(np.uint8)
    return Image.fromarray(pixels[:, :, 0] if color_mode == "L" else pixels)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )


Resample = Literal["bilinear", "bicubic", "lanczos"]


def pillow_filter(resample: Resample | None, default: Image.Resampling) -> Image.Resampling:
    return default if resample is None else Image.Resampling[resample.upper()]


def map_channels(array: Array, transform: Callable[[Image.Image], Image.Image]) -> Array:
    """`transform` applied to each channel of HxWxC float `array` in Pillow's float mode (no
    rounding to 8 bits)."""
    return np.stack([np.asarray(transform(Image.fromarray(np.ascontiguousarray(array[:, :, c]))), dtype=np.float32)
                     for c in range(array.shape[2])], axis=2)


def resize_array(array: Array, height: int, width: int, resample: Resample | None = None) -> Array:
    """Resize each channel, antialiased; Lanczos unless the step names a filter."""
    method = pillow_filter(resample, Image.Resampling.LANCZOS)
    return np.clip(map_channels(array, lambda image: image.resize((width, height), method)), 0.0, 1.0)


def border_median(array: Array) -> float:
    """The median of a ring 5% wide around the image: what the background looks like."""
    ring = max(1, round(min(array.shape[:2]) * 0.05))
    values = np.concatenate(
        [
            array[:ring].ravel(),
            array[-ring:].ravel(),
            array[:, :ring].ravel(),
            array[:, -ring:].ravel(),
        ]
    )
    # np.partition, not np.median: on a 28x28 digit np.median's checks cost several times the work.
    middle = len(values) // 2
    if len(values) % 2:
        return float(np.partition(values, middle)[middle])
    low, high = np.partition(values, (middle - 1, middle))[middle - 1 : middle + 1]
    return (float(low) + float(high)) / 2


# --- steps: each factory takes the manifest's parameters and returns array -> array -------------


def invert_if_light_background() -> Step:
    """MNIST digits are light on dark; ink on paper is dark on light. Judge by the border."""

    def step(array: Array) -> Array:
        return 1.0 - array if border_median(array) > 0.5 else array

    return step


def normalize_contrast(floor: float = 0.1, min_range: float = 0.15) -> Step:
    """Map background to 0 and the brightest stroke to 1; zero faint paper texture below `floor`."""

    def step(array: Array) -> Array:
        background = border_median(array)
        peak = float(array.max())
        if peak - background < min_range:
            raise PreprocessError("the image has no visible foreground (it is blank or nearly uniform)")
        stretched = np.clip((array - background) / (peak - background), 0.0, 1.0)
        stretched[stretched < floor] = 0.0
        return stretched

    return step


def crop_to_content(threshold: float = 0.2) -> Step:
    def step(array: Array) -> Array:
        mask = array.max(axis=2) > threshold
        if not mask.any():
            raise PreprocessError("no foreground found in the image")
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        return array[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    return step


def fit_into_box(size: int = 20) -> Step:
    """Scale so the longer side is `size`, keeping the aspect ratio (MNIST's 20x20 box)."""

    def step(array: Array) -> Array:
        height, width = array.shape[:2]
        scale = size / max(height, width)
        return resize_array(array, max(1, round(height * scale)), max(1, round(width * scale)))

    return step


def center_by_mass(size: int = 28) -> Step:
    """Place on a size x size canvas so the centre of mass sits in the middle, as MNIST was made."""

    def step(array: Array) -> Array:
        height, width, channels = array.shape
        if height > size or width > size:
            raise ValueError(f"center_by_mass({size}) needs an input no larger than the canvas, got {height}x{width}")
        weight = array[:, :, 0] if channels == 1 else array.sum(axis=2)
        total = float(weight.sum())
        if total > 0:
            cy = float(weight.sum(axis=1) @ np.arange(height, dtype=np.float32)) / total
            cx = float(weight.sum(axis=0) @ np.arange(width, dtype=np.float32)) / total
        else:
            cy, cx = (height - 1) / 2, (width - 1) / 2
        # Python's min/max, not np.clip: on scalars np.clip costs microseconds each.
        top = min(max(round((size - 1) / 2 - cy), 0), size - height)
        left = min(max(round((size - 1) / 2 - cx), 0), size - width)
        canvas = np.zeros((size, size, channels), dtype=np.float32)
        canvas[top : top + height, left : left + width] = array
        return canvas

    return step


def sample_linear(image: Image.Image, scaled: tuple[int, int],
                  box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """The image scaled to `scaled` (width, height), or the `box` (left, top, right, bottom) of that,
    each pixel interpolated between the four source pixels nearest its centre, with no antialiasing:
    OpenCV's INTER_LINEAR (PaddleClas's default resize) to within one 8-bit level."""
    width, height = image.size
    step_x, step_y = width / scaled[0], height / scaled[1]
    left, top, right, bottom = box or (0, 0, *scaled)
    return image.transform((right - left, bottom - top), Image.Transform.AFFINE,
                           (step_x, 0, left * step_x, 0, step_y, top * step_y), resample=Image.Resampling.BILINEAR)


def sample_linear_array(array: Array, height: int, width: int) -> Array:
    return map_channels(array, lambda image: sample_linear(image, (width, height)))


def resize(size: Sequence[int], antialias: bool = True, resample: Resample | None = None) -> Step:
    height, width = int(size[0]), int(size[1])
    if not antialias:
        return lambda array: sample_linear_array(array, height, width)
    return lambda array: resize_array(array, height, width, resample)


def short_side_target(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after scaling so the shorter side is `size`."""
    scale = size / min(height, width)
    return max(size, round(width * scale)), max(size, round(height * scale))


def resize_short(size: int, antialias: bool = True, resample: Resample | None = None) -> Step:
    """Scale so the shorter side is `size` (the usual step before a centre crop)."""

    def step(array: Array) -> Array:
        height, width = array.shape[:2]
        target_w, target_h = short_side_target(width, height, size)
        if not antialias:
            return sample_linear_array(array, target_h, target_w)
        return resize_array(array, target_h, target_w, resample)

    return step


def center_crop(size: int) -> Step:
    def step(array: Array) -> Array:
        height, width = array.shape[:2]
        if height < size or width < size:
            raise ValueError(f"center_crop({size}) got a smaller {height}x{width} input")
        top, left = (height - size) // 2, (width - size) // 2
        return array[top : top + size, left : left + size]

    return step


def normalize(mean: Sequence[float], std: Sequence[float]) -> Step:
    mean_arr = np.asarray(mean, dtype=np.float32).reshape(1, 1, -1)
    std_arr = np.asarray(std, dtype=np.float32).reshape(1, 1, -1)
    if np.any(std_arr <= 0):
        raise ValueError("normalize: std must be positive")
    return lambda array: (array - mean_arr) / std_arr


@dataclass(frozen=True)
class ByteAffine:
    """8-bit pixels -> (pixel / 255 - mean) / std as one multiply-add per channel, in CxHxW order.

    Equal to image_to_array + normalize + transpose (to float32 rounding) at a third of the cost:
    on 224x224 RGB the broadcast over a trailing axis of 3 is what costs, not the arithmetic."""

    scale: Array  # (C, 1, 1)
    offset: Array  # (C, 1, 1)

    @classmethod
    def create(cls, channels: int, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None) -> ByteAffine:
        # Parameters come from a normalize step that build_steps has already validated.
        mean_arr = np.broadcast_to(np.asarray(mean if mean is not None else [0.0], dtype=np.float64), (channels,))
        std_arr = np.broadcast_to(np.asarray(std if std is not None else [1.0], dtype=np.float64), (channels,))
        scale = (1.0 / (255.0 * std_arr)).astype(np.float32).reshape(-1, 1, 1)
        return cls(scale, (-mean_arr / std_arr).astype(np.float32).reshape(-1, 1, 1))

    def __call__(self, image: Image.Image) -> Array:
        pixels = np.asarray(image)
        # order="C": astype's default keeps the HxWxC memory order behind the CxHxW view, and the
        # multiply-add below then strides over channels of 3 (4x slower), and the batch copies it again.
        chw = (pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)).astype(np.float32, order="C")
        chw *= self.scale
        chw += self.offset
        return chw


# Geometric steps that can also run on the 8-bit Pillow image, before the float conversion. Leading
# steps of this kind run there, with antialiased bilinear unless a step names another filter: one 8-bit
# pass costs a small fraction of three float-channel Lanczos passes.
ImageStep = Callable[[Image.Image], Image.Image]


def _resize_image(size: Sequence[int], antialias: bool = True, resample: Resample | None = None) -> ImageStep:
    height, width = int(size[0]), int(size[1])
    if not antialias:
        return lambda image: sample_linear(image, (width, height))
    method = pillow_filter(resample, Image.Resampling.BILINEAR)
    return lambda image: image.resize((width, height), method, reducing_gap=3.0)


def limit_size_target(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) with the long side at most `max_side`, keeping the aspect; never larger."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _limit_size_image(max_side: int) -> ImageStep:
    def step(image: Image.Image) -> Image.Image:
        target = limit_size_target(*image.size, max_side)
        return image if target == image.size else image.resize(target, Image.Resampling.BILINEAR, reducing_gap=3.0)

    return step


def limit_size(max_side: int) -> Step:
    """Shrink so the long side is at most `max_side` (a photo's detail beyond what the later steps
    use only costs time); smaller images pass as they are."""

    def step(array: Array) -> Array:
        height, width = array.shape[:2]
        target_w, target_h = limit_size_target(width, height, max_side)
        return array if (target_w, target_h) == (width, height) else resize_array(array, target_h, target_w)

    return step


def _resize_short_image(size: int, antialias: bool = True, resample: Resample | None = None) -> ImageStep:
    method = pillow_filter(resample, Image.Resampling.BILINEAR)

    def step(image: Image.Image) -> Image.Image:
        target = short_side_target(*image.size, size)
        if not antialias:
            return sample_linear(image, target)
        return image.resize(target, method, reducing_gap=3.0)

    return step


def _center_crop_image(size: int) -> ImageStep:
    def step(image: Image.Image) -> Image.Image:
        width, height = image.size
        if height < size or width < size:
            raise ValueError(f"center_crop({size}) got a smaller {height}x{width} input")
        left, top = (width - size) // 2, (height - size) // 2
        return image.crop((left, top, left + size, top + size))

    return step


def _resize_short_crop_image(size: int, crop: int, antialias: bool = True,
                             resample: Resample | None = None) -> ImageStep:
    """resize_short then center_crop as one resize of just the region the crop keeps: the same
    pixels (within 1/255) for half the work on a photo, as the discarded margins are never computed."""
    method = pillow_filter(resample, Image.Resampling.BILINEAR)

    def step(image: Image.Image) -> Image.Image:
        width, height = image.size
        target_w, target_h = short_side_target(width, height, size)
        left, top = (target_w - crop) // 2, (target_h - crop) // 2
        if not antialias:
            return sample_linear(image, (target_w, target_h), (left, top, left + crop, top + crop))
        step_x, step_y = width / target_w, height / target_h
        box = (left * step_x, top * step_y, (left + crop) * step_x, (top + crop) * step_y)
        return image.resize((crop, crop), method, box=box, reducing_gap=3.0)

    return step


def build_image_steps(specs: Sequence[tuple[str, dict[str, Any]]]) -> list[ImageStep]:
    steps: list[ImageStep] = []
    index = 0
    while index < len(specs):
        op, params = specs[index]
        following = specs[index + 1] if index + 1 < len(specs) else None
        if op == "resize_short" and following is not None and following[0] == "center_crop" \
                and following[1]["size"] <= params["size"]:
            steps.append(_resize_short_crop_image(params["size"], following[1]["size"], params["antialias"],
                                                  params["resample"]))
            index += 2
            continue
        steps.append(IMAGE_STEP_FACTORIES[op](**params))
        index += 1
    return steps


IMAGE_STEP_FACTORIES: dict[str, Callable[..., ImageStep]] = {
    "limit_size": _limit_size_image,
    "resize": _resize_image,
    "resize_short": _resize_short_image,
    "center_crop": _center_crop_image,
}

STEP_FACTORIES: dict[str, Callable[..., Step]] = {
    "limit_size": limit_size,
    "flatten_background": flatten_background,
    "level_ruling": level_ruling,
    "remove_lines": remove_lines,
    "select_digit": select_digit,
    "thicken_strokes": thicken_strokes,
    "invert_if_light_background": invert_if_light_background,
    "normalize_contrast": normalize_contrast,
    "crop_to_content": crop_to_content,
    "fit_into_box": fit_into_box,
    "center_by_mass": center_by_mass,
    "resize": resize,
    "resize_short": resize_short,
    "center_crop": center_crop,
    "normalize": normalize,
}


# --- what each step's parameters may be: checked at load, so a manifest cannot ask for a
# 20000x20000 resize, a negative crop or a NaN mean and serve broken answers afterwards ---------

Side = Annotated[int, Field(ge=1, le=4096)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Mean = Annotated[float, Field(ge=-1e3, le=1e3, allow_inf_nan=False)]
Std = Annotated[float, Field(gt=0.0, le=1e3, allow_inf_nan=False)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NoParams(_Params):
    pass


class LimitSizeParams(_Params):
    max_side: Annotated[int, Field(ge=16, le=8192)]


class FlattenBackgroundParams(_Params):
    window: Annotated[float, Field(gt=0.05, le=1.0, allow_inf_nan=False)] = 0.3
    floor: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.5


class LevelRulingParams(_Params):
    min_degrees: Annotated[float, Field(ge=0.0, le=45.0, allow_inf_nan=False)] = 8.0
    max_degrees: Annotated[float, Field(gt=0.0, le=45.0, allow_inf_nan=False)] = 45.0


class RemoveLinesParams(_Params):
    max_thickness: Annotated[float, Field(gt=0.0, le=0.2, allow_inf_nan=False)] = 0.02
    max_degrees: Annotated[float, Field(ge=0.0, le=30.0, allow_inf_nan=False)] = 8.0


class SelectDigitParams(_Params):
    floor: Fraction = 0.1
    reach: Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False)] = 0.25
    min_share: Fraction = 0.03


class ThickenStrokesParams(_Params):
    width: Annotated[float, Field(ge=0.0, le=0.5, allow_inf_nan=False)] = 0.1


class NormalizeContrastParams(_Params):
    floor: Fraction = 0.1
    min_range: Fraction = 0.15


class ThresholdParams(_Params):
    threshold: Fraction = 0.2


class SizeParams(_Params):
    size: Side


class FilterParams(_Params):
    """How a resize step computes its pixels."""

    # False: interpolate between the nearest source pixels only (OpenCV's INTER_LINEAR), as models
    # trained with PaddleClas's default resize saw their images; a shrunk photo then aliases.
    antialias: bool = True
    # Pillow's filter; unset: bilinear on 8-bit images, Lanczos on float arrays.
    resample: Resample | None = None

    @model_validator(mode="after")
    def _check_filter(self) -> FilterParams:
        if not self.antialias and self.resample not in (None, "bilinear"):
            raise ValueError("antialias false samples bilinear only")
        return self


class ResizeShortParams(FilterParams):
    size: Side


class CanvasParams(_Params):
    size: Side = 28


class BoxParams(_Params):
    size: Side = 20


class ResizeParams(FilterParams):
    size: Annotated[list[Side], Field(min_length=2, max_length=2)]


class NormalizeParams(_Params):
    mean: Annotated[list[Mean], Field(min_length=1, max_length=4)]
    std: Annotated[list[Std], Field(min_length=1, max_length=4)]


STEP_PARAMETERS: dict[str, type[_Params]] = {
    "limit_size": LimitSizeParams,
    "flatten_background": FlattenBackgroundParams,
    "level_ruling": LevelRulingParams,
    "remove_lines": RemoveLinesParams,
    "select_digit": SelectDigitParams,
    "thicken_strokes": ThickenStrokesParams,
    "invert_if_light_background": NoParams,
    "normalize_contrast": NormalizeContrastParams,
    "crop_to_content": ThresholdParams,
    "fit_into_box": BoxParams,
    "center_by_mass": CanvasParams,
    "resize": ResizeParams,
    "resize_short": ResizeShortParams,
    "center_crop": SizeParams,
    "normalize": NormalizeParams,
}


def check_specs(specs: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Every step known and its parameters of the right type and within bounds (ValueError
    saying which and why); returns them with defaults filled in."""
    checked = []
    for position, (op, params) in enumerate(specs):
        schema = STEP_PARAMETERS.get(op)
        if schema is None:
            raise ValueError(f"unknown preprocessing op {op!r}; known: {sorted(STEP_PARAMETERS)}")
        try:
            values = schema.model_validate(params).model_dump()
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"]) or "parameters"
            raise ValueError(f"preprocessing step {position} ({op}): {where}: {problem['msg']}") from exc
        checked.append((op, values))
    return checked


def build_steps(specs: Sequence[tuple[str, dict[str, Any]]]) -> list[Step]:
    """Turn checked (op, params) pairs into callables."""
    return [STEP_FACTORIES[op](**params) for op, params in specs]


@dataclass(frozen=True)
class Recipe:
    """What Preprocessor.create takes, as plain values: a predictor's child process receives it
    (pickled) and builds the very same preprocessor."""

    color_mode: str
    input_shape: tuple[int, ...]
    step_specs: tuple[tuple[str, dict[str, Any]], ...]
    max_pixels: int

    def build(self) -> Preprocessor:
        return Preprocessor.create(self.color_mode, self.input_shape, self.step_specs, self.max_pixels)


@dataclass
class Prepared:
    """Inputs made ready for one model run: the arrays of those that preprocessed, in order, and
    for the others the error their bytes raised; one bad image must not fail its batch-mates."""

    arrays: list[Array] = field(default_factory=list)
    errors: dict[int, Exception] = field(default_factory=dict)
    timings: list[tuple[float, float]] = field(default_factory=list)  # (decode ms, preprocess ms) per input
    explained: dict[int, Array] = field(default_factory=dict)  # input index -> its model input (ExplainedImage)


@dataclass(frozen=True)
class Preprocessor:
    """The whole path from bytes to one model input of shape (C, H, W)."""

    color_mode: str
    input_shape: tuple[int, int, int]
    steps: tuple[Step, ...]
    max_pixels: int
    image_steps: tuple[ImageStep, ...] = ()  # the leading geometric steps, run on the 8-bit image
    affine: ByteAffine | None = None  # set when all that follows them is (at most) normalize
    max_side: int | None = None  # from a leading limit_size: the detail the steps work at
    # A JPEG may decode at reduced scale, unless a step samples the full-size pixels (antialias off).
    draft: bool = True

    @classmethod
    def create(
        cls,
        color_mode: str,
        input_shape: Sequence[int],
        step_specs: Sequence[tuple[str, dict[str, Any]]],
        max_pixels: int,
    ) -> Preprocessor:
        channels, height, width = (int(d) for d in input_shape)
        step_specs = check_specs(step_specs)
        lead = 0
        while lead < len(step_specs) and step_specs[lead][0] in IMAGE_STEP_FACTORIES:
            lead += 1
        array_steps = tuple(build_steps(step_specs))[lead:]  # builds all: validates every op
        image_steps = tuple(build_image_steps(step_specs[:lead]))
        tail = step_specs[lead:]
        affine = None
        if image_steps and (not tail or (len(tail) == 1 and tail[0][0] == "normalize")):
            affine = ByteAffine.create(channels, **(tail[0][1] if tail else {}))
        # Pillow imports its format plugins on the first open that names TIFF or WEBP: the first
        # request of each predictor process would pay for that import, unless it is paid here.
        Image.init()
        max_side = int(step_specs[0][1]["max_side"]) if step_specs and step_specs[0][0] == "limit_size" else None
        draft = all(params.get("antialias", True) for _, params in step_specs)
        return cls(color_mode, (channels, height, width), array_steps, max_pixels, image_steps, affine, max_side,
                   draft)

    def __call__(self, data: bytes) -> Array:
        return self.process_image(self.decode(data))

    def timed(self, image: Image.Image) -> tuple[Array, float, float]:
        """An image from open() to a model input, saying where the time went: (input, decode ms,
        preprocess ms)."""
        started = time.perf_counter()
        loaded = self.load(image)
        decoded = time.perf_counter()
        array = self.process_image(loaded)
        return array, (decoded - started) * 1000, (time.perf_counter() - decoded) * 1000

    def prepare(self, inputs: Sequence[Input], mapper: Mapper = map) -> Prepared:
        """Encoded images are decoded and preprocessed; arrays are taken as model inputs already.
        `mapper` may be a thread pool's map: Pillow and numpy release the GIL for most of the work."""
        prepared = Prepared()
        for index, (array, error, timing) in enumerate(mapper(self.prepare_one, inputs)):
            if error is not None:
                prepared.errors[index] = error
            else:
                prepared.arrays.append(array)
                if isinstance(inputs[index], ExplainedImage):
                    prepared.explained[index] = array
            prepared.timings.append(timing)
        return prepared

    def prepare_one(self, item: Input) -> tuple[Array | None, Exception | None, tuple[float, float]]:
        if isinstance(item, np.ndarray):
            return item, None, (0.0, 0.0)
        started = time.perf_counter()
        try:
            image = self.open(item)
            header_ms = (time.perf_counter() - started) * 1000
            array, decode_ms, preprocess_ms = self.timed(image)
        except Exception as exc:  # noqa: BLE001 - any failure is this input's alone
            return None, exc, ((time.perf_counter() - started) * 1000, 0.0)
        return array, None, (header_ms + decode_ms, preprocess_ms)

    def decode(self, data: bytes) -> Image.Image:
        return self.load(self.open(data))

    def open(self, data: bytes) -> Image.Image:
        return open_image(data, self.max_pixels)

    def load(self, image: Image.Image) -> Image.Image:
        return load_image(image, self.draft_size(*image.size) if self.draft else None)

    def draft_size(self, width: int, height: int) -> tuple[int, int]:
        """The least (width, height) a JPEG may decode to: what a leading limit_size keeps, or
        else twice the model's input, so that the later resize still has pixels to average."""
        if self.max_side is not None:
            return limit_size_target(width, height, self.max_side)
        return self.input_shape[2] * 2, self.input_shape[1] * 2

    def process_image(self, image: Image.Image) -> Array:
        if self.image_steps:
            image = flatten_to_8bit(image, self.color_mode)
            for step in self.image_steps:
                image = step(image)
            if self.affine is not None:
                return self.check_shape(self.affine(image))
        return self.process_array(image_to_array(image, self.color_mode))

    def process_array(self, array: Array) -> Array:
        """HxWxC float in [0, 1] -> CxHxW float32 model input."""
        for step in self.steps:
            array = step(array)
        return self.check_shape(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))

    def check_shape(self, chw: Array) -> Array:
        if chw.shape != self.input_shape:
            # A manifest whose steps do not end at the model's input size is a model bug, not a client's.
            raise RuntimeError(f"preprocessing produced {chw.shape}, the model expects {self.input_shape}")
        return chw


def render_input_png(chw: Array) -> bytes:
    """A model input (C, H, W) as a PNG a person can look at: [0, 1] inputs as they are, normalised
    ones stretched to their own range."""
    array = np.asarray(chw, dtype=np.float32).transpose(1, 2, 0)
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    pixels = np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
