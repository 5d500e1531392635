"""What a region yields: its owned features, columnar, and the tiles that failed on their own.

Both are what a worker reports and the store records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tilerunner.tiling.window import Window

if TYPE_CHECKING:  # numpy is imported where arrays are made: the store's readers need none
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["FeatureRows", "TileFailure"]

#: Longest failure message kept (the HTTP complete body accepts no longer one).
MESSAGE_LIMIT = 1000


def _empty(*shape: int, dtype: str = "float64") -> NDArray[Any]:
    import numpy as np

    return np.zeros(shape, dtype=dtype)


@dataclass(slots=True)
class FeatureRows:
    """The owned features of one region, columnar, in full-image pixel coordinates."""

    boxes: NDArray[np.float64] = field(default_factory=lambda: _empty(0, 4))
    scores: NDArray[np.float64] = field(default_factory=lambda: _empty(0))
    class_ids: NDArray[np.int64] = field(default_factory=lambda: _empty(0, dtype="int64"))
    labels: list[str] = field(default_factory=list)
    extra: list[dict[str, Any] | None] | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def concat(cls, parts: list[FeatureRows]) -> FeatureRows:
        import numpy as np

        parts = [p for p in parts if len(p)]
        if not parts:
            return cls()
        extra: list[dict[str, Any] | None] | None = None
        if any(p.extra is not None for p in parts):
            extra = []
            for p in parts:
                extra.extend(p.extra if p.extra is not None else [None] * len(p))
        return cls(
            boxes=np.concatenate([p.boxes for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
            class_ids=np.concatenate([p.class_ids for p in parts]),
            labels=[label for p in parts for label in p.labels],
            extra=extra,
        )


@dataclass(frozen=True, slots=True)
class TileFailure:
    """One tile that could not be read, or that the model rejected: it fails alone.

    ``window`` is the tile's read window in full-image pixels; ``code`` is the error's code
    (``source_error``, ``retryable``, ``model_error`` ...) and ``message`` its one-line text.
    """

    window: Window
    code: str
    message: str

    @classmethod
    def of(cls, window: Window, code: str, message: str) -> TileFailure:
        """A failure with its message cut to :data:`MESSAGE_LIMIT` characters."""
        return cls(window, code[:64], message[:MESSAGE_LIMIT])
