"""Steps that find a digit in a photo of a page, for the digit models' manifests.

A phone photo of a handwritten digit is mostly paper: lit unevenly, shadowed, tinted, often ruled
or squared, sometimes with the desk beyond its edge. Taking "whatever is dark" for ink crops half
the page. These steps first take the paper away, then the printed lines, then keep the digit:

- flatten_background: the paper's brightness, estimated at a scale larger than any pen stroke
  (a grey closing), is subtracted and divided out; what is darker than its surroundings remains,
  light on dark as MNIST is, paper at 0. What lies beyond the paper (a darker desk) is divided by a
  floor, not by its own brightness, so its grain stays faint instead of being amplified into ink;
  unless, read as paper in a deep shadow, it holds far more writing than the lit paper does. A
  lighter desk, or one that shows only as a strip, is told from a shadow by its edge: straight
  (a sheet's edge or corner), sharp, and with no writing beyond it. A sheet that lies inside the
  frame (a note on a table), or runs out of it on one side only, is the ground, and all round it
  is cleared.
- level_ruling: a page photographed askew, its ruling or grid running well off level, is turned
  until the lines run level (and the digit written along them upright).
- remove_lines: ruling and grid lines (thin, straight, parallel, across the whole frame) are found
  by their angle and coverage and taken out; where a stroke crosses a line, the stroke is kept. A
  dot grid's dots (one size, on a lattice over the frame) go too.
- select_digit: connected components of the ink; the dominant one (mass, weighed by nearness to the
  frame's centre, long border-hugging shapes discounted, a pen lying on the page set aside) and the
  parts near it (a 5's flag, a broken 4) are the digit, less a box or a ring drawn round it or a
  line under it, cropped, its strokes stretched to 1 and specks elsewhere dropped.

Arrays are float32 HxWxC in [0, 1], as between the preprocess module's steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError, cKDTree

from app.inference.input_errors import PreprocessError

Array = np.ndarray
Step = Callable[[Array], Array]

# Below this many pixels on the short side an image is a drawing, a thumbnail or MNIST itself: one
# clean ground, no paper, lines or desk to take away, and too small for any to matter.
SMALL = 64
# How far, as a fraction of the short side, a sheet's edge may stray from a straight line (the
# reduced map's blur, the paper's slight curl) and still be read as one.
SHEET_EDGE = 0.025


def quantiles(values: Array, *fractions: float) -> list[float]:
    """Order statistics by np.partition (nearest rank): np.percentile's overhead costs more than
    a 28x28 digit's whole preprocessing."""
    flat = values.ravel()
    ranks = [min(len(flat) - 1, max(0, round(q * (len(flat) - 1)))) for q in fractions]
    ordered = np.partition(flat, sorted(set(ranks)))
    return [float(ordered[rank]) for rank in ranks]


def robust_spread(values: Array) -> tuple[float, float]:
    """(median, standard deviation estimated from the median absolute deviation)."""
    [middle] = quantiles(values, 0.5)
    [deviation] = quantiles(np.abs(values - middle), 0.5)
    return middle, 1.4826 * deviation


def quiet_spread(values: Array) -> tuple[float, float]:
    """(median, standard deviation estimated from the deviations below the median): the spread of
    the quiet half. Where a large digit fills many of the rows, their deviations above the median
    would swell the spread until no line stood out of it."""
    [middle] = quantiles(values, 0.5)
    below = middle - values[values <= middle]
    [deviation] = quantiles(below, 0.5)
    return middle, 1.4826 * deviation


