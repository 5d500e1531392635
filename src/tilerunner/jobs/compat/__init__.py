"""Requests of peer systems, mapped to native job documents (pure: no I/O).

:mod:`~tilerunner.jobs.compat.osml` takes OversightML ModelRunner image requests and
:mod:`~tilerunner.jobs.compat.antenna` takes Antenna pipeline requests; each has pydantic models
of the peer's request, ``parse_request``, ``to_job_document`` (whose result
:func:`tilerunner.jobs.parse_job` accepts) and ``peer_fields`` (the peer's ids, for the answer).
A request that cannot be mapped raises :class:`~tilerunner.errors.InvalidRequestError` naming
the field as the peer spells it. See docs/compat.md.
"""

from tilerunner.jobs.compat import antenna, osml
from tilerunner.jobs.compat.common import ModelMap, StageTarget

__all__ = ["ModelMap", "StageTarget", "antenna", "osml"]
