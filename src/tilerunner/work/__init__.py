"""The work protocol: work items, the service that owns their life cycle, and worker sources.

``lease -> describe -> extend -> complete / fail`` lives in :class:`WorkService`; the worker
loop sees only a :class:`WorkSource` - :class:`DirectWorkSource` inside a cluster, or
:class:`~tilerunner.work.http.HttpWorkSource` through the API (imported from its module, so
that direct workers do not need httpx).
"""

from tilerunner.work.items import ITEM_KINDS, Assignment, RegionItem, WorkItem, parse_item
from tilerunner.work.results import ServedModel, WorkerReport, WorkResult
from tilerunner.work.service import WorkService, WorkServiceOptions
from tilerunner.work.source import DirectWorkSource, WorkSource
from tilerunner.work.tokens import decode_token, encode_token

__all__ = [
    "ITEM_KINDS",
    "Assignment",
    "DirectWorkSource",
    "RegionItem",
    "ServedModel",
    "WorkItem",
    "WorkResult",
    "WorkService",
    "WorkServiceOptions",
    "WorkSource",
    "WorkerReport",
    "decode_token",
    "encode_token",
    "parse_item",
]
