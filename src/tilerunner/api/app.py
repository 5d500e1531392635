"""The HTTP API (FastAPI; OpenAPI at /docs): jobs, models, workers, metrics, health.

Every route but ``/livez``, ``/readyz``, ``/docs`` and ``/openapi.json`` needs an API key (see
:mod:`tilerunner.api.deps`). Routers live one per resource in :mod:`tilerunner.api.routers`
(jobs, models, workers, health, the worker pull protocol, the compatibility routes), and the
app's collaborators are on ``app.state``: ``store``, ``settings``, ``queue_for``, ``insecure``
and ``keys``.
"""

from __future__ import annotations

from fastapi import FastAPI

from tilerunner import __version__
from tilerunner.api.errors import install_error_handlers
from tilerunner.api.limits import BodyLimit
from tilerunner.api.routers import compat, health, jobs, models, work, workers
from tilerunner.coordinator import QueueFor
from tilerunner.settings import Settings
from tilerunner.store import KeyRepository, Store

__all__ = ["create_app"]

_DESCRIPTION = (
    "Run machine-learning models over imagery of any size. Send an API key from "
    "`tilerunner keys create` as `Authorization: Bearer <key>` (or `X-API-Key`)."
)


def create_app(
    settings: Settings, store: Store, queue_for: QueueFor, *, insecure: bool = False
) -> FastAPI:
    """Build the API over an open store and a queue factory (composition root: ``serve``).

    ``insecure`` turns authentication off: every caller is an admin of project ``default``
    (``serve`` allows it on a loopback address only).
    """
    app = FastAPI(title="tilerunner", version=__version__, description=_DESCRIPTION)
    app.state.store = store
    app.state.settings = settings
    app.state.queue_for = queue_for
    app.state.insecure = insecure
    app.state.keys = KeyRepository(store.engine)
    install_error_handlers(app)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        prefixes={"/v1/work/": (settings.max_work_body_bytes, "TILERUNNER_MAX_WORK_BODY_BYTES")},
    )
    for module in (health, jobs, models, workers, work, compat):
        app.include_router(module.router)
    return app
