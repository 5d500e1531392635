"""Turning what a user typed into a list of images.

A job names its sources loosely: one file, a folder of camera-trap frames, a glob, a URL, or an
explicit ``(id, url)`` pair. :func:`expand_sources` resolves all of that once, at validation
time, into :class:`SourceRef` values, so a missing path or an empty folder is reported before any
work is queued, and every later stage sees exactly one image per reference.

Remote URLs are passed through unchanged: checking them would cost a request each, and
:func:`tilerunner.imagery.probe` opens every image for its metadata during planning anyway.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from tilerunner.errors import SourceError

__all__ = ["RASTER_EXTENSIONS", "SourceRef", "expand_sources"]

#: File extensions picked up when a folder is given (compared case-insensitively).
RASTER_EXTENSIONS = frozenset(
    {".tif", ".tiff", ".jpg", ".jpeg", ".png", ".ntf", ".nitf", ".jp2", ".vrt"}
)

_URL_SCHEMES = frozenset({"http", "https", "s3", "gs", "az"})
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class SourceRef:
    """One image of a job: a stable ``id`` (reported in outputs) and the ``url`` to read."""

    id: str
    url: str


def _is_url(item: str) -> bool:
    if item.startswith("/vsi"):
        return True
    scheme = urlsplit(item).scheme.lower()
    if scheme in _URL_SCHEMES:
        return True
    if len(scheme) > 1 and "://" in item:
        raise SourceError(
            f"cannot read source {item!r}: unsupported URL scheme {scheme!r}; "
            "use a local path, http(s)://, s3://, gs://, az:// or a GDAL /vsi path"
        )
    return False


def _folder_images(folder: str) -> list[str]:
    with os.scandir(folder) as entries:
        names = sorted(
            entry.name
            for entry in entries
            if entry.is_file() and os.path.splitext(entry.name)[1].lower() in RASTER_EXTENSIONS
        )
    if not names:
        known = ", ".join(sorted(RASTER_EXTENSIONS))
        raise SourceError(
            f"folder {folder!r} contains no raster files ({known}); "
            "point to a folder with images or list the files explicitly"
        )
    return [os.path.join(folder, name) for name in names]


def _glob_images(pattern: str) -> list[str]:
    matches = sorted(path for path in glob.glob(pattern) if os.path.isfile(path))
    if not matches:
        raise SourceError(
            f"pattern {pattern!r} matches no files; check the folder and the pattern "
            "(it is expanded by tilerunner, not by a shell)"
        )
    return matches


def _expand_one(item: str) -> list[str]:
    if not item:
        raise SourceError("a source is an empty string; give a file, folder, pattern or URL")
    if _is_url(item):
        return [item]
    if os.path.isdir(item):
        return _folder_images(item)
    if os.path.isfile(item):
        return [item]
    if _GLOB_CHARS & set(item):
        return _glob_images(item)
    raise SourceError(
        f"source {item!r} does not exist; check the path (relative paths are resolved "
        f"from {os.getcwd()!r})"
    )


def expand_sources(items: Sequence[str | tuple[str, str]]) -> list[SourceRef]:
    """Resolve files, folders, glob patterns, URLs and ``(id, url)`` pairs into images.

    A folder yields the raster files directly inside it (not recursive), sorted by name; a
    pattern containing ``*``, ``?`` or ``[`` yields the files it matches, sorted. Each image's id
    is the path or URL as given (folder entries get the folder joined with the file name); an
    ``(id, url)`` pair keeps its id and must name exactly one image.

    Raises :class:`~tilerunner.errors.SourceError` naming the offending path when something does
    not exist, matches nothing, or two images would share an id.
    """
    refs: list[SourceRef] = []
    for item in items:
        if isinstance(item, tuple):
            source_id, url = item
            expanded = _expand_one(url)
            if len(expanded) != 1 or expanded[0] != url:
                raise SourceError(
                    f"source {source_id!r} names {url!r}, which is a folder or pattern; "
                    "an (id, url) pair must name one image, so list the files one by one"
                )
            refs.append(SourceRef(id=source_id, url=url))
        else:
            refs.extend(SourceRef(id=path, url=path) for path in _expand_one(item))
    seen: set[str] = set()
    for ref in refs:
        if ref.id in seen:
            raise SourceError(
                f"source id {ref.id!r} appears more than once; list each image once "
                "or give each an (id, url) pair with a unique id"
            )
        seen.add(ref.id)
    return refs
