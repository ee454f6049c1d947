"""Phone photos of a digit on paper, rendered: what people send the digit models.

A digit's ink (a handwritten MNIST digit, or one typeset in a font) is laid on paper and
photographed: blank, ruled, squared or dotted paper; light that falls off across the page, a
shadow, too little light (a dim, grainy photo) or a flash's; the paper's edge with the desk beyond
it, or a note lying on the desk; a box drawn round the digit, a line under it or a pen beside it,
or the digit circled; black or blue ballpoint, pencil or marker; a digit that fills the frame, a
small one in a large photo, or a whole page photographed from afar with the desk all round it;
tilt (or a page photographed well askew), blur, sensor noise and JPEG; and low-resolution digits
(a thumbnail enlarged to a few hundred pixels, blocky or blurry).

Training renders such photos from its own digits and seeds and feeds them through the service's
preprocessing (`training/data/dataset.py`); `bench/digit_photos.py` renders them from digits, fonts
and seeds that training never uses, one condition per column.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from training.data.printed import typeset

Paper = Literal["blank", "ruled", "squared", "dotted"]
Light = Literal["even", "falloff", "shadow", "dim", "flash"]
Ink = Literal["black", "blue", "pencil", "marker"]
Size = Literal["normal", "small", "far"]
Sheet = Literal["page", "note"]


@dataclass(frozen=True)
class Scene:
    """What one photo shows; every other detail (sizes, colours, angles) is drawn at random."""

    paper: Paper = "blank"
    light: Light = "even"
    edge: bool = False  # the paper's edge in the frame, with the desk beyond it
    ink: Ink = "black"
    size: Size = "normal"  # small: a digit 10-28% of the frame's height; far: the whole page, the digit 4-8%
    low_resolution: bool = False  # a thumbnail of the photo, enlarged again
    sheet: Sheet = "page"  # note: a note or a scrap of paper inside the frame, the desk all round it
    marked: bool = False  # a box drawn round the digit, a line under it, or a pen lying beside it
    askew: bool = False  # the page photographed turned 10-30 degrees, not the usual few
    circled: bool = False  # a ring drawn round the digit: closed, its ends overlapping, or open a little

    @classmethod
    def random(cls, rng: np.random.Generator) -> Scene:
        """A scene for training: each condition on its own odds, so that they also combine."""
        return cls(
            paper=str(rng.choice(["blank", "ruled", "squared"], p=[0.4, 0.3, 0.3])),  # type: ignore[arg-type]
            light=str(rng.choice(["even", "falloff", "shadow", "dim"], p=[0.3, 0.35, 0.25, 0.1])),  # type: ignore[arg-type]
            edge=bool(rng.random() < 0.3),
            ink=str(rng.choice(["black", "blue", "pencil", "marker"], p=[0.3, 0.3, 0.25, 0.15])),  # type: ignore[arg-type]
            size=str(rng.choice(["normal", "small"], p=[0.65, 0.35])),  # type: ignore[arg-type]
            low_resolution=bool(rng.random() < 0.15),
        )


# --- the digit's ink ----------------------------------------------------------------------------


def handwritten_ink(digit: np.ndarray, height: int, stroke: float, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit (28x28, [0, 1]) redrawn as a pen would write it, `height` pixels tall with a
    line `stroke` pixels wide along the digit's centre line: (h, w) coverage in [0, 1]."""
    rows, cols = np.flatnonzero(digit.max(axis=1) > 0.1), np.flatnonzero(digit.max(axis=0) > 0.1)
    crop = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    fine = 4  # the centre line is traced at 4x MNIST's size
    big = Image.fromarray((crop * 255).astype(np.uint8)).resize((crop.shape[1] * fine, crop.shape[0] * fine),
                                                                  Image.Resampling.BICUBIC)
    skeleton = thin(np.asarray(big, dtype=np.float32) / 255 > rng.uniform(0.3, 0.5))
    scale = (height - stroke) / max(1, crop.shape[0] * fine - 1)
    return draw_centre_line(skeleton, scale, stroke, height)


