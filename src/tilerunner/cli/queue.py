"""``tilerunner queue``: depth, dead letters and requeue of failed regions and tiles."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from tilerunner.cli.common import handle_errors, pass_settings, queue_factory
from tilerunner.cli.options import broker_option, resolve_urls, store_option
from tilerunner.errors import InvalidRequestError
from tilerunner.settings import Settings

if TYPE_CHECKING:
    from tilerunner.store import Store

__all__ = ["queue"]


def _models(store: Store, models: tuple[str, ...]) -> list[str]:
    from tilerunner.jobs import JobSpec

    if models:
        return list(models)
    found = {JobSpec.model_validate(j.spec).pipeline[0].model for j in store.list_jobs(1000)}
    return sorted(found)


@click.group()
def queue() -> None:
    """Inspect and repair the region queues (one per model)."""


@queue.command()
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Model name (default: every model of the store's jobs).",
)
@store_option
@broker_option
@pass_settings
@handle_errors
def depth(
    settings: Settings, models: tuple[str, ...], store_url: str | None, broker_url: str | None
) -> None:
    """Messages visible, in flight, delayed and dead per model queue."""
    from rich.console import Console
    from rich.table import Table

    from tilerunner.jobs import queue_name
    from tilerunner.store import open_store

    store_url, broker_url = resolve_urls(settings, store_url, broker_url)
    queue_for = queue_factory(broker_url, settings)
    table = Table("queue", "visible", "in flight", "delayed", "dead")
    for model in _models(open_store(store_url), models):
        d = queue_for(queue_name(model)).depth()
        table.add_row(
            queue_name(model), str(d.visible), str(d.in_flight), str(d.delayed), str(d.dead)
        )
    Console().print(table)


@queue.command("dead-letters")
@click.option("--model", "models", multiple=True)
@click.option("--limit", default=100, show_default=True, type=int)
@store_option
@broker_option
@pass_settings
@handle_errors
def dead_letters(settings: Settings, models: tuple[str, ...], limit: int, store_url: str | None,
                 broker_url: str | None) -> None:  # fmt: skip
    """Dead-lettered regions with their attempts and last error."""
    from rich.console import Console
    from rich.table import Table

    from tilerunner.jobs import queue_name
    from tilerunner.store import open_store

    store_url, broker_url = resolve_urls(settings, store_url, broker_url)
    queue_for = queue_factory(broker_url, settings)
    table = Table("message", "attempts", "reason")
    for model in _models(open_store(store_url), models):
        for dead in queue_for(queue_name(model)).dead_letters(limit):
            table.add_row(dead.message_id, str(dead.attempts), dead.reason)
    Console().print(table)


@queue.command()
@click.argument("job_id")
@store_option
@broker_option
@pass_settings
@handle_errors
def requeue(settings: Settings, job_id: str, store_url: str | None, broker_url: str | None) -> None:
    """Retry the failed (dead-lettered) regions of JOB_ID, and the tiles that failed alone
    (only those tiles are redone; their regions keep everything else)."""
    from tilerunner.coordinator import retry_failed
    from tilerunner.jobs import JobSpec
    from tilerunner.store import open_store

    store_url, broker_url = resolve_urls(settings, store_url, broker_url)
    store = open_store(store_url)
    job = store.get_job(job_id)
    if job is None:
        raise InvalidRequestError(
            f"no job {job_id!r} in the store; list jobs with 'tilerunner status'"
        )
    done = retry_failed(store, queue_factory(broker_url, settings), job_id)
    # a photo job's items are groups of photos and crops, a raster job's regions and tiles
    photos = JobSpec.model_validate(job.spec).photos is not None
    items, parts = ("photo item(s)", "crop(s)") if photos else ("region(s)", "tile(s)")
    if done.photos:
        click.echo(f"requeued {done.photos} photo(s) of {job_id} that could not be read")
    if not done.regions:
        if done.photos and not done.tiles:
            return
        click.echo(
            f"requeued {done.tiles} failed {parts} of {job_id}"
            if done.tiles
            else f"job {job_id} has no failed {items} or {parts}"
        )
        return
    click.echo(
        f"requeued {done.regions} {items} of {job_id} "
        f"({done.revived} from dead letters, {done.published} re-published)"
        + (f" and {done.tiles} failed {parts}" if done.tiles else "")
    )
