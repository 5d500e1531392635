"""What the peer request formats share: field-named errors and the model-name lookup.

Every refusal is an :class:`~tilerunner.errors.InvalidRequestError` whose message starts with
the field in the *peer's* spelling (``imageProcessorTileFormat``, ``outputs[1].type``,
``config.callback_url``), so a client of that peer knows what to change in the request it sent.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn, TypeAlias

from pydantic import ValidationError

from tilerunner.errors import InvalidRequestError
from tilerunner.jobs.spec import StageSpec, Task, TilingSpec

__all__ = [
    "ModelMap",
    "StageTarget",
    "describe",
    "field_path",
    "refuse",
    "rename",
    "resolve_stage",
    "tiling",
]

#: What a peer's model or pipeline name stands for here: a tilerunner model name (a stage with
#: the peer's default task), one stage, or the stages of a multi-stage pipeline.
StageTarget: TypeAlias = str | StageSpec | Sequence[StageSpec]
#: Peer name (``imageProcessor.name``, an Antenna pipeline slug) -> what it runs here.
ModelMap: TypeAlias = Mapping[str, StageTarget]


def field_path(loc: Iterable[str | int]) -> str:
    """``("outputs", 1, "type")`` -> ``outputs[1].type``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "request"


def rename(field: str, table: Iterable[tuple[str, str]]) -> str:
    """A job-document field path (``sources[2].url``) in a peer's spelling, by the first
    ``(pattern, replacement)`` of ``table`` that matches; unchanged if none does."""
    for pattern, replacement in table:
        renamed, count = re.subn(pattern, replacement, field)
        if count:
            return renamed
    return field


def refuse(field: str, reason: str) -> NoReturn:
    """Raise the error a request that cannot be mapped gets: ``field: reason``."""
    raise InvalidRequestError(f"{field}: {reason}")


def describe(error: ValidationError, what: str, tags: frozenset[str] = frozenset()) -> str:
    """One line per pydantic error, each starting with the peer's field path.

    ``tags`` are the discriminator values of tagged unions (``"S3"``, ``"NMS"``): pydantic puts
    them into error locations, where they are not fields, so they are left out of the path.
    """
    parts = []
    for item in error.errors():
        loc = [p for p in item["loc"] if not (isinstance(p, str) and p in tags)]
        message = item["msg"].removeprefix("Value error, ")
        ctx: dict[str, Any] = item.get("ctx") or {}
        if item["type"] == "extra_forbidden":
            message = "unknown field; remove it or check its spelling"
        elif item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # an aliased discriminator reads "'python_name' | 'wireName'": keep the wire name
            discriminator = str(ctx.get("discriminator", "type")).split(" | ")[-1]
            loc.append(discriminator.strip("'"))
            expected = ctx.get("expected_tags")
            message = f"must be one of {expected}" if expected else "required"
        parts.append(f"{field_path(loc)}: {message}")
    return f"invalid {what}: " + "; ".join(parts)


def resolve_stage(name: str, field: str, models: ModelMap | None, task: Task) -> dict[str, Any]:
    """The one pipeline stage the peer's model ``name`` runs, as a job-document stage.

    Without ``models`` the peer's name is taken as the name of a model that workers serve.
    A name that maps to more than one stage is refused: a job runs one stage today.
    """
    if models is None:
        target: StageTarget = name
    elif name in models:
        target = models[name]
    else:
        close = difflib.get_close_matches(name, list(models), n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}?" if close else None
        known = ", ".join(sorted(models)) or "none"
        refuse(field, f"{name!r} is not served here; {hint or f'known: {known}'}")
    stages = _stages(target, task, field)
    if len(stages) > 1:
        listed = ", ".join(f"{s.task} {s.model}" for s in stages)
        refuse(
            field,
            f"{name!r} runs {len(stages)} stages ({listed}); tilerunner runs one stage per "
            "job today: send one request per stage, or map the name to a single stage",
        )
    return stages[0].model_dump(mode="json")


def _stages(target: StageTarget, task: Task, field: str) -> list[StageSpec]:
    if isinstance(target, StageSpec):
        return [target]
    if not isinstance(target, str):
        return list(target)
    try:
        return [StageSpec(task=task, model=target)]
    except ValidationError:
        refuse(
            field,
            f"{target!r} is not a tilerunner model name (1-60 of A-Z a-z 0-9 _ -); "
            "name the model as workers serve it (tilerunner worker --model NAME=SPEC)",
        )


def tiling(
    size: int | None, overlap: int | None, *, size_field: str, overlap_field: str
) -> dict[str, int]:
    """The ``tiling`` of a job document; bounds are the job document's, errors the peer's."""
    given = {k: v for k, v in (("tile_size", size), ("overlap", overlap)) if v is not None}
    try:
        TilingSpec.model_validate(given)
    except ValidationError as error:
        item = error.errors()[0]
        if not item["loc"]:  # the model's own check: the overlap must be below the tile size
            limit = size if size is not None else TilingSpec().tile_size
            refuse(overlap_field, f"{overlap} must be smaller than {size_field} ({limit})")
        field = size_field if "tile_size" in item["loc"] else overlap_field
        refuse(field, item["msg"])
    return given
