"""``tilerunner run``: everything embedded, one command, a progress bar.

The run goes through the same planner, queue, store, workers and aggregator as a cluster: the
job is planned into a SQLite state file that also holds the queue, ``--workers`` worker
processes lease its regions (one worker is a thread of the run process, serving the model the
run loaded: :mod:`tilerunner.cli.thread_worker`), and the aggregator writes the outputs.
Running the same command with the same ``--state`` resumes: finished regions are never
recomputed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tilerunner.cli.common import command_settings, handle_errors, parse_params, queue_factory
from tilerunner.cli.early_reads import EarlyReads
from tilerunner.cli.run_flags import MODEL_NAME, job_document, parse_bands, run_job_id
from tilerunner.cli.run_job import job_from_file, job_models, single_model
from tilerunner.cli.run_segment import check_segment_run, segment_stage, split_outputs
from tilerunner.cli.run_wait import draw_preview, finished, wait_for_regions
from tilerunner.cli.thread_worker import ThreadWorker
from tilerunner.cli.tile_options import (
    check_threshold_classes,
    check_thresholds,
    tile_job_section,
    tile_options,
)
from tilerunner.cli.worker_pool import WorkerPool
from tilerunner.errors import InvalidRequestError

if TYPE_CHECKING:
    from tilerunner.settings import Settings

__all__ = ["run"]

log = logging.getLogger(__name__)


@click.command()
@click.argument("sources", nargs=-1)
@click.option(
    "--model",
    "model_args",
    multiple=True,
    required=True,
    help="zoo:NAME, model.onnx, model.cfg or package.module:Class; with --job, NAME=SPEC for "
    "each model the job names (repeatable).",
)
@click.option(
    "--job",
    "job_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Run this job document (sources, pipeline, outputs...) instead of SOURCES.",
)
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    help="Output file (.geojson, .parquet, .csv; photo jobs: .jsonl, .csv, .geojson); repeatable.",
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
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(1, 4096),
    help="Tiles per model call (default: 8; 2 for segmentation models).",
)
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
@click.option(
    "--blend",
    default="none",
    show_default=True,
    type=click.Choice(["none", "linear", "cosine"]),
    help="Segmentation: average probabilities where tiles overlap.",
)
@click.option(
    "--probabilities", is_flag=True, help="Segmentation: also write NAME.probabilities.tif."
)
@click.option(
    "--probability-type",
    default="uint8",
    show_default=True,
    type=click.Choice(["uint8", "float32"]),
    help="uint8: probability x 254 (255 nodata); float32: as is (NaN nodata).",
)
@click.option("--vectorize", default=None, help="Segmentation: also write polygons per class.")
@click.option("--overwrite", is_flag=True, help="Replace an existing raster output.")
@click.pass_context
@handle_errors
def run(ctx: click.Context, sources: tuple[str, ...], model_args: tuple[str, ...],
        job_path: Path | None, outputs: tuple[str, ...], model_params: tuple[str, ...],
        tile_size: int, overlap: int, region_size: int,
        batch_size: int | None, workers: int, readers: int, merge: str, iou: float,
        metric: str,
        class_agnostic: bool, min_score: float, bands: str | None, name: str | None,
        state_path: Path, preview: Path | None, quiet: bool,
        tiles_file: Path | None, bbox: str | None, zoom: int | None, url_template: str | None,
        subdomains: str, tiles_per_item: int, context: int,
        thresholds: tuple[str, ...], blend: str, probabilities: bool, probability_type: str,
        vectorize: str | None, overwrite: bool) -> None:  # fmt: skip
    """Run a model over SOURCES (files, folders, globs, http(s)://, s3:// URLs) on this machine.

    With --job, run a job document instead (a photo collection with a pipeline of stages, for
    example), giving each model it names as --model NAME=SPEC."""
    started = time.monotonic()
    log.debug("run: command started")
    if job_path is not None:
        models = job_models(sources, model_args)
    else:
        models = {MODEL_NAME: single_model(model_args, outputs)}
    tiles = (
        None
        if job_path is not None
        else tile_job_section(
            sources, tiles_file, bbox, zoom, url_template, subdomains, tiles_per_item, context
        )
    )  # a bad line fails here; a job document has its own sources or tiles
    chosen = check_thresholds(thresholds)
    params = parse_params(model_params)
    state_path = state_path.resolve()
    if not state_path.parent.is_dir():
        raise InvalidRequestError(
            f"cannot create state database {str(state_path)!r}: directory "
            f"{str(state_path.parent)!r} does not exist; create it or choose another --state path"
        )
    url = f"sqlite:///{state_path}"
    band_list = parse_bands(bands)
    in_process = workers == 1 and job_path is None  # the model this process loads serves the job
    early = None
    if in_process and tiles is None and not split_outputs(outputs)[0]:
        # one worker, an image's tiles: opened while the settings load, which then say what to
        # read ahead (tilerunner.cli.early_reads)
        early = EarlyReads.start(
            sources, state_path, tile_size=tile_size, overlap=overlap, region_size=region_size,
            bands=band_list, readers=readers,
        )  # fmt: skip
    try:
        settings = command_settings(ctx)
    except BaseException:
        if early is not None:
            early.close()
        raise
    if early is not None:
        early.use(settings)
    pool: WorkerPool | ThreadWorker
    if in_process:
        pool = ThreadWorker(
            settings, url, batch_size, readers, state_path.with_suffix(".workers.log"), early
        )
    else:  # the workers start first: their imports and model load overlap this process's own
        pool = WorkerPool(
            _worker_argv(url, models, model_params, batch_size, readers),
            workers,
            state_path.with_suffix(".workers.log"),
        )
        log.debug("run: started %d worker process(es)", workers)
    opened = contextlib.ExitStack()  # the state's connections: closed once the workers left
    try:
        result = _run_job(settings, pool, sources, models, job_path, outputs, params, chosen,
                          state_path, url, preview, quiet, started, opened, {
            "name": name, "params": params, "tile_size": tile_size, "overlap": overlap,
            "region_size": region_size, "bands": band_list, "merge": merge, "iou": iou,
            "metric": metric, "class_agnostic": class_agnostic, "min_score": min_score,
            "tiles": tiles, "segment_flags": {
                "blend": blend, "probabilities": probabilities,
                "probability_type": probability_type, "vectorize": vectorize,
                "overwrite": overwrite,
            },
        })  # fmt: skip
    finally:
        pool.stop()
        log.debug("run: workers stopped")
        opened.close()  # the last connection to close folds the write-ahead log into the file
        if not state_path.exists():  # the run failed its checks: it leaves nothing behind
            pool.discard_log()
    if result is not None:
        sys.exit(result)


def _worker_argv(url: str, models: dict[str, str], model_params: tuple[str, ...],
                 batch_size: int | None, readers: int) -> list[str]:  # fmt: skip
    return [
        sys.executable, "-m", "tilerunner", "worker", "--store", url, "--broker", url,
        *[arg for n, spec in models.items() for arg in ("--model", f"{n}={spec}")],
        *(("--batch-size", str(batch_size)) if batch_size is not None else ()),
        "--readers", str(readers), *[arg for p in model_params for arg in ("--model-param", p)],
        "--until-job",
    ]  # fmt: skip


def _run_job(settings: Settings, pool: WorkerPool | ThreadWorker, sources: tuple[str, ...],
             models: dict[str, str], job_path: Path | None, outputs: tuple[str, ...],
             params: dict[str, str], thresholds: list[str], state_path: Path, url: str,
             preview: Path | None, quiet: bool, started: float, opened: contextlib.ExitStack,
             options: dict[str, object]) -> str | None:  # fmt: skip
    """Plan, process and aggregate the job; the exit message when it did not succeed. The
    store and queues it opens are closed by ``opened``."""
    from tilerunner.outputs import check_output

    if job_path is not None:  # outputs, models and their tasks checked before any work
        spec = job_from_file(settings, models, job_path, outputs, params)
        model_spec = " ".join(f"{n}={s}" for n, s in sorted(models.items()))
    rasters, feature_outputs = split_outputs(outputs) if job_path is None else ([], [])
    for uri in feature_outputs:  # before the model is loaded
        check_output(uri, label=f"-o {uri}")
    from tilerunner.coordinator import submit_job
    from tilerunner.imagery import expand_sources
    from tilerunner.jobs import JobState
    from tilerunner.models import load_model
    from tilerunner.photos.sources import expand_photos
    from tilerunner.store import open_store

    segment = None
    images = []
    if job_path is None:
        model_spec = models[MODEL_NAME]
        model = load_model(model_spec, params, name=MODEL_NAME, cache_dir=settings.cache_dir)
        if isinstance(pool, ThreadWorker):
            pool.serve(MODEL_NAME, model)
        check_threshold_classes(thresholds, model.classes)
        flags = options.pop("segment_flags")
        assert isinstance(flags, dict)
        segment = segment_stage(model, rasters, feature_outputs, flags)
        spec = job_document(
            sources, model.task, [] if segment else feature_outputs,
            {**options, "thresholds": thresholds}, segment,
        )  # fmt: skip
        model.check_bands(spec.tiling.bands)
    if spec.photos is not None:  # a missing source stores nothing: checked first
        expand_photos(spec.source_pairs())
    elif spec.tiles is None:
        images = expand_sources(spec.source_pairs())
    if segment:
        check_segment_run(
            model, segment, [i.url for i in images], spec.tiling.tile_size, spec.tiling.bands,
            settings,
        )  # fmt: skip
    log.debug("run: opening the state %s", state_path)
    store = open_store(url)
    if isinstance(pool, ThreadWorker):
        pool.use_store(store)
    queue_for = queue_factory(url, settings)
    opened.callback(store.engine.dispose)
    opened.callback(queue_for.close)
    log.debug("run: state open; planning")
    job_id, created = submit_job(
        store, queue_for, spec, job_id=run_job_id(spec, model_spec), env=settings.gdal_env()
    )
    log.debug("run: job %s planned", job_id)
    if not created:
        if segment and finished(store, job_id):
            raise InvalidRequestError(
                f"this run finished before (job {job_id} in {state_path}) and its parts are "
                "gone; pass another --state to run it again"
            )
        click.echo(f"resuming job {job_id} from {state_path}", err=True)
    wait_for_regions(store, queue_for, job_id, pool, state_path, quiet)
    log.debug("run: every region finished; aggregating")
    from tilerunner.coordinator import aggregate_job, process_outbox

    env = settings.gdal_env()
    result = process_outbox(
        store, f"run-{os.getpid()}", env, settings.s3_endpoint_url, job_id=job_id
    ) or aggregate_job(store, job_id, env, settings.s3_endpoint_url)  # finished before: rewrite
    log.debug("run: aggregated")
    if preview is not None and spec.tiles is None and spec.photos is None:
        draw_preview(store, job_id, spec, preview, settings)
    from tilerunner.cli.progress import print_summary  # rich: imported while the job ran

    print_summary(store, job_id, result, time.monotonic() - started)
    log.debug("run: summary printed")
    if result.status is JobState.SUCCEEDED:
        return None
    errors = store.errors(job_id)
    first = errors[0].message if errors else "no region finished"
    return f"error: job {result.status.value}: {len(errors)} error(s); first: {first}"
