"""ONNX backend end to end on generated models: preprocessing, card decoding, batching."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tilerunner.errors import InvalidRequestError, UnknownNameError
from tilerunner.models import ClassScores, Detections, load_model

ort = pytest.importorskip("onnxruntime")
onnx_models = pytest.importorskip("tilerunner.testing.onnx_models")


def _tiles(n: int, size: int, seed: int = 1) -> np.ndarray:
    """Distinct tiles: each a different smooth gradient plus noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)[None, :, None, None] * rng.uniform(0, 255, (n, 1, 1, 3))
    noise = rng.integers(0, 40, (n, size, size, 3))
    return np.clip(ramp.transpose(0, 2, 1, 3) + noise, 0, 255).astype(np.uint8)


def _raw_outputs(path: Path, tiles: np.ndarray) -> list[np.ndarray]:
    """Run the graph directly, with the card's preprocessing done by hand."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = (tiles.astype(np.float32) / 255.0).transpose(0, 3, 1, 2)
    return [np.asarray(o) for o in session.run(None, {"images": batch})]


def test_detector_decodes_per_card(detector_onnx: Path) -> None:
    model = load_model(str(detector_onnx))
    assert (model.task, model.backend, model.tile_size) == ("detect", "onnx", 64)
    assert model.classes == ["class0", "class1", "class2"]
    tiles = _tiles(5, 64)
    outputs = model.predict(tiles)
    boxes, scores, labels = _raw_outputs(detector_onnx, tiles)
    for i, out in enumerate(outputs):
        assert isinstance(out, Detections)
        expected = np.concatenate([boxes[i, :, :2] - boxes[i, :, 2:] / 2,
                                   boxes[i, :, :2] + boxes[i, :, 2:] / 2], axis=1)  # fmt: skip
        expected = np.clip(expected * 64, 0, 64)
        np.testing.assert_allclose(out.boxes, expected, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(out.scores, scores[i], rtol=1e-6)
        assert out.labels.tolist() == labels[i].tolist()
    first, second = outputs[:2]
    assert isinstance(first, Detections) and isinstance(second, Detections)
    assert not np.allclose(first.boxes, second.boxes)  # content matters


def test_boxes_scale_back_from_the_input_size(detector_onnx: Path) -> None:
    model = load_model(str(detector_onnx))
    small = _tiles(2, 64)
    big = np.repeat(np.repeat(small, 2, axis=1), 2, axis=2)  # same content, 128 px tiles
    for a, b in zip(model.predict(small), model.predict(big), strict=True):
        assert isinstance(a, Detections) and isinstance(b, Detections)
        np.testing.assert_allclose(b.boxes, a.boxes * 2, atol=2.0)  # bilinear resize


def test_results_do_not_depend_on_batch_size(detector_onnx: Path) -> None:
    model = load_model(str(detector_onnx))
    tiles = _tiles(6, 64)
    together = model.predict(tiles)
    alone = [model.predict(tiles[i : i + 1])[0] for i in range(6)]
    for a, b in zip(together, alone, strict=True):
        assert isinstance(a, Detections) and isinstance(b, Detections)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)


def test_threshold_param_overrides_the_card(detector_onnx: Path) -> None:
    model = load_model(str(detector_onnx), {"threshold": "0.999", "intra_op_threads": "1"})
    counts = [len(o) for o in model.predict(_tiles(4, 64)) if isinstance(o, Detections)]
    assert sum(counts) < 4 * 4
    with pytest.raises(UnknownNameError, match="did you mean 'threshold'"):
        load_model(str(detector_onnx), {"treshold": "0.5"})


def test_fixed_batch_nhwc_classifier(tmp_path: Path) -> None:
    path = onnx_models.make_classifier_onnx(
        tmp_path / "fixed.onnx", layout="nhwc", fixed_batch=2, n_classes=3
    )
    model = load_model(str(path))
    tiles = _tiles(5, 32)  # 5 tiles through a batch-of-2 graph: chunks 2, 2, 1 (padded)
    outputs = model.predict(tiles)
    assert len(outputs) == 5
    for out in outputs:
        assert isinstance(out, ClassScores) and out.scores.shape == (3,)
        assert out.scores.sum() == pytest.approx(1.0)
    single = model.predict(tiles[4:5])[0]
    assert isinstance(single, ClassScores)
    np.testing.assert_allclose(single.scores, outputs[4].scores, rtol=1e-5)  # type: ignore[union-attr]


def test_classifier_applies_softmax(classifier_onnx: Path) -> None:
    model = load_model(str(classifier_onnx), name="cls")
    tiles = _tiles(3, 32)
    session = ort.InferenceSession(str(classifier_onnx), providers=["CPUExecutionProvider"])
    (logits,) = session.run(
        None, {"images": (tiles / 255.0).astype(np.float32).transpose(0, 3, 1, 2)}
    )
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    got = np.stack([o.scores for o in model.predict(tiles)])  # type: ignore[union-attr]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_card_is_required_and_output_names_checked(detector_onnx: Path, tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(detector_onnx, lonely)
    with pytest.raises(InvalidRequestError, match=r"needs a model card: create .*lonely\.yaml"):
        load_model(str(lonely))
    card = tmp_path / "other.yaml"
    card.write_text(
        detector_onnx.with_suffix(".yaml").read_text().replace("boxes: boxes", "boxes: bboxes")
    )
    with pytest.raises(InvalidRequestError, match=r"output\.boxes is 'bboxes' but the model's"):
        load_model(str(lonely), {"card": str(card)})


def test_corrupt_onnx_file_is_an_invalid_request(tmp_path: Path, detector_onnx: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    shutil.copy(detector_onnx.with_suffix(".yaml"), tmp_path / "bad.yaml")
    with pytest.raises(InvalidRequestError, match="cannot load ONNX model"):
        load_model(str(bad))
