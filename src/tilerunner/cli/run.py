"""``tilerunner run``: everything embedded, one command, a progress bar.

The run goes through the same planner, queue, store, workers and aggregator as a cluster: the
job is planned into a SQLite state file that also holds the queue, ``--workers`` worker
processes lease its regions, and the aggregator writes the outputs. Running the same command
with the same ``--state`` resumes: finished regions are never recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tilerunner.cli.common import handle_errors, parse_params, queue_factory
from tilerunner.cli.tile_options import (
    check_threshold_classes,
    check_thresholds,
    tile_job_section,
    tile_options,
)
from tilerunner.errors import InvalidRequestError
from tilerunner.settings import Settings

if TYPE_CHECKING:
    from tilerunner.coordinator import QueueFor
    from tilerunner.jobs import JobSpec
    from tilerunner.store import Store

__all__ = ["run"]

log = logging.getLogger(__name__)

_MODEL_NAME = "model"
_SWEEP_SECONDS = 10.0


def _job_document(
    sources: tuple[str, ...], task: str, outputs: tuple[str, ...], options: dict[str, Any]
) -> JobSpec:
    from tilerunner.jobs import parse_job
    from tilerunner.xyz.results import map_output

    tiles = options.get("tiles")
    thresholds = options.get("thresholds") or []
    return parse_job(
        {
            "name": options["name"],
            **({"tiles": tiles} if tiles else {"sources": list(sources)}),
            "pipeline": [{"task": task, "model": _MODEL_NAME, "params": options["params"]}],
            "tiling": {
                "tile_size": options["tile_size"],
                "overlap": options["overlap"],
                "region_size": options["region_size"],
                **({"bands": options["bands"]} if options["bands"] else {}),
            },
            "merge": {
                "method": options["merge"],
                "iou": options["iou"],
                "metric": options["metric"],
                "class_agnostic": options["class_agnostic"],
                "min_score": options["min_score"],
            },
            "outputs": [
                {"uri": uri, **({"thresholds": thresholds} if map_output(uri) else {})}
                for uri in outputs
            ],
        }
    )


def _job_id(spec: JobSpec, model_spec: str) -> str:
    """The same command (same document, same model) always names the same job: it resumes."""
    key = json.dumps([spec.model_dump(mode="json"), model_spec], sort_keys=True)
    return "run-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _parse_bands(value: str | None) -> list[int] | None:
    if not value:
        return None
    try:
        return [int(b) for b in value.split(",")]
    except ValueError:
        raise InvalidRequestError(
            f"--bands {value!r} must be comma-separated band numbers, e.g. 1,2,3"
        ) from None


class _Workers:
    """The worker processes of an embedded run; restarts one that dies unexpectedly."""

    def __init__(self, argv: list[str], count: int, log_path: Path, max_restarts: int = 5) -> None:
        self._argv = argv
        self._log = log_path.open("ab")
        self._restarts_left = max_restarts
        self.procs = [self._spawn() for _ in range(count)]

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self._argv, stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL
        )

    def check(self) -> None:
        for i, proc in enumerate(self.procs):
            code = proc.poll()
            if code is None or code == 0:
                continue
            if self._restarts_left <= 0:
                raise InvalidRequestError(
                    f"worker processes keep failing (exit code {code}); see {self._log.name}"
                )
            self._restarts_left -= 1
            self.procs[i] = self._spawn()

    def stop(self, timeout: float = 30.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._log.close()


@click.command()
@click.argument("sources", nargs=-1)
@click.option(
    "--model",
    "model_spec",
    required=True,
    help="zoo:NAME, model.onnx, model.cfg or package.module:Class.",
)
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    required=True,
    help="Output file (.geojson, .parquet, .csv); repeatable.",
)
@click.option(
    "--model-param",
    "model_params",
    multiple=True,
    help="key=value passed to the model; repeatable.",
)
@click.option("--tile-size", default=512, show_default=True, type=int)
@click.option("--overlap", default=64, show_default=True, type=int)
@click.option(
    "--region-size",
    default=4096,
    show_default=True,
    type=int,
    help="Region edge in pixels (rounded down to whole tiles).",
)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1, 4096))
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 256), help="Worker processes."
)
@click.option(
    "--readers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Reader threads per worker.",
)
@click.option(
    "--merge",
    default="nms",
    show_default=True,
    type=click.Choice(["nms", "soft-nms", "nmm", "none"]),
)
@click.option(
    "--iou",
    default=0.5,
    show_default=True,
    type=float,
    help="Merge threshold (suppress when > this).",
)
@click.option("--metric", default="iou", show_default=True, type=click.Choice(["iou", "ios"]))
@click.option("--class-agnostic", is_flag=True, help="Merge across classes.")
@click.option("--min-score", default=0.0, show_default=True, type=float)
@click.option("--bands", default=None, help="Bands to read, e.g. 4,3,2 (default: first three).")
@click.option("--name", default=None, help="Job name.")
@click.option(
    "--state",
    "state_path",
    default="tilerunner-state.db",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="State database; the same file resumes the run.",
)
@click.option(
    "--preview",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a PNG with the boxes drawn (first image).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@tile_options
@click.pass_obj
@handle_errors
def run(settings: Settings, sources: tuple[str, ...], model_spec: str, outputs: tuple[str, ...],
        model_params: tuple[str, ...], tile_size: int, overlap: int, region_size: int,
        batch_size: int, workers: int, readers: int, merge: str, iou: float, metric: str,
        class_agnostic: bool, min_score: float, bands: str | None, name: str | None,
        state_path: Path, preview: Path | None, quiet: bool,
        tiles_file: Path | None, bbox: str | None, zoom: int | None, url_template: str | None,
        subdomains: str, tiles_per_item: int, context: int,
        thresholds: tuple[str, ...]) -> None:  # fmt: skip
    """Run a model over SOURCES (files, folders, globs, http(s)://, s3:// URLs) on this machine."""
    started = time.monotonic()
    log.debug("run: command started")
    from tilerunner.cli.progress import print_summary
    from tilerunner.coordinator import aggregate_job, process_outbox, submit_job
    from tilerunner.imagery import expand_sources
    from tilerunner.jobs import JobState
    from tilerunner.models import load_model
    from tilerunner.outputs import check_output
    from tilerunner.store import open_store

    for uri in outputs:  # before the model is loaded, the state opened or a worker started
        check_output(uri, label=f"-o {uri}")
    tiles = tile_job_section(sources, tiles_file, bbox, zoom, url_template, subdomains,
                             tiles_per_item, context)  # fmt: skip  # a bad line fails here
    chosen = check_thresholds(thresholds)
    params = parse_params(model_params)
    model = load_model(model_spec, params, name=_MODEL_NAME, cache_dir=settings.cache_dir)
    check_threshold_classes(chosen, model.classes)
    spec = _job_document(
        sources,
        model.task,
        outputs,
        {
            "name": name, "params": params, "tile_size": tile_size, "overlap": overlap,
            "region_size": region_size, "bands": _parse_bands(bands), "merge": merge, "iou": iou,
            "metric": metric, "class_agnostic": class_agnostic, "min_score": min_score,
            "tiles": tiles, "thresholds": chosen,
        },
    )  # fmt: skip
    model.check_bands(spec.tiling.bands)
    if model.task == "segment":
        raise InvalidRequestError(
            f"model {model_spec!r} is a segmentation model; segmentation outputs are not "
            "supported in this version (use a detect or classify model)"
        )
    if spec.tiles is None:
        expand_sources(spec.source_pairs())  # a missing source stores nothing: checked first
    state_path = state_path.resolve()
    url = f"sqlite:///{state_path}"
    log.debug("run: opening the state %s", state_path)
    store = open_store(url)
    queue_for = queue_factory(url, settings)
    log.debug("run: state open; planning")
    job_id, created = submit_job(
        store, queue_for, spec, job_id=_job_id(spec, model_spec), env=settings.gdal_env()
    )
    log.debug("run: job %s planned", job_id)
    if not created:
        click.echo(f"resuming job {job_id} from {state_path}", err=True)
    _process(store, queue_for, job_id, settings, state_path, url, model_spec, model_params,
             batch_size, readers, workers, quiet)  # fmt: skip
    log.debug("run: every region finished; aggregating")
    env = settings.gdal_env()
    result = process_outbox(
        store, f"run-{os.getpid()}", env, settings.s3_endpoint_url, job_id=job_id
    ) or aggregate_job(store, job_id, env, settings.s3_endpoint_url)  # finished before: rewrite
    log.debug("run: aggregated")
    if preview is not None and spec.tiles is None:
        _write_preview(store, job_id, spec, preview, settings)
    print_summary(store, job_id, result, time.monotonic() - started)
    if result.status is not JobState.SUCCEEDED:
        errors = store.errors(job_id)
        first = errors[0].message if errors else "no region finished"
        sys.exit(f"error: job {result.status.value}: {len(errors)} error(s); first: {first}")


def _process(store: Store, queue_for: QueueFor, job_id: str, settings: Settings, state_path: Path,
             url: str, model_spec: str, model_params: tuple[str, ...], batch_size: int,
             readers: int, workers: int, quiet: bool) -> None:  # fmt: skip
    from tilerunner.cli.progress import JobProgress
    from tilerunner.coordinator import repair
    from tilerunner.jobs import JOB_TERMINAL, JobState

    job = store.get_job(job_id)
    if job is None or JobState(job.status) in JOB_TERMINAL:
        return
    counts = store.counts(job_id)
    if counts.regions_finished >= counts.regions_total:
        return
    argv = [
        sys.executable, "-m", "tilerunner", "worker", "--store", url, "--broker", url,
        "--model", f"{_MODEL_NAME}={model_spec}", "--batch-size", str(batch_size),
        "--readers", str(readers), "--until-job", job_id,
        *[arg for p in model_params for arg in ("--model-param", p)],
    ]  # fmt: skip
    pool = _Workers(argv, workers, state_path.with_suffix(".workers.log"))
    log.debug("run: started %d worker process(es)", workers)
    last_sweep = time.monotonic()
    try:
        with JobProgress(store, job_id, enabled=not quiet) as progress:
            while True:
                counts = progress.update()
                if counts.regions_finished >= counts.regions_total:
                    break
                pool.check()
                if time.monotonic() - last_sweep > _SWEEP_SECONDS:
                    repair(store, queue_for, job_id)
                    last_sweep = time.monotonic()
                time.sleep(0.25)
    except KeyboardInterrupt:
        pool.stop()
        click.echo(
            f"\nstopped; run the same command again (state: {state_path}) to resume", err=True
        )
        sys.exit(130)
    pool.stop()


def _write_preview(
    store: Store, job_id: str, spec: JobSpec, path: Path, settings: Settings
) -> None:
    from tilerunner.coordinator import image_features
    from tilerunner.imagery import RasterReader
    from tilerunner.outputs import write_preview

    images = [i for i in store.images(job_id) if i.state == "done"]
    if not images:
        return
    table = image_features(store, images[0], spec, settings.gdal_env())
    reader = RasterReader(images[0].url, env=settings.gdal_env())
    try:
        write_preview(str(path), reader, table.pixel_bbox, list(table.label), table.score)
    finally:
        reader.close()
