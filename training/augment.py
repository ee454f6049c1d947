"""Training-time augmentation: per-image geometric and colour ops (Paddle's vision transforms, and
RandAugment on PIL), then batch ops on arrays (shift, RandomErasing, Mixup, CutMix) and soft targets
(label smoothing). Validation never goes through here: it uses the service's preprocessing."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
from paddle.vision import transforms as T
from PIL import Image, ImageEnhance, ImageOps

from training.config import AugmentConfig

PilOp = Callable[..., Any]  # PIL image in, PIL image out (Paddle's transforms are typed for tensors only)


def shift_images(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each (N, C, H, W) image by up to max_shift pixels, filling with zeros."""
    if max_shift <= 0:
        return images
    n, _, height, width = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    dy = np.asarray(rng.integers(0, 2 * max_shift + 1, size=n))
    dx = np.asarray(rng.integers(0, 2 * max_shift + 1, size=n))
    rows = dy[:, None] + np.arange(height)[None, :]
    cols = dx[:, None] + np.arange(width)[None, :]
    return padded[np.arange(n)[:, None, None, None], np.arange(images.shape[1])[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def randaugment_ops(magnitude: int) -> list[PilOp]:
    """The RandAugment op list (Cubuk et al. 2019) at one magnitude in 0-30; a random sign per call."""
    m = max(0, min(magnitude, 30)) / 30.0

    def signed(value: float) -> float:
        return value if random.random() < 0.5 else -value

    def affine(image: Image.Image, matrix: tuple[float, ...]) -> Image.Image:
        return image.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR)

    return [
        lambda im: im,
        ImageOps.autocontrast,
        ImageOps.equalize,
        lambda im: im.rotate(signed(30 * m), Image.Resampling.BILINEAR),
        lambda im: ImageOps.solarize(im, int(256 - 256 * m)),
        lambda im: ImageEnhance.Color(im).enhance(1 + signed(0.9 * m)),
        lambda im: ImageOps.posterize(im, max(1, 8 - int(4 * m))),
        lambda im: ImageEnhance.Contrast(im).enhance(1 + signed(0.9 * m)),
        lambda im: ImageEnhance.Brightness(im).enhance(1 + signed(0.9 * m)),
        lambda im: ImageEnhance.Sharpness(im).enhance(1 + signed(0.9 * m)),
        lambda im: affine(im, (1, signed(0.3 * m), 0, 0, 1, 0)),
        lambda im: affine(im, (1, 0, 0, signed(0.3 * m), 1, 0)),
        lambda im: affine(im, (1, 0, signed(0.45 * m) * im.size[0], 0, 1, 0)),
        lambda im: affine(im, (1, 0, 0, 0, 1, signed(0.45 * m) * im.size[1])),
    ]


class Augmenter:
    """(images [0, 1] NCHW at the stored size, labels) -> (model inputs, soft targets (N, K))."""

    def __init__(self, config: AugmentConfig, input_size: tuple[int, int], num_classes: int,
                 label_smoothing: float = 0.0, normalize: tuple[list[float], list[float]] | None = None,
                 rng: np.random.Generator | None = None) -> None:
        self.config = config
        self.input_size = input_size
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.mean = None if normalize is None else np.asarray(normalize[0], np.float32)[:, None, None]
        self.std = None if normalize is None else np.asarray(normalize[1], np.float32)[:, None, None]
        self.rng = rng or np.random.default_rng()
        self.pil_ops = self.build_pil_ops()
        self.rand_ops = randaugment_ops(config.randaugment_magnitude) if config.randaugment else []

    def build_pil_ops(self) -> list[PilOp]:
        c = self.config
        ops: list[PilOp] = []
        if c.random_resized_crop:
            ops.append(T.RandomResizedCrop(self.input_size, scale=(c.crop_scale_min, 1.0)))
        if c.hflip:
            ops.append(T.RandomHorizontalFlip(0.5))
        if c.vflip:
            ops.append(T.RandomVerticalFlip(0.5))
        if c.rotation > 0:  # PIL directly: Paddle's RandomRotation fails on greyscale images
            ops.append(lambda im: im.rotate(random.uniform(-c.rotation, c.rotation), Image.Resampling.BILINEAR))
        if c.color_jitter > 0:
            ops.append(T.ColorJitter(c.color_jitter, c.color_jitter, c.color_jitter))
        return ops

    def __call__(self, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = self.transform_images(images)
        if self.config.max_shift:
            batch = shift_images(batch, self.config.max_shift, self.rng)
        if self.mean is not None and self.std is not None:
            batch = (batch - self.mean) / self.std
        if self.config.random_erasing > 0:
            batch = self.erase(batch)
        targets = self.soft_targets(labels)
        batch, targets = self.mix(batch, targets)
        return np.ascontiguousarray(batch, dtype=np.float32), targets.astype(np.float32)

    def transform_images(self, images: np.ndarray) -> np.ndarray:
        if not self.pil_ops and not self.rand_ops:
            return center_crop(images, self.input_size)
        out = []
        for chw in images:
            image = to_pil(chw)
            for op in self.pil_ops:
                image = op(image)
            for op in random.sample(self.rand_ops, k=min(self.config.randaugment_ops, len(self.rand_ops))):
                image = op(image)
            array = np.asarray(image, dtype=np.float32) / 255.0
            out.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
        return center_crop(np.stack(out), self.input_size)

    def soft_targets(self, labels: np.ndarray) -> np.ndarray:
        eps = self.label_smoothing
        targets = np.full((len(labels), self.num_classes), eps / self.num_classes, dtype=np.float32)
        targets[np.arange(len(labels)), labels] += 1.0 - eps
        return targets

    def erase(self, batch: np.ndarray) -> np.ndarray:
        """RandomErasing (Zhong et al.): a random rectangle of 2-33% of the area, filled with noise."""
        batch = batch.copy()
        _, channels, height, width = batch.shape
        for i in np.flatnonzero(self.rng.random(len(batch)) < self.config.random_erasing):
            area = self.rng.uniform(0.02, 0.33) * height * width
            aspect = np.exp(self.rng.uniform(np.log(0.3), np.log(3.3)))
            h = min(height, int(round(np.sqrt(area * aspect))))
            w = min(width, int(round(np.sqrt(area / aspect))))
            top, left = self.rng.integers(0, height - h + 1), self.rng.integers(0, width - w + 1)
            batch[i, :, top : top + h, left : left + w] = self.rng.normal(size=(channels, h, w))
        return batch

    def mix(self, batch: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        choices = [kind for kind, alpha in (("mixup", self.config.mixup_alpha), ("cutmix", self.config.cutmix_alpha))
                   if alpha > 0]
        if not choices or len(batch) < 2:
            return batch, targets
        kind = choices[self.rng.integers(len(choices))]
        alpha = self.config.mixup_alpha if kind == "mixup" else self.config.cutmix_alpha
        lam = float(self.rng.beta(alpha, alpha))
        perm = self.rng.permutation(len(batch))
        if kind == "mixup":
            return lam * batch + (1 - lam) * batch[perm], lam * targets + (1 - lam) * targets[perm]
        height, width = batch.shape[2:]
        h, w = int(height * np.sqrt(1 - lam)), int(width * np.sqrt(1 - lam))
        cy, cx = self.rng.integers(height), self.rng.integers(width)
        top, bottom = max(cy - h // 2, 0), min(cy + h // 2, height)
        left, right = max(cx - w // 2, 0), min(cx + w // 2, width)
        mixed = batch.copy()
        mixed[:, :, top:bottom, left:right] = batch[perm][:, :, top:bottom, left:right]
        lam = 1 - (bottom - top) * (right - left) / (height * width)  # the area actually pasted
        return mixed, lam * targets + (1 - lam) * targets[perm]


def to_pil(chw: np.ndarray) -> Image.Image:
    pixels = np.round(np.clip(chw, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(pixels[0]) if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0))


def center_crop(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = images.shape[2:]
    top, left = (height - size[0]) // 2, (width - size[1]) // 2
    return images[:, :, top : top + size[0], left : left + size[1]]
