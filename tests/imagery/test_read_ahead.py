"""Reading ahead: the pixels handed over are the reader's own, once, within the budget, and a
read ahead that failed or was stopped leaves the caller to read for itself."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tilerunner.imagery import RasterReader
from tilerunner.imagery.read_ahead import ReadAhead
from tilerunner.tiling.window import Window

WINDOWS = [Window(0, 0, 256, 128), Window(0, 128, 256, 128), Window(300, 40, 200, 100)]


def test_read_returns_what_was_read_ahead_once(data_dir: Path) -> None:
    path = str(data_dir / "cogeo.tif")
    with RasterReader(path) as plain, RasterReader(path) as reader:
        ahead = reader.read_ahead(WINDOWS, budget_bytes=1 << 20)
        assert ahead.windows == tuple(WINDOWS)
        assert ahead.wait(30)
        for window in WINDOWS:
            np.testing.assert_array_equal(reader.read(window), plain.read(window))
        assert ahead.taken == len(WINDOWS)
        again = reader.read(WINDOWS[0])  # handed over once; now an ordinary read
        np.testing.assert_array_equal(again, plain.read(WINDOWS[0]))
        assert ahead.taken == len(WINDOWS)


def test_only_the_windows_that_fit_the_budget_are_read_ahead(data_dir: Path) -> None:
    with RasterReader(str(data_dir / "cogeo.tif")) as reader:
        one = 256 * 128 * reader.channels
        ahead = reader.read_ahead(WINDOWS, budget_bytes=2 * one)
        assert ahead.windows == tuple(WINDOWS[:2])
        assert ahead.wait(30)
        reader.read(WINDOWS[2])
        assert (ahead.asked, ahead.taken) == (0, 0)  # the third is read when asked, not taken


def test_a_window_asked_for_before_its_read_started_is_left_to_the_caller() -> None:
    started, release = threading.Event(), threading.Event()
    reads: list[Window] = []

    def slow(window: Window) -> np.ndarray:
        reads.append(window)
        started.set()
        release.wait(30)
        return np.ones((window.height, window.width, 3), np.uint8)

    ahead = ReadAhead(slow, WINDOWS, budget_bytes=1 << 30, bytes_per_pixel=3)
    assert started.wait(30)
    assert ahead.take(WINDOWS[2]) is None  # not started: the caller reads it at once
    release.set()
    first = ahead.take(WINDOWS[0])  # in progress: waited for
    assert first is not None and first.shape == (128, 256, 3)
    assert ahead.wait(30)
    assert reads == WINDOWS[:2] and (ahead.asked, ahead.taken) == (2, 1)
    ahead.close()


def test_a_failed_read_ahead_leaves_the_read_to_the_caller() -> None:
    def failing(window: Window) -> np.ndarray:
        raise OSError(f"no such block at {window}")

    ahead = ReadAhead(failing, WINDOWS, budget_bytes=1 << 30, bytes_per_pixel=3)
    assert ahead.wait(30)
    assert [ahead.take(w) for w in WINDOWS] == [None, None, None]
    assert ahead.taken == 0
    ahead.close()


def test_close_releases_a_caller_waiting_for_a_window_not_yet_read() -> None:
    started, release = threading.Event(), threading.Event()

    def slow(window: Window) -> np.ndarray:
        started.set()
        release.wait(30)
        return np.zeros((window.height, window.width, 3), np.uint8)

    ahead = ReadAhead(slow, WINDOWS, budget_bytes=1 << 30, bytes_per_pixel=3)
    assert started.wait(30)
    got: list[np.ndarray | None] = []
    taker = threading.Thread(target=lambda: got.append(ahead.take(WINDOWS[1])))
    taker.start()
    closer = threading.Thread(target=ahead.close)
    closer.start()
    deadline = time.monotonic() + 30
    while not ahead.closed and time.monotonic() < deadline:
        closer.join(0.01)
    release.set()  # the read in progress ends; nothing after it is read
    taker.join(30)
    closer.join(30)
    assert got == [None]
    assert ahead.take(WINDOWS[2]) is None


def test_closing_the_reader_stops_its_read_ahead(data_dir: Path) -> None:
    reader = RasterReader(str(data_dir / "cogeo.tif"))
    ahead = reader.read_ahead(WINDOWS, budget_bytes=1 << 20)
    reader.close()
    assert ahead.take(WINDOWS[0]) is None
    with pytest.raises(Exception, match="closed"):
        reader.read(WINDOWS[0])