def thin(shape: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel-wide centre line of a binary shape."""
    image = np.pad(shape.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = [np.roll(np.roll(image, -dy, 0), -dx, 1) for dy, dx in
                 ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))]
            neighbours = sum(p)
            transitions = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)).astype(np.uint8) for i in range(8))
            if step == 0:
                side = (p[0] * p[2] * p[4] == 0) & (p[2] * p[4] * p[6] == 0)
            else:
                side = (p[0] * p[2] * p[6] == 0) & (p[0] * p[4] * p[6] == 0)
            remove = (image == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & side
            if remove.any():
                image[remove] = 0
                changed = True
        if not changed:
            return image[1:-1, 1:-1].astype(bool)


def draw_centre_line(skeleton: np.ndarray, scale: float, stroke: float, height: int) -> np.ndarray:
    """Join neighbouring centre-line pixels with round-capped segments `stroke` wide, drawn at 4x
    and reduced (anti-aliased)."""
    ys, xs = np.nonzero(skeleton)
    width = int(np.ceil((skeleton.shape[1] - 1) * scale + stroke)) + 1
    canvas = Image.new("L", (width * 4, (height + 1) * 4), 0)
    draw = ImageDraw.Draw(canvas)
    pen = max(1, round(stroke * 4))
    at = {(int(y), int(x)) for y, x in zip(ys, xs)}
    half = stroke / 2

    def point(y: int, x: int) -> tuple[float, float]:
        return ((x * scale + half) * 4, (y * scale + half) * 4)

    for y, x in at:
        cx, cy = point(y, x)
        draw.ellipse([cx - pen / 2, cy - pen / 2, cx + pen / 2, cy + pen / 2], fill=255)
        for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
            if (y + dy, x + dx) in at:
                draw.line([point(y, x), point(y + dy, x + dx)], fill=255, width=pen)
    reduced = canvas.resize((width, height + 1), Image.Resampling.BOX)
    return np.asarray(reduced, dtype=np.float32) / 255


def typeset_ink(digit: int, face: Path, height: int, rng: np.random.Generator) -> np.ndarray:
    """A digit typeset in `face`, its glyph about `height` pixels tall: (h, w) coverage in [0, 1]."""
    size = int(height * 1.45)
    mask = np.asarray(typeset(digit, face, size, (size * 2, size * 2), (size, size)), dtype=np.float32) / 255
    rows, cols = np.flatnonzero(mask.max(axis=1) > 0.05), np.flatnonzero(mask.max(axis=0) > 0.05)
    if len(rows) == 0:
        raise ValueError(f"{face.name} has no glyph for {digit}")
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


# --- the page -----------------------------------------------------------------------------------


def ink_colour(ink: Ink, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(RGB colour, opacity) of the writing."""
    if ink == "blue":
        return np.array([rng.uniform(15, 70), rng.uniform(30, 90), rng.uniform(110, 200)]), rng.uniform(0.75, 1.0)
    if ink == "pencil":
        grey = rng.uniform(40, 100)
        return np.array([grey, grey, grey + rng.uniform(0, 10)]), rng.uniform(0.5, 0.85)
    if ink == "marker":
        colours = [(25, 25, 30), (20, 30, 110), (20, 80, 40), (170, 25, 30)]
        return np.array(colours[rng.integers(len(colours))], dtype=float) + rng.normal(0, 8, 3), 1.0
    return np.array([rng.uniform(10, 50)] * 3) + rng.normal(0, 4, 3), rng.uniform(0.85, 1.0)


def stroke_width(ink: Ink, height: int, rng: np.random.Generator) -> float:
    """Pen width in pixels for a digit `height` pixels tall."""
    relative = {"black": (0.025, 0.07), "blue": (0.02, 0.06), "pencil": (0.02, 0.05), "marker": (0.08, 0.16)}[ink]
    return max(1.2, height * rng.uniform(*relative))


def paper_colour(rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(200, 250)
    tint = np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.85, 1.0)])
    return base * (tint if rng.random() < 0.7 else tint[::-1])


