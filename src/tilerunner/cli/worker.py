"""``tilerunner worker``: lease regions for the models it serves and process them."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import click

from tilerunner.cli.common import handle_errors, parse_params, queue_factory
from tilerunner.cli.options import broker_option, resolve_urls, store_option
from tilerunner.errors import InvalidRequestError
from tilerunner.jobs import queue_name
from tilerunner.models import load_model
from tilerunner.settings import Settings
from tilerunner.store import open_store
from tilerunner.worker import RegionContexts, Worker, WorkerOptions

__all__ = ["worker"]


def _model_args(values: tuple[str, ...]) -> dict[str, str]:
    models = {}
    for item in values:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise InvalidRequestError(
                f"--model {item!r} must be NAME=SPEC, e.g. --model det=zoo:yolov3-tiny-coco"
            )
        models[name] = spec
    return models


@click.command()
@store_option
@broker_option
@click.option("--model", "model_args", multiple=True, required=True, help="NAME=SPEC, repeatable.")
@click.option("--model-param", "model_params", multiple=True, help="key=value for every model.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1, 4096))
@click.option("--readers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--until-job", default=None, help="Exit once every region of this job finished.")
@click.pass_obj
@handle_errors
def worker(
    settings: Settings,
    store_url: str | None,
    broker_url: str | None,
    model_args: tuple[str, ...],
    model_params: tuple[str, ...],
    batch_size: int,
    readers: int,
    until_job: str | None,
) -> None:
    """Serve models: lease their regions, run them, record the results."""
    store_url, broker_url = resolve_urls(settings, store_url, broker_url)
    params = parse_params(model_params)
    specs = _model_args(model_args)
    models = {
        name: load_model(spec, params, name=name, cache_dir=settings.cache_dir)
        for name, spec in specs.items()
    }
    store = open_store(store_url)
    if until_job is not None and store.get_job(until_job) is None:
        raise InvalidRequestError(f"--until-job {until_job!r}: no such job in {store_url}")
    queue_for = queue_factory(broker_url, settings)
    options = WorkerOptions(
        batch_size=batch_size,
        readers=readers,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
    )
    runner = Worker(
        store,
        {name: queue_for(queue_name(name)) for name in models},
        models,
        RegionContexts(
            store,
            settings.gdal_env(),
            input_ranges={n: m.input_range for n, m in models.items() if m.input_range},
        ),
        options,
    )

    def _stop(signum: int, _frame: FrameType | None) -> None:
        if runner_stopping[0]:
            sys.exit(128 + signum)  # second signal: leave now, leases expire and are redelivered
        runner_stopping[0] = True
        runner.stop()

    runner_stopping = [False]
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    def _job_finished() -> bool:
        assert until_job is not None
        counts = store.counts(until_job)
        return counts.regions_finished >= counts.regions_total

    runner.run(until=_job_finished if until_job else None)
