"""Ownership: a box belongs to the tile whose core holds its centre, exactly one tile per box."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tilerunner.errors import InvalidRequestError
from tilerunner.merging import as_boxes, clip_boxes, owned_mask, tile_to_image
from tilerunner.tiling import TileGrid, Window


def box_at(cx: float, cy: float, half: float = 2.0) -> list[float]:
    return [cx - half, cy - half, cx + half, cy + half]


def test_core_is_half_open_inside_the_image() -> None:
    core = Window(100, 50, 100, 50)  # x in [100, 200), y in [50, 100)
    boxes = np.array(
        [box_at(100, 60), box_at(200, 60), box_at(99.5, 60), box_at(150, 50), box_at(150, 100)]
    )
    assert owned_mask(boxes, core, 400, 300).tolist() == [True, False, False, True, False]


def test_core_touching_the_right_and_bottom_edge_is_closed_there() -> None:
    core = Window(300, 200, 100, 100)  # reaches the edge of a 400 x 300 image
    boxes = np.array([[396.0, 296.0, 400.0, 300.0], [400.0, 250.0, 400.0, 260.0], box_at(401, 250)])
    assert owned_mask(boxes, core, 400, 300).tolist() == [True, True, False]


def test_centre_in_the_padding_of_a_small_image_is_owned_by_nobody() -> None:
    grid = TileGrid(100, 50, tile_size=256, overlap=32)
    boxes = np.array([box_at(50, 25), box_at(180, 25), box_at(50, 120)])
    assert owned_mask(boxes, grid.core(0, 0), 100, 50).tolist() == [True, False, False]


def test_empty_input_gives_an_empty_mask() -> None:
    assert owned_mask(np.zeros((0, 4)), Window(0, 0, 10, 10), 10, 10).shape == (0,)
    assert owned_mask([], Window(0, 0, 10, 10), 10, 10).shape == (0,)


def test_malformed_boxes_are_rejected_with_advice() -> None:
    with pytest.raises(InvalidRequestError, match=r"\[N, 4\]"):
        as_boxes(np.zeros((3, 5)))


def test_clip_boxes_to_the_image() -> None:
    boxes = np.array([[-5.0, -1.0, 50.0, 20.0], [90.0, 40.0, 130.0, 70.0]])
    assert clip_boxes(boxes, 100, 60).tolist() == [[0, 0, 50, 20], [90, 40, 100, 60]]
    assert boxes[0, 0] == -5.0  # the input is left alone


def test_tile_to_image_translates_by_the_window_offset() -> None:
    out = tile_to_image(np.array([[1.0, 2.0, 3.0, 4.0]]), Window(100, 200, 256, 256))
    assert out.tolist() == [[101, 202, 103, 204]]


@st.composite
def grid_and_centres(draw: st.DrawFn) -> tuple[TileGrid, np.ndarray]:
    tile_size = draw(st.integers(4, 64))
    grid = TileGrid(
        draw(st.integers(1, 300)),
        draw(st.integers(1, 300)),
        tile_size,
        draw(st.integers(0, tile_size - 1)),
    )
    assume(grid.n_tiles <= 3000)
    n = draw(st.integers(1, 50))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    xs = rng.uniform(0, grid.width, n)
    ys = rng.uniform(0, grid.height, n)
    # put some centres exactly on integer pixel lines and on the image edges
    xs[: n // 3] = rng.integers(0, grid.width + 1, n // 3)
    ys[: n // 3] = rng.integers(0, grid.height + 1, n // 3)
    return grid, np.stack([xs, ys], axis=1)


@settings(max_examples=200, deadline=None)
@given(grid_and_centres())
def test_every_box_in_the_image_is_owned_by_exactly_one_tile(
    case: tuple[TileGrid, np.ndarray],
) -> None:
    grid, centres = case
    sizes = np.full_like(centres, 3.0)
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    owners = np.zeros(len(boxes), dtype=np.int64)
    for index in range(grid.n_tiles):
        owners += owned_mask(boxes, grid.core(*grid.tile_at(index)), grid.width, grid.height)
    assert (owners == 1).all()
