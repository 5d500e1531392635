"""Checks shared by the photo tests: results against the painted truth, stage by stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tr_photos import BRIGHT, TruthPhoto


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def iou(a: list[float], b: tuple[int, int, int, int, int]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def check_photo(record: dict[str, Any], truth: TruthPhoto, *, labelled: bool) -> None:
    """One line per photo: every painted square found once where it is, in photo pixels; a
    bright one (passing the 0.9 filter) has exactly one stage-2 result, a dim one none."""
    assert record["status"] == "done", record
    assert (record["width"], record["height"]) == (truth.width, truth.height)
    detections = record["detections"]
    assert len(detections) == len(truth.squares), (record, truth)
    for square in truth.squares:
        [match] = [d for d in detections if iou(d["box"], square) > 0.8]
        assert match["model"] == "det" and match["stage"] == 0
        if square[4] == BRIGHT:
            [stage2] = match["stages"]
            assert (stage2["stage"], stage2["task"], stage2["model"]) == (1, "classify", "cls")
            if labelled:
                assert stage2["label"] == "bright" and stage2["model_version"] == "centre-1"
        else:
            assert match["score"] < 0.9 and "stages" not in match
