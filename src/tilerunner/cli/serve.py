"""``tilerunner serve``: the HTTP API and the coordinator (aggregation, repair sweeps)."""

from __future__ import annotations

import logging
import threading

import click

from tilerunner.cli.common import handle_errors, queue_factory
from tilerunner.cli.options import broker_option, resolve_urls, store_option
from tilerunner.coordinator import Coordinator
from tilerunner.errors import InvalidRequestError
from tilerunner.settings import Settings
from tilerunner.store import open_store

__all__ = ["serve"]

log = logging.getLogger(__name__)


@click.command()
@store_option
@broker_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--sweep-seconds", default=30.0, show_default=True, type=float, help="Repair sweep period."
)
@click.option("--no-api", is_flag=True, help="Run only the coordinator loop.")
@click.pass_obj
@handle_errors
def serve(settings: Settings, store_url: str | None, broker_url: str | None, host: str,
          port: int, sweep_seconds: float, no_api: bool) -> None:  # fmt: skip
    """Run the API (OpenAPI at /docs) and the coordinator; migrates the store on start.

    Several serve processes may run against one store: aggregations are claimed once.
    """
    store_url, broker_url = resolve_urls(settings, store_url, broker_url)
    store = open_store(store_url)
    queue_for = queue_factory(broker_url, settings)
    coordinator = Coordinator(
        store, queue_for, env=settings.gdal_env(), s3_endpoint_url=settings.s3_endpoint_url,
        sweep_seconds=sweep_seconds,
    )  # fmt: skip
    stop = threading.Event()
    if no_api:
        try:
            coordinator.run(stop)
        except KeyboardInterrupt:
            stop.set()
        return
    try:
        import uvicorn

        from tilerunner.api import create_app
    except ImportError:
        raise InvalidRequestError(
            "the API needs the server extra: pip install 'tilerunner[server]' (or use --no-api)"
        ) from None
    loop = threading.Thread(target=coordinator.run, args=(stop,), name="coordinator", daemon=True)
    loop.start()
    try:
        uvicorn.run(
            create_app(settings, store, queue_for), host=host, port=port, log_level="warning"
        )
    finally:
        stop.set()
        loop.join(timeout=30)