def draw_ruling(page: np.ndarray, paper: Paper, spacing: float, rng: np.random.Generator) -> None:
    """Printed lines on the page (in place): ruled (horizontal, sometimes a margin), squared, or a
    grid of dots."""
    if paper == "blank":
        return
    height, width = page.shape[:2]
    blue = np.array([rng.uniform(120, 190), rng.uniform(150, 210), rng.uniform(200, 245)])
    grey = np.full(3, rng.uniform(120, 190))
    colour = blue if rng.random() < 0.6 else grey
    strength = rng.uniform(0.35, 0.9)
    thickness = rng.uniform(0.8, 2.6)
    layer = Image.new("L", (width * 2, height * 2), 0)  # drawn at twice the size, then reduced: anti-aliased
    draw = ImageDraw.Draw(layer)
    offset = rng.uniform(0, spacing)
    line = max(1, round(thickness * 2))
    if paper == "dotted":  # a bullet journal's dot grid: a dot where a squared page's lines would cross
        radius = 2 * max(1.0, spacing * rng.uniform(0.04, 0.1))
        for y in np.arange(2 * offset, 2 * height, 2 * spacing):
            for x in np.arange(2 * offset, 2 * width, 2 * spacing):
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    else:
        for y in np.arange(offset, height, spacing):
            draw.line([(0, 2 * y), (2 * width, 2 * y)], fill=255, width=line)
    if paper == "squared":
        for x in np.arange(rng.uniform(0, spacing), width, spacing):
            draw.line([(2 * x, 0), (2 * x, 2 * height)], fill=255, width=line)
    alpha = np.asarray(layer.resize((width, height), Image.Resampling.BOX), dtype=np.float32)[..., None] / 255 * strength
    page[:] = page * (1 - alpha) + colour * alpha
    if paper == "ruled" and rng.random() < 0.4:  # the red margin line of an exercise book
        x = rng.uniform(0.05, 0.95) * width
        margin = Image.new("L", (width, height), 0)
        ImageDraw.Draw(margin).line([(x, 0), (x, height)], fill=255, width=max(1, round(thickness)))
        alpha = np.asarray(margin, dtype=np.float32)[..., None] / 255 * strength
        page[:] = page * (1 - alpha) + np.array([220, 90, 100]) * alpha


def lay_ink(page: np.ndarray, coverage: np.ndarray, top: int, left: int, ink: Ink, rng: np.random.Generator) -> None:
    """Write the digit onto the page (in place); pencil leaves grainy, uneven graphite."""
    colour, opacity = ink_colour(ink, rng)
    alpha = coverage * opacity
    if ink == "pencil":
        grain = ndimage.gaussian_filter(rng.random(coverage.shape).astype(np.float32), 0.7)
        alpha = alpha * np.clip(0.8 + 0.25 * (grain - grain.mean()) / (grain.std() + 1e-6), 0.3, 1.0)
    region = page[top : top + coverage.shape[0], left : left + coverage.shape[1]]
    region[:] = region * (1 - alpha[..., None]) + colour * alpha[..., None]


