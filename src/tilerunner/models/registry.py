"""Model specs -> loaded models: the one function the CLI, workers and tests call.

A spec says where a model comes from; its form picks the backend:

=================================  =========================================================
``zoo:NAME``                       a curated real model (:mod:`tilerunner.models.zoo`)
``path/model.onnx``                ONNX Runtime, with the sidecar card ``model.onnx.yaml`` or
                                   ``model.yaml`` (:mod:`tilerunner.models.onnx`)
``path/model.cfg``                 Darknet cfg (+ ``.weights``) via OpenCV DNN
``package.module:ClassName``       a Python class honouring the model contract
``NAME``                           a model that an installed package registers in the
                                   ``tilerunner.models`` entry-point group (``NAME = module:Class``)
=================================  =========================================================

Backends import their runtime (onnxruntime, OpenCV) only when a spec needs them, so a
worker that serves a plugin does not need either installed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from tilerunner.errors import InvalidRequestError, UnknownNameError
from tilerunner.models.contract import LoadedModel
from tilerunner.models.plugin import entry_point_models, is_plugin_spec, load_plugin
from tilerunner.models.zoo import ZOO, load_zoo_model

__all__ = ["describe_models", "load_model", "zoo_names"]

logger = logging.getLogger(__name__)

_UNAVAILABLE_SUFFIXES = (".pt", ".pth", ".torchscript")
_SPEC_HINT = "use zoo:NAME, a .onnx or .cfg file, or package.module:ClassName"


def zoo_names() -> list[str]:
    """Names accepted after ``zoo:``."""
    return sorted(ZOO)


def default_name(spec: str) -> str:
    """The name a model gets when the caller does not choose one."""
    if spec.startswith("zoo:"):
        return spec[4:]
    if is_plugin_spec(spec):
        return spec.split(":")[1]
    return Path(spec).stem or spec


def load_model(
    spec: str,
    params: Mapping[str, str] | None = None,
    *,
    name: str | None = None,
    cache_dir: Path | None = None,
) -> LoadedModel:
    """Load the model that ``spec`` names, with ``--model-param`` strings ``params``.

    ``cache_dir`` is where zoo files are kept (default ``~/.cache/tilerunner``). Raises
    :class:`InvalidRequestError` (or its :class:`UnknownNameError`) saying what to change.
    """
    params = dict(params or {})
    spec = spec.strip()
    model_name = name or default_name(spec)
    lowered = spec.lower()
    if lowered.startswith("zoo:"):
        return load_zoo_model(spec[4:], params, name=model_name, cache_dir=cache_dir)
    if lowered.startswith(("http://", "https://")) or lowered.endswith(_UNAVAILABLE_SUFFIXES):
        kind = "HTTP endpoint" if lowered.startswith("http") else "TorchScript"
        raise InvalidRequestError(
            f"model {spec!r}: the {kind} backend is not available in this version; "
            "use ONNX, OpenCV DNN, zoo: or module:Class"
        )
    if lowered.endswith(".onnx"):
        from tilerunner.models.onnx import load_onnx_model

        return load_onnx_model(Path(spec), params, name=model_name)
    if lowered.endswith(".cfg"):
        from tilerunner.models.opencv import load_darknet_model

        return load_darknet_model(Path(spec), params, name=model_name)
    registered = entry_point_models()
    if spec in registered:
        logger.debug("model %s is registered as %s", spec, registered[spec])
        return load_plugin(registered[spec], params, name=model_name)
    if is_plugin_spec(spec):
        return load_plugin(spec, params, name=model_name)
    known = [f"zoo:{n}" for n in ZOO] + list(registered)
    raise UnknownNameError("model", spec, known, _SPEC_HINT)


def describe_models() -> list[dict[str, object]]:
    """What ``tilerunner models`` lists: zoo entries and entry-point models."""
    rows: list[dict[str, object]] = [
        {
            "name": f"zoo:{entry.name}",
            "task": entry.task,
            "backend": entry.backend,
            "classes": entry.n_classes,
            "input_size": entry.input_size,
            "source": entry.asset.source,
            "description": entry.description,
        }
        for entry in ZOO.values()
    ]
    rows.extend(
        {"name": name, "task": None, "backend": "plugin", "source": target, "description": ""}
        for name, target in sorted(entry_point_models().items())
    )
    return rows
