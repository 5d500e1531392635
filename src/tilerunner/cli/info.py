"""``tilerunner models`` and ``tilerunner status``."""

from __future__ import annotations

import json

import click

from tilerunner.cli.common import handle_errors, pass_settings
from tilerunner.cli.options import resolve_urls, store_option
from tilerunner.errors import InvalidRequestError
from tilerunner.settings import Settings

__all__ = ["models_command", "status_command"]


@click.command("models")
@handle_errors
def models_command() -> None:
    """List the built-in model backends and zoo models."""
    from rich.console import Console
    from rich.table import Table

    from tilerunner.models import describe_models

    table = Table("name", "task", "description")
    for entry in describe_models():
        table.add_row(
            str(entry.get("name")), str(entry.get("task", "")), str(entry.get("description", ""))
        )
    Console().print(table)


@click.command("status")
@click.argument("job_id", required=False)
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@pass_settings
@handle_errors
def status_command(
    settings: Settings, job_id: str | None, store_url: str | None, as_json: bool
) -> None:
    """Show a job (or list the jobs) of a state database."""
    from tilerunner.store import open_store

    store_url = resolve_urls(settings, store_url, None)[0]
    if job_id is None:
        from rich.console import Console
        from rich.table import Table

        from tilerunner.store.sqlite_jobs import list_jobs

        # a SQLite file at the newest schema is read without SQLAlchemy; any other, the store's way
        listed = list_jobs(store_url)
        jobs = open_store(store_url).list_jobs() if listed is None else listed
        table = Table("job", "name", "status", "regions")
        for job in jobs:
            table.add_row(job.id, job.name or "", job.status, str(job.regions_total))
        Console().print(table)
        return
    store = open_store(store_url)
    from tilerunner.coordinator import job_view

    document = job_view(store, job_id)
    if document is None:
        raise InvalidRequestError(
            f"no job {job_id!r} in {store_url}; run 'tilerunner status' to list jobs"
        )
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    counts = document["counts"]
    click.echo(f"job {document['id']} ({document['name'] or 'unnamed'}): {document['status']}")
    for what in ("images", "regions", "tiles"):
        row = counts[what]
        failed = f", {row['failed']} failed" if "failed" in row else ""
        click.echo(f"  {what}: {row['done']} done{failed} of {row['total']}")
    click.echo(f"  features: {counts['features']['found']}")
    for error in document["errors"][:20]:
        where = error["image"] + (
            f" region {error['region']}" if error["region"] is not None else ""
        )
        click.echo(f"  error [{error['code']}] {where}: {error['message']}")
    for uri in document["outputs"]:
        click.echo(f"  output: {uri}")
