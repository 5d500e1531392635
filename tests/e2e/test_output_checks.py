"""Every output is checked before any work: ``run -o``, ``results -o`` and a submitted job
document's ``outputs`` fail with one ``error:`` line that says what to change, and nothing is
stored or written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tr_cli import tilerunner
from tr_scenes import make_scene

FAKE = "tilerunner.testing.models:FakeDetector"
FORMATS = "use .geojson, .parquet or .csv"


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _jobs(store: Path, cwd: Path) -> list[str]:
    done = tilerunner("status", "--store", f"sqlite:///{store}", cwd=cwd, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line.split()[1] for line in done.stdout.splitlines() if "run-" in line]


@pytest.fixture(scope="module")
def tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("out"), width=200, height=150, n_boxes=2)[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, tif: Path) -> tuple[Path, str]:
    """A state database holding one finished job, and the job's id."""
    folder = tmp_path_factory.mktemp("finished")
    done = tilerunner(
        "run", str(tif), "--model", FAKE, "-o", "o.geojson", "--state", "s.db", "--quiet",
        cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (job_id,) = _jobs(folder / "s.db", folder)
    return folder / "s.db", job_id


def test_run_unknown_format_fails_before_the_model_is_loaded(tmp_path: Path, tif: Path) -> None:
    done = tilerunner(
        "run", str(tif), "--model", "no_such_package.models:Nothing", "-o", "out.shp",
        "--state", "s.db", "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert _error_line(done) == f"error: -o out.shp: unknown output format '.shp'; {FORMATS}"
    assert list(tmp_path.iterdir()) == []  # no state, no worker log, no output


def test_run_checks_every_output(tmp_path: Path, tif: Path) -> None:
    done = tilerunner(
        "run", str(tif), "--model", FAKE, "-o", "good.geojson", "-o", "table.xlsx",
        "--state", "s.db", "--quiet", cwd=tmp_path,
    )  # fmt: skip
    line = _error_line(done)
    assert line == f"error: -o table.xlsx: unknown output format '.xlsx'; {FORMATS}"
    assert list(tmp_path.iterdir()) == []


def test_run_output_without_extension_or_bucket_key(tmp_path: Path, tif: Path) -> None:
    done = tilerunner(
        "run", str(tif), "--model", FAKE, "-o", "results", "--state", "s.db", "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    assert "-o results: no file extension" in _error_line(done)
    done = tilerunner(
        "run", str(tif), "--model", FAKE, "-o", "s3://bucket", "--state", "s.db", "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    assert "s3://bucket/path/file.geojson" in _error_line(done)
    assert list(tmp_path.iterdir()) == []


def test_run_s3_output_passes_the_check(tmp_path: Path) -> None:
    # no request is made to check it: the run goes on to the next check, the missing source
    done = tilerunner(
        "run", "missing.tif", "--model", FAKE, "-o", "s3://bucket/runs/out.parquet",
        "--state", "s.db", "--quiet", cwd=tmp_path,
    )  # fmt: skip
    line = _error_line(done)
    assert "missing.tif" in line and "s3://" not in line
    assert not (tmp_path / "s.db").exists()


def test_results_unknown_format_opens_no_store(tmp_path: Path) -> None:
    done = tilerunner(
        "results", "job-1", "-o", "out.kml", "--store", f"sqlite:///{tmp_path / 's.db'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert _error_line(done) == f"error: -o out.kml: unknown output format '.kml'; {FORMATS}"
    assert list(tmp_path.iterdir()) == []


def test_results_of_a_finished_job_write_nothing_on_a_bad_output(
    tmp_path: Path, finished: tuple[Path, str]
) -> None:
    store, job_id = finished
    done = tilerunner(
        "results", job_id, "-o", "a.geojson", "-o", "b.shp", "--store", f"sqlite:///{store}",
        cwd=tmp_path,
    )  # fmt: skip
    assert _error_line(done) == f"error: -o b.shp: unknown output format '.shp'; {FORMATS}"
    assert list(tmp_path.iterdir()) == []
    done = tilerunner(
        "results", job_id, "-o", "a.geojson", "--store", f"sqlite:///{store}", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr  # the same job with a good output
    assert (tmp_path / "a.geojson").exists()


def _document(folder: Path, tif: Path, output: dict[str, str]) -> Path:
    path = folder / "job.json"
    path.write_text(
        json.dumps(
            {
                "sources": [str(tif)],
                "pipeline": [{"task": "detect", "model": "det"}],
                "outputs": [{"uri": str(folder / "ok.geojson")}, output],
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"uri": "trees.shp"}, f"unknown output format '.shp'; {FORMATS}"),
        (
            {"uri": "trees.out", "format": "shapefile"},
            "unknown output format 'shapefile'; use geojson, geoparquet or csv",
        ),
    ],
)
def test_submit_refuses_a_document_with_a_bad_output(
    tmp_path: Path, tif: Path, output: dict[str, str], message: str
) -> None:
    document = _document(tmp_path, tif, output)
    store = tmp_path / "state.db"
    done = tilerunner("submit", str(document), "--store", f"sqlite:///{store}", cwd=tmp_path)
    assert _error_line(done) == f"error: outputs[1] {output['uri']!r}: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.json"]  # no store created


def test_submit_to_an_existing_store_adds_no_job(
    tmp_path: Path, tif: Path, finished: tuple[Path, str]
) -> None:
    store, job_id = finished
    document = _document(tmp_path, tif, {"uri": "trees.shp"})
    done = tilerunner("submit", str(document), "--store", f"sqlite:///{store}", cwd=tmp_path)
    assert "outputs[1] 'trees.shp': unknown output format" in _error_line(done)
    assert _jobs(store, tmp_path) == [job_id]
