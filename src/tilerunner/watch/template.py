"""The job template of a watch: a job document whose sources each new object replaces.

The template is a whole job document (``tilerunner submit`` reads the same) with or without
``sources``; it is validated once, before anything is watched, so a typo fails at start with
the job document's own one-line error. Output URIs may name ``{job_id}`` (every job) and
``{stem}`` (the object's file name without its suffix; one-object jobs only), so jobs do not
overwrite each other's outputs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from tilerunner.errors import InvalidRequestError
from tilerunner.jobs import JobSpec, parse_job
from tilerunner.jobs.spec import OutputSpec, SourceSpec
from tilerunner.store.watched import WatchedObject

__all__ = ["JobTemplate"]

_PLACEHOLDER_SOURCE = "watched-object"


class JobTemplate:
    """A validated template; :meth:`spec_for` makes the job of one or more objects."""

    def __init__(self, spec: JobSpec, *, path: str = "template") -> None:
        self.spec = spec
        self.path = path

    @classmethod
    def load(cls, path: Path, *, rolling: bool = False) -> JobTemplate:
        """Read and validate the template at ``path``; InvalidRequestError says what to fix."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise InvalidRequestError(
                f"cannot read --job template {str(path)!r}: {error.strerror}"
            ) from None
        except json.JSONDecodeError as error:
            raise InvalidRequestError(
                f"--job template {str(path)!r} is not JSON: {error.msg} at line {error.lineno}"
            ) from None
        if not isinstance(document, dict):
            raise InvalidRequestError(f"--job template {str(path)!r} must be a JSON object")
        document.setdefault("sources", [_PLACEHOLDER_SOURCE])
        try:
            spec = parse_job(document)
        except InvalidRequestError as error:
            raise InvalidRequestError(f"--job template {str(path)!r}: {error}") from None
        template = cls(spec, path=str(path))
        template.check(rolling=rolling)
        return template

    def check(self, *, rolling: bool) -> None:
        """Outputs writable once filled in, and ``{stem}`` only where a job has one object."""
        from tilerunner.coordinator.planner import check_outputs

        if rolling and any("{stem}" in o.uri for o in self.spec.outputs):
            raise InvalidRequestError(
                f"--job template {self.path!r}: a rolling job has many objects, so its outputs "
                "cannot name {stem}; use {job_id}"
            )
        sample = WatchedObject("sample.tif", "0", "sample.tif")
        try:
            check_outputs(self.spec_for([sample], "job-sample"))
        except InvalidRequestError as error:
            raise InvalidRequestError(f"--job template {self.path!r}: {error}") from None

    def spec_for(self, members: Sequence[WatchedObject], job_id: str) -> JobSpec:
        """The job of ``members``: the template with its sources replaced by them (each with
        its key as the id features carry) and placeholders filled in."""
        stem = PurePosixPath(members[0].key).stem if len(members) == 1 else ""
        outputs = [
            OutputSpec(uri=_fill(o.uri, job_id, stem), format=o.format) for o in self.spec.outputs
        ]
        name = self.spec.name or "watch"
        update: dict[str, Any] = {
            "name": f"{name}-{stem}" if stem else f"{name}-{len(members)}-objects",
            "sources": [SourceSpec(url=m.url, id=m.key) for m in members],
            "outputs": outputs,
        }
        return self.spec.model_copy(update=update)


def _fill(uri: str, job_id: str, stem: str) -> str:
    return uri.replace("{job_id}", job_id).replace("{stem}", stem)
