"""``tilerunner watch``: every new object of an S3 prefix or a folder becomes a job, once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from tilerunner.cli.common import handle_errors, pass_settings, queue_factory
from tilerunner.cli.options import broker_option, resolve_urls, store_option
from tilerunner.cli.startup import started
from tilerunner.errors import InvalidRequestError
from tilerunner.settings import Settings

if TYPE_CHECKING:
    from tilerunner.store.watched import WatchedObject

__all__ = ["watch"]


@click.command()
@click.argument("source")
@click.option(
    "--job",
    "template_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Job document (JSON) whose sources each new object replaces.",
)
@store_option
@broker_option
@click.option(
    "--sqs-queue",
    default=None,
    help="Take S3 event notifications from this SQS queue URL instead of listing.",
)
@click.option(
    "--suffix",
    "suffixes",
    multiple=True,
    help="Take only names ending so (any case), e.g. .tif; repeatable.",
)
@click.option(
    "--glob",
    default=None,
    help="Take only paths below SOURCE matching this pattern, e.g. '2026-*/*.tif'.",
)
@click.option(
    "--rolling",
    "every",
    default=None,
    type=click.IntRange(min=1),
    help="Gather objects into one job per N objects.",
)
@click.option(
    "--rolling-seconds",
    "seconds",
    default=None,
    type=click.FloatRange(min=0.001),
    help="Gather objects into one job per S seconds of arrivals.",
)
@click.option(
    "--poll-seconds",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Time between looks (listing, folder scan).",
)
@click.option(
    "--settle-seconds",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Folders: a file is taken once unchanged this long.",
)
@click.option(
    "--api",
    "api_url",
    default=None,
    help="Submit the jobs to this tilerunner API instead of --store/--broker; "
    "--store then only keeps the record of what was taken.",
)
@click.option(
    "--token",
    default=None,
    help="Key with the submit scope for --api (default $TILERUNNER_API_TOKEN).",
)
@click.option("--once", is_flag=True, help="Take what is there now, then exit (for cron).")
@pass_settings
@handle_errors
def watch(settings: Settings, source: str, template_path: Path, store_url: str | None,
          broker_url: str | None, sqs_queue: str | None, suffixes: tuple[str, ...],
          glob: str | None, every: int | None, seconds: float | None, poll_seconds: float,
          settle_seconds: float, api_url: str | None, token: str | None,
          once: bool) -> None:  # fmt: skip
    """Turn every new object of SOURCE (s3://bucket/prefix/ or a folder) into a job.

    Each object (key and ETag, or path, size and time) is taken exactly once, across restarts:
    see docs/watch.md. Jobs go to the store and queues like 'tilerunner submit' (or to a
    'tilerunner serve' with --api); run workers to process them. Stops cleanly on Ctrl-C or
    SIGTERM.
    """
    from tilerunner.store import open_store
    from tilerunner.watch import JobTemplate, KeyFilter, RollingPolicy, Watcher, open_source

    if api_url is not None and broker_url is not None:
        raise InvalidRequestError(
            "with --api the server queues the jobs: drop --broker (--store keeps the record)"
        )
    policy = RollingPolicy(every, seconds)  # everything a user can get wrong, before any work
    template = JobTemplate.load(template_path, rolling=policy.rolling)
    keys = KeyFilter(tuple(suffixes), glob)
    objects = open_source(
        source,
        keys,
        sqs_queue=sqs_queue,
        s3_endpoint_url=settings.s3_endpoint_url,
        settle_seconds=settle_seconds,
        wait_seconds=1.0 if once else min(poll_seconds, 20.0),
    )
    store_url, broker_url = resolve_urls(settings, store_url, broker_url)
    store = open_store(store_url)

    def _report(job_id: str, members: Sequence[WatchedObject]) -> None:
        first = members[0].key
        more = f" and {len(members) - 1} more" if len(members) > 1 else ""
        click.echo(f"{job_id} {first}{more}")

    remote = None
    if api_url is not None:
        from tilerunner.watch.remote import RemoteJobs

        remote = RemoteJobs(
            store, objects.name, template, api_url, token or settings.api_token or ""
        )
    watcher = Watcher(
        store,
        queue_factory(broker_url, settings),
        objects,
        template,
        policy,
        env=settings.gdal_env(),
        s3_endpoint_url=settings.s3_endpoint_url,
        on_job=_report,
        remote=remote,
    )
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()  # the look under way finishes; nothing is left half-recorded

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    started()
    try:
        watcher.run(stop, once=once, poll_seconds=poll_seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
