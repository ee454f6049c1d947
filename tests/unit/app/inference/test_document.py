"""The steps that find a digit in a photo of a page (app/inference/document.py), on pictures built
here with the trouble each step is for: uneven light, a shadow, the desk beyond the paper's edge,
ruled and squared paper, specks, a broken stroke, a thin pen."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from app.inference.document import (
    convex,
    dark_on_light,
    encircles,
    flatten_background,
    level_ruling,
    line_slope,
    rectangular,
    remove_lines,
    ruling_angle,
    select_digit,
    sheet_within,
    split_crowded,
    straight_edged,
    stroke_width,
    thicken_strokes,
    unbroken,
)
from app.inference.input_errors import PreprocessError
from app.inference.preprocess import Preprocessor, flatten_to_8bit, image_to_array
from tests.conftest import encode
from training.data.mnist import PREPROCESSING, create_preprocessor

SIZE = (480, 360)  # width, height


def page(paper: float = 0.9) -> np.ndarray:
    return np.full((SIZE[1], SIZE[0]), paper, dtype=np.float32)


def grain_map(level: float | np.ndarray, amplitude: float, blur: float | tuple[float, float], seed: int) -> np.ndarray:
    """Noise smoothed over `blur` px, `amplitude` deviations about `level`: an ink map's grain (the
    paper's, or a desk's left behind), or a mottled or wooden desk in a photo."""
    from scipy import ndimage

    noise = ndimage.gaussian_filter(np.random.default_rng(seed).normal(0, 1, (SIZE[1], SIZE[0])), blur)
    return np.clip(level + amplitude * noise / noise.std(), 0, 1).astype(np.float32)


def write_seven(grey: np.ndarray, ink: float = 0.15, width: int = 6, at: tuple[int, int] = (200, 110)) -> np.ndarray:
    """A 7 about 140 px tall, dark on the page (in place); returns the page."""
    image = Image.fromarray((grey * 255).astype(np.uint8))
    x, y = at
    ImageDraw.Draw(image).line([(x, y), (x + 90, y), (x + 30, y + 140)], fill=int(ink * 255), width=width)
    grey[:] = np.asarray(image, dtype=np.float32) / 255
    return grey


def ink_box(ink: np.ndarray, level: float = 0.5) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero((ink > level).any(axis=1)), np.flatnonzero((ink > level).any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def as_input(grey: np.ndarray) -> np.ndarray:
    return grey[:, :, None]


def test_dark_on_light_reads_polarity_from_the_border_or_the_detail() -> None:
    assert dark_on_light(write_seven(page()))  # ink on paper
    assert not dark_on_light(1 - write_seven(page()))  # chalk on a blackboard, MNIST
    falling = write_seven(page()) * np.linspace(1.0, 0.4, SIZE[0], dtype=np.float32)[None, :]
    assert dark_on_light(falling)  # the border is no longer even: the detail decides


def write_bold_eight(grey: np.ndarray, ink: float = 0.1, width: int = 45) -> np.ndarray:
    """An 8 in a marker's strokes (45 px wide, 270 px tall), its loops' paper enclosed by ink."""
    image = Image.fromarray((grey * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse([180, 50, 300, 170], outline=int(ink * 255), width=width)
    draw.ellipse([165, 155, 315, 305], outline=int(ink * 255), width=width)
    grey[:] = np.asarray(image, dtype=np.float32) / 255
    return grey


def test_dark_on_light_reads_a_bold_digit_with_loops_under_falling_light() -> None:
    # The strokes pull the local mean down, so the paper in the loops stands out above it as far
    # as the ink below: what decides is which side holds more.
    falling = write_bold_eight(page()) * np.linspace(1.0, 0.6, SIZE[0], dtype=np.float32)[None, :]
    assert dark_on_light(falling)
    assert not dark_on_light(1 - falling)


@pytest.mark.parametrize("cut", [560, 620])
def test_dark_on_light_reads_a_small_sheet_on_a_dark_desk(cut: int) -> None:
    """A corner of a sheet (a sixth or a tenth of the frame) on a mottled desk, a faint digit on
    it: over the whole frame the bright sheet is the heavier tail, as chalk on a board would be."""
    ys, xs = np.indices((SIZE[1], SIZE[0]))
    grey = desk_beside(page(), 0.2, ys <= cut - 0.9 * xs)
    image = Image.fromarray((grey * 255).astype(np.uint8))
    ImageDraw.Draw(image).line([(400, 280), (430, 280), (410, 320)], fill=140, width=3)
    grey = np.asarray(image.filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float32) / 255
    assert dark_on_light(grey)
    assert not dark_on_light(1 - grey)  # a light digit on a dark slate lying on a pale table


def note_on_desk(desk: float = 0.25, grain: float = 0.12, wood: bool = False, side: int = 150,
                 shift: int = 0, drop: int = 0) -> np.ndarray:
    """A light square note (`side` px, turned 15 degrees) in the middle of a darker desk that
    takes the rest of the frame (or `shift` px to the right of it and `drop` px below), a 7
    written on it."""
    grey = grain_map(desk, desk * grain, (0.8, 25) if wood else 6, seed=5)
    note = Image.fromarray(np.full((side, side), 235, dtype=np.uint8))
    scale = side / 150
    seven = [(35 * scale, 30 * scale), (115 * scale, 30 * scale), (60 * scale, 125 * scale)]
    ImageDraw.Draw(note).line(seven, fill=40, width=max(2, round(6 * scale)))
    turned = note.convert("RGBA").rotate(15, Image.Resampling.BICUBIC, expand=True)
    image = Image.fromarray((grey * 255).astype(np.uint8)).convert("RGBA")
    image.paste(turned, ((SIZE[0] - turned.width) // 2 + shift, (SIZE[1] - turned.height) // 2 + drop), turned)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


@pytest.mark.parametrize(("wood", "side"), [(False, 150), (True, 150), (False, 70), (True, 70)])
def test_dark_on_light_reads_a_note_lying_inside_a_dark_desk(wood: bool, side: int) -> None:
    """The desk takes the border all round and most of the frame, and the note is the lighter
    tail; but a region that light, that wide and that square, and written on, is a sheet."""
    assert dark_on_light(note_on_desk(wood=wood, side=side))


def page_from_afar(desk: float = 0.3) -> np.ndarray:
    """A whole page on a dark desk, photographed from afar (640 x 480 px, as limit_size leaves a
    phone's photo): one 7 on it, 30 px tall, its ballpoint strokes two pixels wide."""
    grey = np.full((640, 480), desk, dtype=np.float32)
    grey[50:590, 40:440] = 0.88
    image = Image.fromarray((grey * 255).astype(np.uint8))
    ImageDraw.Draw(image).line([(230, 300), (249, 300), (236, 330)], fill=60, width=2)  # write_seven's, a fifth
    return np.asarray(image.filter(ImageFilter.GaussianBlur(0.5)), dtype=np.float32) / 255


def test_dark_on_light_reads_a_page_with_one_small_digit_on_a_dark_desk() -> None:
    """On the reduced map that finds the page, so thin a digit is blurred away: the page looked
    unwritten, not a sheet, and the dark border round it turned the frame over (a light digit on a
    slate)."""
    assert dark_on_light(page_from_afar())
    seven = create_preprocessor()(photo(page_from_afar()))[0]
    close = create_preprocessor()(photo(write_seven(page(0.88), ink=0.35, width=4)))[0]
    assert np.corrcoef(seven.ravel(), close.ravel())[0, 1] > 0.6


def test_dark_on_light_reads_a_note_whose_corner_the_frame_cuts() -> None:
    assert dark_on_light(note_on_desk(side=200, shift=120))


@pytest.mark.parametrize("drop", [80, 140])
def test_dark_on_light_reads_a_sheet_that_runs_out_of_the_frame(drop: int) -> None:
    """A sheet whose lower side runs out of the frame, the desk on its three other sides."""
    grey = note_on_desk(side=250, drop=drop)
    assert grey[-1, SIZE[0] // 2] > 0.8  # the sheet reaches the bottom of the frame
    assert dark_on_light(grey)
    assert sheet_within(grey) is not None


def test_sheet_within_passes_over_a_small_light_patch_the_frame_cuts() -> None:
    """A small lighter patch with darker marks in it, cut by the frame along a third of its
    outline: as likely a blotch of chalk dust on a slate as a note, so not taken for a sheet."""
    grey = note_on_desk(side=90, shift=-220)
    assert grey[SIZE[1] // 2, 0] > 0.8  # the patch reaches the left side of the frame
    assert sheet_within(grey) is None


def test_sheet_within_passes_over_the_lit_middle_of_a_page_the_light_falls_off_from() -> None:
    """Light falling off from a lamp over the page's upper middle: the lit part is a large,
    lighter, written-on region running out of the frame at the top, but its edge is soft."""
    ys, xs = np.indices((SIZE[1], SIZE[0]))
    light = 1 - 0.55 * np.clip(np.hypot(ys - 60, xs - 240) / 250, 0, 1) ** 2
    grey = (write_seven(page()) * light).astype(np.float32)
    assert sheet_within(grey) is None
    assert dark_on_light(grey)


@pytest.mark.parametrize("shape", ["bar", "ring"])
def test_sheet_within_passes_over_a_bold_light_digit(shape: str) -> None:
    """Light marks as wide as a small note on a dark ground: a marker's 1, a straight bar with no
    writing on it, and a boxy chalk 0, whose loop holds the ground as a wide blob, not strokes."""
    image = Image.new("L", SIZE, 50)
    if shape == "bar":
        ImageDraw.Draw(image).rectangle([210, 60, 270, 300], fill=230)
    else:
        ImageDraw.Draw(image).rounded_rectangle([170, 60, 310, 300], radius=30, outline=230, width=28)
    assert sheet_within(np.asarray(image, dtype=np.float32) / 255) is None
    assert not dark_on_light(np.asarray(image, dtype=np.float32) / 255)
    assert sheet_within(note_on_desk(side=70)) is not None


@pytest.mark.parametrize("side", [150, 70])
def test_digit_preprocessing_reads_a_note_on_a_desk_as_the_clean_page(side: int) -> None:
    """The same note, on the desk and filling a page of its own colour: the desk round it and the
    note's edge are not ink."""
    clean = create_preprocessor()(photo(note_on_desk(desk=235 / 255, grain=0.0, side=side)))[0]
    on_desk = create_preprocessor()(photo(note_on_desk(side=side)))[0]
    assert float(np.abs(on_desk - clean).mean()) < 0.03


@pytest.mark.parametrize("degrees", [0, 20, 45])
def test_rectangular_takes_a_sheet_at_any_angle_and_not_an_ellipse(degrees: int) -> None:
    sheet, ellipse = Image.new("L", SIZE), Image.new("L", SIZE)
    ImageDraw.Draw(sheet).rectangle([140, 100, 340, 260], fill=255)
    ImageDraw.Draw(ellipse).ellipse([140, 100, 340, 260], fill=255)
    assert rectangular(np.asarray(sheet.rotate(degrees)) > 127)
    assert not rectangular(np.asarray(ellipse.rotate(degrees)) > 127)


def test_dark_on_light_reads_a_page_that_a_flash_lights_in_the_middle() -> None:
    """The flash's light falls off evenly towards all four sides and glares near the digit: the
    border is even, but it lies between the writing and the lit middle and does not say which is
    the ground."""
    ys, xs = np.indices((SIZE[1], SIZE[0]))
    to_border = np.minimum.reduce([ys, SIZE[1] - 1 - ys, xs, SIZE[0] - 1 - xs])
    vignette = 1 - 0.5 * np.exp(-to_border / 60)
    glare = 0.5 * np.exp(-((ys - 130) ** 2 + (xs - 330) ** 2) / 40**2)
    assert dark_on_light(np.clip(write_seven(page(), width=14) * vignette + glare, 0, 1).astype(np.float32))


def test_flatten_background_takes_away_light_falling_off_and_a_shadow() -> None:
    grey = write_seven(page())
    lit = grey * np.linspace(1.0, 0.45, SIZE[0], dtype=np.float32)[None, :]
    lit[:, : SIZE[0] // 3] *= 0.7  # a shadow over the left third, sharp-edged
    ink = flatten_background()(as_input(lit))[:, :, 0]
    stroke = ink > 0.5
    assert stroke.any()
    top, left, bottom, right = ink_box(ink)
    assert 100 <= top and bottom <= 260 and 190 <= left and right <= 300  # the 7, nothing else
    assert float(ink[~dilated(stroke, 6)].max()) < 0.35  # the paper, lit or shaded, is near 0


def dilated(mask: np.ndarray, pixels: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.maximum_filter(mask.view(np.uint8), size=2 * pixels + 1) > 0


def test_flatten_background_reads_a_blurred_bold_digit_solid() -> None:
    """A bold 0 from a tiny thumbnail, enlarged: wide and soft, its loop filled in at the shadow
    finder's scale, its mean darkness under half the paper's. Its core is as dark as ink, so it is
    ink, read whole rather than as a shadow with only its rim standing out."""
    image = Image.new("L", (300, 300), 215)
    ImageDraw.Draw(image).ellipse([(70, 40), (230, 260)], outline=80, width=45)
    image = image.resize((16, 16), Image.Resampling.BOX).resize((300, 300), Image.Resampling.BICUBIC)
    grey = np.asarray(image, dtype=np.float32) / 255
    ink = flatten_background()(as_input(grey))[:, :, 0]
    core = grey < np.percentile(grey, 8)  # the darkest of the stroke
    assert float(np.median(ink[core])) > 0.5


def test_flatten_background_clears_the_desk_beyond_the_paper_edge() -> None:
    grey = write_seven(page())
    grey[:, 400:] = 0.25  # a dark desk along the right side
    grey[300:, :] = 0.3  # and along the bottom
    ink = flatten_background()(as_input(grey))[:, :, 0]
    assert float(ink[:, 395:].max()) < 0.2 and float(ink[295:, :].max()) < 0.2
    assert float(ink[110:250, 200:300].max()) > 0.6



def desk_beside(grey: np.ndarray, brightness: float, below: np.ndarray) -> np.ndarray:
    """A mottled surface of `brightness` where `below` (a mask) is, the page elsewhere (in place)."""
    from scipy import ndimage

    blotches = ndimage.gaussian_filter(np.random.default_rng(3).normal(0, 1, grey.shape), 6)
    grey[below] = (brightness * (1 + 0.08 * blotches / blotches.std()))[below]
    return grey


def test_flatten_background_clears_a_narrow_grey_desk_strip_beyond_a_slanting_edge() -> None:
    """A mid-grey desk that shows only as a strip along the bottom, narrower than the light's
    window, its edge straight and sharp: cleared, where it would be read as a band of grain."""
    ys, xs = np.indices((SIZE[1], SIZE[0]))
    strip = ys > 300 + xs * 0.1 - 48  # 12 px wide on the left, 60 px on the right
    grey = desk_beside(write_seven(page()), 0.55, strip)
    ink = flatten_background()(as_input(grey))[:, :, 0]
    assert float(ink[strip].max()) < 0.2
    assert float(ink[110:250, 200:300].max()) > 0.6


def test_flatten_background_keeps_the_writing_under_a_straight_edged_shadow() -> None:
    """A shadow as dark as that desk, with as straight and sharp an edge, over the 7's lower
    stroke: that is writing, so the shadow is read as paper and the 7 kept whole."""
    grey = write_seven(page())
    grey[:, :250] *= 0.6  # over the stroke's lower third
    ink = flatten_background()(as_input(grey))[:, :, 0]
    foot = write_seven(page()) < 0.5
    foot[:, 242:] = False
    assert float(np.median(ink[foot])) > 0.5
    assert float(ink[~dilated(ink > 0.5, 6)].max()) < 0.35


@pytest.mark.parametrize(("shape", "straight"), [("half", True), ("corner", True), ("curve", False)])
def test_straight_edged_takes_a_sheets_edges_and_not_a_curved_shadow(shape: str, straight: bool) -> None:
    ys, xs = np.indices((160, 200)).astype(np.float64)
    region = {
        "half": ys > 100 + 0.3 * xs,  # beyond one slanting edge
        "corner": (xs < 60 + 0.2 * ys) | (ys < 40 + 0.1 * xs),  # beyond a sheet's corner
        "curve": ys > 60 + 0.004 * (xs - 100) ** 2,  # a hand's shadow
    }[shape]
    assert straight_edged(region, 4.0) is straight


def test_select_digit_passes_over_a_desk_corner_where_the_page_dims_towards_it() -> None:
    """A small dark corner of desk where the light falls off towards it: at the paper's own level
    the dim page joins the desk and no edge shows; a lower level finds the desk's edge."""
    ys, xs = np.indices((SIZE[1], SIZE[0]), dtype=np.float32)
    dimming = 1.0 - 0.25 * np.clip(1 - np.hypot(ys / SIZE[1], xs / SIZE[0]) / 0.6, 0, 1)
    grey = write_seven(page(), ink=0.5, width=3) * dimming  # a faint pen
    grey[ys + 0.8 * xs < 50] = 0.22  # the desk beyond the sheet's corner
    image = Image.fromarray((grey * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.0))
    ink = flatten_background()(as_input(np.asarray(image, dtype=np.float32) / 255))[:, :, 0]
    assert float(ink[ys + 0.8 * xs < 40].max()) < 0.2
    height, width = select_digit()(as_input(ink)).shape[:2]
    assert 135 <= height <= 150 and 85 <= width <= 100  # the 7 alone


@pytest.mark.parametrize("desk", [0.04, 0.15])
def test_select_digit_takes_a_small_digit_over_the_edge_of_a_dark_desk(desk: float) -> None:
    """A short stroke beside a dark desk whose edge crosses the frame: read as a deep shadow, the
    desk would hold a long bright line along its edge, and that line more ink than the digit."""
    image = Image.new("L", SIZE, 230)
    draw = ImageDraw.Draw(image)
    draw.polygon([(0, 360), (480, 120), (480, 360)], fill=int(desk * 255))
    draw.line([(120, 60), (116, 95)], fill=40, width=3)
    grey = np.asarray(image.filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float32) / 255
    ink = flatten_background()(as_input(grey))[:, :, 0]
    ys, xs = np.indices(grey.shape)
    assert float(ink[np.abs(ys - (360 - xs * 0.5)) < 12].max()) < 0.2
    height, width = select_digit()(as_input(ink)).shape[:2]
    assert 35 <= height <= 45 and width <= 15  # the stroke alone


def test_flatten_background_clears_a_wooden_desk_that_takes_most_of_the_frame() -> None:
    """Read as a page under a deep shadow, a wooden desk's grain holds more 'writing' than the
    small digit on the strip of paper below it; but it is spread over hundreds of streaks."""
    from scipy import ndimage

    ys, xs = np.indices((SIZE[1], SIZE[0]))
    grain = ndimage.gaussian_filter(np.random.default_rng(5).normal(0, 1, ys.shape), (0.8, 25))
    image = Image.new("L", SIZE, 225)
    ImageDraw.Draw(image).line([(300, 300), (330, 300), (310, 345)], fill=110, width=3)
    grey = np.asarray(image, dtype=np.float32) / 255
    desk = ys < 202 + 0.1 * xs  # two thirds of the frame
    grey[desk] = (0.3 * (1 + 0.2 * grain / grain.std()))[desk]
    blurred = Image.fromarray((np.clip(grey, 0, 1) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.0))
    ink = flatten_background()(as_input(np.asarray(blurred, dtype=np.float32) / 255))[:, :, 0]
    assert float(np.percentile(ink[ndimage.binary_erosion(desk, iterations=12)], 99)) < 0.05
    height, width = select_digit()(as_input(ink)).shape[:2]
    assert 44 <= height <= 54 and 28 <= width <= 40  # the 7 alone


def test_flatten_background_keeps_a_bold_digit_that_runs_into_the_border() -> None:
    """A marker's 7 framed tightly, its stem running off the frame: a wide dark region at the
    border, as a desk is, but its edge is no sheet's straight one."""
    image = Image.new("L", (600, 300), 225)
    ImageDraw.Draw(image).line([(200, 40), (420, 40), (300, 300)], fill=40, width=70)
    grey = np.asarray(image.filter(ImageFilter.GaussianBlur(2.0)), dtype=np.float32) / 255
    ink = flatten_background()(as_input(grey))[:, :, 0]
    assert float(np.median(ink[grey < 0.3])) > 0.6


def test_flatten_background_reads_writing_where_the_light_falls_off_far_below_the_paper() -> None:
    """A corner lit at under half the page's brightness is as dark as a desk, but reached
    gradually: it is the page, and the 7 written into it is read whole."""
    ys, xs = np.indices((SIZE[1], SIZE[0]), dtype=np.float32)
    distance = np.hypot(ys / SIZE[1], xs / SIZE[0]) / np.sqrt(2)  # 0 at the top left, 1 at the bottom right
    grey = write_seven(page(), at=(330, 180)) * (1.0 - 0.7 * distance)
    ink = flatten_background()(as_input(grey))[:, :, 0]
    stroke = write_seven(page(), at=(330, 180)) < 0.5
    assert float(np.median(ink[stroke])) > 0.5  # the 7, lit at under half the page's light
    assert float(ink[~dilated(stroke, 6)].max()) < 0.35


def test_flatten_background_reads_a_digit_under_a_deep_shadow_that_covers_most_of_the_page() -> None:
    grey = write_seven(page())
    grey[:250, :] *= 0.45  # a hand's shadow, as dark as a desk, over the 7 and most of the frame
    ink = flatten_background()(as_input(grey))[:, :, 0]
    assert float(ink[110:245, 200:300].max()) > 0.6  # the part of the 7 in the shadow
    stroke = ink > 0.5
    assert float(ink[~dilated(stroke, 6)].max()) < 0.35


@pytest.mark.parametrize("grid", [False, True])
def test_remove_lines_takes_out_ruling_and_keeps_the_strokes_that_cross_it(grid: bool) -> None:
    grey = page()
    image = Image.fromarray((grey * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for y in range(20, SIZE[1], 40):  # ruled lines, a little tilted
        draw.line([(0, y), (SIZE[0], y + 12)], fill=150, width=2)
    if grid:
        for x in range(15, SIZE[0], 40):
            draw.line([(x, 0), (x - 8, SIZE[1])], fill=150, width=2)
    grey = write_seven(np.asarray(image, dtype=np.float32) / 255)
    ink = remove_lines()(flatten_background()(as_input(grey)))[:, :, 0]
    assert float(np.percentile(ink[:, :150], 99.5)) < 0.15  # left of the 7: no line left
    stroke = ink[110:260, 200:300] > 0.5
    assert stroke.sum() > 0.8 * (write_seven(page())[110:260, 200:300] < 0.5).sum()  # the 7 is whole


def test_remove_lines_finds_faint_ruling_beside_a_cleared_desk() -> None:
    """Faint ruling on grainy paper, the desk beyond the paper's slanting edge cleared to 0 over a
    third of the frame: the cleared rows are not the paper's quiet spread, and the lines stand out
    of the grain as they do without the desk."""
    rng = np.random.default_rng(5)
    ink = rng.uniform(0.0, 0.06, (SIZE[1], SIZE[0])).astype(np.float32)  # the paper's grain
    ys, xs = np.indices(ink.shape)
    ruled = ((ys - 0.05 * xs) % 40) < 2
    ink[ruled] += 0.1
    ink[ys < 60 + 0.4 * xs] = 0.0  # beyond the paper
    cleaned = remove_lines()(as_input(ink))[:, :, 0]
    on_paper = ys >= 70 + 0.4 * xs
    assert float(np.median(cleaned[ruled & on_paper])) < 0.06


def test_remove_lines_takes_out_ruling_on_a_page_that_most_of_the_frame_shows_beyond() -> None:
    """A strip of ruled paper down the left of the frame, the desk beyond it cleared to 0 and a
    line that runs out of the frame's top: each line is as strong as it is on the paper, not
    along the whole row."""
    rng = np.random.default_rng(7)
    ink = rng.uniform(0.0, 0.06, (SIZE[1], SIZE[0])).astype(np.float32)
    ys, xs = np.indices(ink.shape)
    ruled = ((ys + 0.08 * xs) % 45) < 2
    ink[ruled] += 0.15
    paper = xs < 0.3 * SIZE[0] + 0.1 * ys
    ink[~paper] = 0.0
    cleaned = remove_lines()(as_input(ink))[:, :, 0]
    assert float(np.median(cleaned[ruled & paper])) < 0.06


def test_remove_lines_takes_out_blurred_ruling_whose_fringes_widen_it() -> None:
    """A small photo's ruling, blurred: a 2 px line stands out of the grain over twice its width,
    more than the thickest line taken out, though no thicker than a line where it is darkest."""
    from scipy import ndimage

    rng = np.random.default_rng(8)
    ys, xs = np.indices((200, 360))
    lines = (((ys - 0.09 * xs) % 50) < 2).astype(np.float32) * 0.35
    ink = ndimage.gaussian_filter(lines, 1.6) + rng.uniform(0.0, 0.02, lines.shape).astype(np.float32)
    cleaned = remove_lines()(as_input(ink.astype(np.float32)))[:, :, 0]
    assert float(np.percentile(cleaned, 99.5)) < 0.06


def test_remove_lines_takes_out_ruling_that_a_slanting_photo_draws_at_angles_apart() -> None:
    """A page photographed at a slant: its ruled lines run at angles from 1 to 4.6 degrees down
    the frame, no one slope for all of them. Each is taken out along its own, end to end."""
    rng = np.random.default_rng(5)
    ink = rng.uniform(0.0, 0.06, (400, 640)).astype(np.float32)
    ys, xs = np.indices(ink.shape)
    lines = [np.abs(ys - (20 + 40 * k + np.tan(np.radians(1.0 + 0.4 * k)) * xs)) < 1.0 for k in range(10)]
    for line in lines:
        ink[line] += 0.12
    cleaned = remove_lines()(as_input(ink))[:, :, 0]
    for line in lines:
        assert float(np.percentile(cleaned[line], 90)) < 0.06


def dotted_page(spacing: int = 24, radius: float = 2.5, turn: float = 4.0) -> Image.Image:
    """A bullet journal's page: grey dots on a lattice, turned a little, all over the frame."""
    image = Image.fromarray((page() * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    angle = np.radians(turn)
    for row in range(-5, SIZE[1] // spacing + 6):
        for column in range(-5, SIZE[0] // spacing + 6):
            y = 10 + row * spacing * np.cos(angle) + column * spacing * np.sin(angle)
            x = 7 + column * spacing * np.cos(angle) - row * spacing * np.sin(angle)
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=140)
    return image


def test_remove_lines_takes_out_a_dot_grid_and_keeps_a_broken_strokes_pieces() -> None:
    """A 7 on dotted paper, with two small pieces of a broken stroke, the dots' size, beside it
    off the lattice: the dots go, the pieces and the 7 stay."""
    image = dotted_page()
    for y, x in ((164, 321), (188, 319)):  # each in the middle of a cell, between four dots
        ImageDraw.Draw(image).ellipse([x - 3, y - 3, x + 3, y + 3], fill=40)
    grey = write_seven(np.asarray(image, dtype=np.float32) / 255)
    ink = remove_lines()(flatten_background()(as_input(grey)))[:, :, 0]
    away = np.zeros(ink.shape, dtype=bool)
    away[24:-24, 24:-24] = True  # along the frame's border, a dot whose neighbour is cut off may stay
    away[90:270, 180:340] = False
    assert float(ink[away].max()) < 0.1  # every dot away from the 7 is gone
    assert float(ink[162:167, 319:324].max()) > 0.5 and float(ink[186:191, 317:322].max()) > 0.5
    stroke = ink[110:260, 200:300] > 0.5
    assert stroke.sum() > 0.8 * (write_seven(page())[110:260, 200:300] < 0.5).sum()


def test_remove_lines_leaves_specks_at_random_and_a_dotted_digit_alone() -> None:
    """Specks as many as a dot grid's, but strewn at random (grain, pencil dust), and a digit
    drawn in dots on a lattice (a dot-matrix display's 1), which spans only the digit: neither
    is a dot grid."""
    rng = np.random.default_rng(3)
    image = Image.fromarray((page() * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for y, x in zip(rng.uniform(0, SIZE[1], 150), rng.uniform(0, SIZE[0], 150)):
        draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=140)
    for row in range(7):
        for column in range(2):
            draw.ellipse([230 + 14 * column - 4, 120 + 14 * row - 4, 230 + 14 * column + 4, 120 + 14 * row + 4], fill=30)
    ink = flatten_background()(as_input(np.asarray(image, dtype=np.float32) / 255))
    assert np.array_equal(remove_lines()(ink), ink)


def test_line_slope_reads_the_ruling_behind_a_large_bold_digit() -> None:
    """A typeset 7 that fills most of the frame, its stem slanted, outweighs the ruling in ink:
    the lines' angle is read from thin structures alone."""
    image = Image.fromarray((page() * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for offset in range(10, SIZE[1] + 40, 45):  # ruled lines, turned 3 degrees
        draw.line([(0, offset), (SIZE[0], offset - 25)], fill=165, width=2)
    draw.polygon([(150, 40), (330, 40), (330, 80), (230, 340), (170, 340), (280, 80), (150, 80)], fill=25)
    ink = flatten_background()(as_input(np.asarray(image, dtype=np.float32) / 255))[:, :, 0]
    assert np.degrees(np.arctan(line_slope(ink, 8.0))) == pytest.approx(-3.0, abs=0.3)


def ruled_seven(turn: float, ruled: bool = True, rows: Sequence[int] = range(20, SIZE[1], 40),
                bands: Sequence[int] = (), line: int = 160, paper: np.ndarray | None = None) -> np.ndarray:
    """A 7 on a page (`paper`, plain by default), ruled in grey `line` (every 40 px, or at `rows`)
    or not ruled, with a broad grey band across it at each of `bands`, turned `turn` degrees
    anticlockwise with paper all round (a page photographed askew): the ink map
    flatten_background makes of it."""
    image = Image.fromarray(((page() if paper is None else paper) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for y in rows if ruled else ():
        draw.line([(0, y), (SIZE[0], y)], fill=line, width=2)
    for y in bands:
        draw.line([(0, y), (SIZE[0], y)], fill=170, width=24)
    draw.line([(200, 110), (290, 110), (230, 250)], fill=40, width=6)
    turned = image.rotate(turn, Image.Resampling.BICUBIC, expand=True, fillcolor=230)
    return flatten_background()(as_input(np.asarray(turned, dtype=np.float32) / 255))


@pytest.mark.parametrize("turn", [-30.0, 20.0])
def test_level_ruling_turns_an_askew_page_until_its_ruling_runs_level(turn: float) -> None:
    """remove_lines then takes the ruling out, and the 7 stands upright: its bar is level."""
    ink = ruled_seven(turn)
    assert ruling_angle(ink[:, :, 0], 45.0) == pytest.approx(-turn, abs=0.5)
    level = level_ruling()(ink)
    assert ruling_angle(level[:, :, 0], 45.0) == pytest.approx(0.0, abs=0.5)
    digit = select_digit()(remove_lines()(level))[:, :, 0]
    upright = select_digit()(remove_lines()(ruled_seven(0.0)))[:, :, 0]
    assert digit.shape == pytest.approx(upright.shape, abs=6)


@pytest.mark.parametrize("turn", [30.0, -30.0])
def test_ruling_angle_reads_steep_ruling_in_a_short_wide_frame(turn: float) -> None:
    """A ruled page turned 30 degrees, framed 640x220: every line leaves the frame through its top
    and bottom having crossed no more than about three quarters of its width."""
    from scipy import ndimage

    image = Image.new("L", (1400, 1000), 230)
    draw = ImageDraw.Draw(image)
    for y in range(0, 1000, 30):
        draw.line([(0, y), (1400, y)], fill=160, width=2)
    draw.line([(680, 440), (770, 440), (710, 580)], fill=40, width=6)
    turned = image.rotate(turn, Image.Resampling.BICUBIC).crop((380, 400, 1020, 620))
    grain = ndimage.gaussian_filter(np.random.default_rng(1).normal(0, 1, (220, 640)), 1.0)
    grey = np.clip(np.asarray(turned, dtype=np.float32) / 255 + 0.03 * grain / grain.std(), 0, 1)
    ink = flatten_background()(as_input(grey.astype(np.float32)))[:, :, 0]
    assert ruling_angle(ink, 45.0) == pytest.approx(-turn, abs=0.5)


def test_level_ruling_turns_a_page_that_shows_only_two_of_its_lines() -> None:
    """A digit photographed close on a ruled page: one line above it, one below."""
    ink = ruled_seven(20.0, rows=(80, 290))
    assert ruling_angle(ink[:, :, 0], 45.0, min_lines=3) is None
    assert ruling_angle(ink[:, :, 0], 45.0) == pytest.approx(-20.0, abs=0.5)
    digit = select_digit()(remove_lines()(level_ruling()(ink)))[:, :, 0]
    upright = select_digit()(remove_lines()(ruled_seven(0.0, rows=(80, 290))))[:, :, 0]
    assert digit.shape == pytest.approx(upright.shape, abs=6)


def test_ruling_angle_finds_faint_ruling_on_mottled_paper() -> None:
    """Lines a few grey levels darker than paper whose grain is blotchy: each line's row stands
    out of its neighbours only once the blotches are set aside."""
    mottled = grain_map(0.9, 0.03, 6, seed=3)
    ink = ruled_seven(25.0, line=212, paper=mottled)
    assert ruling_angle(ink[:, :, 0], 45.0) == pytest.approx(-25.0, abs=0.5)
    assert ruling_angle(ruled_seven(25.0, ruled=False, paper=mottled)[:, :, 0], 45.0) is None


def test_level_ruling_levels_most_photos_of_askew_ruled_pages(mnist, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Rendered phone photos of handwritten digits on ruled pages turned 10-30 degrees: faint ruling
    behind a bolder digit written at its own slant, and in a close or wide frame one line that
    crosses it with its neighbours cut off by the corners. Seven in eight are levelled."""
    from app.inference import document
    from training.data.photos import Scene, frame_for, render_photo

    found: list[float | None] = []
    read = document.ruling_angle

    def recorded(ink: np.ndarray, *args: float) -> float | None:
        found.append(read(ink, *args))
        return found[-1]

    monkeypatch.setattr(document, "ruling_angle", recorded)
    scene = Scene(paper="ruled", askew=True)
    preprocess = create_preprocessor()
    for index in range(40):
        rng = np.random.default_rng([7, index])
        preprocess(render_photo(None, scene, rng, frame_for(scene, rng), handwritten=mnist.test.images[index]))
    assert len(found) == 40 and sum(angle is not None for angle in found) >= 34


def test_unbroken_tells_printed_ruling_from_a_row_of_dots_and_a_short_stroke() -> None:
    """Ruling may stop at a margin but runs on without gaps; a dot grid's row is gaps between
    dots, and a ring's tangent or a stroke along the row covers little of it."""
    thin = np.clip(np.random.default_rng(5).normal(0.01, 0.005, (100, 300)), 0, 1)
    xs = np.arange(300)
    thin[np.rint(10 + 0.2 * xs).astype(int)[40:], xs[40:]] = 0.3  # a sloping line, from a margin on
    for x in range(0, 300, 30):
        thin[50, x : x + 5] = 0.3  # dots
    thin[80, 100:160] = 0.3  # a short stroke
    page = np.ones(thin.shape, dtype=bool)
    assert unbroken(thin > 0.1, page, 0.2, 10, max_gap=18)
    assert not unbroken(thin > 0.1, page, 0.0, 50, max_gap=18)
    assert not unbroken(thin > 0.1, page, 0.0, 80, max_gap=18)
    page[:, :90] = page[:, 170:] = False  # a scrap of paper: the stroke crosses most of it
    assert unbroken(thin > 0.1, page, 0.0, 80, max_gap=18)


def test_ruling_angle_takes_two_lines_for_a_page_only_when_they_are_apart_and_alone() -> None:
    """Two lines close together are one edge's (a note's or a ring's, twice); two with a broad
    band beside them are a note's edges round its body."""
    close = ruled_seven(20.0, rows=(300, 306))
    assert ruling_angle(close[:, :, 0], 45.0) is None
    assert np.array_equal(level_ruling()(close), close)
    banded = ruled_seven(20.0, rows=(80, 290), bands=(320,))
    assert ruling_angle(banded[:, :, 0], 45.0) is None


def test_level_ruling_leaves_plain_paper_and_slightly_askew_ruling_alone() -> None:
    """A 7 turned on plain paper has one straight bar and no ruling to go by; ruling 5 degrees
    off is for remove_lines as it is."""
    for ink in (ruled_seven(20.0, ruled=False), ruled_seven(5.0)):
        assert np.array_equal(level_ruling()(ink), ink)


def test_level_ruling_leaves_a_desks_grain_and_a_note_lying_askew_alone() -> None:
    """Streaks of a wooden desk at one angle, unevenly spaced, are not ruling; nor is a note
    lying turned on a desk that flatten_background cleared, its grain all over it."""
    image = Image.fromarray((page() * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    y = -150.0
    for gap in [13, 31, 9, 22, 40, 17, 27, 11, 35, 19, 24, 8, 30, 14, 38, 21, 10, 33, 16, 26, 12, 29]:
        y += gap
        draw.line([(0, y), (SIZE[0], y + 175)], fill=170, width=2)
    draw.line([(200, 110), (290, 110), (230, 250)], fill=40, width=6)
    grain = flatten_background()(as_input(np.asarray(image, dtype=np.float32) / 255))
    assert np.array_equal(level_ruling()(grain), grain)
    note = Image.new("L", SIZE, 0)
    ImageDraw.Draw(note).polygon([(170, 60), (330, 120), (280, 300), (110, 240)], fill=255)
    noise = grain_map(0.04, 0.012, 1.0, seed=3)
    ink = np.where(np.asarray(note) > 0, np.clip(noise, 0.0, 1.0), 0.0).astype(np.float32)
    ink = np.maximum(ink, write_seven(page(0.0), ink=0.9, width=5, at=(180, 120)))
    assert np.array_equal(level_ruling()(as_input(ink)), as_input(ink))


def test_remove_lines_leaves_a_lone_dark_bar_alone() -> None:
    """A tight crop of a 7: its top bar crosses the frame, like a ruled line, but it is the only
    one and as dark as the writing."""
    grey = np.full((120, 100), 0.9, dtype=np.float32)
    image = Image.fromarray((grey * 255).astype(np.uint8))
    ImageDraw.Draw(image).line([(0, 15), (100, 15), (40, 120)], fill=30, width=8)
    ink = flatten_background()(as_input(np.asarray(image, dtype=np.float32) / 255))
    assert float(remove_lines()(ink)[15, :].mean()) > 0.6


def test_remove_lines_keeps_an_upright_written_down_the_frame_beside_a_faint_margin() -> None:
    """A 1's upright, as dark as the writing, runs down most of the frame beside a faint printed
    margin: both are straight and thin, but the stroke is far darker than the only line found
    with it, so it stays and the margin goes."""
    rng = np.random.default_rng(9)
    ink = rng.uniform(0.0, 0.04, (SIZE[1], SIZE[0])).astype(np.float32)
    ink[:, 100:102] += 0.1  # the margin
    ink[20:340, 300:304] = 0.85  # the upright
    cleaned = remove_lines()(as_input(ink))[:, :, 0]
    assert float(np.median(cleaned[20:340, 300:304])) > 0.8
    assert float(np.median(cleaned[:, 100:102])) < 0.06


def test_select_digit_keeps_the_digit_and_its_parts_and_drops_specks() -> None:
    ink = np.zeros((300, 300), dtype=np.float32)
    ink[80:220, 140:150] = 1.0  # the body of a 5, say
    ink[80:90, 150:200] = 1.0
    ink[75:85, 205:230] = 0.9  # its flag, written apart
    ink[20:23, 20:23] = 1.0  # a speck in a corner
    ink[290:300, 0:300] = 0.8  # a strip along the border (a desk's edge)
    digit = select_digit()(as_input(ink))[:, :, 0]
    assert digit.shape[0] == pytest.approx(147, abs=4) and digit.shape[1] == pytest.approx(92, abs=4)
    assert float(digit.max()) == 1.0


def mark_seven(mark: str) -> np.ndarray:
    """An ink map of a 7 (94 x 144 px) with a box drawn round it (whole, or cut by the frame's
    right side), a ring (closed, open by 20 degrees, cut by the frame's bottom, or both: in two
    pieces), a line under it, or neither."""
    image = Image.new("L", SIZE, 0)
    draw = ImageDraw.Draw(image)
    if mark == "box":
        draw.rectangle([160, 70, 330, 290], outline=230, width=5)
    elif mark == "cut box":
        draw.rectangle([160, 70, 560, 290], outline=230, width=5)
    elif mark == "ring":
        draw.ellipse([135, 65, 355, 295], outline=230, width=5)
    elif mark == "open ring":
        draw.arc([135, 65, 355, 295], 10, 350, fill=230, width=5)
    elif mark == "cut ring":
        draw.ellipse([130, 40, 360, 420], outline=230, width=5)
    elif mark == "split ring":
        draw.arc([130, 40, 360, 420], 285, 255, fill=230, width=5)
    elif mark == "underline":
        draw.line([(170, 280), (320, 280)], fill=230, width=5)
    ink = np.asarray(image, dtype=np.float32) / 255
    return np.maximum(ink, write_seven(page(0.0), ink=0.9, width=6, at=(200, 110))).astype(np.float32)


@pytest.mark.parametrize("mark", ["box", "cut box", "ring", "open ring", "cut ring", "split ring", "underline"])
def test_select_digit_drops_a_box_round_the_digit_or_a_line_under_it(mark: str) -> None:
    """A form's answer box, the answer circled, or a line under it: heavier than the digit, and
    near enough to be gathered as its part, but drawn round it, not as one of its strokes."""
    alone = select_digit()(as_input(mark_seven("none")))[:, :, 0]
    digit = select_digit()(as_input(mark_seven(mark)))[:, :, 0]
    assert digit.shape == alone.shape
    assert float(np.abs(digit - alone).max()) < 0.05


def test_encircles_takes_a_ring_with_a_gap_and_not_a_seven_round_its_bar_or_a_c() -> None:
    """A ring open by a fifth of its size still closes round what it holds; a 7 (a bar beside its
    stem, under its top), and a C open by a third of its round, close nothing."""
    def drawn(shape: str) -> np.ndarray:
        image = Image.new("L", (200, 200), 0)
        draw = ImageDraw.Draw(image)
        if shape == "ring":
            draw.arc([5, 5, 195, 195], 25, 360, fill=255, width=6)
        elif shape == "c":
            draw.arc([5, 5, 195, 195], 60, 300, fill=255, width=6)
        elif shape == "seven":
            draw.line([(10, 10), (190, 10), (60, 195)], fill=255, width=6)
        else:
            draw.line([(30, 100), (100, 100)], fill=255, width=6)  # a bar, left of the 7's stem
        return np.asarray(image) > 127
    bar = drawn("bar")
    assert encircles(drawn("ring"), bar, 0.12 * 200, 0.35)
    assert not encircles(drawn("c"), bar, 0.12 * 200, 0.35)
    assert not encircles(drawn("seven"), bar, 0.12 * 200, 0.35)


def test_select_digit_passes_over_a_pen_lying_beside_the_digit() -> None:
    """A pen on the page, clear of the digit: a bar five times as thick as the digit's strokes and
    far heavier, nearer the middle than the digit is."""
    image = Image.new("L", SIZE, 0)
    ImageDraw.Draw(image).line([(60, 330), (330, 60)], fill=200, width=30)
    ink = np.asarray(image, dtype=np.float32) / 255
    ink = np.maximum(ink, write_seven(page(0.0), ink=0.9, width=6, at=(340, 150))).astype(np.float32)
    alone = select_digit()(as_input(write_seven(page(0.0), ink=0.9, width=6, at=(340, 150))))[:, :, 0]
    assert select_digit()(as_input(ink)).shape[:2] == alone.shape


def test_select_digit_passes_over_a_notched_pen_the_frame_cuts() -> None:
    """A pen across a corner of the frame, its outline bitten where the background estimate took
    part of it (neither long for its width nor convex any more), beside a thin 7."""
    image = Image.new("L", SIZE, 0)
    draw = ImageDraw.Draw(image)
    draw.line([(-30, 170), (190, 390)], fill=200, width=60)
    for x in (10, 60, 110):  # bites out of its upper side
        draw.ellipse([x, 150 + x, x + 60, 210 + x], fill=0)
    ink = np.maximum(np.asarray(image, dtype=np.float32) / 255, write_seven(page(0.0), ink=0.9, width=5, at=(300, 60)))
    alone = select_digit()(as_input(write_seven(page(0.0), ink=0.9, width=5, at=(300, 60))))[:, :, 0]
    assert select_digit()(as_input(ink.astype(np.float32))).shape[:2] == alone.shape


def test_select_digit_passes_over_a_pen_fifty_times_the_digits_mass() -> None:
    """A long, thick pen across the frame beside a thin ballpoint 7: fifty times its mass."""
    image = Image.new("L", SIZE, 0)
    ImageDraw.Draw(image).line([(20, 340), (470, 10)], fill=230, width=45)
    seven = write_seven(page(0.0), ink=0.6, width=3, at=(60, 40))
    ink = np.maximum(np.asarray(image, dtype=np.float32) / 255, seven).astype(np.float32)
    assert select_digit()(as_input(ink)).shape[:2] == select_digit()(as_input(seven)).shape[:2]


def test_select_digit_keeps_a_bold_digit_the_frame_cuts_beside_specks() -> None:
    """A marker's 7 in a tight crop, its bar cut by the frame's top: a thick stroke that runs into
    the border, beside specks far smaller than it is thick."""
    image = Image.new("L", SIZE, 0)
    draw = ImageDraw.Draw(image)
    draw.line([(150, 5), (330, 5), (210, 340)], fill=230, width=28)
    draw.ellipse([40, 200, 52, 212], fill=200)
    draw.ellipse([400, 300, 410, 310], fill=200)
    digit = select_digit()(as_input(np.asarray(image, dtype=np.float32) / 255))[:, :, 0]
    assert digit.shape[0] >= 330 and digit.shape[1] >= 180


def test_select_digit_keeps_a_finger_drawn_one_over_a_toolbars_word() -> None:
    """A screenshot of a drawing app: a 1 drawn with a finger, a thick bar, and under it the word
    of a toolbar's button in thin type, a fiftieth of its mass: a word is not a digit's size."""
    image = Image.new("L", SIZE, 0)
    draw = ImageDraw.Draw(image)
    draw.line([(250, 60), (215, 290)], fill=230, width=30)
    draw.line([(200 + 6 * step, 340 + 9 * (step % 2)) for step in range(9)], fill=230, width=2)  # 48 px wide
    digit = select_digit()(as_input(np.asarray(image, dtype=np.float32) / 255))[:, :, 0]
    assert digit.shape[0] >= 220


def test_convex_takes_a_bar_or_the_piece_of_one_and_not_a_digits_strokes() -> None:
    bar, seven = Image.new("L", SIZE), Image.new("L", SIZE)
    ImageDraw.Draw(bar).line([(-40, 40), (130, 330)], fill=255, width=60)
    ImageDraw.Draw(seven).line([(200, 110), (290, 110), (230, 250)], fill=255, width=12)
    assert convex(np.asarray(bar) > 127)
    assert not convex(np.asarray(seven) > 127)


def test_select_digit_keeps_a_bold_one_under_a_worksheets_printed_question() -> None:
    """A bold 1 written under three printed lines: a straight bar several times as thick as the
    type's strokes, beside words a tenth of its mass. Words are a line's height, far short of a
    digit beside a pen, and the 1 was set aside as a pen."""
    image = Image.new("L", SIZE, 0)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(["Exercise 4. How many apples", "are left in the basket?", "Answer:"]):
        draw.text((20, 15 + 36 * row), line, fill=220, font=ImageFont.load_default(size=22))
    draw.line([(240, 180), (232, 345)], fill=230, width=16)
    digit = select_digit()(as_input(np.asarray(image, dtype=np.float32) / 255))[:, :, 0]
    assert digit.shape[0] == pytest.approx(166, abs=8) and digit.shape[1] < 40


def test_select_digit_keeps_a_bold_one_in_a_thin_box() -> None:
    """A marker's 1 is a thick bar beside the box's thin lines; the box is the heavier."""
    image = Image.new("L", SIZE, 0)
    draw = ImageDraw.Draw(image)
    draw.rectangle([170, 60, 310, 300], outline=230, width=4)
    draw.line([(240, 100), (240, 260)], fill=230, width=24)
    digit = select_digit()(as_input(np.asarray(image, dtype=np.float32) / 255))[:, :, 0]
    assert digit.shape[0] == pytest.approx(162, abs=6) and digit.shape[1] == pytest.approx(24, abs=6)


def test_select_digit_keeps_a_seven_s_bar_and_a_two_s_foot_written_apart() -> None:
    """Straight level strokes apart from the rest of the digit, above it or just below it."""
    image = Image.new("L", SIZE, 0)
    draw = ImageDraw.Draw(image)
    draw.line([(200, 110), (290, 110)], fill=230, width=6)  # a 7's bar
    draw.line([(285, 124), (230, 250)], fill=230, width=6)  # its stem, apart from it
    seven = select_digit()(as_input(np.asarray(image, dtype=np.float32) / 255))[:, :, 0]
    assert seven.shape[0] == pytest.approx(146, abs=6) and seven.shape[1] == pytest.approx(96, abs=6)
    image = Image.new("L", SIZE, 0)
    draw = ImageDraw.Draw(image)
    draw.line([(200, 140), (220, 110), (270, 110), (290, 140), (210, 240)], fill=230, width=6)  # a 2
    draw.line([(210, 250), (300, 250)], fill=230, width=6)  # its foot, apart from it
    two = select_digit()(as_input(np.asarray(image, dtype=np.float32) / 255))[:, :, 0]
    assert two.shape[0] == pytest.approx(146, abs=6)


def test_select_digit_leaves_faint_blotches_beside_the_digit() -> None:
    """A slate's chalk-dust blotches next to a chalk digit: near enough and heavy enough to pass for
    its parts, but faint all over, where a part of a digit is written as darkly as the rest."""
    alone = write_seven(page(0.0), ink=1.0, width=6, at=(200, 110))
    image = Image.fromarray((alone * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse([140, 150, 185, 190], fill=90)
    draw.ellipse([300, 200, 350, 235], fill=90)
    blotched = np.asarray(image, dtype=np.float32) / 255
    assert select_digit()(as_input(blotched)).shape == select_digit()(as_input(alone)).shape


def test_select_digit_passes_over_a_slanting_line_from_the_border() -> None:
    """What the background leaves of the paper's edge across a corner: a long straight line, heavier
    than a small digit and square in its box, that runs into the frame's border."""
    image = Image.new("L", (480, 360), 0)
    ImageDraw.Draw(image).line([(0, 120), (260, 359)], fill=230, width=7)  # the edge, corner to side
    ink = np.asarray(image, dtype=np.float32) / 255
    stroke = write_seven(page(0.0), ink=0.9, width=3, at=(330, 60))  # a small 7, 94 x 144 px
    ink = np.maximum(ink, stroke).astype(np.float32)
    digit = select_digit()(as_input(ink))[:, :, 0]
    assert abs(digit.shape[0] - 144) <= 12 and abs(digit.shape[1] - 94) <= 12


def test_select_digit_keeps_a_slanting_one_that_runs_into_the_border_over_specks() -> None:
    """A tight crop of a 1 is a long line from the border too: with nothing but specks beside it,
    it is still the digit."""
    image = Image.new("L", (480, 360), 0)
    ImageDraw.Draw(image).line([(200, 0), (250, 200)], fill=230, width=6)
    ink = np.asarray(image, dtype=np.float32) / 255
    ink[300:304, 60:64] = 1.0
    ink[40:43, 400:403] = 1.0
    digit = select_digit()(as_input(ink))[:, :, 0]
    assert abs(digit.shape[0] - 200) <= 8 and abs(digit.shape[1] - 56) <= 8


def test_select_digit_passes_over_a_small_corner_of_the_desk() -> None:
    """A corner of the desk in the frame, too small for flatten_background to clear (a
    hundredth of the frame), is left as a solid triangle of ink at the border, heavier than a
    faint pencil 7: a patch thick for its size, not strokes."""
    ys, xs = np.indices((360, 480))
    corner = (480 - xs) + (360 - ys) < 60
    stroke = write_seven(page(0.0), ink=0.35, width=3, at=(150, 100))
    ink = np.maximum(np.where(corner, 0.7, 0.0), stroke).astype(np.float32)
    assert float(ink[corner].sum()) > 4 * float(stroke.sum())
    digit = select_digit()(as_input(ink))[:, :, 0]
    assert abs(digit.shape[0] - 144) <= 8 and abs(digit.shape[1] - 94) <= 8  # the 7's box, no more


@pytest.mark.parametrize("where", ["desk", "around the stroke"])
def test_select_digit_takes_the_stroke_over_a_larger_faint_textured_region(where: str) -> None:
    """Grain that stands out faintly over a wide region (a textured desk beyond the paper, which
    the background left behind; or the paper's grain round a pencil line, joined to it) has more
    mass than the digit, but is mostly faint: it is found again at a higher threshold."""
    region = np.zeros((360, 480), dtype=bool)
    if where == "desk":
        region[:300, :260] = np.arange(260)[None, :] < 260 - np.arange(300)[:, None] * 0.85  # a wedge, top left
        at = (330, 150)  # the 7 off centre, to the right
    else:
        region[:] = True  # the paper's grain, across the whole frame
        at = (200, 110)
    ink = np.where(region, grain_map(0.1, 0.03, blur=3, seed=0), 0.0).astype(np.float32)
    stroke = write_seven(page(0.0), ink=0.6, width=4, at=at)  # a faint 7, 94 x 144 px
    ink = np.maximum(ink, stroke).astype(np.float32)
    assert float(ink[region].sum()) > 3 * float(stroke.sum())  # the region outweighs the digit
    digit = select_digit()(as_input(ink))[:, :, 0]
    assert abs(digit.shape[0] - 144) <= 12 and abs(digit.shape[1] - 94) <= 12  # the 7's box, no more


def test_select_digit_clears_a_mottled_desk_that_most_of_every_window_is_ink_on() -> None:
    """A mottled grey desk beyond the paper, left behind by the background as blotches above the
    grain's level over most of every window: busy as grain is, though solid in places, and far
    heavier than the faint 7 on the paper beside it."""
    desk = np.arange(200)[None, :] < 200 - np.arange(360)[:, None] * 0.3  # the left side, slanting
    ink = np.zeros((360, 480), dtype=np.float32)
    ink[:, :200] = np.where(desk, grain_map(0.15, 0.05, blur=2, seed=0)[:, :200], 0.0)
    stroke = write_seven(page(0.0), ink=0.6, width=4, at=(330, 150))
    ink = np.maximum(ink, stroke).astype(np.float32)
    assert float(ink[:, :200].sum()) > 10 * float(stroke.sum())
    digit = select_digit()(as_input(ink))[:, :, 0]
    assert abs(digit.shape[0] - 144) <= 8 and abs(digit.shape[1] - 94) <= 8  # the 7's box, no more


@pytest.mark.parametrize("written", [True, False])
def test_select_digit_reads_the_papers_grain_beside_a_cleared_desk(written: bool) -> None:
    """Where flatten_background cleared the desk, the ink map is 0 across it. Counted as paper,
    those zeros swell the paper's spread past a faint pencil 7 on dim, grainy paper, and nothing
    was found; the paper's grain alone is still nothing."""
    ink = grain_map(0.1, 0.03, blur=2, seed=0)
    ink[:, :190] = 0.0  # the desk, cleared
    if not written:
        with pytest.raises(PreprocessError):
            select_digit()(as_input(ink))
        return
    ink = np.maximum(ink, write_seven(page(0.0), ink=0.4, width=5, at=(330, 110)))
    digit = select_digit()(as_input(ink))[:, :, 0]
    assert abs(digit.shape[0] - 144) <= 8 and abs(digit.shape[1] - 94) <= 8  # the whole 7


def test_select_digit_keeps_a_digit_on_a_dim_photos_grainy_paper() -> None:
    """An underexposed photo: the camera's gain leaves the paper mottled a little above the ink
    map's 0, more so towards one side. There the grain is busy (a quarter to most of it above the
    level grain is counted at) in a band along the border, and the 7 lies in that band: a region
    that holds the writing is not a desk, and is kept."""
    mean = np.linspace(0.04, 0.08, 480, dtype=np.float32)[None, :]
    ink = np.maximum(grain_map(mean, 0.03, blur=1.5, seed=3), write_seven(page(0.0), ink=1.0, width=8, at=(370, 110)))
    digit = select_digit()(as_input(ink))[:, :, 0]
    assert abs(digit.shape[0] - 148) <= 10 and abs(digit.shape[1] - 98) <= 10  # the whole 7


def test_select_digit_counts_a_grainy_papers_own_level_as_paper() -> None:
    """A dim photo's grain lifts all of the paper above the ink map's 0. Counted from 0, specks of
    it a couple of deviations above that level joined the 7's strokes into one region twice as
    wide; counted from the paper's own level, the 7 stands alone."""
    ink = np.maximum(grain_map(0.12, 0.05, blur=1.0, seed=4), write_seven(page(0.0), ink=1.0, width=6))
    digit = select_digit()(as_input(ink))[:, :, 0]
    assert abs(digit.shape[0] - 146) <= 8 and abs(digit.shape[1] - 96) <= 8  # the 7's box, no more


@pytest.mark.parametrize("index", [22, 47, 53])
def test_select_digit_takes_the_whole_digit_from_a_dim_photo(index: int, mnist) -> None:  # noqa: ANN001
    """A dim photo of a handwritten MNIST test digit (training/data/photos.py): its grain, averaged
    over 3x3 pixels, broke the thin strokes apart at the threshold counted from the paper, and a
    part of the digit was taken for all of it."""
    from training.data.photos import Scene, frame_for, render_photo

    scene = Scene(light="dim")
    rng = np.random.default_rng([5, index])
    framing = frame_for(scene, rng)
    data = render_photo(None, scene, rng, framing, handwritten=mnist.test.images[index])
    preprocessor = create_preprocessor()
    image = flatten_to_8bit(preprocessor.load(preprocessor.open(data)), "L")
    for step in preprocessor.image_steps:
        image = step(image)
    array = image_to_array(image, "L")
    for step in preprocessor.steps[:4]:  # flatten_background, level_ruling, remove_lines, select_digit
        array = step(array)
    digit_height = framing.digit_height * image.height / framing.height
    assert array.shape[0] >= 0.75 * digit_height


def bold_eight(margin: int) -> np.ndarray:
    """A marker's 8 (strokes a ninth of its height wide) on paper, `margin` px of paper round it."""
    image = Image.new("L", (180 + 2 * margin, 280 + 2 * margin), 235)
    draw = ImageDraw.Draw(image)
    draw.ellipse([margin + 20, margin, margin + 160, margin + 130], outline=30, width=30)
    draw.ellipse([margin, margin + 110, margin + 180, margin + 280], outline=30, width=30)
    return np.asarray(image, dtype=np.float32) / 255


def test_digit_preprocessing_reads_a_bold_digit_cropped_close() -> None:
    """A bold 8 cropped to its own outline: the ink is two fifths of the frame, so the frame's
    median and spread are as much the ink's as the paper's, and no threshold counted from them
    was reached (the photo was refused). It reads as the same 8 with paper round it does."""
    close, framed = (create_preprocessor()(photo(bold_eight(margin)))[0] for margin in (0, 120))
    assert np.count_nonzero(bold_eight(0) < 0.5) >= 0.35 * bold_eight(0).size
    assert np.corrcoef(close.ravel(), framed.ravel())[0, 1] > 0.6 and close.sum() == pytest.approx(framed.sum(), rel=0.2)


def test_split_crowded_finds_nothing_in_a_blank_pages_grain() -> None:
    grain = np.clip(np.random.default_rng(3).normal(0.05, 0.03, (300, 300)), 0, 1).astype(np.float32)
    labels, components = split_crowded(grain, float(grain.max()))
    assert components == [] and not labels.any()


def test_select_digit_refuses_a_blank_page() -> None:
    with pytest.raises(PreprocessError, match="no visible foreground"):
        select_digit()(as_input(np.full((200, 200), 0.01, dtype=np.float32)))


def test_thicken_strokes_grows_a_pen_line_to_mnist_width_and_leaves_thick_ones() -> None:
    thin = np.zeros((200, 120), dtype=np.float32)
    thin[10:190, 60:63] = 1.0
    assert stroke_width(thin > 0.5) == pytest.approx(3, abs=0.5)
    grown = thicken_strokes(0.1)(as_input(thin))[:, :, 0]
    assert stroke_width(grown > 0.5) == pytest.approx(20, abs=3)
    thick = np.zeros((200, 120), dtype=np.float32)
    thick[10:190, 50:75] = 1.0
    assert np.array_equal(thicken_strokes(0.1)(as_input(thick))[:, :, 0], thick)


def photo(grey: np.ndarray) -> bytes:
    """The page as a phone would send it: RGB, a little blurred, JPEG."""
    image = Image.fromarray((np.clip(grey, 0, 1) * 255).astype(np.uint8)).convert("RGB")
    return encode(image.filter(ImageFilter.GaussianBlur(1)), "JPEG", quality=80)


def test_digit_preprocessing_turns_a_shaded_ruled_photo_into_the_clean_pages_input() -> None:
    """The same 7, once on a clean evenly lit page and once on ruled paper in light falling off
    to half: the model gets (nearly) the same 28x28 input."""
    clean = create_preprocessor()(photo(write_seven(page(), ink=0.3, width=4)))[0]
    grey = page()
    image = Image.fromarray((grey * 255).astype(np.uint8))
    for y in range(30, SIZE[1], 45):
        ImageDraw.Draw(image).line([(0, y), (SIZE[0], y)], fill=170, width=2)
    grey = write_seven(np.asarray(image, dtype=np.float32) / 255, ink=0.3, width=4)
    grey *= np.linspace(1.0, 0.55, SIZE[1], dtype=np.float32)[:, None]
    shaded = create_preprocessor()(photo(grey))[0]
    assert shaded.shape == (28, 28)
    assert float(np.abs(shaded - clean).mean()) < 0.03


def test_digit_preprocessing_reads_a_ruled_page_photographed_askew_as_one_photographed_straight() -> None:
    """The same 7 on ruled paper, photographed straight and turned 25 degrees: the model gets
    (nearly) the same 28x28 input."""
    image = Image.fromarray((page() * 255).astype(np.uint8))
    for y in range(30, SIZE[1], 45):
        ImageDraw.Draw(image).line([(0, y), (SIZE[0], y)], fill=170, width=2)
    grey = write_seven(np.asarray(image, dtype=np.float32) / 255, ink=0.3, width=4)
    straight = create_preprocessor()(photo(grey))[0]
    turned = Image.fromarray((grey * 255).astype(np.uint8)).rotate(25, Image.Resampling.BICUBIC, expand=True,
                                                                     fillcolor=230)
    askew = create_preprocessor()(photo(np.asarray(turned, dtype=np.float32) / 255))[0]
    assert float(np.abs(askew - straight).mean()) < 0.03


def test_digit_preprocessing_keeps_mnist_digits_as_the_earlier_steps_did(mnist) -> None:  # noqa: ANN001
    """An MNIST digit sent as a PNG: the photo steps give what the plain crop-fit-centre steps
    of the earlier manifests gave (no paper, lines or shade to take away)."""
    earlier = Preprocessor.create("L", (1, 28, 28), [
        ("invert_if_light_background", {}), ("normalize_contrast", {"floor": 0.1}),
        ("crop_to_content", {"threshold": 0.2}), ("fit_into_box", {"size": 20}), ("center_by_mass", {"size": 28}),
    ], 10**6)
    current = create_preprocessor()
    differences = []
    for image in mnist.test.images[:200]:
        data = encode(Image.fromarray((image * 255).astype(np.uint8)), "PNG")
        differences.append(float(np.abs(current(data) - earlier(data)).mean()))
    assert np.median(differences) < 0.01 and np.mean(differences) < 0.03


def test_a_large_jpeg_is_decoded_at_reduced_scale_down_to_limit_size() -> None:
    preprocessor = Preprocessor.create("L", (1, 28, 28), [(s.op, s.params()) for s in PREPROCESSING.steps], 10**8)
    data = photo(write_seven(np.full((3000, 4000), 0.9, dtype=np.float32), width=30, at=(1800, 1000)))
    image = preprocessor.load(preprocessor.open(data))
    assert image.size == (1000, 750)  # 1/4 scale: the least that still gives 640 px