def lighting(height: int, width: int, light: Light, rng: np.random.Generator) -> np.ndarray:
    """A multiplicative light field (h, w, 1): even (with a little vignetting), falling off, a shadow,
    dim (a fifth to under half of the light; the camera makes up for it with gain, see camera), or
    a flash's (bright where the flash points, darker towards the corners, a glare)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = y / height - 0.5, x / width - 0.5
    field = 1 - rng.uniform(0, 0.12) * (x**2 + y**2) * 2
    if light == "falloff":
        angle = rng.uniform(0, 2 * math.pi)
        ramp = x * math.cos(angle) + y * math.sin(angle)
        field = field * (1 - rng.uniform(0.25, 0.55) * (ramp + 0.7) / 1.4)
        if rng.random() < 0.5:  # a lamp's spot: brighter in one place, dark towards the corners
            cy, cx = rng.uniform(-0.4, 0.4, 2)
            field = field * (1 - rng.uniform(0.2, 0.45) * np.clip(((x - cx) ** 2 + (y - cy) ** 2) * 2.5, 0, 1))
    elif light == "shadow":
        angle = rng.uniform(0, 2 * math.pi)
        across = x * math.cos(angle) + y * math.sin(angle) - rng.uniform(-0.35, 0.35)
        bend = rng.uniform(-0.6, 0.6) * (x * math.sin(angle) - y * math.cos(angle)) ** 2  # a hand's or phone's curve
        softness = rng.uniform(0.005, 0.08)
        inside = 1 / (1 + np.exp(np.clip(-(across + bend) / softness, -60, 60)))
        field = field * (1 - rng.uniform(0.2, 0.45) * inside)
    elif light == "dim":
        field = field * rng.uniform(0.2, 0.45)
    elif light == "flash":  # bright where the flash points, darker towards the corners, a glare
        cy, cx = rng.uniform(-0.15, 0.15, 2)
        field = field * (1 - rng.uniform(0.3, 0.55) * np.clip(((x - cx) ** 2 + (y - cy) ** 2) * 2, 0, 1))
        cy, cx = rng.uniform(-0.3, 0.3, 2)
        field = field * (1 + rng.uniform(0.1, 0.3) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / rng.uniform(0.005, 0.03)))
    return field[..., None].astype(np.float32)


def desk_texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """What lies beyond the paper: wood, a dark or grey table, or a coloured surface."""
    kind = rng.integers(4)
    if kind == 0:  # wood: grain stretched along one direction
        base = np.array([rng.uniform(90, 170), rng.uniform(55, 110), rng.uniform(25, 70)])
        grain = ndimage.gaussian_filter(rng.normal(0, 1, (height, width)).astype(np.float32), (0.8, 25))
        grain = grain / (grain.std() + 1e-6)
        return base * (1 + 0.12 * grain[..., None])
    if kind == 1:
        base = np.full(3, rng.uniform(15, 70))
    elif kind == 2:
        base = np.full(3, rng.uniform(80, 160))
    else:
        base = rng.uniform(30, 180, 3)
    blotches = ndimage.gaussian_filter(rng.normal(0, 1, (height, width)).astype(np.float32), 6)
    return base * (1 + 0.08 * blotches[..., None] / (blotches.std() + 1e-6))


def paper_region(height: int, width: int, keep: tuple[int, int, int, int], rng: np.random.Generator) -> np.ndarray:
    """(h, w, 1) 1 where the paper is: the frame less one or two straight edges that pass beside
    the digit's box `keep` (top, left, bottom, right), never through it."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    region = np.ones((height, width), dtype=np.float32)
    top, left, bottom, right = keep
    for _ in range(1 + int(rng.random() < 0.4)):
        angle = rng.uniform(0, 2 * math.pi)
        normal = np.array([math.cos(angle), math.sin(angle)])  # (x, y): the desk lies this way
        corners = np.array([[left, top], [right, top], [left, bottom], [right, bottom]], dtype=float)
        reach = (corners @ normal).max() + rng.uniform(10, 60)
        far = max(abs(width * normal[0]), 0) + max(abs(height * normal[1]), 0)
        limit = (np.array([[0, 0], [width, 0], [0, height], [width, height]]) @ normal).max()
        if limit - reach < 0.08 * far:
            continue  # no room for desk on that side
        edge = rng.uniform(reach, reach + 0.6 * (limit - reach))
        region *= np.clip(edge - (x * normal[0] + y * normal[1]) + 0.5, 0, 1)
    return region[..., None]


def note_region(height: int, width: int, keep: tuple[int, int, int, int], rng: np.random.Generator) -> np.ndarray:
    """(h, w, 1) 1 where a note lies: a rectangle round the digit's box `keep` (top, left, bottom,
    right), a third to four fifths larger than the box each way, turned up to 25 degrees, inside
    the frame (moved or shrunk to fit, where the digit comes near the border)."""
    top, left, bottom, right = keep
    centre = np.array([(left + right) / 2, (top + bottom) / 2])
    side = max(bottom - top, right - left) * rng.uniform(1.35, 1.8)
    half = np.array([side * rng.uniform(0.85, 1.15), side]) / 2
    corners = rectangle_corners(half, rng.uniform(-25, 25))
    # Moved, and if need be shrunk, so that the desk shows all round it.
    room = np.array([width, height]) / 2 - 6
    corners *= min(1.0, float((room / np.abs(corners).max(axis=0)).min()))
    centre = np.clip(centre, corners.max(axis=0) + 6, np.array([width, height]) - corners.max(axis=0) - 6)
    return polygon_region(height, width, centre + corners)


