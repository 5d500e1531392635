"""``tilerunner serve``: the HTTP API and the coordinator (aggregation, callbacks, sweeps)."""

from __future__ import annotations

import ipaddress
import logging
import threading

import click

from tilerunner.cli.common import handle_errors, pass_settings, queue_factory
from tilerunner.cli.options import broker_option, resolve_urls, store_option
from tilerunner.cli.startup import started
from tilerunner.errors import InvalidRequestError
from tilerunner.settings import Settings

__all__ = ["serve"]

log = logging.getLogger(__name__)


def _check_loopback(host: str) -> None:
    """--insecure only on a loopback address: 127.0.0.0/8, ::1 or localhost."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InvalidRequestError(
            f"--insecure turns API keys off, so it is refused on --host {host}; use a loopback "
            "--host (127.0.0.1, ::1, localhost) or drop --insecure and create a key with "
            "'tilerunner keys create'"
        )


@click.command()
@store_option
@broker_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--sweep-seconds", default=30.0, show_default=True, type=float, help="Repair sweep period."
)
@click.option("--no-api", is_flag=True, help="Run only the coordinator loop.")
@click.option(
    "--insecure",
    is_flag=True,
    help="No API keys: every caller is an admin of project 'default'. Loopback --host only.",
)
@pass_settings
@handle_errors
def serve(settings: Settings, store_url: str | None, broker_url: str | None, host: str,
          port: int, sweep_seconds: float, no_api: bool, insecure: bool) -> None:  # fmt: skip
    """Run the API (OpenAPI at /docs) and the coordinator; migrates the store on start.

    Several serve processes may run against one store: aggregations are claimed once.
    """
    from tilerunner.coordinator import Coordinator
    from tilerunner.coordinator.callbacks import CallbackDispatcher
    from tilerunner.store import KeyRepository, open_store

    if insecure:
        _check_loopback(host)
    store_url, broker_url = resolve_urls(settings, store_url, broker_url)
    store = open_store(store_url)
    queue_for = queue_factory(broker_url, settings)
    callbacks = CallbackDispatcher(
        store, policy=settings.url_policy(), timeout=settings.callback_timeout_seconds,
        max_attempts=settings.callback_max_attempts,
    )  # fmt: skip
    coordinator = Coordinator(
        store, queue_for, env=settings.gdal_env(), s3_endpoint_url=settings.s3_endpoint_url,
        sweep_seconds=sweep_seconds, claim_seconds=settings.claim_seconds, callbacks=callbacks,
        lease_seconds=settings.lease_seconds,
    )  # fmt: skip
    stop = threading.Event()
    started()
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
    if not insecure and not no_api and not KeyRepository(store.engine).list_keys():
        log.warning(
            "no API keys yet: every request but /livez and /readyz is refused; create one with "
            "'tilerunner keys create --project default --scope admin'"
        )
    loop = threading.Thread(target=coordinator.run, args=(stop,), name="coordinator", daemon=True)
    loop.start()
    try:
        uvicorn.run(
            create_app(settings, store, queue_for, insecure=insecure),
            host=host,
            port=port,
            log_level="warning",
        )
    finally:
        stop.set()
        loop.join(timeout=30)
