"""``tilerunner submit``, ``results`` and ``cancel``: jobs on a shared store and broker."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tilerunner.cli.common import handle_errors, pass_settings, queue_factory
from tilerunner.cli.options import broker_option, resolve_urls, store_option
from tilerunner.cli.startup import started
from tilerunner.errors import InvalidRequestError
from tilerunner.settings import Settings

if TYPE_CHECKING:
    from tilerunner.store import Store

__all__ = ["cancel", "results", "submit"]


def _require_job(store: Store, job_id: str) -> None:
    if store.get_job(job_id) is None:
        raise InvalidRequestError(
            f"no job {job_id!r} in the store; list jobs with 'tilerunner status'"
        )


@click.command()
@click.argument("document", type=click.Path(dir_okay=False, path_type=Path))
@store_option
@broker_option
@click.option(
    "--wait", is_flag=True, help="Block until the job finished; exit non-zero unless it succeeded."
)
@click.option(
    "--timeout", default=None, type=float, help="With --wait: give up after this many seconds."
)
@pass_settings
@handle_errors
def submit(settings: Settings, document: Path, store_url: str | None, broker_url: str | None,
           wait: bool, timeout: float | None) -> None:  # fmt: skip
    """Validate, plan and enqueue the job DOCUMENT (JSON); prints the job id."""
    from tilerunner.coordinator import process_outbox, submit_job
    from tilerunner.coordinator.planner import check_outputs
    from tilerunner.jobs import JOB_TERMINAL, JobState, parse_job
    from tilerunner.store import open_store

    try:
        text = document.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidRequestError(
            f"cannot read job document {str(document)!r}: {error.strerror}"
        ) from None
    spec = parse_job(text)
    check_outputs(spec)  # before the store is opened: an invalid job leaves nothing behind
    store_url, broker_url = resolve_urls(settings, store_url, broker_url)
    store = open_store(store_url)
    job_id, _ = submit_job(
        store, queue_factory(broker_url, settings), spec, env=settings.gdal_env()
    )
    click.echo(job_id)
    if not wait:
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    owner = f"submit-{os.getpid()}"
    started()
    while True:
        # aggregate here too if no serve process has: claims make this safe
        process_outbox(store, owner, settings.gdal_env(), settings.s3_endpoint_url, job_id=job_id)
        job = store.get_job(job_id)
        assert job is not None
        if JobState(job.status) in JOB_TERMINAL:
            break
        if deadline is not None and time.monotonic() > deadline:
            sys.exit(f"error: job {job_id} still {job.status} after {timeout:g} s")
        time.sleep(1.0)
    if job.status != JobState.SUCCEEDED:
        sys.exit(
            f"error: job {job_id} {job.status}: {job.error or 'see tilerunner status ' + job_id}"
        )


@click.command()
@click.argument("job_id")
@click.option(
    "-o", "--output", "outputs", multiple=True, required=True, help="Output file; repeatable."
)
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    help="CLASS:SCORE (class id or name): map outputs (.geojson, .parquet) keep the features "
    "passing one; CSV lists every feature. Repeatable.",
)
@store_option
@pass_settings
@handle_errors
def results(settings: Settings, job_id: str, outputs: tuple[str, ...],
            thresholds: tuple[str, ...], store_url: str | None) -> None:  # fmt: skip
    """Write the merged features of JOB_ID (finished images so far) to files; a photo job's
    records per photo (.jsonl, .csv, .geojson)."""
    from tilerunner.coordinator import job_features
    from tilerunner.jobs import JobSpec
    from tilerunner.outputs import check_output, writer_for
    from tilerunner.photos.results import (
        PHOTO_FORMATS,
        check_photo_output,
        photo_records,
        write_photo_records,
    )
    from tilerunner.store import open_store
    from tilerunner.xyz.results import apply_thresholds, map_output
    from tilerunner.xyz.thresholds import parse_threshold

    def per_photo(uri: str) -> bool:  # JSON Lines: only a photo job's records
        return PHOTO_FORMATS.get(os.path.splitext(uri)[1].lower()) == "jsonl"

    for uri in outputs:  # before the store is opened or any feature read
        if per_photo(uri):
            check_photo_output(uri, label=f"-o {uri}")
        else:
            check_output(uri, label=f"-o {uri}")
    chosen = [parse_threshold(t) for t in thresholds]
    store = open_store(resolve_urls(settings, store_url, None)[0])
    started()  # a large job's features take a while to write
    _require_job(store, job_id)
    job = store.get_job(job_id)
    assert job is not None
    if JobSpec.model_validate(job.spec).photos is not None:
        formats = [check_photo_output(uri, label=f"-o {uri}") for uri in outputs]
        if thresholds:
            raise InvalidRequestError(
                f"job {job_id} is a photo job: its records are per photo, not thresholded "
                "tiles; drop --threshold"
            )
        records = photo_records(store, job_id)
        for uri, fmt in zip(outputs, formats, strict=True):
            write_photo_records(records, uri, fmt, settings.s3_endpoint_url)
            click.echo(f"wrote {len(records)} photos to {uri}")
        return
    for uri in outputs:
        if per_photo(uri):
            raise InvalidRequestError(
                f"-o {uri}: job {job_id} is not a photo job; write .geojson, .parquet or .csv"
            )
    table = job_features(store, job_id, settings.gdal_env())
    hits = apply_thresholds(table, chosen) if chosen else table
    for uri in outputs:
        written = hits if map_output(uri) else table
        writer_for(uri, s3_endpoint_url=settings.s3_endpoint_url)(written, uri, None)
        click.echo(f"wrote {len(written)} features to {uri}")


@click.command()
@click.argument("job_id")
@store_option
@pass_settings
@handle_errors
def cancel(settings: Settings, job_id: str, store_url: str | None) -> None:
    """Cancel JOB_ID, keeping what finished: workers let go of its regions within one lease
    period (``cancelling``), then serve's coordinator marks it ``cancelled``."""
    from tilerunner.coordinator import cancel_job, job_view
    from tilerunner.store import open_store

    store = open_store(resolve_urls(settings, store_url, None)[0])
    _require_job(store, job_id)
    state = cancel_job(store, job_id)
    if state is None:
        view = job_view(store, job_id)
        raise InvalidRequestError(
            f"job {job_id} is already {view and view['status']}; nothing to cancel"
        )
    click.echo(json.dumps({"id": job_id, "status": state.value}))
