"""SQLAlchemy table definitions: the system of record.

The database, not the broker, is the truth: a region is done when its row says so, and its
features were written in the same transaction that flipped it.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "api_keys",
    "empty_crops",
    "events",
    "features",
    "images",
    "jobs",
    "metadata",
    "outbox",
    "regions",
    "results",
    "tile_batches",
    "tile_failures",
    "watched_objects",
    "workers",
]

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255)),
    Column("spec", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("images_total", Integer, nullable=False, default=0),
    Column("images_finished", Integer, nullable=False, default=0, server_default="0"),
    Column("regions_total", Integer, nullable=False, default=0),
    Column("tiles_total", BigInteger, nullable=False, default=0),
    Column("outputs", JSON),
    Column("error", Text),
    Column("project", String(64), nullable=False, server_default="default"),
    Index("ix_jobs_project_created", "project", "created_at"),
)

images = Table(
    "images",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("source_id", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("width", Integer),
    Column("height", Integer),
    Column("region_tiles", Integer),
    Column("regions_total", Integer, nullable=False, default=0),
    Column("regions_finished", Integer, nullable=False, default=0, server_default="0"),
    Column("tiles_total", BigInteger, nullable=False, default=0),
    Column("state", String(16), nullable=False),
    Column("error", Text),
    Column("georef", JSON),  # what planning read from the header: size, bands, CRS, transform...
    Column("meta", JSON),  # what a photo's source says about it: event, lon/lat
    ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
)

regions = Table(
    "regions",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("image_idx", Integer, primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("state", String(16), nullable=False),
    Column("n_tiles", Integer, nullable=False),
    Column("n_features", Integer, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("worker", String(255)),
    Column("finished_at", Float),
    ForeignKeyConstraint(
        ["job_id", "image_idx"], ["images.job_id", "images.idx"], ondelete="CASCADE"
    ),
    Index("ix_regions_job_state", "job_id", "state"),
)

features = Table(
    "features",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False),
    Column("image_idx", Integer, nullable=False),
    Column("region_idx", Integer, nullable=False),
    Column("class_id", Integer, nullable=False),
    Column("label", String(128), nullable=False),
    Column("score", Float, nullable=False),
    Column("x0", Float, nullable=False),
    Column("y0", Float, nullable=False),
    Column("x1", Float, nullable=False),
    Column("y1", Float, nullable=False),
    Column("extra", JSON),
    # an image's features in their read order (region, then insertion): no sort to read them
    Index("ix_features_job_image_region", "job_id", "image_idx", "region_idx", "id"),
)

results = Table(
    "results",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("image_idx", Integer, primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("class_id", Integer, nullable=False),
    Column("label", String(128), nullable=False),
    Column("score", Float, nullable=False),
    Column("x0", Float, nullable=False),
    Column("y0", Float, nullable=False),
    Column("x1", Float, nullable=False),
    Column("y1", Float, nullable=False),
    Column("geometry", JSON),
    Column("extra", JSON),
    ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("image_idx", Integer),
    Column("region_idx", Integer),
    Index("ix_events_job", "job_id", "id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("claimed_by", String(255)),
    Column("claimed_until", Float),
    Column("done_at", Float),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("next_attempt_at", Float),
    Column("last_error", Text),
    UniqueConstraint("job_id", "kind", name="uq_outbox_job_kind"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("models", JSON, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("leases_held", Integer, nullable=False, default=0),
    Column("tiles_done", BigInteger, nullable=False, default=0),
    Column("regions_done", Integer, nullable=False, default=0),
    Column("tiles_per_second", Float, nullable=False, default=0.0),
    Column("version", String(64)),
    Column("gpu", String(255)),
    Column("model_info", JSON),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(255)),
    Column("project", String(64), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
    UniqueConstraint("hash", name="uq_api_keys_hash"),
)

# tiles that failed alone: the region is done with its other tiles' features
tile_failures = Table(
    "tile_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False),
    Column("image_idx", Integer, nullable=False),
    Column("region_idx", Integer, nullable=False),
    Column("col_off", Integer, nullable=False),
    Column("row_off", Integer, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("code", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("at", Float, nullable=False),
    ForeignKeyConstraint(
        ["job_id", "image_idx", "region_idx"],
        ["regions.job_id", "regions.image_idx", "regions.idx"],
        ondelete="CASCADE",
    ),
    Index("ix_tile_failures_region", "job_id", "image_idx", "region_idx"),
)

# objects a watched source (``tilerunner watch``) has taken, each once, and the job it went into
watched_objects = Table(
    "watched_objects",
    metadata,
    Column("watch", String(255), primary_key=True),
    Column("key", String(1024), primary_key=True),
    Column("version", String(128), primary_key=True),
    Column("url", Text, nullable=False),
    Column("size", BigInteger),
    Column("seen_at", Float, nullable=False),
    Column("job_id", String(64)),
    Column("submitted_at", Float),  # when its job was made (or POSTed to a remote API)
    Index("ix_watched_objects_job", "watch", "job_id"),
)

# the XYZ tiles of each work item of a tile job ("x-y x-y ..." of the item's zoom level)
tile_batches = Table(
    "tile_batches",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("image_idx", Integer, primary_key=True),
    Column("region_idx", Integer, primary_key=True),
    Column("tiles", Text, nullable=False),
    ForeignKeyConstraint(
        ["job_id", "image_idx", "region_idx"],
        ["regions.job_id", "regions.image_idx", "regions.idx"],
        ondelete="CASCADE",
    ),
)

# the crops of a photo job's later stage that gave nothing (a detect stage finding no object in
# them): cropped, so a reopened item does not crop them again (a crop with results is known by
# its results' ``parent``, a failed one by its ``tile_failures`` row)
empty_crops = Table(
    "empty_crops",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("image_idx", Integer, primary_key=True),
    Column("region_idx", Integer, primary_key=True),
    Column("key", String(255), primary_key=True),
    ForeignKeyConstraint(
        ["job_id", "image_idx", "region_idx"],
        ["regions.job_id", "regions.image_idx", "regions.idx"],
        ondelete="CASCADE",
    ),
)
