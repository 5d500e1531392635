"""``tilerunner run --job job.json``: any job document embedded, with its models named as
a worker names them (``--model det=zoo:yolov3-tiny-coco --model cls=zoo:efficientnet-lite0``).

Checked before anything is stored or started: the document parses, every stage's model is
given and loads, each model does the task its stage says, and every output can be written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from tilerunner.errors import InvalidRequestError

if TYPE_CHECKING:
    from tilerunner.jobs import JobSpec
    from tilerunner.models import LoadedModel
    from tilerunner.settings import Settings

__all__ = [
    "check_models",
    "job_from_file",
    "job_models",
    "model_options",
    "read_job",
    "single_model",
]

_NAMED = re.compile(r"^([A-Za-z0-9_-]{1,60})=(.+)$")


def single_model(values: tuple[str, ...], outputs: tuple[str, ...]) -> str:
    """The one model spec of ``run SOURCES --model SPEC -o OUT``."""
    if len(values) != 1:
        raise InvalidRequestError("SOURCES run one model; for a pipeline of models use --job")
    if not outputs:
        raise InvalidRequestError(
            "give -o OUTPUT (or run a job document with --job job.json), e.g. "
            "tilerunner run photo.jpg --model zoo:yolov3-tiny-coco -o out.geojson"
        )
    return values[0]


def model_options(values: tuple[str, ...]) -> dict[str, str]:
    """``{name: spec}`` from ``--model NAME=SPEC`` values."""
    named = [_NAMED.match(v) for v in values]
    models: dict[str, str] = {}
    for value, match in zip(values, named, strict=True):
        if match is None:
            raise InvalidRequestError(
                f"--model {value!r}: with several models write each as NAME=SPEC, e.g. "
                "--model det=zoo:yolov3-tiny-coco"
            )
        models[match.group(1)] = match.group(2)
    return models


def job_models(sources: tuple[str, ...], model_args: tuple[str, ...]) -> dict[str, str]:
    """The models of ``run --job``, by name; SOURCES beside --job are refused."""
    if sources:
        raise InvalidRequestError(
            "give SOURCES or --job, not both: a job document lists its own sources"
        )
    return model_options(model_args)


def job_from_file(
    settings: Settings,
    models: dict[str, str],
    path: Path,
    outputs: tuple[str, ...],
    params: dict[str, str],
) -> JobSpec:
    """The document at ``path`` with the ``-o`` outputs added, every part checked before any
    work: outputs writable, every stage's model given, loaded and of the stage's task."""
    from tilerunner.coordinator.planner import check_outputs
    from tilerunner.models import load_model

    spec = read_job(path, outputs)
    check_outputs(spec)  # before any model is loaded or the state opened
    loaded = {
        n: load_model(s, params, name=n, cache_dir=settings.cache_dir) for n, s in models.items()
    }
    check_models(spec, loaded)
    return spec


def read_job(path: Path, outputs: tuple[str, ...]) -> JobSpec:
    """The job document at ``path``, with the ``-o`` outputs added to its own."""
    from tilerunner.jobs import parse_job

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InvalidRequestError(f"--job {str(path)!r} cannot be read as JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidRequestError(f"--job {str(path)!r} must hold a JSON object")
    document.setdefault("outputs", [])
    document["outputs"] = [*document["outputs"], *({"uri": uri} for uri in outputs)]
    spec = parse_job(document)
    if not spec.outputs:
        raise InvalidRequestError(f"--job {str(path)!r} names no outputs; add -o results.jsonl")
    return spec


def check_models(spec: JobSpec, models: dict[str, LoadedModel]) -> None:
    """Every stage has its model, and the model does the stage's task."""
    for index, stage in enumerate(spec.pipeline):
        model = models.get(stage.model)
        if model is None:
            raise InvalidRequestError(
                f"pipeline[{index}] runs model {stage.model!r}; add --model {stage.model}=SPEC"
            )
        if model.task != stage.task:
            raise InvalidRequestError(
                f"pipeline[{index}] is a {stage.task} stage but model {stage.model!r} "
                f"({model.spec}) is a {model.task} model; give a {stage.task} model"
            )
        if spec.photos is None:
            model.check_bands(spec.tiling.bands)
