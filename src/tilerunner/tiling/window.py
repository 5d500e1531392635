"""Pixel windows: the one named geometry every part of tilerunner shares.

A :class:`Window` is a rectangle of whole pixels in an image's pixel space (x to the right,
y down, origin at the top-left corner of the top-left pixel). It is a frozen value object so it
can be hashed, compared, put on a queue message and logged without anyone mistaking
``(row, col)`` for ``(x, y)``.

Ends are exclusive (``col_end = col_off + width``), like Python slices, so
``array[w.row_off:w.row_end, w.col_off:w.col_end]`` reads exactly the window and adjacent
windows share no pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

from tilerunner.errors import InvalidRequestError

__all__ = ["Window"]


@dataclass(frozen=True, slots=True)
class Window:
    """A rectangle of pixels: offsets of the top-left pixel plus a size.

    Offsets may be negative or reach past an image (a tile window of an image smaller than
    the tile does); sizes are never negative. :meth:`clip` brings a window inside an image.
    """

    col_off: int
    row_off: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width < 0 or self.height < 0:
            raise InvalidRequestError(
                f"window size ({self.width} x {self.height}) must not be negative; "
                "pass a non-negative width and height"
            )

    @property
    def col_end(self) -> int:
        """The first column right of the window (exclusive end)."""
        return self.col_off + self.width

    @property
    def row_end(self) -> int:
        """The first row below the window (exclusive end)."""
        return self.row_off + self.height

    @property
    def area(self) -> int:
        """Number of pixels in the window."""
        return self.width * self.height

    def intersection(self, other: Window) -> Window | None:
        """The pixels both windows cover, or ``None`` when they share no pixel.

        Windows that only touch along an edge share no pixel, so they do not intersect;
        this is what makes adjacent cores a partition.
        """
        col_off = max(self.col_off, other.col_off)
        row_off = max(self.row_off, other.row_off)
        col_end = min(self.col_end, other.col_end)
        row_end = min(self.row_end, other.row_end)
        if col_end <= col_off or row_end <= row_off:
            return None
        return Window(col_off, row_off, col_end - col_off, row_end - row_off)

    def clip(self, width: int, height: int) -> Window | None:
        """The part of this window inside a ``width`` x ``height`` image, or ``None``.

        Used to turn a padded tile window into the pixels that actually exist.
        """
        return self.intersection(Window(0, 0, width, height))

    def contains(self, other: Window) -> bool:
        """Whether every pixel of ``other`` lies in this window."""
        return (
            self.col_off <= other.col_off
            and self.row_off <= other.row_off
            and other.col_end <= self.col_end
            and other.row_end <= self.row_end
        )
