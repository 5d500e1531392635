"""Options shared by the cluster commands: where the store and the queues are."""

from __future__ import annotations

import click

from tilerunner.settings import Settings

__all__ = ["broker_option", "resolve_urls", "store_option"]

store_option = click.option(
    "--store",
    "store_url",
    default=None,
    help="State database URL (default $TILERUNNER_STORE_URL or sqlite:///tilerunner-state.db).",
)
broker_option = click.option(
    "--broker",
    "broker_url",
    default=None,
    help="Queue URL: sqlite:///, postgresql://, nats://, sqs://, amqp:// (default: the store URL).",
)


def resolve_urls(
    settings: Settings, store_url: str | None, broker_url: str | None
) -> tuple[str, str]:
    """The store and broker URLs: flags, else settings; the broker defaults to the store."""
    store = store_url or settings.store_url
    return store, broker_url or settings.broker_url or store
