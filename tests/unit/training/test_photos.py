"""Rendered phone photos of digits (training/data/photos.py): repeatable, varied, and readable by
the service's own digit preprocessing."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from training.data.mnist import create_preprocessor
from training.data.photos import (
    Scene,
    draw_mark,
    draw_ring,
    draw_ruling,
    frame_for,
    note_region,
    render_photo,
    render_training_photo,
    whole_page_region,
)
from training.data.printed import training_faces


def test_a_training_photo_depends_on_seed_and_index_alone(mnist) -> None:  # noqa: ANN001
    faces = training_faces()
    first = render_training_photo(7, 0, mnist.train.images, mnist.train.labels, faces)
    again = render_training_photo(7, 0, mnist.train.images, mnist.train.labels, faces)
    other = render_training_photo(8, 0, mnist.train.images, mnist.train.labels, faces)
    elsewhere = render_training_photo(7, 1, mnist.train.images, mnist.train.labels, faces)
    assert first == again and first[0] != other[0] and first[0] != elsewhere[0]


@pytest.mark.parametrize("change", [
    {}, {"paper": "ruled"}, {"paper": "squared"}, {"light": "falloff"}, {"light": "shadow"}, {"light": "dim"},
    {"edge": True}, {"ink": "blue"}, {"ink": "pencil"}, {"ink": "marker"}, {"size": "small"}, {"low_resolution": True},
    {"light": "flash"}, {"sheet": "note"}, {"marked": True}, {"paper": "dotted"},
    {"paper": "ruled", "askew": True}, {"circled": True}, {"size": "far"},
])
def test_each_condition_renders_a_photo_whose_digit_the_service_finds(change: dict, mnist) -> None:  # noqa: ANN001
    scene = replace(Scene(), **change)
    rng = np.random.default_rng(5)
    framing = frame_for(scene, rng)
    data = render_photo(None, scene, rng, framing, handwritten=mnist.test.images[0])
    image = Image.open(io.BytesIO(data))
    assert image.format in ("JPEG", "PNG") and min(image.size) >= 150
    digit = create_preprocessor()(data)[0]
    assert digit.shape == (28, 28) and digit.max() > 0.5
    rows = np.flatnonzero(digit.max(axis=1) > 0.3)
    assert rows[-1] - rows[0] >= 12  # a digit fitted into the box, not a speck or a line


@pytest.mark.parametrize(("region", "frame", "keep", "share"), [
    (note_region, (300, 400), (120, 170, 180, 215), (0.05, 0.3)),  # round the digit, a little larger
    (whole_page_region, (1200, 900), (560, 400, 640, 450), (0.4, 0.85)),  # most of the frame
])
def test_sheet_region_holds_the_digit_with_the_desk_all_round_it(region, frame, keep, share) -> None:  # noqa: ANN001
    rng = np.random.default_rng(3)
    top, left, bottom, right = keep
    for _ in range(20):
        sheet = region(*frame, keep, rng)[:, :, 0]
        assert sheet[top:bottom + 1, left:right + 1].min() > 0.99
        assert max(sheet[0].max(), sheet[-1].max(), sheet[:, 0].max(), sheet[:, -1].max()) < 0.01
        assert share[0] <= sheet.mean() <= share[1]


def test_draw_mark_leaves_the_digit_clear() -> None:
    """A box, a line or a pen is drawn round or beside the digit's box, never across it."""
    rng = np.random.default_rng(4)
    drawn = 0
    for _ in range(30):
        frame = np.full((400, 500, 3), 230.0, dtype=np.float32)
        marked = draw_mark(frame, (150, 200, 250, 280), rng)
        assert marked[150:251, 200:281].min() == 230.0
        drawn += int(marked.min() < 200.0)
    assert drawn >= 25  # a box may fall outside a small frame; most marks show


def test_draw_ring_goes_round_the_digit_and_leaves_it_clear() -> None:
    """A ring round the digit's box: ink on all four sides of it, none inside the box."""
    rng = np.random.default_rng(6)
    for _ in range(20):
        frame = np.full((400, 500, 3), 230.0, dtype=np.float32)
        ringed = draw_ring(frame, (150, 200, 250, 280), rng)[:, :, 0] < 200
        assert not ringed[150:251, 200:281].any()
        assert ringed[:150, 200:281].any() and ringed[251:, 200:281].any()
        assert ringed[150:251, :200].any() and ringed[150:251, 281:].any()


def test_draw_ruling_dots_a_lattice_and_draws_no_line() -> None:
    page = np.full((200, 300, 3), 230.0, dtype=np.float32)
    draw_ruling(page, "dotted", 40.0, np.random.default_rng(2))
    printed = page[:, :, 0] < 220
    assert printed.any(axis=1).mean() < 0.5 and printed.any(axis=0).mean() < 0.5  # no row or column runs through
    _, count = ndimage.label(printed)
    assert 5 * 7 <= count <= 6 * 8  # a dot every 40 px each way


def test_random_scenes_cover_every_condition() -> None:
    """Every condition but those of the bench that training does not render (a note, a flash,
    marks, dotted paper, a page well askew, a ring)."""
    rng = np.random.default_rng(0)
    scenes = [Scene.random(rng) for _ in range(400)]
    for field, values in (("paper", {"blank", "ruled", "squared"}), ("light", {"even", "falloff", "shadow", "dim"}),
                          ("ink", {"black", "blue", "pencil", "marker"}), ("size", {"normal", "small"}),
                          ("edge", {True, False}), ("low_resolution", {True, False})):
        assert {getattr(scene, field) for scene in scenes} == values
