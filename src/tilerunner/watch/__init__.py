"""Watched sources: objects that arrive in an S3 prefix or a folder become jobs, each once.

:class:`Watcher` runs the loop; a source (:func:`open_source`) finds the objects, a
:class:`JobTemplate` makes their job documents and a :class:`RollingPolicy` says which objects
share a job. docs/watch.md describes the guarantees.
"""

from tilerunner.watch.rolling import RollingPolicy, job_id_for
from tilerunner.watch.sources import Found, KeyFilter, ObjectSource, open_source
from tilerunner.watch.template import JobTemplate
from tilerunner.watch.watcher import Look, Watcher

__all__ = [
    "Found",
    "JobTemplate",
    "KeyFilter",
    "Look",
    "ObjectSource",
    "RollingPolicy",
    "Watcher",
    "job_id_for",
    "open_source",
]
