from __future__ import annotations

from pathlib import Path

import pytest

from tilerunner.errors import SourceError
from tilerunner.imagery import SourceRef, expand_sources, probe


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"x")


def test_folder_expands_to_sorted_raster_files_only(tmp_path: Path) -> None:
    _touch(tmp_path, "b.TIF", "a.jpg", "c.png", "notes.txt", "d.Jp2", "e.tif.aux.xml")
    (tmp_path / "sub").mkdir()
    _touch(tmp_path / "sub", "nested.tif")
    refs = expand_sources([str(tmp_path)])
    names = [Path(r.url).name for r in refs]
    assert names == ["a.jpg", "b.TIF", "c.png", "d.Jp2"]
    assert all(r.id == r.url for r in refs)
    assert refs[0].url == str(tmp_path / "a.jpg")


def test_glob_expands_sorted(tmp_path: Path) -> None:
    _touch(tmp_path, "scene_2.tif", "scene_1.tif", "other.tif")
    refs = expand_sources([str(tmp_path / "scene_*.tif")])
    assert [Path(r.url).name for r in refs] == ["scene_1.tif", "scene_2.tif"]


def test_urls_pass_through_and_pairs_keep_their_id(tmp_path: Path) -> None:
    _touch(tmp_path, "a.tif")
    items: list[str | tuple[str, str]] = [
        "s3://bucket/a.tif",
        "https://host/b.jpg",
        "/vsicurl/https://host/c.tif",
        ("img7", str(tmp_path / "a.tif")),
    ]
    refs = expand_sources(items)
    assert refs[:3] == [SourceRef(u, u) for u in items[:3] if isinstance(u, str)]
    assert refs[3] == SourceRef("img7", str(tmp_path / "a.tif"))


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda d: str(d / "missing.tif"), "does not exist"),
        (lambda d: str(d / "empty"), "contains no raster files"),
        (lambda d: str(d / "*.nothing"), "matches no files"),
        (lambda d: "ftp://host/a.tif", "unsupported URL scheme"),
    ],
)
def test_bad_sources_name_the_path(tmp_path: Path, make: object, needle: str) -> None:
    (tmp_path / "empty").mkdir()
    item = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(SourceError) as info:
        expand_sources([item])
    assert needle in str(info.value)
    assert item in str(info.value)


def test_pair_with_folder_and_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    _touch(tmp_path, "a.tif")
    with pytest.raises(SourceError, match="must name one image"):
        expand_sources([("x", str(tmp_path))])
    with pytest.raises(SourceError, match="appears more than once"):
        expand_sources([str(tmp_path / "a.tif"), str(tmp_path)])


def test_probe_missing_and_non_raster_give_useful_errors(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.tif")
    with pytest.raises(SourceError) as info:
        probe(missing)
    assert f"cannot open {missing!r}" in str(info.value)
    assert "check that it exists and is a raster" in str(info.value)

    fake = tmp_path / "notes.tif"
    fake.write_text("this is not an image\n" * 20)
    with pytest.raises(SourceError) as info:
        probe(str(fake))
    assert str(fake) in str(info.value)
    assert "GeoTIFF, COG, JPEG, PNG, NITF" in str(info.value)


def test_probe_real_rasters(data_dir: Path) -> None:
    info = probe(str(data_dir / "RGB.byte.tif"))
    assert (info.width, info.height, info.count, info.dtype) == (791, 718, 3, "uint8")
    assert info.nodata == 0.0
    assert info.georeferenced and not info.has_rpcs and not info.has_gcps
    assert info.transform is not None and info.transform[0] == pytest.approx(300.0379266750948)
    assert info.crs_wkt is not None and "UTM zone 18N" in info.crs_wkt


def test_probe_photo_is_not_georeferenced(tmp_path: Path, data_dir: Path) -> None:
    from PIL import Image

    with Image.open(data_dir / "OSBS_029.tif") as img:
        img.convert("RGB").save(tmp_path / "photo.jpg")
    info = probe(str(tmp_path / "photo.jpg"))
    assert (info.width, info.height, info.count) == (400, 400, 3)
    assert info.transform is None and info.crs_wkt is None
    assert not info.georeferenced