def dilate3(mask: Array) -> Array:
    """A boolean mask grown by one pixel in all eight directions (ndimage's filters cost more
    than this in their argument checks on a digit-sized array)."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    wide = grown.copy()
    wide[:, 1:] |= grown[:, :-1]
    wide[:, :-1] |= grown[:, 1:]
    return wide


def as_grey(array: Array) -> Array:
    return array[:, :, 0] if array.shape[2] == 1 else array.mean(axis=2)


def border_ring(grey: Array) -> Array:
    """The values of a ring 5% of the short side wide around the image."""
    ring = max(1, round(min(grey.shape) * 0.05))
    return np.concatenate([grey[:ring].ravel(), grey[-ring:].ravel(), grey[:, :ring].ravel(), grey[:, -ring:].ravel()])


def dark_on_light(grey: Array, window: float = 0.3) -> bool:
    """Whether the writing is darker than its ground.

    Where the border is an even ground (a scan, a drawing, MNIST itself) near one end of the
    frame's range, its brightness says it. Where it is not even (a shadow, the desk or the light
    falling off take the border), or lies midway (a flash photo's border, evenly dimmed, between
    the writing and the lit page), the light's slow changes are taken away (less a local mean
    over `window` of the short side): the ground then sits near the median, and the writing is
    the heavier tail (the third moment's sign), down for ink on paper, up for a light digit on
    black. Weighed over the whole tail, not by its extreme: a bold stroke pulls the local mean
    down, and the paper inside its loops (an 8's, a 0's) then stands out above it as far as the
    ink does below. Where the frame holds two grounds side by side (a sheet on a desk), each is
    read on its own (skew_by_ground). A sheet that lies wholly inside the frame (a note on a
    table) is the lighter tail over the frame, as chalk would be, and its writing is dark on it."""
    return read_polarity(grey, window)[0]


def read_polarity(grey: Array, window: float = 0.3) -> tuple[bool, Array | None]:
    """dark_on_light, and the sheet inside the frame that decided it (sheet_within's mask of the
    reduced map; None where there is none), so that flatten_background need not look again."""
    if min(grey.shape) >= SMALL:
        sheet = sheet_within(shrink(grey, coarse_factor(grey.shape)), grey)
        if sheet is not None:
            return True, sheet
    return darker_than_ground(grey, window), None


def darker_than_ground(grey: Array, window: float) -> bool:
    """dark_on_light where no sheet lies inside the frame: from an even border, or the detail."""
    ring = border_ring(grey)
    low, high = quantiles(grey, 0.01, 0.99)
    ring_low, ring_middle, ring_high = quantiles(ring, 0.1, 0.5, 0.9)
    if ring_high - ring_low < 0.25 * (high - low) and min(ring_middle - low, high - ring_middle) < 0.3 * (high - low):
        return bool(ring_middle > (low + high) / 2)
    coarse = shrink(grey, coarse_factor(grey.shape))
    size = max(3, round(window * min(coarse.shape)) | 1)
    sheet = find_sheet(coarse)
    if sheet is not None:
        return skew_by_ground(coarse, sheet, size) <= 0.0
    detail = coarse - ndimage.uniform_filter(coarse, size=size, mode="nearest")
    [middle] = quantiles(detail, 0.5)
    # The third moment: the far tail weighs most; the faint halo that the local mean leaves around
    # any stroke, and the paper's grain, next to nothing.
    return float(np.mean((detail - middle) ** 3)) <= 0.0


def split_grounds(coarse: Array, stroke: float, contrast: float) -> Array | None:
    """The lighter of two grounds, once thin features of either polarity are taken out (an
    opening and a closing over `stroke` of the short side, in both orders): the part above Otsu's
    level. None where the darker part is not under `contrast` of the lighter's brightness."""
    size = (max(3, round(stroke * min(coarse.shape)) | 1),) * 2
    smooth = 0.5 * (ndimage.grey_opening(ndimage.grey_closing(coarse, size=size), size=size)
                    + ndimage.grey_closing(ndimage.grey_opening(coarse, size=size), size=size))
    lighter = smooth > otsu_threshold(smooth)
    if lighter.all() or not lighter.any():
        return None
    [lit], [dim] = quantiles(smooth[lighter], 0.5), quantiles(smooth[~lighter], 0.5)
    return lighter if dim < contrast * lit else None


def sheet_within(coarse: Array, grey: Array | None = None, stroke: float = 0.05, contrast: float = 0.7,
                 min_width: float = 0.14, min_area: float = 0.01, min_writing: float = 0.005,
                 min_fine_writing: float = 2e-4, max_contact: float = 0.1, max_cut: float = 0.4,
                 min_cut_area: float = 0.1, min_step: float = 1.15) -> Array | None:
    """A sheet that lies inside the frame, the desk all round it (a note on a table) or on three
    sides (a sheet the frame cuts), as a mask of the reduced map; None if none. A lighter region,
    clear of the border or touching it along `max_contact` of its outline at most (a corner the
    frame cuts), or `max_cut` if it takes `min_cut_area` of the frame and a sharp edge sets it off
    (`min_step` times as bright as just beyond it): a sheet whose one side runs out of the frame,
    where a small lighter patch is as likely a blotch of a slate's chalk dust, and a large one
    the middle of a page the light falls off from. Solid (its widest inscribed disc `min_width`
    of the short side or more), `min_area` of the frame at least, four-square (rectangular), and
    written on (darker holes in it, `min_writing` of its area at least: a bold light stroke's
    straight run has none). A whole page photographed from afar holds one small digit whose
    strokes the reduced map blurs away: read on `grey`, the full map, its strokes are
    `min_fine_writing` of the page (finely_written)."""
    short = min(coarse.shape)
    lighter = split_grounds(coarse, stroke, contrast)
    if lighter is None:
        return None
    # The writing on it filled in; thin light streaks (a wooden desk's grain) that would join it
    # to the border taken out by an opening, which also squares off any blot it keeps: each
    # region's shape is then read from the filled map again, near what the opening kept.
    filled = ndimage.binary_fill_holes(lighter)
    opening = max(3, round(0.1 * short))
    sheets = ndimage.binary_opening(filled, structure=np.ones((opening, opening), dtype=bool))
    labels, count = ndimage.label(sheets)
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    widths = 2 * label_maxima(ndimage.distance_transform_edt(sheets), labels, count)
    # Clear of the border, or touching it along a short stretch (a corner the frame cuts), or
    # along one side of a large sheet.
    contact = np.bincount(border_labels(labels), minlength=count + 1)
    outline = np.bincount(labels[sheets & ~ndimage.binary_erosion(sheets)], minlength=count + 1)
    large = areas >= min_cut_area * labels.size
    inside = (contact <= max_contact * outline) | (large & (contact <= max_cut * outline))
    inside[0] = False
    for label in np.flatnonzero(inside & (widths >= min_width * short) & (areas >= min_area * labels.size)):
        region = filled & ndimage.binary_dilation(labels == label, iterations=opening // 2)
        # Its writing is read away from its edge, which the camera blurs into the desk.
        interior = ndimage.binary_erosion(region, iterations=2)
        if (interior.any() and (written(coarse[interior], min_writing)
                                or (grey is not None and finely_written(grey, enlarge_mask(interior, grey.shape),
                                                                        min_fine_writing)))
                and not holed(region, lighter) and rectangular(region)):
            cut = contact[label] > max_contact * outline[label]
            if not cut or boundary_step(coarse, region, max(2, round(0.03 * short))) * min_step <= 1.0:
                return region
    return None


def holed(region: Array, lighter: Array, share: float = 0.5) -> bool:
    """Whether what is not `lighter` inside a filled `region` holds a wide blob (its inscribed disc
    `share` of the region's or more): the ground seen through a light digit's loop (a chalk 0's),
    where a sheet's writing is strokes, thin for its width."""
    holes = region & ~lighter
    if not holes.any():
        return False
    return bool(ndimage.distance_transform_edt(holes).max() >= share * ndimage.distance_transform_edt(region).max())


def written(values: Array, share: float, dark: float = 0.75) -> bool:
    """Whether `share` or more of a region's values are under `dark` times its median: strokes."""
    [ground] = quantiles(values, 0.5)
    return bool(np.count_nonzero(values < dark * ground) >= share * values.size)


def finely_written(grey: Array, region: Array, share: float, dark: float = 0.85) -> bool:
    """Whether `share` or more of a region's pixels are under `dark` times the brightest within
    four pixels of them: thin strokes, however faint a blurred photo leaves them, and not the
    light's slow changes across a page."""
    local = ndimage.maximum_filter(grey, size=9)
    return bool(np.count_nonzero(grey[region] < dark * local[region]) >= share * np.count_nonzero(region))


def rectangular(region: Array, share: float = 0.82) -> bool:
    """Whether a region fills `share` or more of the smallest rectangle round it, at any angle:
    a sheet does, seen straight or a little askew; a blot or an ellipse (pi/4) does not."""
    outline = outline_hull(region)
    if outline is None:
        return False
    hull = outline.points[outline.vertices]
    edges = np.diff(np.vstack([hull, hull[:1]]), axis=0)
    angles = np.arctan2(edges[:, 0], edges[:, 1])
    rotations = np.stack([np.cos(angles), np.sin(angles), -np.sin(angles), np.cos(angles)], axis=1).reshape(-1, 2, 2)
    turned = hull @ rotations  # (edges, points, 2): the hull with each edge in turn laid flat
    extents = turned.max(axis=1) - turned.min(axis=1) + 1.0
    return bool(np.count_nonzero(region) >= share * float((extents[:, 0] * extents[:, 1]).min()))


def outline_hull(region: Array) -> ConvexHull | None:
    """The convex hull of a region's outline pixels (rows, columns); None where they span no area
    (fewer than three, or all on one line)."""
    points = np.argwhere(region ^ ndimage.binary_erosion(region)).astype(np.float64)
    if len(points) < 3:
        return None
    try:
        return ConvexHull(points)
    except QhullError:
        return None


def otsu_threshold(values: Array, bins: int = 64) -> float:
    """The level that best splits `values` into two classes (Otsu: most variance between them)."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)
    above = below[-1] - below
    below_sum = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (below_sum[-1] * below / below[-1] - below_sum) ** 2 / (below * above)
    between[~np.isfinite(between)] = 0.0
    return float(edges[int(np.argmax(between)) + 1])


def find_sheet(coarse: Array, stroke: float = 0.05, contrast: float = 0.7, min_area: float = 0.1) -> Array | None:
    """One of two grounds side by side, which the third moment over the whole frame cannot weigh:
    a sheet on a desk, the desk taking most of the frame, or a page's edge with a small digit far
    from it. The frame is split in two (split_grounds), and a region on either side is the sheet
    or the desk where it reaches the border, takes `min_area` of the frame or more, and its edge
    is straight (straight_edged). The largest such region, its holes (the writing on it) filled;
    None if none."""
    short = min(coarse.shape)
    lighter = split_grounds(coarse, stroke, contrast)
    if lighter is None:
        return None
    best, sheet = 0, None
    for side in (lighter, ~lighter):
        labels, count = ndimage.label(side)
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        for label in np.unique(border_labels(labels)):
            if label == 0 or areas[label] < max(min_area * labels.size, best + 1):
                continue
            region = labels == label
            if straight_edged(region, SHEET_EDGE * short):
                best, sheet = areas[label], ndimage.binary_fill_holes(region)
    return sheet


def skew_by_ground(coarse: Array, sheet: Array, size: int) -> float:
    """The skewness of the detail (less a local mean of its own ground over `size`) inside the
    sheet and inside the rest, away from the edge between them; of the two, the one further
    from 0. The writing lies on one ground and makes its tail heavy; the other is a desk's grain,
    whose own skew would outweigh a small digit's if the two were pooled."""
    margin = max(2, round(0.03 * min(coarse.shape)))
    strongest = 0.0
    for ground in (sheet, ~sheet):
        inside = ndimage.binary_erosion(ground, iterations=margin, border_value=1)
        if np.count_nonzero(inside) < 0.02 * inside.size:
            continue
        weight = ndimage.uniform_filter(ground.astype(np.float32), size=size, mode="nearest")
        local = ndimage.uniform_filter(np.where(ground, coarse, 0.0), size=size, mode="nearest")
        detail = coarse[inside] - (local / np.maximum(weight, 1e-6))[inside]
        detail -= quantiles(detail, 0.5)[0]
        # A floor under the spread: a flat ground (a plain desk, an empty corner) has next to none,
        # and its skew would be a JPEG artefact's.
        spread = max(float(np.mean(detail**2)), 0.02**2)
        skew = float(np.mean(detail**3)) / spread**1.5
        if abs(skew) > abs(strongest):
            strongest = skew
    return strongest


def label_maxima(values: Array, labels: Array, count: int) -> Array:
    """The largest value under each label 0..count (ndimage.maximum sorts the whole map)."""
    maxima = np.full(count + 1, -np.inf)
    np.maximum.at(maxima, labels.ravel(), values.ravel())
    return maxima


def shrink(grey: Array, factor: int) -> Array:
    """Box-average by an integer factor (edges cropped to a multiple of it)."""
    if factor <= 1:
        return grey
    height, width = (grey.shape[0] // factor) * factor, (grey.shape[1] // factor) * factor
    return grey[:height, :width].reshape(height // factor, factor, width // factor, factor).mean(axis=(1, 3))


def enlarge(coarse: Array, shape: tuple[int, int]) -> Array:
    """Bilinear resize of a float map to `shape` (h, w)."""
    if coarse.shape == shape:
        return coarse
    image = Image.fromarray(np.ascontiguousarray(coarse, dtype=np.float32))
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def enlarge_mask(mask: Array, shape: tuple[int, int]) -> Array:
    """A boolean mask of the reduced map brought to `shape`: every pixel it touches at all."""
    return enlarge(mask.astype(np.float32), shape) > 0.01


def border_labels(labels: Array) -> Array:
    """The labels along the frame's four sides (each side's pixels in turn, repeats kept)."""
    return np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])


def desk_margin(shape: tuple[int, ...]) -> int:
    """How far round what is not paper is cleared too, on the reduced map: the paper's edge itself,
    blurred by the camera, is neither."""
    return 3 + 2 * max(1, min(shape[:2]) // 80)


def close_coarse(coarse: Array, window: float) -> Array:
    """A grey closing of a (reduced) map over a square `window` times its short side: it fills in
    every dark feature narrower than that and keeps wider ones and smooth slopes as they are."""
    size = max(3, round(window * min(coarse.shape)) | 1)
    # Beyond the frame the light is taken to go on as it was going (an odd reflection): padded
    # with copies of the edge instead, a page darkening towards the frame's edge (vignetting)
    # would meet a brighter margin, and its last half-window would pass for ink.
    pad = size // 2 + 3
    padded = np.pad(coarse, pad, mode="reflect", reflect_type="odd")
    closed = ndimage.grey_closing(padded, size=(size, size))
    # The closing's flat windows leave small steps; a light blur smooths them without moving the
    # edges of wide regions (the paper's, a shadow's) far.
    return ndimage.uniform_filter(closed, size=5)[pad:-pad, pad:-pad]


def coarse_factor(shape: tuple[int, ...]) -> int:
    """Background work runs at up to 4x reduced resolution: a closing's cost grows with pixels."""
    return max(1, min(4, min(shape[:2]) // 160))


def flatten_background(window: float = 0.3, floor: float = 0.5) -> Step:
    """Ink as it stands out from the paper under it: light on dark, paper at 0, the darkest
    stroke near 1. `window`: the closing's size as a fraction of the short side (wider than any
    stroke). `floor`: divide by at least this fraction of the paper's brightness, so that
    regions far darker than the paper (the desk beyond its edge) do not become loud."""

    def step(array: Array) -> Array:
        grey = as_grey(array).astype(np.float32)
        dark, sheet = read_polarity(grey)
        if not dark:  # light ink on a dark ground (MNIST itself, a blackboard)
            grey = 1.0 - grey
        if min(grey.shape) < SMALL:
            # A thumbnail, a drawing or MNIST itself: one ground, no light to speak of across it.
            [paper] = quantiles(border_ring(grey), 0.5)
            return np.clip((paper - grey) / max(paper, 1e-3), 0.0, 1.0)[:, :, None]
        coarse = shrink(grey, coarse_factor(grey.shape))
        ink = ink_on_paper(grey, coarse, window, floor)
        if not dark:  # a dark slate lying on a pale table is a sheet once the frame is turned over
            sheet = sheet_within(coarse, grey)
        if sheet is not None:
            # A note on a table: all round it is the table, and its blurred edge is neither.
            ink[~enlarge_mask(ndimage.binary_erosion(sheet, iterations=3), grey.shape)] = 0.0
        return ink[:, :, None]

    return step


def ink_on_paper(grey: Array, coarse: Array, window: float, floor: float) -> Array:
    """flatten_background's ink map (HxW) of a frame with dark writing, `coarse` its reduced map."""
    closed = close_coarse(coarse, window)
    narrow = close_coarse(coarse, 0.05)  # follows a shadow's edge; fills in pen strokes
    [paper] = quantiles(closed, 0.9)
    shade = find_shade(coarse, narrow, closed, paper)
    ink = ink_against(grey, closed, narrow, paper, shade, floor)
    if shade is not None and shade.beyond.any():
        # What looks like the desk may be the page under a deep shadow (a hand's, a phone's)
        # with the digit in it: then read as paper, it holds far more writing than the rest,
        # gathered in a few strokes, where a wooden or mottled desk's grain is spread all over.
        deep = Shade(shade.shadow | shade.beyond, np.zeros_like(shade.beyond))
        shaded = ink_against(grey, closed, narrow, paper, deep, floor)
        # Not the rim where it meets the lit paper, whichever it is: read as a shadow's, the
        # edge of a desk is a long line that would outweigh a small digit.
        rim = shade.beyond & ~ndimage.binary_erosion(shade.beyond, iterations=desk_margin(coarse.shape),
                                                     border_value=1)
        inside = np.where(enlarge_mask(rim, grey.shape), 0.0, shaded)
        if ink_share(inside) >= 3 * ink_share(ink) + 2e-4 and gathered(inside):
            return shaded
    return clear_desk_beside(grey, coarse, narrow, paper, shade, ink)


def ink_against(grey: Array, closed: Array, narrow: Array, paper: float, shade: Shade | None,
                floor: float) -> Array:
    """How far each pixel is below the paper's brightness under it, as a fraction of it (HxW).
    `closed` and `narrow` are the wide and narrow closings of the reduced map; `paper` the lit
    paper's brightness."""
    if shade is not None and shade.shadow.any():
        # In a shadow the paper is darker than the wide closing says, up to the shadow's edge:
        # there the narrow closing (which follows the edge) is the paper's brightness.
        inside = ndimage.maximum_filter(shade.shadow.view(np.uint8), size=5) > 0
        closed = np.where(inside, np.minimum(closed, narrow), closed)
    background = np.maximum(enlarge(closed, grey.shape), grey)
    ink = np.clip((background - grey) / np.maximum(background, max(floor * paper, 1e-3)), 0.0, 1.0)
    if shade is not None:
        # What is not paper, and the line where a shade meets the lit paper (a sharp shadow,
        # a grey desk's edge), which no background estimate follows exactly.
        edges = shade.shadow ^ ndimage.binary_erosion(shade.shadow, iterations=1, border_value=1)
        cleared = shade.beyond | (ndimage.maximum_filter(edges.view(np.uint8), size=3) > 0)
        ink[enlarge_mask(cleared, grey.shape)] = 0.0
    return ink


def ink_share(ink: Array, level: float = 0.2) -> float:
    """The share of the frame that is clearly writing."""
    return np.count_nonzero(ink >= level) / ink.size


def gathered(ink: Array, level: float = 0.2, parts: int = 3, share: float = 0.5) -> bool:
    """Whether `share` or more of what is clearly ink (`level`) lies in its `parts` largest
    connected parts: a digit's few strokes, not a grain of hundreds of short streaks."""
    labels, count = ndimage.label(ink >= level, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel())[1:]
    return count > 0 and float(np.sort(sizes)[-parts:].sum()) >= share * float(sizes.sum())


@dataclass(frozen=True)
class Shade:
    """Wide dark regions of the reduced map, which the wide closing would fill in as if ink."""

    shadow: Array  # a shadow's inside: paper, lit less (bool, reduced map)
    beyond: Array  # not paper: the desk beyond the paper's edge (bool, reduced map)


def find_shade(coarse: Array, narrow: Array, closed: Array, paper: float, contrast: float = 0.12,
               desk: float = 0.3) -> Shade | None:
    """Regions darker than the wide closing says, by at least `contrast`, that are wide: at least
    0.15 of the short side thick and 2% of the frame. Pen strokes are thinner (a narrow
    closing, a twentieth of the short side, fills them in). Those that reach the frame's border
    and are darker by at least `desk` are taken for what lies beyond the paper, unless they are as
    dark as ink, long for their width and their edge not a sheet's straight one (a large digit
    framed tightly); the rest for shadows on it, unless they are as dark as ink (see below).
    `coarse` is the reduced map, `narrow` and `closed` its narrow and wide closings; `paper` the
    lit paper's brightness."""
    darker = 1 - narrow / np.maximum(closed, 1e-3)
    dark = darker >= contrast
    labels, count = ndimage.label(dark, structure=np.ones((3, 3), dtype=bool))
    index = np.arange(1, count + 1)
    thickness = 2 * label_maxima(ndimage.distance_transform_edt(dark), labels, count)[1:]
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    depth = np.bincount(labels.ravel(), weights=darker.ravel(), minlength=count + 1)[1:] / np.maximum(areas, 1)
    edge = np.zeros(count + 1, dtype=bool)
    edge[border_labels(labels)] = True
    short = min(closed.shape)
    depth = np.atleast_1d(depth)
    thickness = np.atleast_1d(thickness)
    boxes = ndimage.find_objects(labels)
    extents = np.array([max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes]) if boxes else np.zeros(0)
    # Wide, and solid for its extent: a shadow or a desk is a broad patch; a stroke, however thick
    # at a junction, is long for its width (a tight crop of a 7 touches the border too).
    wide = (thickness >= 0.15 * short) & (areas >= 0.02 * labels.size) & (thickness >= 0.25 * extents)
    # Ink is darker than any shadow: a wide region inside the frame that is anywhere at least half
    # as dark as the paper is a thick stroke (a marker's, a bold face's, a blurred thumbnail's,
    # whose soft rim and filled-in loops bring its mean down), which the wide closing fills as it
    # should. So is one that runs into the border (a large digit framed tightly), unless its edge
    # is a sheet's, straight.
    peak = np.atleast_1d(label_maxima(ndimage.uniform_filter(darker, size=3), labels, count)[1:])
    inky = wide & (peak >= 0.5)
    stroke = inky & ~edge[1:]
    for label in index[inky & edge[1:] & (thickness < 0.5 * extents)]:  # long for its width
        stroke[label - 1] = not straight_edged(labels == label, SHEET_EDGE * short)
    beyond_labels = index[wide & edge[1:] & (depth >= desk) & ~stroke]
    shadow = np.isin(labels, index[wide & ~np.isin(index, beyond_labels) & ~stroke])
    beyond = np.isin(labels, beyond_labels) | far_below_paper(coarse, closed, paper)
    if not shadow.any() and not beyond.any():
        return None
    return Shade(shadow, ndimage.maximum_filter(beyond.view(np.uint8), size=desk_margin(closed.shape)) > 0)


def far_below_paper(coarse: Array, closed: Array, paper: float, level: float = 0.6, min_area: float = 0.03,
                    min_step: float = 1.12) -> Array:
    """What lies wider than the wide closing's window and far darker than the paper (under
    `level` of its brightness), against the frame's border: a desk, not a shadow on the page
    (shadows darken paper less). A thirtieth of the frame at least, and set off by a step: just
    outside it the image is at least `min_step` times brighter than just inside. Light that falls
    off towards a corner darkens the page as much, but gradually, and the page there is paper
    (writing on it is writing)."""
    dark = closed < level * paper
    labels, count = ndimage.label(dark)
    if count == 0:
        return dark
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    edge = np.unique(border_labels(labels))
    reach = max(2, round(0.04 * min(closed.shape)))
    keep = [label for label in edge if label > 0 and areas[label] >= min_area * labels.size
            and boundary_step(coarse, labels == label, reach) >= min_step]
    return np.isin(labels, keep)


def clear_desk_beside(grey: Array, coarse: Array, narrow: Array, paper: float, shade: Shade | None,
                      ink: Array, dark: float = 0.65) -> Array:
    """`ink` with the desk beside the paper's edge cleared (and a margin for the edge itself), where
    find_shade did not take it for what lies beyond: a strip narrower than the wide closing's
    window, or a mid-grey surface whose edge is as sharp as a shadow's. Such a region
    (beside_paper) is cleared only when it holds no writing: fewer pixels under `dark` times the
    region's own median than a fifth of those as clearly ink elsewhere. A shadow with a straight edge
    that falls across the digit looks the same, and keeps its writing so."""
    unsure = beside_paper(coarse, narrow, paper, None if shade is None else shade.beyond)
    if not unsure.any():
        return ink
    labels, count = ndimage.label(unsure)
    factor = coarse_factor(grey.shape)
    rows = np.minimum(np.arange(grey.shape[0]) // factor, labels.shape[0] - 1)
    cols = np.minimum(np.arange(grey.shape[1]) // factor, labels.shape[1] - 1)
    full = labels[rows[:, None], cols[None, :]]
    ground = np.zeros(count + 1)
    ground[1:] = ndimage.median(coarse, labels, np.arange(1, count + 1))
    # Measured on the photo itself: against its own ground, a stroke in the region is as dark as
    # one on the lit paper is against the paper, and a desk's grain is not.
    writing = np.bincount(full.ravel(), weights=(grey < dark * ground[full]).ravel(), minlength=count + 1)
    elsewhere = float(np.count_nonzero((ink >= 1 - dark) & (full == 0)))
    empty = [label for label in range(1, count + 1) if writing[label] < max(2e-4 * grey.size, 0.2 * elsewhere)]
    if not empty:
        return ink
    cleared = ndimage.maximum_filter(np.isin(labels, empty).view(np.uint8), size=desk_margin(coarse.shape)) > 0
    return np.where(enlarge_mask(cleared, grey.shape), 0.0, ink).astype(np.float32)


def beside_paper(coarse: Array, narrow: Array, paper: float, known: Array | None,
                 levels: tuple[float, ...] = (0.72, 0.6, 0.48), min_area: float = 0.01,
                 min_step: float = 1.15) -> Array:
    """Regions of the reduced map, apart from `known` ones, that look like the desk beside a
    paper's edge: under one of `levels` of the paper's brightness once pen strokes are filled in
    (`narrow`, the narrow closing), a hundredth of the frame at least, lying along the frame's
    border (touching it along half their extent or more), set off by a step (`min_step`, as in
    far_below_paper) along an edge that is one straight line or two meeting at a corner
    (straight_edged), as a sheet's are and a hand's shadow's are not. Each level is tried: where
    the page dims towards the desk, the region at the highest level takes in dim paper too, and
    its edge is the desk's only at a lower one."""
    short = min(narrow.shape)
    # Averaged over a twentieth of the frame: a mottled desk's lighter patches are not paper.
    smooth = ndimage.uniform_filter(narrow, size=max(3, round(0.05 * short) | 1), mode="nearest")
    reach = max(2, round(0.03 * short))
    found = np.zeros(narrow.shape, dtype=bool)
    for level in levels:
        dark = smooth < level * paper
        if known is not None:
            dark &= ~known
        labels, count = ndimage.label(dark & ~found)
        if count == 0:
            continue
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        contact = np.bincount(border_labels(labels), minlength=count + 1)
        boxes = ndimage.find_objects(labels)
        for label in np.flatnonzero(contact[1:]) + 1:
            box = boxes[label - 1]
            extent = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
            if areas[label] < min_area * labels.size or contact[label] < 0.5 * extent:
                continue
            region = labels == label
            if boundary_step(narrow, region, reach) >= min_step and straight_edged(region, SHEET_EDGE * short):
                found |= region
    return found


def segment_distances(points: Array, start: Array, end: Array) -> Array:
    """Each point's distance (points N x 2, rows and columns) to the segment from start to end."""
    along = end - start
    t = np.clip(((points - start) @ along) / max(float(along @ along), 1e-9), 0.0, 1.0)
    return np.hypot(*(points - start - t[:, None] * along).T)


def straight_edged(region: Array, tolerance: float, min_turn: float = 45.0) -> bool:
    """Whether a region's edge inside the frame runs from the border to the border along one
    straight line, or two that meet at a corner turning by `min_turn` degrees or more (a
    sheet's corner): 95% of the edge within `tolerance` pixels of it. A curve is not, though
    two shallow segments would follow it as closely."""
    height, width = region.shape
    region = ndimage.binary_fill_holes(region)
    inner = region & ~ndimage.binary_erosion(region, border_value=1)
    ys, xs = np.nonzero(inner)
    near = max(1.0, tolerance)  # the closings blur the last few pixels at the frame's border
    on_border = (ys < near) | (xs < near) | (ys >= height - near) | (xs >= width - near)
    points = np.stack([ys, xs], axis=1).astype(np.float64)
    ends, free = points[on_border], points[~on_border]
    if len(ends) < 2:
        return False  # no edge from border to border: not the desk beside a sheet
    if len(free) == 0:
        return True
    ends = ends[:: max(1, len(ends) // 256)]  # the farthest pair, found among a few hundred
    gaps = np.hypot(*(ends[:, None, :] - ends[None, :, :]).transpose(2, 0, 1))
    first, second = np.unravel_index(int(np.argmax(gaps)), gaps.shape)
    start, end = ends[first], ends[second]
    distances = segment_distances(free, start, end)
    if quantiles(distances, 0.95)[0] <= tolerance:
        return True
    corner = free[int(np.argmax(distances))]
    legs = corner - start, end - corner
    cosine = float(legs[0] @ legs[1]) / max(float(np.hypot(*legs[0]) * np.hypot(*legs[1])), 1e-9)
    if np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))) < min_turn:
        return False
    bent = np.minimum(segment_distances(free, start, corner), segment_distances(free, corner, end))
    return quantiles(bent, 0.95)[0] <= tolerance


def boundary_step(coarse: Array, region: Array, reach: int) -> float:
    """How much brighter the image is in a band `reach` pixels wide just outside `region` than in
    the band just inside it (medians)."""
    outside = ndimage.binary_dilation(region, iterations=reach) & ~region
    inside = region & ~ndimage.binary_erosion(region, iterations=reach, border_value=1)
    if not outside.any() or not inside.any():
        return float("inf")  # the whole frame: nothing to compare it with
    [lit] = quantiles(coarse[outside], 0.5)
    [dim] = quantiles(coarse[inside], 0.5)
    return lit / max(dim, 1e-3)


def sheared_rows(ys: Array, xs: Array, slope: float) -> Array:
    """Each point's row once the frame is sheared by `slope` (rows per column): points on a line
    of that slope share a row."""
    return np.rint(ys - xs * slope).astype(np.int64)


def line_slope(ink: Array, max_degrees: float, coarse: float = 0.5, skip: tuple[float, ...] = (),
               min_degrees: float = 0.0, damped: bool = False) -> float:
    """The slope (rows per column) along which the ink's long straight structures run: the one
    whose sheared rows hold the ink most unevenly (sum of squared row sums), searched in steps of
    `coarse` degrees, then finer, on a copy reduced to about 320 px; none within 0.3 degrees of
    a slope in `skip`, nor less than `min_degrees` (less one, where the finer search settles) off
    level. `damped`: each pixel weighs the square root of its ink, so that a bold digit's strokes
    do not outweigh faint ruling that runs much further."""
    factor = max(1, max(ink.shape) // 320)
    # Thin structures only (a white top-hat): a large bold digit, all of it ink, would otherwise
    # weigh more than every ruled line together and turn the search to its own strokes.
    small = thin_structures(shrink(ink, factor), 5)
    middle, spread = robust_spread(small)
    # The paper's grain says nothing about direction: only what stands out of it is weighed.
    ys, xs = np.nonzero(small > middle + 2 * spread)
    weights = np.sqrt(small[ys, xs]) if damped else small[ys, xs]
    ys, xs = ys.astype(np.float32), xs.astype(np.float32)

    def concentration(degrees: float) -> float:
        rows = sheared_rows(ys, xs, float(np.tan(np.radians(degrees))))
        sums = np.bincount(rows - rows.min(), weights=weights)
        return float(np.square(sums).sum())

    skipped = np.degrees(np.arctan(np.asarray(skip, dtype=np.float64)))

    def allowed(angles: Array) -> Array:
        steep = np.abs(angles) >= min_degrees - 1.0
        return angles[steep & np.all(np.abs(angles[:, None] - skipped[None, :]) >= 0.3, axis=1)]

    candidates = allowed(np.arange(-max_degrees, max_degrees + 1e-6, coarse))
    if len(ys) == 0 or len(candidates) == 0:
        return 0.0
    best = max(candidates, key=concentration)
    if coarse > 0.5:
        best = max(allowed(np.arange(best - coarse, best + coarse + 1e-6, 0.5)), key=concentration, default=best)
    return float(np.tan(np.radians(max(allowed(np.arange(best - 0.4, best + 0.41, 0.1)), key=concentration, default=best))))


def line_offsets(ink: Array, slope: float, bands: int = 8, min_contrast: float = 0.02, min_bands: int = 3,
                 page: Array | None = None) -> Array:
    """Sheared rows that a line crosses from side to side: in nearly every part (band of columns)
    of the paper, the row's mean ink stands out from that band's other rows (4 robust deviations,
    and at least `min_contrast`). A band where the row is mostly cleared (ink exactly 0: beyond
    the paper) does not count against it, but the row must lie on the paper in `min_bands` bands
    or more; a row is judged with its neighbours either side, so a line a little off the slope
    still counts. `page`: where the paper is, when `ink` is not the ink map itself (its thin
    structures: 0 on paper as well as beyond it). Returns the sheared row indices (ascending)."""
    height, width = ink.shape
    ys, xs = np.indices(ink.shape).reshape(2, -1)
    values = ink.ravel()
    rows = sheared_rows(ys, xs, slope)
    base = rows.min()
    rows = rows - base
    span = int(rows.max()) + 1
    band = np.minimum(xs * bands // width, bands - 1)
    cell = band * span + rows
    sums = np.bincount(cell, weights=values, minlength=bands * span).reshape(bands, span)
    pixels = np.bincount(cell, minlength=bands * span).reshape(bands, span)
    on_page = (ink if page is None else page).ravel() > 0
    marked = np.bincount(cell, weights=on_page, minlength=bands * span).reshape(bands, span)
    inside = pixels >= 0.3 * width / bands  # the sheared row crosses this band within the frame
    means = np.where(inside, sums / np.maximum(pixels, 1), np.nan)
    near = ndimage.maximum_filter1d(np.nan_to_num(means, nan=-1.0), size=3, axis=1)
    standing_out = np.zeros((bands, span), dtype=bool)
    # Rows beyond the paper (cleared to exactly 0) would pass for a quiet paper's spread. A photo's
    # paper is grainy, ink above 0 nearly everywhere; where most rows are all 0 it is a drawing.
    grainy = inside & (marked >= 0.3 * pixels)
    for index in range(bands):
        usable = means[index][grainy[index] if 2 * grainy[index].sum() >= inside[index].sum() else inside[index]]
        if len(usable) < 8:
            continue
        middle, spread = quiet_spread(usable)
        standing_out[index] = near[index] >= middle + max(min_contrast, 4 * spread)
    on_paper = inside & ((marked >= 0.3 * pixels) | standing_out)
    counted = on_paper.sum(axis=0)
    votes = (standing_out & on_paper).sum(axis=0)
    lines = (counted >= min_bands) & (votes >= np.ceil(0.75 * counted))
    return np.flatnonzero(lines) + base


def offset_lines(offsets: Array) -> list[tuple[int, int]]:
    """The (top, bottom) sheared rows of each line in line_offsets' answer: one line per run of
    neighbouring offsets, less the row's reach either side (see line_offsets)."""
    if len(offsets) == 0:
        return []
    runs = np.split(offsets, np.flatnonzero(np.diff(offsets) > 1) + 1)
    return [(int(run[0]) + 1, int(run[-1])) if len(run) > 2 else (int(run[0]), int(run[-1]) + 1) for run in runs]


def line_thickness(shape: tuple[int, ...], max_thickness: float) -> int:
    """The thickest a ruled line may be, in pixels: `max_thickness` of the short side, 6 at least."""
    return max(6, round(max_thickness * min(shape)))


def row_pixels(shape: tuple[int, ...], slope: float, row: float) -> tuple[Array, Array]:
    """The (rows, columns) of the pixels along sheared `row` that lie within a frame of `shape`."""
    height, width = shape[:2]
    columns = np.arange(width)
    rows = np.rint(row + columns * slope).astype(np.int64)
    within = (rows >= 0) & (rows < height)
    return rows[within], columns[within]


def ink_along(ink: Array, slope: float, row: float, paper: Array | None) -> float:
    """The typical (median) ink along sheared `row` where it crosses the paper (`paper`, a mask;
    None: all the frame, as on a drawing). 0 where it crosses none."""
    rows, columns = row_pixels(ink.shape, slope, row)
    if paper is not None:
        on_paper = paper[rows, columns]
        rows, columns = rows[on_paper], columns[on_paper]
    return quantiles(ink[rows, columns], 0.5)[0] if len(rows) else 0.0


def paper_of(ink: Array, share: float = 0.25) -> Array | None:
    """Where a photo's paper is in its ink map: grainy, above 0 nearly everywhere, and cleared to
    exactly 0 beyond it (the desk). None for a drawing, 0 all over but its strokes and lines (less
    than `share` of the frame): a row through a few of its strokes is mostly blank ground."""
    paper = ink > 0
    return paper if np.count_nonzero(paper) >= share * paper.size else None


def line_width(ink: Array, slope: float, top: int, bottom: int, paper: Array | None) -> int:
    """How many of a found line's sheared rows (`top` to `bottom`, as offset_lines gives them) carry
    it: those whose typical ink along the line is at least half way from the paper at the run's
    edges to its peak. line_offsets finds a blurred line with its faint fringes, up to twice as
    wide as the line itself."""
    profile = np.array([ink_along(ink, slope, row, paper) for row in range(top - 1, bottom + 1)])
    low, peak = min(profile[0], profile[-1]), profile.max()
    return int(np.count_nonzero(profile >= (low + peak) / 2))


@dataclass(frozen=True)
class RuledLine:
    """A ruled line found in an ink map: its top and bottom sheared rows along its own slope (rows
    per column, as fit_line follows it), and its typical ink on the paper."""

    top: float
    bottom: float
    slope: float
    strength: float


def fit_line(ink: Array, slope: float, row: float, paper: Array | None, reach: float = 0.45,
             step: float = 0.15) -> tuple[float, float, float]:
    """The slope and sheared row that follow a line found along `slope` at `row` most closely, and
    its typical ink along them: the strongest within `reach` degrees either way, turned about the
    frame's middle column. A page photographed at a slant rules its lines at angles apart, each a
    little off the slope they were found by; erased along that slope, a line's ends would stay."""
    middle = ink.shape[1] / 2
    through = row + middle * slope  # where the line crosses the middle column
    degrees = float(np.degrees(np.arctan(slope)))
    best = (ink_along(ink, slope, row, paper), slope, row)
    for turn in np.arange(-reach, reach + 1e-6, step):
        candidate = float(np.tan(np.radians(degrees + turn)))
        centre = through - middle * candidate
        for nudge in (-1.0, 0.0, 1.0):
            strength = ink_along(ink, candidate, centre + nudge, paper)
            if strength > best[0]:
                best = (strength, candidate, centre + nudge)
    return best[1], best[2], best[0]


def ruling_lines(ink: Array, slope: float, max_thickness: int, darkest: float, paper: Array | None,
                 level: float, min_lines: int = 1) -> list[RuledLine]:
    """The lines found along `slope` to take out, each fitted (fit_line): those no wider than
    `max_thickness` (line_width) whose typical ink stands above the paper's `level` (a row
    through a few strokes or specks is mostly paper), and none unless there are `min_lines`. One
    as dark as the writing (`darkest`, the darkest ink in the frame) goes only beside others
    at least half as dark: a lone printed line (a margin, the one rule in a close-up) is fainter
    than the writing, and a 7's or a 5's straight bar is not."""
    lines = []
    for top, bottom in offset_lines(line_offsets(ink, slope)):
        # Up to two rows each side may be a blurred line's fringes; more is something broad, or
        # something at another slope that the sheared rows smear.
        if bottom - top > max_thickness + 4 or line_width(ink, slope, top, bottom, paper) > max_thickness:
            continue
        centre = (top + bottom - 1) / 2
        fitted, row, strength = fit_line(ink, slope, centre, paper)
        if strength > level:
            lines.append(RuledLine(top + row - centre, bottom + row - centre, fitted, strength))
    # A page's lines are printed alike; one as dark as the writing and far darker than the rest
    # is a stroke (a 4's or a 1's upright, written straight down the frame).
    strengths = np.array([line.strength for line in lines])
    lines = [line for index, line in enumerate(lines)
             if line.strength < 0.6 * darkest
             or (len(lines) > 1 and line.strength < 2 * float(np.median(np.delete(strengths, index))))]
    return lines if len(lines) >= min_lines else []


def erase_lines(ink: Array, lines: list[RuledLine]) -> tuple[Array, Array]:
    """`ink` with each line taken out: what the line adds (its typical ink) is taken off; a stroke
    on top of it, darker than a printed line, keeps the rest; one that crosses it is restored from
    above and below. Also returns where the lines ran, with a pixel either side (a mask)."""
    height, width = ink.shape
    columns = np.arange(width)
    cleaned = ink.copy()
    ran = np.zeros(ink.shape, dtype=bool)
    gap = 2
    for line in lines:
        shift = columns * line.slope
        first = np.floor(line.top - 1 + shift).astype(np.int64)
        last = np.ceil(line.bottom + shift).astype(np.int64)
        across = np.minimum(ink[np.clip(first - gap, 0, height - 1), columns],
                            ink[np.clip(last + gap, 0, height - 1), columns])
        for step in range(-1, int((last - first).max()) + 2):
            rows = first + step
            inside = (rows >= 0) & (rows < height) & (rows <= last + 1)
            ran[rows[inside], columns[inside]] = True
            inside &= (step >= 0) & (rows <= last)
            r, c = rows[inside], columns[inside]
            cleaned[r, c] = np.minimum(cleaned[r, c], np.maximum(across[inside], ink[r, c] - 1.25 * line.strength))
    return cleaned, ran


def erase_horizontal_lines(ink: Array, max_thickness: int, max_degrees: float, rounds: int = 3) -> Array:
    """Take out ruling lines that run across the frame (within `max_degrees` of horizontal). A page
    photographed at a slant rules its lines at angles a degree or more apart, more than
    line_offsets forgives along a whole frame: once the lines along the main slope are out, the
    rest is searched again along its own slope (another than those searched), until a round finds
    no lines. The search looks past where lines were taken out, whose faint fringes would hold it
    to their slope, and each line is erased along the slope that fits it best (fit_line)."""
    [darkest] = quantiles(ink, 0.999)
    paper = paper_of(ink)
    level = quantiles(ink[paper], 0.5)[0] if paper is not None else 0.0
    searched = ink
    slopes: list[float] = []
    for _ in range(rounds):
        slope = line_slope(searched, max_degrees, skip=tuple(slopes))
        # Lines a slant sets apart come as a page's ruling does, several at a time.
        lines = ruling_lines(searched, slope, max_thickness, darkest, paper, level, min_lines=2 if slopes else 1)
        slopes.append(slope)
        if not lines:
            break
        ink, ran = erase_lines(ink, lines)
        searched = np.where(ran, level, ink).astype(ink.dtype)
    return ink


def erase_dot_grid(ink: Array, max_size: float = 0.08, min_dots: int = 24, regular: float = 0.6,
                   min_extent: float = 0.4) -> Array:
    """Take out a dot grid (a bullet journal's page): `min_dots` or more small round specks (at
    most `max_size` of the short side across) of about one size, most of them (`regular`) as far
    from their nearest neighbour as the typical spacing give or take a quarter, spread over
    `min_extent` of the frame both ways or more. Grain, pencil dust and a dim photo's blotches
    are as small but lie at random; a dotted digit (a dot-matrix display's) is regular but spans
    only the digit. Where the lattice is found, a speck goes if it sits on it (on_lattice): a
    broken stroke's small pieces do not, and stay; a dot that touches a stroke is one component
    with it, and a dot beside the frame's border may have lost the neighbours that tell it: both
    stay."""
    paper, spread = robust_spread(ink[::2, ::2] if ink.size > 40_000 else ink)
    labels, count = ndimage.label(ink > paper + max(4 * spread, 0.03), structure=np.ones((3, 3), dtype=bool))
    if count < min_dots:
        return ink
    boxes = ndimage.find_objects(labels)
    heights = np.array([box[0].stop - box[0].start for box in boxes])
    widths = np.array([box[1].stop - box[1].start for box in boxes])
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    across = np.maximum(heights, widths)
    specks = np.flatnonzero((across <= max(3, round(max_size * min(ink.shape)))) & (across <= 2 * np.minimum(heights, widths))
                            & (areas >= 0.4 * heights * widths))
    if len(specks) < min_dots:
        return ink
    typical = common_area(areas[specks])
    alike = (areas[specks] >= typical / 2) & (areas[specks] <= typical * 2)
    centres = np.array(ndimage.center_of_mass(np.ones_like(ink), labels, specks + 1)).reshape(-1, 2)
    grid = centres[alike]
    if len(grid) < min_dots or ((grid.max(axis=0) - grid.min(axis=0)) / np.array(ink.shape)).min() < min_extent:
        return ink
    tree = cKDTree(grid)
    nearest = tree.query(grid, k=2)[0][:, 1]
    [spacing] = quantiles(nearest, 0.5)
    if spacing < 2 * np.sqrt(typical) or np.count_nonzero(np.abs(nearest - spacing) <= 0.25 * spacing) < regular * len(grid):
        return ink
    steps = lattice_steps(grid, tree, spacing)
    if steps is None:
        return ink
    # Dots the frame's border cuts are smaller than the rest, but still where a dot's neighbour
    # is looked for.
    candidates = areas[specks] <= typical * 3
    on_grid = on_lattice(centres[candidates], cKDTree(centres[candidates]), steps, 0.2 * spacing)
    dots = np.zeros(count + 1, dtype=bool)
    dots[specks[candidates][on_grid] + 1] = True
    # The dots' soft, anti-aliased rims too, down to the paper.
    rims = ndimage.binary_dilation(dots[labels], iterations=2)
    return np.where(rims, np.minimum(ink, paper), ink).astype(np.float32)


def common_area(areas: Array) -> float:
    """The area most specks share, give or take a factor of two (grain's specks spread over every
    size; a printed grid's dots are one size)."""
    ordered = np.sort(areas)
    alike = np.searchsorted(ordered, 2 * ordered, side="right") - np.searchsorted(ordered, ordered / 2, side="left")
    return float(ordered[len(ordered) - 1 - int(np.argmax(alike[::-1]))])


def lattice_steps(grid: Array, tree: cKDTree, spacing: float) -> Array | None:
    """The two steps (dy, dx) from a dot to its neighbours along the lattice's two directions: the
    two most common directions among the steps about `spacing` long, 30 degrees apart or more.
    None where the steps have no second direction (dots on one line)."""
    distances, indices = tree.query(grid, k=min(9, len(grid)))
    steps = (grid[indices[:, 1:]] - grid[:, None]).reshape(-1, 2)
    steps = steps[np.abs(distances[:, 1:].ravel() - spacing) <= 0.25 * spacing]
    # A step and its reverse are one direction: folded into [0, 180) degrees, in 5-degree bins.
    angles = np.degrees(np.arctan2(steps[:, 0], steps[:, 1])) % 180
    bins = np.minimum((angles // 5).astype(np.int64), 35)
    counts = np.bincount(bins, minlength=36)
    found = []
    for _ in range(2):
        best = int(np.argmax(counts))
        if counts[best] == 0:
            return None
        near = np.abs((bins - best + 18) % 36 - 18) <= 1
        direction = np.array([np.sin(np.radians(best * 5 + 2.5)), np.cos(np.radians(best * 5 + 2.5))])
        aligned = np.where((steps[near] @ direction)[:, None] < 0, -steps[near], steps[near])
        found.append(np.median(aligned, axis=0))
        counts[np.abs((np.arange(36) - best + 18) % 36 - 18) < 6] = 0  # the second 30 degrees away or more
    return np.array(found)


def on_lattice(points: Array, tree: cKDTree, steps: Array, tolerance: float) -> Array:
    """Whether each point has grid dots a step either side of it along one of the lattice's
    directions (within `tolerance`): a dot of the grid has, but for a corner's; a piece of a
    stroke among the dots seldom does."""
    expected = points[:, None, :] + np.concatenate([steps, -steps])[None]  # +a, +b, -a, -b
    distances = tree.query(expected.reshape(-1, 2), distance_upper_bound=tolerance)[0].reshape(-1, 4)
    found = np.isfinite(distances)
    return (found[:, 0] & found[:, 2]) | (found[:, 1] & found[:, 3])


def thin_structures(ink: Array, size: int) -> Array:
    """What of the ink is narrower than `size` px (a white top-hat): lines and strokes, without the
    paper's mottling, which is broader. A faint line on mottled paper stands out of its row's
    neighbours only once the mottling is gone."""
    return ink - ndimage.grey_opening(ink, size=(size, size))


def standing_out(maps: tuple[Array, ...], page: Array) -> Array:
    """Where any of `maps` stands out of the paper (`page`, a mask) by 3 robust deviations, or does
    a pixel above or below: a line a pixel off the slope still counts."""
    marks = np.zeros(page.shape, dtype=bool)
    for values in maps:
        middle, spread = robust_spread(values[page])
        marks |= ndimage.maximum_filter1d(values, size=3, axis=0) > middle + 3 * spread
    return marks


def unbroken(marks: Array, page: Array, slope: float, row: float, max_gap: int, min_span: float = 0.5) -> bool:
    """Whether the line along sheared `row` is marked (`marks`) across at least `min_span` of the
    paper (`page`) that the row crosses, without a gap longer than `max_gap` px: printed ruling is,
    though it may stop at a margin, and where it passes under a stroke the stroke is marked; a row
    of a dot grid's dots is all gaps, and a ring's tangent or a stroke lying along the row is short."""
    ys, xs = row_pixels(marks.shape, slope, row)
    on_page = page[ys, xs]
    paper = int(np.count_nonzero(on_page))
    if paper < 2 * max_gap:
        return False
    where = np.flatnonzero(marks[ys[on_page], xs[on_page]])
    if len(where) < 2:
        return False
    return where[-1] - where[0] + 1 >= min_span * paper and int(np.diff(where).max()) - 1 <= max_gap


def ruling_angle(ink: Array, max_degrees: float, min_degrees: float = 0.0, min_lines: int = 2,
                 max_thickness: float = 0.02, regular: float = 0.2) -> float | None:
    """The angle in degrees (clockwise, as the frame shows it) at which ruling or grid lines cross
    the paper, `min_degrees` to `max_degrees` off level (lines are counted only at such an angle,
    which spares most photos the count); None unless one line crosses five eighths of the frame's
    width or more (a steep line in a wide frame leaves it through its top and bottom before it
    crosses more) and `min_lines` lines or more, with it, cross three eighths at that angle, each
    thin (as remove_lines takes them: `max_thickness` of the short side, 6 px at least), evenly
    spaced where there are three or more (three in four of the steps between neighbours within
    `regular` of their median), as printed ruling is. Two are enough (a digit photographed close
    on a ruled page shows two of its lines, often no more) where they lie four line widths apart
    or more and nothing broader crosses the frame beside them. Plain paper, a
    7's bar, a pen, the paper's edge, a wooden desk's grain or a note lying askew on a cleared desk
    make no such lines. Lines are looked for among the ink's thin structures (thin_structures),
    where faint ruling on mottled paper stands out, and count only where they run on without long
    gaps (unbroken), as a dot grid's rows and a ring's tangents do not."""
    # Only slopes that would turn the page are searched: level lines (a level stroke, a JPEG's
    # block edges) cannot then outweigh steep ruling.
    slope = line_slope(ink, max_degrees, coarse=2.0, min_degrees=min_degrees, damped=True)
    degrees = float(np.degrees(np.arctan(slope)))
    if not min_degrees <= abs(degrees) <= max_degrees:
        return None
    thickness = line_thickness(ink.shape, max_thickness)
    thin = thin_structures(ink, thickness + 3)
    lines = offset_lines(line_offsets(thin, slope, min_bands=5, page=ink))
    if lines:
        # Beside a line that crosses the frame, its neighbours count where they cross three eighths
        # of it: a steep line nearer a corner leaves the frame sooner.
        lines = max(lines, offset_lines(line_offsets(thin, slope, min_bands=3, page=ink)), key=len)
    if len(lines) < min_lines:
        return None
    page = paper_of(ink, share=0.5)
    if page is None:
        page = np.ones(ink.shape, dtype=bool)
    marks = standing_out((thin, ink), page)
    centres = np.array([(top + bottom) / 2 for top, bottom in lines if bottom - top <= thickness
                        and unbroken(marks, page, slope, (top + bottom) / 2, 3 * thickness)])
    if len(centres) < min_lines:
        return None
    if len(centres) == 2 and (len(lines) > 2 or centres[1] - centres[0] < 4 * thickness):
        # Two lines alone must be a page's: apart, and with no broad band beside them. Two close
        # together are one edge's (a note's, a ring's); a broad band is a note's body.
        return None
    steps = np.diff(centres)
    even = np.abs(steps - np.median(steps)) <= regular * np.median(steps)
    return degrees if np.count_nonzero(even) >= 0.75 * len(steps) else None


def level_ruling(min_degrees: float = 8.0, max_degrees: float = 45.0) -> Step:
    """The page turned so that its ruling or grid lines run level, where they run `min_degrees`
    or more (and at most `max_degrees`) off it: a page photographed askew. remove_lines then
    finds the lines, and the digit, written along them, stands upright. Two thin lines or more
    (evenly spaced, where there are more) must cross the frame at one angle, one of them five
    eighths of its width or more (ruling_angle): plain paper, a lone bar, a digit's strokes or a
    desk's grain turn nothing.
    The ink map grows to hold the turned page, with no ink round it. Images under SMALL px pass
    as they are."""

    def step(array: Array) -> Array:
        ink = array[:, :, 0]
        if min(ink.shape) < SMALL:
            return array
        degrees = ruling_angle(ink, max_degrees, min_degrees)
        if degrees is None:
            return array
        turned = ndimage.rotate(ink, degrees, reshape=True, order=1, mode="constant", cval=0.0)
        return np.clip(turned, 0.0, 1.0)[:, :, None].astype(np.float32)

    return step


def remove_lines(max_thickness: float = 0.02, max_degrees: float = 8.0) -> Step:
    """Ruling and grid lines taken out of an ink map (from flatten_background). A line must cross
    the paper (stand out in nearly every part of it along its length), lie within `max_degrees`
    of the horizontal or the vertical, be thin (at most `max_thickness` of the frame's short side,
    and never under 6 px) and be fainter than the writing, or come with others at least half as
    dark: a lone dark bar, or one far darker than the lines beside it, may be a digit's
    (ruling_lines). A dot grid goes too (erase_dot_grid). Images under SMALL px are left alone."""

    def step(array: Array) -> Array:
        ink = array[:, :, 0]
        if min(ink.shape) < SMALL:
            return array
        thickness = line_thickness(ink.shape, max_thickness)
        ink = erase_horizontal_lines(ink, thickness, max_degrees)
        ink = erase_horizontal_lines(np.ascontiguousarray(ink.T), thickness, max_degrees).T
        return erase_dot_grid(np.ascontiguousarray(ink))[:, :, None]

    return step


@dataclass(frozen=True)
class Component:
    label: int
    box: tuple[int, int, int, int]  # top, left, bottom, right (exclusive)
    mass: float
    score: float
    touches: bool  # reaches the frame's border
    area: int  # pixels

    @property
    def size(self) -> int:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


def find_components(ink: Array, threshold_low: float, threshold_high: float) -> tuple[Array, list[Component]]:
    """Connected regions above `threshold_low` that reach `threshold_high` somewhere, scored."""
    labels, count = ndimage.label(ink > threshold_low, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return labels, []
    strong = np.unique(labels[ink > threshold_high])
    strong = strong[strong > 0]
    masses = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=count + 1)
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    boxes = ndimage.find_objects(labels)
    height, width = ink.shape
    touching = [label for label in strong if touches_border(boxes[label - 1], height, width)]
    ratios = axis_ratios(labels, touching) if touching else {}
    components = []
    for label in strong:
        box = boxes[label - 1]
        top, bottom, left, right = box[0].start, box[0].stop, box[1].start, box[1].stop
        cy, cx = (top + bottom) / 2 / height - 0.5, (left + right) / 2 / width - 0.5
        centrality = float(np.exp(-(cy**2 + cx**2) / (2 * 0.45**2)))
        h, w = bottom - top, right - left
        touches = label in ratios
        spans = h > 0.9 * height or w > 0.9 * width
        # Long for its width, along its box or across it: the paper's edge, a ruler, a fold's line.
        elongated = max(h, w) > 6 * min(h, w) or ratios.get(label, 0.0) > 6
        penalty = 0.15 if spans or (touches and (elongated or solid(labels[box] == label))) else 1.0
        mass = float(masses[label])
        components.append(Component(int(label), (top, left, bottom, right), mass, mass * centrality * penalty,
                                    touches, int(areas[label])))
    return labels, components


def solid(region: Array, share: float = 0.3) -> bool:
    """Whether a region is thick for its size, `share` of its box's long side or more: a patch
    where it meets the frame's border (a corner of the desk too small to have been cleared), not
    a digit's strokes, which even a marker's run long for their width."""
    thickness = 2 * float(ndimage.distance_transform_edt(np.pad(region, 1)).max())
    return thickness >= share * max(region.shape)


def touches_border(box: tuple[slice, slice], height: int, width: int) -> bool:
    return box[0].start == 0 or box[1].start == 0 or box[0].stop == height or box[1].stop == width


def axis_ratios(labels: Array, chosen: list[int]) -> dict[int, float]:
    """Each chosen region's length over its width, from its pixels' second moments: a straight line
    at any slope is long for its width even where its box is square."""
    ys, xs = np.nonzero(np.isin(labels, chosen))
    which = labels[ys, xs]
    size = int(labels.max()) + 1
    count = np.maximum(np.bincount(which, minlength=size), 1)
    ys, xs = ys.astype(np.float64), xs.astype(np.float64)
    my, mx = np.bincount(which, ys, size) / count, np.bincount(which, xs, size) / count
    vy = np.bincount(which, ys * ys, size) / count - my**2
    vx = np.bincount(which, xs * xs, size) / count - mx**2
    cov = np.bincount(which, ys * xs, size) / count - my * mx
    spread = np.sqrt(((vy - vx) / 2) ** 2 + cov**2)
    major, minor = (vy + vx) / 2 + spread, np.maximum((vy + vx) / 2 - spread, 0.0)
    # A pixel's own extent (1/12 of its side squared) keeps a one-pixel line's width above zero.
    return {label: float(np.sqrt((major[label] + 1 / 12) / (minor[label] + 1 / 12))) for label in chosen}


def split_diffuse(ink: Array, labels: Array, components: list[Component], raised: float, threshold_high: float,
                  peak: float, share: float = 0.3) -> tuple[Array, list[Component]]:
    """Components that are mostly faint (their mean ink under `share` of `peak`, the brightest) and run
    into the frame's border, found again at the `raised` threshold. A pen's stroke is ink where it
    runs; such a region is a textured desk, or the paper's grain spread across the frame with a
    pencil line joined into it, whose mass would outweigh the digit's. Split at the raised
    threshold, grain falls apart into specks and the stroke stands alone. A faint region inside
    the paper is left whole: it is a faint digit (a blurred thumbnail's soft strokes)."""
    diffuse = [c for c in components if c.touches and c.mass < share * peak * c.area]
    if not diffuse:
        return labels, components
    inside = np.isin(labels, [c.label for c in diffuse])
    parts, found = find_components(np.where(inside, ink, 0.0), raised, threshold_high)
    offset = int(labels.max())
    relabelled = np.where(inside, np.where(parts > 0, parts + offset, 0), labels)
    kept = [c for c in components if c not in diffuse]
    return relabelled, kept + [replace(c, label=c.label + offset) for c in found]


def box_gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Pixels between two boxes (0 when they overlap or touch)."""
    dy = max(0, max(a[0], b[0]) - min(a[2], b[2]))
    dx = max(0, max(a[1], b[1]) - min(a[3], b[3]))
    return max(dy, dx)


def union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def holds(outer: tuple[int, int, int, int], inner: tuple[int, int, int, int]) -> bool:
    """Whether box `outer` (top, left, bottom, right) holds box `inner` whole."""
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


def set_aside_objects(labels: Array, components: list[Component], ratio: float = 5.0, thicker: float = 2.5,
                      shares: tuple[float, float] = (0.05, 0.5), taller: float = 1.5,
                      slight: tuple[float, float] = (0.01, 0.15)) -> list[Component]:
    """The components less what lies on the page and is not writing: a straight bar (`ratio` times
    as long as it is wide, or convex: the piece of one that the frame cuts) `thicker` times as
    thick as the strokes of something else on the page, itself not a bar, lighter (between
    `shares` of its mass) and `taller` times the bar's thickness or more: a pen lying beside the
    digit, far heavier than it and often nearer the middle. Lighter still (down to slight[0] of
    the bar's mass), the other must be a digit's size (slight[1] of the frame's short side or
    more): a thin digit beside a long pen, not a word of an app's toolbar under a finger-drawn 1.
    A bold 1 alone, beside a speck of grain or another bar (a ruling line's remains), beside
    printed words (digit_sized), or inside a box drawn round it (its thin frame is the heavier)
    stays."""
    if len(components) < 2:
        return components
    heaviest = max(c.mass for c in components)
    weighty = [c for c in components if c.mass >= 0.01 * heaviest]
    ratios = axis_ratios(labels, [c.label for c in weighty])
    regions = {c.label: labels[c.box[0]:c.box[2], c.box[1]:c.box[3]] == c.label for c in weighty}
    widths = {label: stroke_width(region) for label, region in regions.items()}
    # What runs into the frame's border is as likely a pen cut by the frame, its outline notched
    # where its shading met the background estimate, as a digit the photo cuts: weighed as a bar.
    bars = [c for c in weighty if c.touches or ratios[c.label] >= ratio or convex(regions[c.label])]
    written = [c for c in weighty if c not in bars]
    short = min(labels.shape)

    def lies_beside(bar: Component, other: Component) -> bool:
        least = slight[0] if other.size >= slight[1] * short else shares[0]
        return (least * bar.mass <= other.mass <= shares[1] * bar.mass and other.size >= taller * widths[bar.label]
                and thicker * widths[other.label] <= widths[bar.label] and digit_sized(other, bar))

    objects = [bar for bar in bars if any(lies_beside(bar, other) for other in written)]
    return [c for c in components if c not in objects] or components


def digit_sized(other: Component, bar: Component, least: float = 0.15) -> bool:
    """Whether `other` could be the digit that a pen `bar` lies beside: a pen is a few times the
    digit's height long, so the digit is `least` of the pen's length tall or more. A worksheet's
    printed words beside a bold 1 are not, and the 1 is no pen. Where the frame cuts the bar, its
    length is not the pen's, and any size may be the digit's."""
    return bar.touches or other.box[2] - other.box[0] >= least * bar.size


def convex(region: Array, share: float = 0.85) -> bool:
    """Whether a region fills `share` or more of its convex hull: a bar or a blob, not strokes."""
    hull = outline_hull(region)
    if hull is None:
        return True  # a dot, or all on one line: a bar one pixel wide
    # The hull runs through the outline's pixel centres: half a pixel round it is the region's too.
    return bool(np.count_nonzero(region) >= share * (hull.volume + hull.area / 2))


def gather_digit(components: list[Component], reach: float, min_share: float) -> list[Component]:
    """The best-scored component and, repeatedly, every component of some mass that lies within
    `reach` times the digit's size so far (a 5's flag, the parts of a broken stroke)."""
    seed = max(components, key=lambda c: c.score)
    chosen, box = [seed], seed.box
    # A part is smaller than the digit's main stroke, lies on the paper, and is written as darkly
    # (its mean ink half the stroke's or more): what is larger, runs into the frame's border while
    # the digit does not, or is faint all over is something else (an edge, a shadow's rim, a
    # desk's grain, a blotch on a slate).
    rest = [c for c in components if c is not seed and c.mass >= min_share * seed.mass
            and c.size <= 1.2 * seed.size and (seed.touches or not c.touches)
            and c.mass * seed.area >= 0.5 * seed.mass * c.area]
    grew = True
    while grew:
        grew = False
        size = max(box[2] - box[0], box[3] - box[1])
        for component in list(rest):
            if box_gap(box, component.box) <= max(2, reach * size):
                merged = union(box, component.box)
                if max(merged[2] - merged[0], merged[3] - merged[1]) > 2.2 * size:
                    continue  # would more than double the digit: something else nearby
                chosen.append(component)
                rest.remove(component)
                box, grew = merged, True
    return chosen


def drop_marks(labels: Array, chosen: list[Component]) -> list[Component]:
    """The digit without the marks drawn round it that gather_digit took in with it: a box round
    the digit (a form's answer box), a ring round it (the answer circled), or a line under it.
    Each is one component apart from the digit's strokes (a ring that came apart, two: see
    drop_split_ring), so it is read whole: a frame or a loop round the rest of the digit (framed:
    closed, nearly closed, or cut by the frame's border); a straight line below the rest and
    clear of it, as wide as half the rest or more. A 5's flag, a 7's bar, a broken 4's bar or a
    2's foot lies above, within or right under the rest's rows, and stays; a line over the digit
    goes only with one under it (a box whose sides were tall enough for remove_lines to take them
    out with the ruling)."""

    def others(mark: Component) -> list[Component]:
        return [c for c in chosen if c is not mark]

    chosen = [c for c in chosen if len(chosen) == 1 or not framed(labels, c, others(c))]
    chosen = drop_split_ring(labels, chosen)
    under = [c for c in chosen if len(chosen) > 1 and ruled(labels, c, others(c), below=True)]
    if under:
        chosen = [c for c in chosen if c not in under]
        over = [c for c in chosen if len(chosen) > 1 and ruled(labels, c, others(c), below=False)]
        chosen = [c for c in chosen if c not in over]
    return chosen


def drop_split_ring(labels: Array, chosen: list[Component]) -> list[Component]:
    """The digit without a ring round it that came apart in two: the frame's border cuts it twice,
    or once where the pen lifted, or the pen lifted twice. Two components that, read as one mark,
    frame the rest (as `framed` reads a whole ring) are set aside."""
    if len(chosen) < 3:
        return chosen
    for index, first in enumerate(chosen):
        for second in chosen[index + 1:]:
            rest = [c for c in chosen if c is not first and c is not second]
            box = union(first.box, second.box)
            if not holds(box, bounds(rest)):  # before joining their labels over the whole frame
                continue
            joined = np.where(labels == second.label, first.label, labels)
            mark = replace(first, box=box, mass=first.mass + second.mass,
                           touches=first.touches or second.touches, area=first.area + second.area)
            if framed(joined, mark, rest):
                return rest
    return chosen


def bounds(components: list[Component]) -> tuple[int, int, int, int]:
    """The box round all of `components` (top, left, bottom, right)."""
    box = components[0].box
    for component in components[1:]:
        box = union(box, component.box)
    return box


def framed(labels: Array, mark: Component, rest: list[Component], share: float = 0.35, band: float = 0.12,
           along: float = 0.9, gap: float = 0.12) -> bool:
    """Whether `mark` is a box or a ring drawn round `rest`: it holds their box, they are a third of
    its size or more (not a speck inside a 0), and its own strokes are thin (under `share` of the
    region it closes) and either close a four-square rectangle, run along its box's sides (`along`
    of them within `band` of its short side of one: a box seen straight, one or two of whose sides
    the frame may cut off), or close a loop of any shape round them (a circle drawn round the
    answer, its ends overlapping or up to twice `gap` of its size apart, or cut by the frame's
    border, which then closes it)."""
    top, left, bottom, right = mark.box
    inner = bounds(rest)
    if not holds(mark.box, inner):
        return False
    if max(inner[2] - inner[0], inner[3] - inner[1]) < 0.35 * mark.size or mark.area > share * (bottom - top) * (right - left):
        return False
    outline = labels[top:bottom, left:right] == mark.label
    filled = ndimage.binary_fill_holes(outline)
    if mark.area <= share * np.count_nonzero(filled) and rectangular(filled, 0.9):
        return True
    height, width = outline.shape
    reach = max(2, round(band * min(height, width)))
    ys, xs = np.nonzero(outline)
    sides = (ys < reach) | (ys >= height - reach) | (xs < reach) | (xs >= width - reach)
    if np.count_nonzero(sides) >= along * len(ys):
        return True
    cut = (top == 0, bottom == labels.shape[0], left == 0, right == labels.shape[1])
    return encircles(outline, np.isin(labels[top:bottom, left:right], [c.label for c in rest]),
                     max(2.0, gap * mark.size), share, cut)


def encircles(outline: Array, inner: Array, radius: float, share: float,
              cut: tuple[bool, bool, bool, bool] = (False, False, False, False)) -> bool:
    """Whether the thin `outline`, grown by `radius` (which bridges a gap up to twice that) and
    with the sides where the frame cuts it (`cut`: top, bottom, left, right) drawn in, closes a
    space with `inner` in it: half of `inner` clear of the grown line, nine tenths within its outer
    edge. A 7 whose bar was written apart, or a 4 round its own broken bar, closes no such space and
    the bar lies on or beside the strokes."""
    grown = ndimage.distance_transform_edt(~outline) <= radius
    for side, edge in zip(cut, (grown[0], grown[-1], grown[:, 0], grown[:, -1])):
        if side:
            edge[:] = True
    filled = ndimage.binary_fill_holes(grown)
    space = filled & ~grown
    if np.count_nonzero(outline) > share * np.count_nonzero(filled):
        return False
    count = np.count_nonzero(inner)
    return bool(np.count_nonzero(inner & space) >= 0.5 * count and np.count_nonzero(inner & filled) >= 0.9 * count)


def ruled(labels: Array, mark: Component, rest: list[Component], below: bool, ratio: float = 6.0,
          min_gap: float = 0.05) -> bool:
    """Whether `mark` is a line drawn under `rest` (over it if not `below`): clear of their rows by
    `min_gap` of their height (a 2's foot, broken off, lies closer), `ratio` times as long as it is
    thick, within 20 degrees of level, and half their width or more."""
    inner = bounds(rest)
    top, left, bottom, right = mark.box
    gap = top - inner[2] if below else inner[0] - bottom
    level = bottom - top <= 0.36 * (right - left)
    if not level or gap < min_gap * (inner[2] - inner[0]) or right - left < 0.5 * (inner[3] - inner[1]):
        return False
    return axis_ratios(labels, [mark.label])[mark.label] >= ratio


def clear_busy_border(ink: Array, level: float, busy: float = 0.25) -> Array:
    """Zero textured regions that run into the frame's border: a desk's grain, a patterned
    surface beyond the paper. Writing is sparse on paper: around a digit, ink above `level`
    covers a fraction of any window a sixteenth of the short side wide, while grain covers
    `busy` or more of every such window across a whole region (a mottled desk, most of every
    window, in blotches). A region is cleared when it touches the border, covers at least 3% of
    the frame and is a fifth of its short side thick (a digit's strokes, even a marker's, make a
    thinner crowd), and does not hold most of the frame's strongest ink: in a dim, noisy photo
    the paper's own grain is busy all round the writing, and the region it makes is where the
    digit is; a bold digit that fills the frame is its strongest ink. Images under SMALL px pass
    as they are."""
    if min(ink.shape) < SMALL:
        return ink
    factor = coarse_factor(ink.shape)
    density = shrink((ink > level).astype(np.float32), factor)
    size = max(3, round(min(density.shape) / 16) | 1)
    local = ndimage.uniform_filter(density, size=size, mode="nearest")
    crowded = local >= busy
    labels, count = ndimage.label(crowded)
    if count == 0:
        return ink
    edge = np.unique(border_labels(labels))
    edge = edge[edge > 0]
    if len(edge) == 0:
        return ink
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    thickness = 2 * label_maxima(ndimage.distance_transform_edt(crowded), labels, count)[edge]
    short = min(crowded.shape)
    strong = shrink((ink >= 0.5 * float(ink.max())).astype(np.float32), factor)
    held = np.bincount(labels.ravel(), weights=strong.ravel(), minlength=count + 1)
    cleared = [label for label, thick in zip(edge, thickness) if areas[label] >= 0.03 * labels.size
               and thick >= 0.2 * short and held[label] < 0.5 * strong.sum()]
    if not cleared:
        return ink
    region = enlarge_mask(np.isin(labels, cleared), ink.shape)
    return np.where(region, 0.0, ink).astype(np.float32)


NOTHING_THERE = "the image has no visible foreground (it is blank or nearly uniform)"


def crop_small(ink: Array, floor: float) -> Array:
    """select_digit for a small image: all of its ink, cropped and stretched (components cost more
    than the rest of its preprocessing put together, and there is nothing to tell apart)."""
    peak = float(ink.max())
    if peak < 0.08:
        raise PreprocessError(NOTHING_THERE)
    mask = ink > 0.4 * max(0.35 * peak, 0.06)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    digit = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    [level] = quantiles(digit[mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]], 0.9)
    stretched = np.clip(digit / max(level, 1e-3), 0.0, 1.0)
    stretched[stretched < floor] = 0.0
    return stretched[:, :, None].astype(np.float32)


def smooth_ink(ink: Array, size: int) -> tuple[Array, float, float]:
    """The ink map averaged over `size` x `size` pixels, with the paper's level and spread in it
    (median and deviation, from every third pixel of a large map)."""
    smooth = ndimage.uniform_filter(ink, size=size, mode="nearest")
    paper, noise = robust_spread(smooth[:: 3, :: 3] if smooth.size > 40_000 else smooth)
    return smooth, paper, noise


def ink_thresholds(paper: float, noise: float, peak: float, base: float = 0.0) -> tuple[float, float]:
    """(low, high): the levels a digit's strokes rise above (low) and reach somewhere (high), from
    the paper's level and spread and the strongest ink (`peak`); high is counted from `base`."""
    high = max(base + 6 * noise, 0.35 * peak, 0.06)
    return max(paper + 3 * noise, 0.4 * high), high


def split_crowded(smooth: Array, peak: float, min_share: float = 0.1, contrast: float = 10.0,
                  min_ink: float = 0.25) -> tuple[Array, list[Component]]:
    """Components of a frame that the ink crowds (a bold digit cropped close, its strokes a third
    of the frame or more): there the median and spread are the ink's as much as the paper's, and
    no threshold drawn from them is reached. Otsu's level splits the two, and the part below it is
    the paper, if the part above holds `min_share` of the frame, stands `contrast` times the
    paper's spread above it and is clearly ink (`min_ink` at its median): a blank page's grain is
    one class, which Otsu only cuts in half, and grain beside a cleared desk is faint."""
    level = otsu_threshold(smooth)
    paper, noise = robust_spread(smooth[smooth <= level])
    above = smooth[smooth > level]
    if above.size < min_share * smooth.size or float(np.median(above)) < max(paper + contrast * noise, min_ink):
        return np.zeros(smooth.shape, dtype=np.int32), []
    low, high = ink_thresholds(paper, noise, peak)
    return find_components(smooth, low, high)


def select_digit(floor: float = 0.1, reach: float = 0.25, min_share: float = 0.03) -> Step:
    """The digit alone, cropped, its strokes stretched so their core is 1 and anything below
    `floor` is 0. Raises PreprocessError when nothing stands out from the paper."""

    def step(array: Array) -> Array:
        ink = array[:, :, 0]
        if min(ink.shape) < SMALL:
            return crop_small(ink, floor)
        smooth, paper, noise = smooth_ink(ink, 3)
        if paper > 0.05:  # grainy paper (a dim photo): a wider window lets less noise through
            smooth, paper, noise = smooth_ink(ink, 5)
        smooth = clear_busy_border(smooth, max(3 * noise, 0.08))
        peak = float(smooth.max())
        if peak < 0.08:
            raise PreprocessError(NOTHING_THERE)
        low, high = ink_thresholds(paper, noise, peak)
        labels, components = find_components(smooth, low, high)
        if not components and np.count_nonzero(smooth == 0) >= 0.1 * smooth.size:
            # A desk that flatten_background cleared is 0 all over: counted as paper, it swells
            # the paper's spread until a faint digit on grainy paper no longer stands out of it.
            # Counted from the rest, the paper's level is added in: its grain alone must not pass.
            paper, noise = robust_spread(smooth[smooth > 0])
            low, high = ink_thresholds(paper, noise, peak, base=paper)
            labels, components = find_components(smooth, low, high)
        labels, components = split_diffuse(smooth, labels, components, max(low, 0.7 * high), high, peak)
        if not components:
            labels, components = split_crowded(smooth, peak)
        if not components:
            raise PreprocessError("no foreground found in the image")
        components = set_aside_objects(labels, components)
        chosen = drop_marks(labels, gather_digit(components, reach, min_share))
        top, left, bottom, right = bounds(chosen)
        kept = np.zeros(int(labels.max()) + 1, dtype=bool)
        kept[[c.label for c in chosen]] = True
        keep = kept[labels[top:bottom, left:right]]
        # One pixel around the kept strokes: their soft, anti-aliased edges belong to them.
        keep = dilate3(keep)
        digit = np.where(keep, ink[top:bottom, left:right], 0.0)
        [level] = quantiles(digit[keep], 0.9)
        stretched = np.clip(digit / max(level, 1e-3), 0.0, 1.0)
        stretched[stretched < floor] = 0.0
        return stretched[:, :, None].astype(np.float32)

    return step


def stroke_width(core: Array) -> float:
    """A stroke's width in pixels: its area over half its outline (a band w wide and L long has
    area wL and an outline of about 2L)."""
    interior = core.copy()
    interior[1:] &= core[:-1]
    interior[:-1] &= core[1:]
    interior[:, 1:] &= core[:, :-1]
    interior[:, :-1] &= core[:, 1:]
    interior[[0, -1], :] = False
    interior[:, [0, -1]] = False
    area = int(np.count_nonzero(core))
    return 2 * area / max(1, area - int(np.count_nonzero(interior)))


def thicken_strokes(width: float = 0.1) -> Step:
    """Strokes grown to at least `width` times the digit's height, as MNIST's are: a ballpoint's
    or a pencil's line, shrunk with its digit into a 20x20 box, would otherwise be a faint
    hairline that a network trained on MNIST has never seen. The width now is read off the
    strokes (stroke_width); thicker strokes are left as they are."""

    def step(array: Array) -> Array:
        ink = array[:, :, 0]
        height = max(ink.shape)
        if height < 32:
            return array  # at MNIST's own scale already (a 28x28 digit, a drawing): nothing to grow
        core = ink > 0.5
        if not core.any():
            return array
        current = stroke_width(core)
        radius = round((width * height - current) / 2)
        if radius < 1:
            return array
        padded = np.pad(ink, radius)
        span = np.arange(-radius, radius + 1)
        disc = (span[:, None] ** 2 + span[None, :] ** 2) <= radius**2
        return ndimage.grey_dilation(padded, footprint=disc)[:, :, None]

    return step