def whole_page_region(height: int, width: int, keep: tuple[int, int, int, int],
                      rng: np.random.Generator) -> np.ndarray:
    """(h, w, 1) 1 where the page lies when the whole of it is photographed: a rectangle 65-90% of
    the frame each way, turned up to 6 degrees, the desk all round it, and the digit's box `keep`
    (top, left, bottom, right) on it."""
    top, left, bottom, right = keep
    half = np.array([width * rng.uniform(0.65, 0.9), height * rng.uniform(0.65, 0.9)]) / 2
    corners = rectangle_corners(half, rng.uniform(-6, 6))
    reach = np.abs(corners).max(axis=0)
    # Centred where it holds the digit's box with room to spare and shows the desk all round.
    low = np.array([right, bottom]) - 0.8 * reach
    high = np.array([left, top]) + 0.8 * reach
    centre = np.clip(np.array([width, height]) / 2, low, high)
    centre = np.clip(centre, reach + 6, np.array([width, height]) - reach - 6)
    return polygon_region(height, width, centre + corners)


def rectangle_corners(half: np.ndarray, degrees: float) -> np.ndarray:
    """(4, 2) the (x, y) corners of a rectangle `half` wide and tall each side of its centre,
    turned by `degrees`, relative to its centre."""
    angle = math.radians(degrees)
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return (np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half) @ turn.T


def polygon_region(height: int, width: int, points: np.ndarray) -> np.ndarray:
    """(h, w, 1) 1 inside the polygon through `points` ((x, y) rows), its edge softened a little."""
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).polygon([tuple(point) for point in points], fill=255)
    return (np.asarray(mask.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float32) / 255)[..., None]


