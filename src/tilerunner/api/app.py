"""The HTTP API (FastAPI; OpenAPI at /docs): jobs, models, workers, metrics, health.

Every route but ``/livez``, ``/readyz``, ``/docs`` and ``/openapi.json`` needs an API key (see
:mod:`tilerunner.api.deps`). Routers live one per resource in :mod:`tilerunner.api.routers`;
the optional ones (the worker pull protocol, compatibility routes) are included when their
module is installed, and the app's collaborators are on ``app.state``: ``store``, ``settings``,
``queue_for``, ``insecure`` and ``keys``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from fastapi import Depends, FastAPI

from tilerunner import __version__
from tilerunner.api.deps import get_caller
from tilerunner.api.errors import install_error_handlers
from tilerunner.api.limits import BodyLimit
from tilerunner.api.routers import health, jobs, models, workers
from tilerunner.coordinator import QueueFor
from tilerunner.settings import Settings
from tilerunner.store import KeyRepository, Store

__all__ = ["OPTIONAL_ROUTERS", "create_app"]

#: Router modules included only when present; each still needs an API key on every route.
OPTIONAL_ROUTERS = ("tilerunner.api.routers.work", "tilerunner.api.routers.compat")

_DESCRIPTION = (
    "Run machine-learning models over imagery of any size. Send an API key from "
    "`tilerunner keys create` as `Authorization: Bearer <key>` (or `X-API-Key`)."
)


def _optional(name: str) -> ModuleType | None:
    """The module ``name``, or None if exactly that module is not there."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name == name:
            return None
        raise


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
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    for module in (health, jobs, models, workers):
        app.include_router(module.router)
    for name in OPTIONAL_ROUTERS:
        optional = _optional(name)
        if optional is not None:
            app.include_router(optional.router, dependencies=[Depends(get_caller)])
    return app
