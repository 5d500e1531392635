"""Score thresholds by class, ``CLASS:SCORE`` (pure parsing; applied in ``xyz.results``)."""

from __future__ import annotations

from dataclasses import dataclass

from tilerunner.errors import InvalidRequestError

__all__ = ["Threshold", "parse_threshold"]


@dataclass(frozen=True, slots=True)
class Threshold:
    """Keep features whose score for ``target`` (a class id or name) is >= ``score``."""

    target: int | str
    score: float

    def __str__(self) -> str:
        return f"{self.target}:{self.score:g}"


def parse_threshold(text: str) -> Threshold:
    """``'1:0.95'`` or ``'building:0.8'`` as a :class:`Threshold`."""
    target, sep, value = text.rpartition(":")
    try:
        score = float(value)
    except ValueError:
        score = float("nan")
    if not sep or not target or not 0.0 <= score <= 1.0:
        raise InvalidRequestError(
            f"--threshold {text!r} must be CLASS:SCORE with a class id or name and a score "
            "in 0..1, e.g. 1:0.95 or building:0.8"
        )
    return Threshold(int(target) if target.isdigit() else target, score)
