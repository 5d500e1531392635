"""Command-line options of tile jobs (``run --tiles ... --url-template ...``) and thresholds.

Shared by the commands that build a job document from flags; the document's ``tiles`` section
(:class:`tilerunner.xyz.spec.TileSetSpec`) is the one place their meaning is defined.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from tilerunner.errors import InvalidRequestError

__all__ = ["check_threshold_classes", "check_thresholds", "tile_job_section", "tile_options"]

F = TypeVar("F", bound=Callable[..., Any])


def tile_options(func: F) -> F:
    """The tile-job flags: which tiles, the URL template, batching, context, thresholds."""
    options = [
        click.option(
            "--tiles",
            "tiles_file",
            default=None,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Tile list (x-y-z a line, as 'tilerunner tiles cover' prints) to run.",
        ),
        click.option("--bbox", default=None, help="Run the tiles of W,S,E,N (with --zoom)."),
        click.option("--zoom", default=None, type=int, help="Zoom level of --bbox."),
        click.option(
            "--url-template",
            default=None,
            help="Tile service, e.g. https://host/{z}/{x}/{y}.png ({-y}: TMS; {s}; {token}).",
        ),
        click.option("--subdomains", default="abc", show_default=True, help="Values of {s}."),
        click.option(
            "--tiles-per-item",
            default=256,
            show_default=True,
            type=click.IntRange(1, 4096),
            help="Tiles per work item.",
        ),
        click.option(
            "--context",
            default=0,
            show_default=True,
            type=click.IntRange(0, 256),
            help="Pixels of the neighbouring tiles given to a detector around each tile.",
        ),
        click.option(
            "--threshold",
            "thresholds",
            multiple=True,
            help="CLASS:SCORE (class id or name): map outputs (.geojson, .parquet) keep the "
            "features passing one; CSV lists every feature. Repeatable.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def check_thresholds(thresholds: Sequence[str]) -> list[str]:
    """The ``--threshold`` values, each checked to be CLASS:SCORE."""
    from tilerunner.xyz.thresholds import parse_threshold

    for text in thresholds:
        parse_threshold(text)
    return list(thresholds)


def tile_job_section(
    sources: Sequence[str],
    tiles_file: Path | None,
    bbox: str | None,
    zoom: int | None,
    template: str | None,
    subdomains: str,
    per_item: int,
    context: int,
) -> dict[str, Any] | None:
    """The job document's ``tiles`` section from the flags (None for an image job); errors
    say which flag to change. A tile list is read through once here, so a malformed line is
    reported (with its number) before any work starts."""
    from tilerunner.xyz.cover import parse_bbox
    from tilerunner.xyz.tiles import check_tile_file

    if tiles_file is None and bbox is None:
        if template is not None or zoom is not None:
            raise InvalidRequestError("a tile job needs --tiles FILE or --bbox W,S,E,N --zoom Z")
        if not sources:
            raise InvalidRequestError(
                "name what to run: SOURCES (images), or --tiles FILE with --url-template URL"
            )
        return None
    if sources:
        raise InvalidRequestError("give SOURCES or --tiles/--bbox, not both (one job runs one)")
    if tiles_file is not None and bbox is not None:
        raise InvalidRequestError("give --tiles FILE or --bbox W,S,E,N with --zoom, not both")
    if bbox is not None and zoom is None:
        raise InvalidRequestError("--bbox needs --zoom (the zoom level of its tiles)")
    if template is None:
        raise InvalidRequestError(
            "a tile job needs --url-template, e.g. https://host/{z}/{x}/{y}.png"
        )
    section: dict[str, Any] = {
        "url_template": template,
        "subdomains": subdomains,
        "per_item": per_item,
        "context": context,
    }
    if tiles_file is not None:
        section["file"] = str(Path(tiles_file).resolve())
    elif bbox is not None:
        section["bbox"] = list(parse_bbox(bbox))
        section["zoom"] = zoom
    _check_section(section)  # the template, the zoom, the bbox's size: before the list is read
    if tiles_file is not None:
        check_tile_file(tiles_file)
    return section


def _check_section(section: dict[str, Any]) -> None:
    from pydantic import ValidationError

    from tilerunner.xyz.spec import TileSetSpec

    try:
        TileSetSpec.model_validate(section)
    except ValidationError as error:
        first = error.errors()[0]
        flag = {"url_template": "--url-template", "zoom": "--zoom", "subdomains": "--subdomains"}
        where = flag.get(str(first["loc"][0]) if first["loc"] else "", "tile job")
        raise InvalidRequestError(
            f"{where}: {first['msg'].removeprefix('Value error, ')}"
        ) from None


def check_threshold_classes(thresholds: Sequence[str], classes: Sequence[str]) -> None:
    """A threshold naming a class by name must name one of the model's classes."""
    from tilerunner.xyz.thresholds import parse_threshold

    for text in thresholds:
        target = parse_threshold(text).target
        if isinstance(target, str) and classes and target not in classes:
            raise InvalidRequestError(
                f"--threshold {text!r}: the model has no class {target!r}; "
                f"its classes are {list(classes)}"
            )
