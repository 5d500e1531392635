"""The job document a ``tilerunner run SOURCES`` command line stands for, and the job's id.

``run`` without ``--job`` builds the same document a user could write (one stage, the model
named ``model``), so that the run goes through the same checks and planner as a submitted job.
The same command line always names the same job: running it again resumes it.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from tilerunner.errors import InvalidRequestError

if TYPE_CHECKING:
    from tilerunner.jobs import JobSpec

__all__ = ["MODEL_NAME", "job_document", "parse_bands", "run_job_id"]

#: The name the one model of ``run SOURCES --model SPEC`` has in its job document.
MODEL_NAME = "model"


def job_document(
    sources: tuple[str, ...],
    task: str,
    outputs: list[str],
    options: dict[str, Any],
    segment: dict[str, object] | None = None,
) -> JobSpec:
    """The document of ``run SOURCES`` (or of ``--tiles``) with these flags (``options``)."""
    from tilerunner.jobs import parse_job

    tiles = options.get("tiles")
    thresholds = options.get("thresholds") or []
    stage = {"task": task, "model": MODEL_NAME, "params": options["params"]}
    return parse_job(
        {
            "name": options["name"],
            **({"tiles": tiles} if tiles else {"sources": list(sources)}),
            "pipeline": [{**stage, **({"segment": segment} if segment else {})}],
            "tiling": {
                "tile_size": options["tile_size"],
                "overlap": options["overlap"],
                "region_size": options["region_size"],
                **({"bands": options["bands"]} if options["bands"] else {}),
            },
            "merge": {
                "method": options["merge"],
                "iou": options["iou"],
                "metric": options["metric"],
                "class_agnostic": options["class_agnostic"],
                "min_score": options["min_score"],
            },
            "outputs": [
                {"uri": uri, **({"thresholds": thresholds} if _map_output(uri, thresholds) else {})}
                for uri in outputs
            ],
        }
    )


def _map_output(uri: str, thresholds: list[str]) -> bool:
    """Whether ``uri`` takes the ``--threshold`` values (a map output; none given: none)."""
    if not thresholds:  # the module is not imported for the usual run
        return False
    from tilerunner.xyz.results import map_output

    return map_output(uri)


def run_job_id(spec: JobSpec, model_spec: str) -> str:
    """The same command (same document, same model) always names the same job: it resumes."""
    key = json.dumps([spec.model_dump(mode="json"), model_spec], sort_keys=True)
    return "run-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def parse_bands(value: str | None) -> list[int] | None:
    """``--bands 4,3,2`` as band numbers; None when not given."""
    if not value:
        return None
    try:
        return [int(b) for b in value.split(",")]
    except ValueError:
        raise InvalidRequestError(
            f"--bands {value!r} must be comma-separated band numbers, e.g. 1,2,3"
        ) from None
