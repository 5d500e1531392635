"""The state database: SQLAlchemy tables, migrations and the repository."""

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


def open_store(url: str, *, migrate: bool = True) -> Store:
    """Open the store at ``url`` and (by default) bring its schema up to date."""
    engine = open_engine(url)
    if migrate:
        upgrade(engine)
    return Store(engine)