def draw_mark(frame: np.ndarray, keep: tuple[int, int, int, int], rng: np.random.Generator) -> np.ndarray:
    """The frame with a box drawn round the digit's box `keep` (top, left, bottom, right), a line
    under it, or a pen lying on the page beside it, clear of it (as long as three to six digits are
    tall, a quarter to half as thick; a line under the digit where there is no room for one)."""
    top, left, bottom, right = keep
    height = bottom - top
    image = Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    pen_ink = (int(rng.uniform(20, 50)),) * 2 + (int(rng.uniform(30, 60)),)
    line = max(2, height // 30)
    kind = str(rng.choice(["box", "underline", "pen"]))
    if kind == "pen" and not draw_pen(draw, keep, frame.shape[:2], rng):
        kind = "underline"
    if kind == "box":
        margin = height * rng.uniform(0.12, 0.35)
        draw.rectangle([left - margin, top - margin, right + margin, bottom + margin], outline=pen_ink, width=line)
    elif kind == "underline":
        y = bottom + height * rng.uniform(0.1, 0.25)
        draw.line([(left - height * rng.uniform(0, 0.2), y), (right + height * rng.uniform(0, 0.2), y)],
                  fill=pen_ink, width=line)
    return np.asarray(image, dtype=np.float32)


def draw_ring(frame: np.ndarray, keep: tuple[int, int, int, int], rng: np.random.Generator) -> np.ndarray:
    """The frame with a ring drawn by hand round the digit's box `keep` (top, left, bottom, right),
    clear of it: an ellipse just wider than the box's corners, closed, its ends overlapping and
    drifting apart, or left open by a few degrees."""
    top, left, bottom, right = keep
    height = bottom - top
    cy, cx = (top + bottom) / 2, (left + right) / 2
    ry, rx = (bottom - top) / 2 * rng.uniform(1.5, 1.75), (right - left) / 2 * rng.uniform(1.55, 2.0)
    rx = max(rx, 0.6 * ry)  # a 1's ring is still a ring, not a slot
    kind = str(rng.choice(["closed", "overlapping", "open"]))
    start = rng.uniform(0, 2 * math.pi)
    sweep = {"closed": 1.0, "overlapping": rng.uniform(1.03, 1.12), "open": rng.uniform(0.94, 0.985)}[kind]
    drift = 1.0 if kind == "closed" else rng.uniform(0.96, 1.06)  # the pen ends a little in or out
    along = np.linspace(0.0, 1.0, 240)
    angles = start + 2 * math.pi * sweep * along
    scale = 1 + (drift - 1) * along
    points = [(float(x), float(y)) for x, y in zip(cx + rx * scale * np.cos(angles), cy + ry * scale * np.sin(angles))]
    image = Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8))
    pen_ink = (int(rng.uniform(20, 50)),) * 2 + (int(rng.uniform(30, 60)),)
    ImageDraw.Draw(image).line(points, fill=pen_ink, width=max(2, height // 30), joint="curve")
    return np.asarray(image, dtype=np.float32)


def draw_pen(draw: ImageDraw.ImageDraw, keep: tuple[int, int, int, int], shape: tuple[int, int],
             rng: np.random.Generator) -> bool:
    """A pen beside the digit's box `keep`, a fifth of its height clear of it at least; False where
    none fits (the digit fills the frame)."""
    top, left, bottom, right = keep
    height = bottom - top
    thickness = height * rng.uniform(0.25, 0.5)
    length = height * rng.uniform(3, 6)
    clear = 0.2 * height + thickness / 2
    colour = tuple(int(v) for v in rng.choice([[20, 30, 110], [20, 20, 20], [200, 30, 30], [60, 60, 70]]))
    for _ in range(50):
        angle = rng.uniform(0, math.pi)
        cx, cy = rng.uniform(0, shape[1]), rng.uniform(0, shape[0])
        along = np.linspace(-0.5, 0.5, 64)[:, None] * length * np.array([math.cos(angle), math.sin(angle)])
        points = along + np.array([cx, cy])
        gap_x = np.maximum(np.maximum(left - points[:, 0], points[:, 0] - right), 0)
        gap_y = np.maximum(np.maximum(top - points[:, 1], points[:, 1] - bottom), 0)
        if np.hypot(gap_x, gap_y).min() >= clear:
            draw.line([tuple(points[0]), tuple(points[-1])], fill=colour, width=max(3, round(thickness)))
            return True
    return False


def camera(pixels: np.ndarray, rng: np.random.Generator, blur: float, gain: float = 1.0) -> Image.Image:
    """Sensor noise and focus blur: float RGB -> 8-bit image. With `gain` above 1 (a dim scene),
    blotches a few pixels wide as well, in proportion to it: what a phone's noise reduction leaves
    of the noise its gain brings."""
    pixels = pixels + rng.normal(0, rng.uniform(1, 5), pixels.shape[:2])[..., None]
    if gain > 1.0:
        blotches = ndimage.gaussian_filter(rng.normal(0, 1, pixels.shape[:2]).astype(np.float32), 1.5)
        pixels = pixels + (gain * rng.uniform(1, 3) * blotches / (blotches.std() + 1e-6))[..., None]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(blur)) if blur > 0.2 else image


def encode(image: Image.Image, rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    if rng.random() < 0.85:
        image.save(buffer, "JPEG", quality=int(rng.integers(45, 95)))
    else:
        image.save(buffer, "PNG")
    return buffer.getvalue()


# --- the photo ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Framing:
    width: int
    height: int
    digit_height: int


# Per size: the photo's long side in px, and the digit's height as a fraction of the frame's.
FRAMINGS: dict[Size, tuple[tuple[int, int], tuple[float, float]]] = {
    "normal": ((280, 1000), (0.3, 0.75)),
    "small": ((500, 1100), (0.1, 0.28)),
    "far": ((1200, 2000), (0.04, 0.08)),
}


def frame_for(scene: Scene, rng: np.random.Generator) -> Framing:
    """The photo's size and the digit's height in it."""
    sides, fractions = FRAMINGS[scene.size]
    long_side = int(rng.uniform(*sides))
    aspect = float(rng.choice([1.0, 4 / 3, 3 / 4, 16 / 9, 9 / 16]))
    width, height = (long_side, int(long_side / aspect)) if aspect >= 1 else (int(long_side * aspect), long_side)
    fraction = rng.uniform(*fractions)
    if scene.sheet == "note":  # the note, larger than the digit, fits in the frame
        fraction = min(fraction, 0.35)
    if scene.circled:  # so, mostly, does a ring round the digit
        fraction = min(fraction, 0.5)
    # A digit is about 0.8x as wide as it is tall at most: keep it inside a narrow frame too.
    return Framing(width, height, max(24, int(min(height, 1.1 * width) * fraction)))


def render_photo(ink_shape: np.ndarray | None, scene: Scene, rng: np.random.Generator, framing: Framing,
                 handwritten: np.ndarray | None = None) -> bytes:
    """One photo, encoded as a phone would (JPEG, sometimes PNG). The digit is `handwritten` (an
    MNIST image, redrawn with the scene's pen) or `ink_shape` (coverage at the framing's size)."""
    if scene.low_resolution:
        return render_low_resolution(ink_shape, scene, rng, handwritten)
    image = render_scene(ink_shape, scene, rng, framing, handwritten)
    return encode(image, rng)


def render_scene(ink_shape: np.ndarray | None, scene: Scene, rng: np.random.Generator, framing: Framing,
                 handwritten: np.ndarray | None) -> Image.Image:
    width, height, digit_height = framing.width, framing.height, framing.digit_height
    if handwritten is not None:
        coverage = handwritten_ink(handwritten, digit_height, stroke_width(scene.ink, digit_height, rng), rng)
    elif ink_shape is not None:
        coverage = ink_shape
    else:
        raise ValueError("render_photo needs a handwritten digit or an ink shape")
    tilt = rng.uniform(-12, 12)
    coverage = np.asarray(Image.fromarray(coverage).rotate(tilt, Image.Resampling.BILINEAR, expand=True))
    fit = min(1.0, 0.95 * width / coverage.shape[1], 0.95 * height / coverage.shape[0])
    if fit < 1.0:  # a wide digit in a narrow frame: the writer would have kept it on the page
        coverage = fit_height(coverage, max(1, int(coverage.shape[0] * fit)))
    # Page coordinates: larger than the frame, so that turning the page leaves no empty corners
    # (turned by up to 30 degrees about a point in the frame, a corner moves up to 0.73 of the
    # frame's long side).
    margin = int((0.75 if scene.askew else 0.12) * max(width, height))
    page_h, page_w = height + 2 * margin, width + 2 * margin
    page = np.empty((page_h, page_w, 3), dtype=np.float32)
    page[:] = paper_colour(rng)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (page_h // 4 + 1, page_w // 4 + 1)).astype(np.float32), 2)
    texture = np.kron(texture, np.ones((4, 4), dtype=np.float32))[:page_h, :page_w]
    page *= (1 + 0.015 * texture / (texture.std() + 1e-6))[..., None]
    # A ruled line's spacing is about a line of writing; a square is smaller; a digit may span one
    # to five of a dot grid's cells.
    spacing = digit_height * rng.uniform(*{"squared": (0.25, 0.6), "dotted": (0.2, 1.0)}.get(scene.paper, (0.7, 1.4)))
    draw_ruling(page, scene.paper, spacing, rng)
    ch, cw = coverage.shape
    slack_y, slack_x = max(0, height - ch), max(0, width - cw)
    spread = 0.5 if scene.size == "small" else 0.15 if scene.sheet == "note" or scene.size == "far" else 0.35
    top = margin + int(slack_y / 2 + rng.uniform(-spread, spread) * slack_y)
    left = margin + int(slack_x / 2 + rng.uniform(-spread, spread) * slack_x)
    top, left = min(max(top, 0), page_h - ch), min(max(left, 0), page_w - cw)
    lay_ink(page, coverage, top, left, scene.ink, rng)
    turn = rng.uniform(-6, 6)
    if scene.askew:
        turn = math.copysign(rng.uniform(10, 30), turn)
    centre = (left + cw / 2, top + ch / 2)
    paper_image = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))
    turned = paper_image.rotate(turn, Image.Resampling.BILINEAR, center=centre)
    frame = np.asarray(turned, dtype=np.float32)[margin : margin + height, margin : margin + width]
    box = (top - margin, left - margin, top - margin + ch, left - margin + cw)  # the digit's, in the frame
    if scene.edge:
        paper = paper_region(height, width, box, rng)
        frame = frame * paper + desk_texture(height, width, rng) * (1 - paper)
    if scene.sheet == "note":
        note = note_region(height, width, box, rng)
        frame = frame * note + desk_texture(height, width, rng) * (1 - note)
    if scene.size == "far":
        sheet = whole_page_region(height, width, box, rng)
        frame = frame * sheet + desk_texture(height, width, rng) * (1 - sheet)
    if scene.marked:
        frame = draw_mark(frame, box, rng)
    if scene.circled:
        frame = draw_ring(frame, box, rng)
    frame = frame * lighting(height, width, scene.light, rng)
    blur = rng.uniform(0, 1.6) * max(1.0, max(width, height) / 800)
    return camera(frame, rng, blur, rng.uniform(1.5, 3) if scene.light == "dim" else 1.0)


def render_low_resolution(ink_shape: np.ndarray | None, scene: Scene, rng: np.random.Generator,
                          handwritten: np.ndarray | None) -> bytes:
    """A small photo of a digit reduced to a thumbnail (the digit 12-26 px tall), then enlarged to a
    few hundred pixels as an app or a messenger does: blocky (nearest) or blurry (bilinear, bicubic)."""
    # A thumbnail keeps little of the page: a few pixels per square of a grid, pencil barely there.
    base = replace(scene, low_resolution=False, size="normal", paper="blank" if scene.paper == "squared" else scene.paper,
                   ink="black" if scene.ink == "pencil" else scene.ink)
    framing = Framing(*(int(rng.uniform(160, 260)),) * 2, digit_height=0)
    framing = replace(framing, digit_height=int(framing.height * rng.uniform(0.45, 0.8)))
    if ink_shape is not None:
        ink_shape = fit_height(ink_shape, framing.digit_height)
    image = render_scene(ink_shape, base, rng, framing, handwritten)
    target = rng.uniform(12, 26)
    factor = target / framing.digit_height
    thumb = image.resize((max(4, round(image.width * factor)), max(4, round(image.height * factor))),
                         Image.Resampling.BOX)
    if rng.random() < 0.6:
        thumb = Image.open(io.BytesIO(encode_jpeg(thumb, int(rng.integers(40, 85)))))
    enlarged = int(rng.uniform(200, 520))
    scale = enlarged / max(thumb.size)
    method = [Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC][rng.integers(3)]
    big = thumb.resize((round(thumb.width * scale), round(thumb.height * scale)), method)
    return encode(big, rng)


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def fit_height(coverage: np.ndarray, height: int) -> np.ndarray:
    scale = height / coverage.shape[0]
    size = (max(1, round(coverage.shape[1] * scale)), height)
    return np.asarray(Image.fromarray(coverage).resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


# --- training sets ------------------------------------------------------------------------------

def render_training_photo(index: int, seed: int, digits: np.ndarray, labels: np.ndarray,
                          faces: list[Path]) -> tuple[bytes, int]:
    """Training photo `index` of the set drawn with `seed`: a random scene; the digit a
    handwritten one from `digits` (seven in ten) or one typeset in one of `faces`. Depends on
    (seed, index) alone, so a set renders the same in any order and any number of processes."""
    rng = np.random.default_rng([seed, index])
    scene = Scene.random(rng)
    framing = frame_for(scene, rng)
    if rng.random() < 0.7 or not faces:
        pick = int(rng.integers(len(labels)))
        return render_photo(None, scene, rng, framing, handwritten=digits[pick]), int(labels[pick])
    digit = int(rng.integers(10))
    ink = typeset_ink(digit, faces[int(rng.integers(len(faces)))], framing.digit_height, rng)
    if rng.random() < 0.5:  # a heavier or lighter weight than the face's own
        ink = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).filter(
            ImageFilter.MaxFilter(3) if rng.random() < 0.5 else ImageFilter.MinFilter(3)), dtype=np.float32) / 255
    return render_photo(ink, scene, rng, framing), digit
