"""``tilerunner models`` and ``tilerunner status``."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from rich.console import Console
from rich.table import Table

from tilerunner.cli.common import handle_errors
from tilerunner.errors import InvalidRequestError
from tilerunner.models import describe_models
from tilerunner.settings import Settings
from tilerunner.store import open_store

__all__ = ["models_command", "status_command"]


@click.command("models")
@handle_errors
def models_command() -> None:
    """List the built-in model backends and zoo models."""
    table = Table("name", "task", "description")
    for entry in describe_models():
        table.add_row(
            str(entry.get("name")), str(entry.get("task", "")), str(entry.get("description", ""))
        )
    Console().print(table)


@click.command("status")
@click.argument("job_id", required=False)
@click.option("--store", "store_url", default="sqlite:///tilerunner-state.db", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@click.pass_obj
@handle_errors
def status_command(settings: Settings, job_id: str | None, store_url: str, as_json: bool) -> None:
    """Show a job (or list the jobs) of a state database."""
    store = open_store(store_url)
    if job_id is None:
        table = Table("job", "name", "status", "regions")
        for listed in store.list_jobs():
            table.add_row(listed.id, listed.name or "", listed.status, str(listed.regions_total))
        Console().print(table)
        return
    job = store.get_job(job_id)
    if job is None:
        raise InvalidRequestError(
            f"no job {job_id!r} in {store_url}; run 'tilerunner status' to list jobs"
        )
    document = {
        "id": job.id,
        "name": job.name,
        "status": job.status,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "counts": asdict(store.counts(job_id)),
        "errors": [asdict(e) for e in store.errors(job_id)],
        "outputs": job.outputs or [],
    }
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    for key, value in document.items():
        click.echo(f"{key}: {value}")
