"""The region queue: one contract, engines chosen by URL, a memory fake for tests.

    >>> from tilerunner.broker import Message, open_queue
    >>> queue = open_queue("memory://", "regions")
    >>> queue.publish([Message("job1:img1:r0", b"{}")])
    1

``contract`` defines the value objects, the :class:`Queue` protocol and :class:`LeaseLostError`;
``engines`` maps URL schemes to implementations (``sqlite:///`` embedded, ``memory://`` fake).
"""

from tilerunner.broker.contract import (
    DeadLetter,
    Depth,
    Lease,
    LeaseLostError,
    Message,
    Queue,
)
from tilerunner.broker.engines import ENGINES, open_queue

__all__ = [
    "ENGINES",
    "DeadLetter",
    "Depth",
    "Lease",
    "LeaseLostError",
    "Message",
    "Queue",
    "open_queue",
]
