"""``tilerunner keys``: create, list and revoke the API keys of ``tilerunner serve``.

The key itself is printed once, on stdout alone (so ``KEY=$(tilerunner keys create ...)``
works); its id and the warning that it cannot be shown again go to stderr. Only its hash is
stored.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import click

from tilerunner.cli.common import handle_errors, pass_settings
from tilerunner.cli.options import resolve_urls, store_option
from tilerunner.errors import InvalidRequestError
from tilerunner.security.keys import DEFAULT_PROJECT, Scope, check_project, generate_key
from tilerunner.settings import Settings

if TYPE_CHECKING:
    from tilerunner.store import ApiKeyRecord, KeyRepository

__all__ = ["keys"]


def _repository(settings: Settings, store_url: str | None) -> KeyRepository:
    from tilerunner.store import KeyRepository, open_store

    return KeyRepository(open_store(resolve_urls(settings, store_url, None)[0]).engine)


def _when(at: float | None) -> str:
    if at is None:
        return ""
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _scopes(record: ApiKeyRecord) -> list[str]:
    return sorted(s.value for s in record.scopes)


@click.group()
def keys() -> None:
    """API keys for 'tilerunner serve': one project and a set of scopes each."""


@keys.command()
@click.option(
    "--project",
    default=DEFAULT_PROJECT,
    show_default=True,
    help="The project whose jobs the key may see.",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice([s.value for s in Scope]),
    help="submit, read, worker or admin (all of them); repeatable.",
)
@click.option("--name", default=None, help="A note on who or what uses the key.")
@store_option
@pass_settings
@handle_errors
def create(
    settings: Settings,
    project: str,
    scopes: tuple[str, ...],
    name: str | None,
    store_url: str | None,
) -> None:
    """Create a key and print it (only this once)."""
    check_project(project)
    new = generate_key()
    record = _repository(settings, store_url).create(
        new.id, new.key_hash, project=project, scopes={Scope(s) for s in scopes}, name=name
    )
    click.echo(new.key)
    click.echo(
        f"key {record.id} for project {record.project!r}, scopes {', '.join(_scopes(record))}: "
        "store it now, it cannot be shown again",
        err=True,
    )


@keys.command("list")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
@pass_settings
@handle_errors
def list_keys(settings: Settings, store_url: str | None, as_json: bool) -> None:
    """List the keys (never the keys themselves, nor their hashes)."""
    records = _repository(settings, store_url).list_keys()
    if as_json:
        rows = [
            {
                "id": r.id,
                "name": r.name,
                "project": r.project,
                "scopes": _scopes(r),
                "created_at": r.created_at,
                "last_used_at": r.last_used_at,
                "revoked_at": r.revoked_at,
            }
            for r in records
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Column, Table

    table = Table(
        Column("id", no_wrap=True),
        "name",
        "project",
        "scopes",
        "created (UTC)",
        "last used",
        "revoked",
    )
    for r in records:
        table.add_row(
            r.id,
            r.name or "",
            r.project,
            ", ".join(_scopes(r)),
            _when(r.created_at),
            _when(r.last_used_at),
            _when(r.revoked_at),
        )
    Console().print(table)


@keys.command()
@click.argument("key_id")
@store_option
@pass_settings
@handle_errors
def revoke(settings: Settings, key_id: str, store_url: str | None) -> None:
    """Revoke KEY_ID: requests with it are refused from now on."""
    repository = _repository(settings, store_url)
    if not repository.revoke(key_id):
        known = repository.get(key_id)
        if known is None:
            raise InvalidRequestError(
                f"no API key {key_id!r}; list the keys with 'tilerunner keys list'"
            )
        raise InvalidRequestError(f"API key {key_id!r} is revoked already")
    click.echo(f"revoked key {key_id}")
