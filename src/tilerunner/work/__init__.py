"""The work protocol: work items, the service that owns their life cycle, and worker sources.

``lease -> describe -> extend -> complete / fail`` lives in
:class:`~tilerunner.work.service.WorkService`; the worker loop sees only a :class:`WorkSource`:
:class:`~tilerunner.work.direct.DirectWorkSource` inside a cluster, or
:class:`~tilerunner.work.http.HttpWorkSource` through the API. This package root exports what
a worker needs and nothing that opens the store or the broker; the service, the direct source
and the lease tokens are imported from their modules.
"""

from tilerunner.work.items import (
    ITEM_KINDS,
    Assignment,
    RegionItem,
    TileBatchItem,
    WorkItem,
    parse_item,
)
from tilerunner.work.results import ServedModel, WorkerReport, WorkResult
from tilerunner.work.source import WorkSource

__all__ = [
    "ITEM_KINDS",
    "Assignment",
    "RegionItem",
    "ServedModel",
    "TileBatchItem",
    "WorkItem",
    "WorkResult",
    "WorkSource",
    "WorkerReport",
    "parse_item",
]
