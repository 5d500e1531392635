"""Models: the contract every backend honours, the registry that loads specs, and the zoo.

Start with :func:`load_model` (a spec such as ``zoo:yolov3-tiny-coco``, ``model.onnx``,
``yolo.cfg`` or ``package.module:ClassName``) and call :meth:`LoadedModel.predict` on uint8
tile batches; outputs come back as validated :class:`Detections`, :class:`ClassScores` or
:class:`SegMask`. Runtimes (onnxruntime, OpenCV) are imported only when a spec needs them.
"""

from tilerunner.models.assets import fetch_package_file, fetch_package_files
from tilerunner.models.contract import TASKS, LoadedModel, Model, Task
from tilerunner.models.outputs import (
    ClassScores,
    Detections,
    SegMask,
    TileOutput,
    validate_outputs,
)
from tilerunner.models.plugin import ModelParams, wrap_model
from tilerunner.models.registry import describe_models, load_model, zoo_names
from tilerunner.models.zoo import DEMO_PHOTOS, ZOO, default_cache_dir, fetch_demo_photos

__all__ = [
    "DEMO_PHOTOS",
    "TASKS",
    "ZOO",
    "ClassScores",
    "Detections",
    "LoadedModel",
    "Model",
    "ModelParams",
    "SegMask",
    "Task",
    "TileOutput",
    "default_cache_dir",
    "describe_models",
    "fetch_demo_photos",
    "fetch_package_file",
    "fetch_package_files",
    "load_model",
    "validate_outputs",
    "wrap_model",
    "zoo_names",
]
