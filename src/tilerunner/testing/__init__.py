"""Fakes shipped with tilerunner, for tests, demos and benchmarks of code that uses it.

Model fakes live in :mod:`tilerunner.testing.models` (plain Python, load them as
``tilerunner.testing.models:FakeDetector``); ONNX models built in code live in
:mod:`tilerunner.testing.onnx_models`, which needs the ``onnx`` package and is therefore not
imported here. :mod:`tilerunner.testing.range_server` is a loopback HTTP file server with byte
ranges, settable latency and request counters, for tests and benchmarks of remote reads;
:mod:`tilerunner.testing.tile_server` serves XYZ tiles (cut from a raster) with missing, stalled
and garbage tiles and added latency, for tests and benchmarks of tile jobs.
"""

from tilerunner.testing.models import (
    ConstantClassifier,
    FailingModel,
    FakeDetector,
    MalformedModel,
    SleepModel,
    TruthDetector,
)

__all__ = [
    "ConstantClassifier",
    "FailingModel",
    "FakeDetector",
    "MalformedModel",
    "SleepModel",
    "TruthDetector",
]
