"""Output validation and the LoadedModel boundary: precise messages for broken models."""

from __future__ import annotations

import numpy as np
import pytest

from tilerunner.errors import InvalidRequestError, ModelError
from tilerunner.models import (
    ClassScores,
    Detections,
    LoadedModel,
    SegMask,
    validate_outputs,
    wrap_model,
)
from tilerunner.testing.models import FailingModel, MalformedModel, TruthDetector
from tilerunner.tiling import Window

TILES = np.zeros((3, 16, 16, 3), dtype=np.uint8)


def _malformed(kind: str) -> LoadedModel:
    return wrap_model(MalformedModel(kind), name="det", spec="test:Malformed")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("count", "model 'det' returned 4 outputs for a batch of 3 tiles"),
        ("not-a-list", "model 'det' returned a dict; predict must return a list"),
        ("not-a-mapping", "model 'det' output 2: is a ndarray, expected a mapping"),
        ("missing-key", "model 'det' output 2: is missing 'labels'"),
        ("boxes-shape", "model 'det' output 2: 'boxes' has shape (1, 3), expected (N, 4)"),
        ("scores-length", "model 'det' output 2: 'scores' length 2 != boxes 1"),
        ("nan-boxes", "model 'det' output 2: 'boxes' contains NaN or infinite values"),
        ("label-out-of-range", "'labels' has class id 2 but the model declares 2 classes"),
        ("inverted-box", "model 'det' output 2: box 0 [5.0, 1.0, 1.0, 5.0] has x1 < x0"),
    ],
)
def test_malformed_output_gives_precise_message(kind: str, message: str) -> None:
    with pytest.raises(ModelError) as info:
        _malformed(kind).predict(TILES)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_valid_detections_are_typed() -> None:
    raw = [{"boxes": [[1, 2, 3, 4]], "scores": [0.5], "labels": [1.0]}]
    (out,) = validate_outputs("detect", raw, 1, 16, 16, "det", n_classes=2)
    assert isinstance(out, Detections)
    assert out.boxes.dtype == np.float64 and out.boxes.shape == (1, 4)
    assert out.labels.dtype == np.int64 and out.labels.tolist() == [1]
    assert len(out) == 1


def test_empty_detections_accept_flat_empty_arrays() -> None:
    (out,) = validate_outputs("detect", [{"boxes": [], "scores": [], "labels": []}], 1, 8, 8, "d")
    assert isinstance(out, Detections) and out.boxes.shape == (0, 4)


def test_fractional_labels_are_rejected() -> None:
    raw = [{"boxes": [[1, 2, 3, 4]], "scores": [0.5], "labels": [0.5]}]
    with pytest.raises(ModelError, match="non-integer values"):
        validate_outputs("detect", raw, 1, 16, 16, "det")


def test_classify_checks_class_count_and_batch_arrays() -> None:
    outputs = validate_outputs("classify", np.full((2, 3), 0.5), 2, 8, 8, "cls", n_classes=3)
    assert all(isinstance(o, ClassScores) and o.scores.shape == (3,) for o in outputs)
    with pytest.raises(ModelError, match="'scores' has 2 values but the model declares 3"):
        validate_outputs("classify", [np.ones(2)], 1, 8, 8, "cls", n_classes=3)
    with pytest.raises(ModelError, match=r"shape \(2, 2\), expected \(K,\)"):
        validate_outputs("classify", [np.ones((2, 2))], 1, 8, 8, "cls")


def test_segment_masks_must_match_the_tile() -> None:
    ids, probs = validate_outputs(
        "segment", [np.ones((4, 6), np.uint8), np.zeros((2, 4, 6))], 2, 4, 6, "seg"
    )
    assert isinstance(ids, SegMask) and ids.classes is not None and ids.classes.dtype == np.int64
    assert isinstance(probs, SegMask) and probs.probabilities is not None
    assert probs.probabilities.shape == (2, 4, 6)
    with pytest.raises(ModelError, match=r"mask has shape \(4, 4\), expected \(4, 6\)"):
        validate_outputs("segment", [np.ones((4, 4), int)], 1, 4, 6, "seg")


def test_exceptions_from_model_code_become_model_errors() -> None:
    model = wrap_model(FailingModel(fail_on_call=2), name="boom", spec="x:Failing")
    assert len(model.predict(TILES)) == 3
    with pytest.raises(ModelError, match="model 'boom' raised RuntimeError: planned failure"):
        model.predict(TILES)


def test_marker_pixel_triggers_failure() -> None:
    model = wrap_model(FailingModel(marker_value="7"), name="m", spec="x:F")
    tiles = TILES.copy()
    model.predict(tiles)
    tiles[1, 3, 4] = 7
    with pytest.raises(ModelError, match="marker pixel 7 in tile 1"):
        model.predict(tiles)


def test_batch_must_be_uint8_bhwc() -> None:
    model = wrap_model(FailingModel(), name="m", spec="x:F")
    with pytest.raises(InvalidRequestError, match="uint8 tiles"):
        model.predict(np.zeros((2, 8, 8, 3), np.float32))


def test_windows_are_passed_only_to_models_that_want_them() -> None:
    model = wrap_model(TruthDetector([[0, 0, 4, 4]]), name="truth", spec="x:T")
    assert model.wants_windows
    windows = [Window(0, 0, 16, 16), Window(16, 0, 16, 16), Window(2, 2, 16, 16)]
    out = model.predict(TILES, windows)
    assert [len(o) for o in out if isinstance(o, Detections)] == [1, 0, 1]
    with pytest.raises(InvalidRequestError, match="pass windows="):
        model.predict(TILES)
    with pytest.raises(InvalidRequestError, match="2 windows for 3 tiles"):
        model.predict(TILES, windows[:2])


def test_label_falls_back_to_the_id() -> None:
    model = wrap_model(MalformedModel(), name="m", spec="x:M")
    assert model.label(1) == "b"
    assert model.label(7) == "7"


def test_empty_batch_skips_the_model_and_describe_is_plain_data() -> None:
    model = wrap_model(FailingModel(fail_on_call=1), name="m", spec="x:F")
    assert model.predict(np.zeros((0, 8, 8, 3), np.uint8)) == []
    assert model.describe() == {
        "name": "m",
        "spec": "x:F",
        "backend": "plugin",
        "task": "detect",
        "classes": [],
        "input_range": None,
        "tile_size": None,
        "wants_windows": False,
        "native_input": False,
        "input_bands": None,
    }
