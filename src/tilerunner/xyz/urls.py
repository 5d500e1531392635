"""Filling a tile service's URL template: ``{z}``, ``{x}``, ``{y}``/``{-y}``, ``{s}``, ``{token}``.

``{s}`` picks a subdomain by ``(x + y) % len(subdomains)``, as Leaflet does, so a tile always
comes from the same host (and its cache entry is the same). ``{token}`` is the worker's
credential (``TILERUNNER_XYZ_TOKEN``), never part of the job document; a URL that holds it is
never logged (:func:`redact`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from tilerunner.errors import InvalidRequestError
from tilerunner.xyz.tiles import Tile

__all__ = ["fill_template", "hosts_of", "redact"]


def fill_template(
    template: str, tile: Tile, subdomains: str = "abc", token: str | None = None
) -> str:
    """The URL of ``tile``; InvalidRequestError if the template wants a token and none is set."""
    if "{token}" in template and not token:
        raise InvalidRequestError(
            "the URL template needs {token}; set TILERUNNER_XYZ_TOKEN where the workers run"
        )
    return (
        template.replace("{z}", str(tile.z))
        .replace("{x}", str(tile.x))
        .replace("{-y}", str((1 << tile.z) - 1 - tile.y))
        .replace("{y}", str(tile.y))
        .replace("{s}", subdomains[(tile.x + tile.y) % len(subdomains)])
        .replace("{token}", token or "")
    )


def hosts_of(template: str, subdomains: str = "abc") -> list[str]:
    """Every URL the template can expand to at tile 0/0/0, one per subdomain (for checks)."""
    names = subdomains if "{s}" in template else subdomains[:1]
    return sorted({template.replace("{s}", s).replace("{z}", "0").replace("{x}", "0")
                   .replace("{-y}", "0").replace("{y}", "0").replace("{token}", "token")
                   for s in names})  # fmt: skip


def redact(url: str, token: str | None) -> str:
    """``url`` with the token blanked, for messages and logs."""
    return url.replace(token, "***") if token else url


def host_of(url: str) -> str:
    """The host (and port) a URL goes to: the unit of the per-host connection bound."""
    return urlsplit(url).netloc
