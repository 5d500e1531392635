"""Decoders on hand-made tensors (both YOLO layouts), NMS, and model card validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tilerunner.errors import InvalidRequestError, ModelError
from tilerunner.models import Detections
from tilerunner.models.card import YoloOutput, load_card
from tilerunner.models.decoding import (
    decode_boxes_scores_labels,
    decode_classify,
    decode_segment,
    decode_yolo,
    nms,
    to_xyxy,
)

# Two candidates of class 1 on the same object (second weaker), one of class 0 elsewhere, one
# below threshold. Centre/size in input pixels of a 100 x 200 (H x W) input.
ROWS = np.array(
    [
        # cx,  cy,   w,   h,  obj, c0,  c1
        [50.0, 40.0, 20.0, 10.0, 0.9, 0.1, 0.8],
        [51.0, 40.0, 20.0, 10.0, 0.9, 0.1, 0.6],
        [150.0, 60.0, 40.0, 20.0, 1.0, 0.7, 0.2],
        [10.0, 10.0, 4.0, 4.0, 0.2, 0.2, 0.1],
    ]
)
IN_HW = (100, 200)
TILE_HW = (50, 100)  # the tile was twice as small as the input: boxes scale by 0.5


EXPECTED_BOXES = np.array([[20, 17.5, 30, 22.5], [65, 25, 85, 35]])


def _check_expected(dets: Detections) -> None:
    """Class 1 first (higher score), its weaker duplicate suppressed, the faint box dropped."""
    assert dets.labels.tolist() == [1, 0]
    np.testing.assert_allclose(dets.boxes, EXPECTED_BOXES)


def test_yolo_anchors_first_multiplies_objectness() -> None:
    (dets,) = decode_yolo(
        ROWS[None], layout="anchors-first", normalised=False, in_hw=IN_HW, tile_hw=TILE_HW,
        threshold=0.25, iou=0.45,
    )  # fmt: skip
    _check_expected(dets)
    np.testing.assert_allclose(dets.scores, [0.72, 0.7])


def test_yolo_attributes_first_has_no_objectness() -> None:
    v8 = np.delete(ROWS, 4, axis=1).T[None]  # [1, 4 + K, N]
    (dets,) = decode_yolo(
        v8, layout="attributes-first", normalised=False, in_hw=IN_HW, tile_hw=TILE_HW,
        threshold=0.25, iou=0.45,
    )  # fmt: skip
    _check_expected(dets)
    np.testing.assert_allclose(dets.scores, [0.8, 0.7])


def test_yolo_normalised_boxes_scale_to_the_tile_and_batches_stay_apart() -> None:
    rows = ROWS.copy()
    rows[:, [0, 2]] /= IN_HW[1]
    rows[:, [1, 3]] /= IN_HW[0]
    batch = np.stack([rows, rows[2:3].repeat(4, axis=0)])
    first, second = decode_yolo(
        batch, layout="anchors-first", normalised=True, in_hw=(1, 1), tile_hw=TILE_HW,
        threshold=0.25, iou=0.45,
    )  # fmt: skip
    _check_expected(first)
    assert second.labels.tolist() == [0]  # four identical boxes, NMS keeps one


def test_yolo_wrong_layout_is_explained() -> None:
    with pytest.raises(ModelError, match="needs more than 5 values per box"):
        decode_yolo(np.zeros((1, 8400, 5)), layout="anchors-first", normalised=False,
                    in_hw=IN_HW, tile_hw=TILE_HW, threshold=0.25, iou=0.45)  # fmt: skip


def test_boxes_are_clipped_to_the_tile_and_empty_ones_dropped() -> None:
    boxes = np.array([[[-5.0, -5.0, 10.0, 10.0], [120.0, 0.0, 130.0, 5.0]]])
    (dets,) = decode_boxes_scores_labels(
        boxes, np.array([[0.9, 0.9]]), None, box_format="xyxy", normalised=False,
        in_hw=TILE_HW, tile_hw=TILE_HW, threshold=0.5, iou=None,
    )  # fmt: skip
    assert dets.boxes.tolist() == [[0.0, 0.0, 10.0, 10.0]]
    assert dets.labels.tolist() == [0]


def test_box_formats() -> None:
    box = np.array([[10.0, 20.0, 4.0, 6.0]])
    assert to_xyxy(box, "xywh").tolist() == [[10, 20, 14, 26]]
    assert to_xyxy(box, "cxcywh").tolist() == [[8, 17, 12, 23]]
    assert to_xyxy(box, "xyxy").tolist() == box.tolist()


def test_nms_is_strict_and_class_aware() -> None:
    # IoU of these two boxes is exactly 0.5: kept at threshold 0.5, suppressed below it.
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]])
    scores = np.array([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]
    assert nms(boxes, scores, 0.49, np.array([0, 1])).tolist() == [0, 1]


def test_classify_softmax_and_segment_resize() -> None:
    (probs,) = decode_classify(np.array([[0.0, np.log(3.0)]]), softmax=True)
    np.testing.assert_allclose(probs, [0.25, 0.75])
    scores = np.zeros((1, 2, 2, 2))
    scores[0, 1, :, 1] = 1.0  # class 1 wins in the right column
    (mask,) = decode_segment(scores, argmax=True, tile_hw=(4, 4))
    assert mask.tolist() == [[0, 0, 1, 1]] * 4


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model.yaml"
    path.write_text(text)
    return path


def test_card_loads_with_classes_file(tmp_path: Path) -> None:
    (tmp_path / "names.txt").write_text("tree\n\nsnag\n")
    card, classes = load_card(
        _write(
            tmp_path,
            "task: detect\nclasses_file: names.txt\ninput: {size: [640, 640], range: [0, 4095]}\n"
            "output: {decoding: yolo, layout: anchors-first, normalised: true}\n",
        )
    )
    assert classes == ["tree", "snag"]
    assert isinstance(card.output, YoloOutput) and card.output.iou == 0.45
    assert card.input.range == (0.0, 4095.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("task: detect\noutput: {decoding: yolo, layot: x}\n", "field output.yolo.layot"),
        ("task: classify\noutput: {decoding: yolo}\n", "decoding 'yolo' is for task 'detect'"),
        ("task: detect\ninput: {size: [0, 4]}\noutput: {decoding: yolo}\n", "field input"),
        ("task: find\noutput: {decoding: yolo}\n", "field task"),
        ("task: detect\noutput: {decoding: magic}\n", "field output"),
        ("- just a list\n", "must be a YAML mapping"),
        ("task: [unclosed\n", "is not valid YAML"),
    ],
)
def test_bad_cards_name_the_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        load_card(_write(tmp_path, text))
    assert str(tmp_path / "model.yaml") in str(info.value)
    assert message in str(info.value)
