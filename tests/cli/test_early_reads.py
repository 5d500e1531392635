"""A one-worker ``run`` reads the first strips of its image while it starts, and its worker
takes every one of them: the windows it predicts are the ones the reader threads ask for, and
the output is the same as without reading ahead. The image is opened before the settings load,
and used only as they say."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from tr_cli import pixel_boxes, tilerunner

from tilerunner.cli.early_reads import EarlyReads
from tilerunner.imagery import BandSpec, RasterReader
from tilerunner.models import load_model
from tilerunner.settings import Settings
from tilerunner.testing.range_server import RangeServer

FAKE = "tilerunner.testing.models:FakeDetector"
_TAKEN = re.compile(r"read ahead (\d+) window\(s\); (\d+) asked for, (\d+) taken")


def _squares(folder: Path) -> Path:
    """A tiled 1536 x 1024 GeoTIFF of dark noise with white squares, some across tile seams."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 200, size=(3, 1024, 1536), dtype=np.uint8)
    for x, y in rng.integers(0, 1480, size=(40, 2)):
        pixels[:, y % 980 : y % 980 + 30, x : x + 30] = 255
    path = folder / "squares.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=1536, height=1024, count=3, dtype="uint8",
        crs="EPSG:32633", transform=Affine(1.0, 0, 500000.0, 0, -1.0, 6000000.0),
        tiled=True, blockxsize=256, blockysize=256, compress="deflate",
    ) as dst:  # fmt: skip
        dst.write(pixels)
    return path


def _run(
    folder: Path, image: Path | str, name: str, *flags: str, **env: str
) -> tuple[list[tuple[float, ...]], str]:
    done = tilerunner(
        "run", str(image), "--model", FAKE, "--tile-size", "256", "--overlap", "32",
        "--region-size", "512", "-o", f"{name}.geojson", "--state", f"{name}.db", "--quiet",
        *flags, cwd=folder, TILERUNNER_LOG_LEVEL="DEBUG", **env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stderr + (folder / f"{name}.workers.log").read_text()
    return pixel_boxes(folder / f"{name}.geojson"), log


def test_the_worker_takes_every_strip_read_ahead_and_the_output_is_unchanged(
    tmp_path: Path,
) -> None:
    image = _squares(tmp_path)
    plain, plain_log = _run(tmp_path, image, "plain", TILERUNNER_READ_AHEAD_MB="0")
    ahead, ahead_log = _run(tmp_path, image, "ahead")
    assert "reading ahead" not in plain_log
    assert "run: reading ahead" in ahead_log
    assert ahead == plain and len(plain) >= 30
    (read, asked, taken), *_ = (tuple(map(int, m)) for m in _TAKEN.findall(ahead_log))
    assert read >= 6  # the first strip of each of the 6 regions (3 x 2 of 512 px)
    assert asked == read  # each one is what a reader thread asked for
    assert taken >= 1  # those not started by then were read by the asking thread instead


def test_a_small_budget_reads_ahead_less_and_still_gives_the_same_output(tmp_path: Path) -> None:
    image = _squares(tmp_path)
    plain, _ = _run(tmp_path, image, "plain", TILERUNNER_READ_AHEAD_MB="0")
    ahead, log = _run(tmp_path, image, "ahead", TILERUNNER_READ_AHEAD_MB="1")
    assert ahead == plain
    (read, asked, taken), *_ = (tuple(map(int, m)) for m in _TAKEN.findall(log))
    assert 1 <= read < 6 and asked == read and taken >= 1  # 1 MiB: a few 544 x 288 x 3 strips


@pytest.mark.parametrize("why", ["resumed", "two workers"])
def test_nothing_is_read_ahead_when_the_run_is_not_the_plain_case(tmp_path: Path, why: str) -> None:
    image = _squares(tmp_path)
    first, _ = _run(tmp_path, image, "state")
    if why == "resumed":  # the same state file: its regions are done
        again, log = _run(tmp_path, image, "state")
    else:
        done = tilerunner(
            "run", str(image), "--model", FAKE, "--tile-size", "256", "--overlap", "32",
            "--region-size", "512", "-o", "two.geojson", "--state", "two.db", "--quiet",
            "--workers", "2", cwd=tmp_path, TILERUNNER_LOG_LEVEL="DEBUG",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        again = pixel_boxes(tmp_path / "two.geojson")
        log = done.stderr
    assert again == first
    assert "reading ahead" not in log


_READERS = re.compile(r"serving job \S+ with (\d+) reader thread\(s\)")


def test_an_image_over_http_reads_as_the_local_file_with_the_readers_asked_for(
    tmp_path: Path,
) -> None:
    image = _squares(tmp_path)
    local, local_log = _run(tmp_path, image, "local")
    assert _READERS.findall(local_log) == ["2"]  # the default
    with RangeServer(tmp_path, latency_ms=40) as server:
        far, far_log = _run(tmp_path, server.url(image.name), "far", "--readers", "3")
    assert _READERS.findall(far_log) == ["3"]
    assert far == local


class _Worker:
    """Takes the reader a run hands over (the part of a worker this needs)."""

    def __init__(self) -> None:
        self.adopted: list[RasterReader] = []

    def adopt_reader(self, reader: RasterReader, bands: BandSpec) -> None:
        self.adopted.append(reader)


def _started(folder: Path) -> EarlyReads:
    """What ``run`` starts for the squares image of ``folder`` with the flags of ``_run``."""
    early = EarlyReads.start(
        (str(_squares(folder)),), folder / "state.db", tile_size=256, overlap=32,
        region_size=512, bands=None, readers=2,
    )  # fmt: skip
    assert early is not None
    return early


@pytest.mark.parametrize(
    ("settings", "handed"),
    [
        ({}, True),
        ({"s3_endpoint_url": "http://127.0.0.1:9"}, False),  # other GDAL options
        ({"read_ahead_mb": 0}, False),
    ],
)
def test_the_image_opened_before_the_settings_load_is_used_only_as_they_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: dict[str, object], handed: bool
) -> None:
    monkeypatch.delenv("TILERUNNER_S3_ENDPOINT_URL", raising=False)
    early = _started(tmp_path)
    early.use(Settings(**settings))  # type: ignore[arg-type]
    worker = _Worker()
    assert early.hand_over(worker, load_model(FAKE)) is handed  # type: ignore[arg-type]
    assert len(worker.adopted) == int(handed)
    if handed:
        (reader,) = worker.adopted
        assert (reader.info.width, reader.info.height) == (1536, 1024)
        reader.close()


def test_a_run_closed_before_its_settings_load_reads_nothing(tmp_path: Path) -> None:
    early = _started(tmp_path)
    early.close()  # the settings were bad: the command stops
    worker = _Worker()
    assert early.hand_over(worker, load_model(FAKE)) is False  # type: ignore[arg-type]
    assert worker.adopted == []
