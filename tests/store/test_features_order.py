"""An image's features are read in their stable order (region, then insertion) straight from an
index, without sorting them all first; a database one revision behind gains that index."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, event, inspect
from tr_stores import store_url  # noqa: F401 - fixture

from tilerunner.store import FeatureRows, ImagePlan, Store, open_engine, open_store, upgrade
from tilerunner.store.database import schema_revisions
from tilerunner.store.revisions import MIGRATIONS, head_revision

_INDEX = "ix_features_job_image_region"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:  # noqa: F811
    opened = open_store(store_url)
    yield opened
    opened.engine.dispose()


def _feature_reads(store: Store) -> list[tuple[str, Any]]:
    """The statements (and parameters) ``Store.features`` sends to read one image."""
    plan = ImagePlan(0, "a.tif", "/data/a.tif", 100, 100, 2, [4, 2])
    assert store.create_job("j1", None, {}, [plan])
    rows = FeatureRows(
        boxes=np.array([[0, 0, 5, 5], [1, 1, 6, 6]], dtype=np.float64),
        scores=np.full(2, 0.9),
        class_ids=np.zeros(2, dtype=np.int64),
        labels=["car", "car"],
    )
    store.complete_region("j1", 0, 1, rows)
    store.complete_region("j1", 0, 0, rows)
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM features" in statement:
            sent.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        assert len(store.features("j1", 0)) == 4
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    assert len(sent) == 1
    return sent


def _plan(conn: Connection, statement: str, parameters: Any) -> str:
    """The database's plan of ``statement`` as one text."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
        return "\n".join(str(row[-1]) for row in rows)
    # a few rows would be read by a sequential scan: take it away to see what the index gives
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    return "\n".join(str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))


def test_an_images_features_are_read_in_order_from_the_index_without_a_sort(
    store: Store,
) -> None:
    [(statement, parameters)] = _feature_reads(store)
    with store.engine.begin() as conn:
        plan = _plan(conn, statement, parameters)
    assert _INDEX in plan, plan
    if store.engine.dialect.name == "sqlite":
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "Sort" not in plan, plan


def _config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def _feature_indexes(engine: Engine) -> dict[str, list[str | None]]:
    return {
        str(i["name"]): list(i["column_names"]) for i in inspect(engine).get_indexes("features")
    }


def test_a_database_at_the_previous_revision_gains_the_index(store_url: str) -> None:  # noqa: F811
    engine = open_engine(store_url)
    with engine.begin() as conn:
        command.upgrade(_config(conn), "0012")
    assert _feature_indexes(engine) == {"ix_features_job_image": ["job_id", "image_idx"]}
    upgrade(engine)
    assert schema_revisions(engine) == {head_revision()}
    assert _feature_indexes(engine) == {_INDEX: ["job_id", "image_idx", "region_idx", "id"]}
    [(statement, parameters)] = _feature_reads(Store(engine))
    with engine.begin() as conn:
        assert _INDEX in _plan(conn, statement, parameters)
        command.downgrade(_config(conn), "0012")
    assert _feature_indexes(engine) == {"ix_features_job_image": ["job_id", "image_idx"]}
    engine.dispose()
