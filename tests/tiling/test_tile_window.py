"""Window arithmetic: exclusive ends, intersection, clipping to an image."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilerunner.errors import InvalidRequestError
from tilerunner.tiling import Window


def test_ends_are_exclusive() -> None:
    window = Window(10, 20, 30, 40)
    assert (window.col_end, window.row_end) == (40, 60)
    assert window.area == 1200


def test_intersection_of_overlapping_windows() -> None:
    assert Window(0, 0, 10, 10).intersection(Window(5, 8, 10, 10)) == Window(5, 8, 5, 2)


def test_windows_touching_at_an_edge_do_not_intersect() -> None:
    assert Window(0, 0, 10, 10).intersection(Window(10, 0, 5, 5)) is None
    assert Window(0, 0, 10, 10).intersection(Window(0, 10, 5, 5)) is None


def test_clip_padded_tile_to_image() -> None:
    assert Window(0, 0, 256, 256).clip(100, 50) == Window(0, 0, 100, 50)
    assert Window(-5, -5, 10, 10).clip(100, 100) == Window(0, 0, 5, 5)
    assert Window(200, 0, 10, 10).clip(100, 100) is None


def test_contains() -> None:
    assert Window(0, 0, 10, 10).contains(Window(2, 2, 8, 8))
    assert not Window(0, 0, 10, 10).contains(Window(2, 2, 9, 8))


def test_negative_size_is_rejected_with_advice() -> None:
    with pytest.raises(InvalidRequestError, match="must not be negative"):
        Window(0, 0, -1, 5)


def test_window_is_a_hashable_value() -> None:
    assert len({Window(1, 2, 3, 4), Window(1, 2, 3, 4)}) == 1


windows = st.builds(
    Window,
    st.integers(-20, 20),
    st.integers(-20, 20),
    st.integers(0, 30),
    st.integers(0, 30),
)


@settings(max_examples=200, deadline=None)
@given(windows, windows)
def test_intersection_matches_painted_pixels(a: Window, b: Window) -> None:
    canvas = np.zeros((100, 100), dtype=np.int8)
    for window in (a, b):
        canvas[
            window.row_off + 40 : window.row_end + 40, window.col_off + 40 : window.col_end + 40
        ] += 1
    both = np.argwhere(canvas == 2)
    result = a.intersection(b)
    if result is None:
        assert both.size == 0
    else:
        assert result == b.intersection(a)
        assert result.area == len(both)
        assert a.contains(result) and b.contains(result)
        assert both.min(axis=0).tolist() == [result.row_off + 40, result.col_off + 40]
