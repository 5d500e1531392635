"""Queue engines chosen by URL scheme, imported only when a URL asks for them.

``ENGINES`` maps a scheme to a ``"module:Class"`` path, so ``import tilerunner.broker`` never
imports a cluster client library, and a missing optional dependency surfaces only for the user
who asked for that engine, with the install command in the message. The class must provide
``from_url(url, name, *, max_attempts, clock)`` (see ``contract.QueueEngine``).

Third-party packages add engines through the ``tilerunner.queue_engines`` entry-point group
(``scheme = "package.module:Class"``); the built-in table wins on a clash.
"""

from __future__ import annotations

import importlib
import logging
import time
from importlib.metadata import entry_points
from typing import cast

from tilerunner.broker.contract import (
    Clock,
    Queue,
    QueueEngine,
    check_max_attempts,
    check_queue_name,
)
from tilerunner.errors import InvalidRequestError, UnknownNameError

__all__ = ["ENGINES", "ENTRY_POINT_GROUP", "load_engine", "open_queue"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "tilerunner.queue_engines"

ENGINES: dict[str, str] = {
    "sqlite": "tilerunner.broker.sqlite:SQLiteQueue",
    "memory": "tilerunner.broker.memory:MemoryQueue",
    "postgresql": "tilerunner.broker.postgres:PostgresQueue",
    "nats": "tilerunner.broker.jetstream:JetStreamQueue",
    "sqs": "tilerunner.broker.sqs:SQSQueue",
    "amqp": "tilerunner.broker.rabbitmq:RabbitQueue",
    "amqps": "tilerunner.broker.rabbitmq:RabbitQueue",
}

_EXAMPLES = (
    "e.g. 'sqlite:///state.db', 'postgresql://host/db', 'nats://host:4222', "
    "'sqs://?region=eu-west-1', 'amqp://guest:guest@host:5672/' or 'memory://'"
)


def open_queue(
    url: str,
    name: str,
    *,
    max_attempts: int = 3,
    clock: Clock = time.time,
) -> Queue:
    """Open queue ``name`` on the engine that ``url``'s scheme designates.

    ``sqlite+pysqlite://`` style driver suffixes are accepted and ignored when picking the engine,
    so a store URL can be reused as the queue URL.
    """
    check_queue_name(name)
    check_max_attempts(max_attempts)
    engine = load_engine(_scheme(url))
    queue = engine.from_url(url, name, max_attempts=max_attempts, clock=clock)
    log.debug("opened queue %s on %s", name, type(queue).__name__)
    return queue


def load_engine(scheme: str) -> type[QueueEngine]:
    """Import the engine class for ``scheme``, with a useful error when that is impossible."""
    known = dict(_third_party_engines())
    known.update(ENGINES)
    target = known.get(scheme)
    if target is None:
        raise UnknownNameError("queue engine", scheme, known, hint=f"use a URL {_EXAMPLES}")
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidRequestError(
            f"queue engine {scheme!r} cannot be loaded ({exc}); install the optional "
            f"dependency it needs, e.g. pip install 'tilerunner[{scheme}]'"
        ) from exc
    engine = getattr(module, attribute, None)
    if engine is None or not hasattr(engine, "from_url"):
        raise InvalidRequestError(
            f"queue engine {scheme!r} points at {target!r}, which is not a class with from_url(); "
            "fix the engine registration"
        )
    return cast("type[QueueEngine]", engine)


def _scheme(url: str) -> str:
    """The engine part of the URL's scheme, lower-cased; a URL without one is rejected."""
    if not isinstance(url, str) or "://" not in url:
        raise InvalidRequestError(f"queue URL {url!r} has no scheme; write it as {_EXAMPLES}")
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if not scheme:
        raise InvalidRequestError(f"queue URL {url!r} has an empty scheme; write it as {_EXAMPLES}")
    return scheme


def _third_party_engines() -> list[tuple[str, str]]:
    """Engines other packages register under the entry-point group."""
    return [(ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP)]
