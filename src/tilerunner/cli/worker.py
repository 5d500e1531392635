"""``tilerunner worker``: lease work for the models it serves and process it.

Inside a cluster a worker reaches the store and the broker directly (``--store``/``--broker``);
a worker that can only dial out (a SLURM job, a box behind a firewall) pulls its work from a
``tilerunner serve`` over HTTP (``--api URL --token KEY``). Both run the same loop.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

import click

from tilerunner.cli.common import handle_errors, parse_params, pass_settings, queue_factory
from tilerunner.cli.options import broker_option, resolve_urls, store_option
from tilerunner.cli.startup import started
from tilerunner.errors import InvalidRequestError
from tilerunner.settings import Settings

if TYPE_CHECKING:
    from tilerunner.models import LoadedModel
    from tilerunner.store import Store
    from tilerunner.work import WorkSource
    from tilerunner.worker import WorkerOptions

__all__ = ["worker"]

log = logging.getLogger(__name__)

_LONG_POLL = 10.0
# with --until-job the loop checks the job between lease calls: short polls let it leave promptly
_UNTIL_POLL = 1.0


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


def direct_source(settings: Settings, store_url: str | None, broker_url: str | None,
                  until_job: str | None, store: Store | None = None) -> WorkSource:  # fmt: skip
    """A source that leases from the store and broker directly (``--store``/``--broker``);
    ``store``: the store at ``store_url``, already open (a ``run``'s own, for its thread)."""
    from tilerunner.store import open_store
    from tilerunner.work.direct import DirectWorkSource
    from tilerunner.work.service import WorkService, WorkServiceOptions

    store_url, broker_url = resolve_urls(settings, store_url, broker_url)
    owned = store is None  # closed with the source; a store handed in stays its owner's
    if store is None:
        store = open_store(store_url)
    if until_job is not None and store.get_job(until_job) is None:
        raise InvalidRequestError(f"--until-job {until_job!r}: no such job in {store_url}")
    queues = queue_factory(broker_url, settings)
    service = WorkService(
        store,
        queues,
        WorkServiceOptions(
            lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts
        ),
    )

    def release() -> None:  # once the worker stopped: its connections close with it
        queues.close()
        if owned:
            store.engine.dispose()

    return DirectWorkSource(service, release)


def worker_options(
    settings: Settings, batch_size: int | None, readers: int, wait_seconds: float
) -> WorkerOptions:
    """The worker loop's options: the command's flags, the rest from ``settings``."""
    from tilerunner.worker import WorkerOptions

    return WorkerOptions(
        batch_size=batch_size,
        readers=readers,
        lease_seconds=settings.lease_seconds,
        wait_seconds=wait_seconds,
        read_retries=settings.read_retries,
        strip_bytes=settings.read_strip_mb * 2**20,
        fetch=settings.fetch_options(),
        s3_endpoint_url=settings.s3_endpoint_url,
    )


def _load_models(
    specs: dict[str, str], params: dict[str, str], settings: Settings
) -> dict[str, LoadedModel]:
    from tilerunner.models import load_model

    return {
        name: load_model(spec, params, name=name, cache_dir=settings.cache_dir)
        for name, spec in specs.items()
    }


@click.command()
@store_option
@broker_option
@click.option("--api", "api_url", default=None,
              help="Pull work from this tilerunner API over HTTP instead of --store/--broker "
                   "(default $TILERUNNER_API_URL).")  # fmt: skip
@click.option("--token", default=None, help="Key with the worker scope for --api "
              "(default $TILERUNNER_API_TOKEN).")  # fmt: skip
@click.option("--model", "model_args", multiple=True, required=True, help="NAME=SPEC, repeatable.")
@click.option("--model-param", "model_params", multiple=True, help="key=value for every model.")
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(1, 4096),
    help="Tiles per model call (default: 8; 2 for segmentation models).",
)
@click.option("--readers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--until-job",
    default=None,
    help="Exit once every region of this job finished; '-' reads the job id from standard "
    "input once the models are loaded (an empty line: exit at once).",
)
@pass_settings
@handle_errors
def worker(
    settings: Settings,
    store_url: str | None,
    broker_url: str | None,
    api_url: str | None,
    token: str | None,
    model_args: tuple[str, ...],
    model_params: tuple[str, ...],
    batch_size: int | None,
    readers: int,
    until_job: str | None,
) -> None:
    """Serve models: lease their work, run them, record the results."""
    from tilerunner.worker import Worker

    api_url = api_url or settings.api_url
    if api_url and (store_url or broker_url):
        raise InvalidRequestError(
            "give either --api (pull work over HTTP) or --store/--broker (direct), not both"
        )
    params = parse_params(model_params)
    specs = _model_args(model_args)
    models: dict[str, LoadedModel] = {}
    if until_job == "-":
        # started before its job is planned (``tilerunner run``): the interpreter's imports and
        # the model load overlap the planning, and the store is opened once the job exists
        models = _load_models(specs, params, settings)
        for module in ("tilerunner.store", "tilerunner.work.direct", "tilerunner.work.service"):
            importlib.import_module(module)  # imported while the job is planned, not after
        log.debug("worker: models loaded; waiting for the job id")
        until_job = sys.stdin.readline().strip()
        if not until_job:
            log.debug("worker: no job to wait for; leaving")
            return
    source: WorkSource
    if api_url:
        try:
            from tilerunner.work.http import HttpWorkSource
        except ImportError:
            raise InvalidRequestError(
                "pulling work over HTTP needs httpx: pip install 'tilerunner[client]'"
            ) from None

        source = HttpWorkSource(api_url, token or settings.api_token or "")
    else:
        source = direct_source(settings, store_url, broker_url, until_job)
    models = models or _load_models(specs, params, settings)
    wait = (_UNTIL_POLL if until_job else _LONG_POLL) if api_url else 0.0
    options = worker_options(settings, batch_size, readers, wait)
    runner = Worker(source, models, options, env=settings.gdal_env())

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
        return source.job_finished(until_job)

    log.debug("worker: ready, serving %s", ", ".join(sorted(models)))
    started()
    runner.run(until=_job_finished if until_job else None)
