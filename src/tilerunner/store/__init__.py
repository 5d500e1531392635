"""The state database: SQLAlchemy tables, migrations and the repository.

The names below are imported on first use (PEP 562): a module of this package that needs no
SQLAlchemy (:mod:`~tilerunner.store.revisions`, :mod:`~tilerunner.store.sqlite_jobs`) is
imported without it, which keeps ``tilerunner status`` quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tilerunner.lazy import exports_on_use

if TYPE_CHECKING:
    from tilerunner.store.database import open_engine, sqlite_path, upgrade
    from tilerunner.store.keys import ApiKeyRecord, KeyRepository
    from tilerunner.store.records import (
        Counts,
        FeatureRows,
        ImagePlan,
        ImageRecord,
        JobError,
        JobRecord,
        OutboxItem,
    )
    from tilerunner.store.repository import Store
    from tilerunner.store.results import ImageResults

__all__ = [
    "ApiKeyRecord",
    "Counts",
    "FeatureRows",
    "ImagePlan",
    "ImageRecord",
    "ImageResults",
    "JobError",
    "JobRecord",
    "KeyRepository",
    "OutboxItem",
    "Store",
    "open_engine",
    "open_store",
    "sqlite_path",
    "upgrade",
]

#: Where each name lives.
_HOMES = {
    "open_engine": "database",
    "sqlite_path": "database",
    "upgrade": "database",
    "ApiKeyRecord": "keys",
    "KeyRepository": "keys",
    "Counts": "records",
    "FeatureRows": "records",
    "ImagePlan": "records",
    "ImageRecord": "records",
    "JobError": "records",
    "JobRecord": "records",
    "OutboxItem": "records",
    "Store": "repository",
    "ImageResults": "results",
}


__getattr__ = exports_on_use(__name__, _HOMES)


def open_store(url: str, *, migrate: bool = True) -> Store:
    """Open the store at ``url`` and (by default) bring its schema up to date."""
    from tilerunner.store.database import open_engine, upgrade
    from tilerunner.store.repository import Store

    engine = open_engine(url)
    if migrate:
        upgrade(engine)
    return Store(engine)
