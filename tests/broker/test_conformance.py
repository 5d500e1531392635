"""The queue contract, checked against every engine in ``conftest.ENGINE_CASES``.

Time runs on the engine's timeline (``engine.t``, ``engine.advance``): a ``FakeClock`` for
engines that take an injected clock, real sleeps of short ticks for engines whose server keeps
time. The cross-process tests and one real-sleep expiry test always use the wall clock, because
a child process cannot share a fake one.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from tilerunner.broker import Depth, LeaseLostError, Message
from tilerunner.broker.contract import expiry_reason
from tilerunner.errors import InvalidRequestError, QueueError, RetryableError

from . import _children
from .conftest import Engine


def messages(*ids: str) -> list[Message]:
    return [Message(i, f"body of {i}".encode()) for i in ids]


def test_publish_lease_ack(engine: Engine) -> None:
    queue = engine.open()
    assert queue.publish(messages("a", "b", "c")) == 3
    before = engine.now()
    leases = queue.lease(10, visibility=engine.t(30))
    assert sorted((le.message_id, le.body) for le in leases) == [
        ("a", b"body of a"),
        ("b", b"body of b"),
        ("c", b"body of c"),
    ]
    assert all(le.attempt == 1 for le in leases)
    assert all(le.expires_at == engine.expires_about(before + engine.t(30)) for le in leases)
    assert len({le.receipt for le in leases}) == 3
    for lease in leases:
        queue.ack(lease)
    assert queue.depth() == Depth(visible=0, in_flight=0, delayed=0, dead=0)
    assert queue.lease(10, visibility=engine.t(30)) == []


def test_publish_deduplicates_by_id_until_acked(engine: Engine) -> None:
    if not engine.case.dedupes_publish:
        pytest.skip(
            f"{engine.case.id} cannot refuse a re-published id until it is acked "
            f"(docs/engines/{engine.case.id}.md); region completion is idempotent instead"
        )
    queue = engine.open(max_attempts=1)
    assert queue.publish(messages("a", "b")) == 2
    assert queue.publish([*messages("a", "c"), Message("c", b"other")]) == 1
    leases = {le.message_id: le for le in queue.lease(10, engine.t(30))}
    assert sorted(leases) == ["a", "b", "c"]
    assert leases["c"].body == b"body of c"
    assert queue.publish(messages("a")) == 0  # leased: still present
    queue.nack(leases["b"], reason="broken")  # max_attempts=1 -> dead
    assert queue.publish(messages("b")) == 0  # dead: still present
    queue.ack(leases["a"])
    assert queue.publish(messages("a")) == 1  # acked and gone: publishable again
    assert queue.depth() == Depth(visible=1, in_flight=1, delayed=0, dead=1)


def test_lease_never_hands_out_a_leased_message(engine: Engine) -> None:
    queue = engine.open()
    queue.publish(messages("a", "b", "c", "d", "e"))
    first = {le.message_id for le in queue.lease(3, engine.t(30))}
    second = {le.message_id for le in queue.lease(10, engine.t(30))}
    assert len(first) == 3 and len(second) == 2
    assert first.isdisjoint(second) and first | second == set("abcde")
    assert queue.lease(10, engine.t(30)) == []
    assert queue.lease(0, engine.t(30)) == []


def test_threads_leasing_one_queue_share_without_duplicates(engine: Engine) -> None:
    queue = engine.open()
    ids = [f"m{i:03d}" for i in range(200)]
    queue.publish(messages(*ids))
    got: list[list[str]] = [[] for _ in range(4)]

    def drain(slot: list[str]) -> None:
        while batch := queue.lease(3, engine.t(30)):
            slot.extend(le.message_id for le in batch)

    threads = [threading.Thread(target=drain, args=(slot,)) for slot in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    delivered = [i for slot in got for i in slot]
    assert sorted(delivered) == ids  # each exactly once


def test_thousand_messages_leased_in_batches_of_ten(engine: Engine) -> None:
    queue = engine.open()
    ids = [f"job:img:{i}" for i in range(1000)]
    assert queue.publish(messages(*ids)) == 1000
    batches = []
    while batch := queue.lease(10, 60.0):
        batches.append(batch)
    assert [len(b) for b in batches] == [10] * 100
    assert sorted(le.message_id for b in batches for le in b) == sorted(ids)
    assert queue.depth() == Depth(visible=0, in_flight=1000, delayed=0, dead=0)


def test_expired_lease_is_redelivered_with_next_attempt(engine: Engine) -> None:
    queue = engine.open()
    queue.publish(messages("a"))
    (first,) = queue.lease(1, visibility=engine.t(4))
    engine.advance(3)
    assert queue.lease(1, engine.t(4)) == []
    engine.advance(2)
    assert queue.depth().visible == 1
    (second,) = queue.lease(1, visibility=engine.t(4))
    assert (second.message_id, second.body, second.attempt) == ("a", b"body of a", 2)
    assert second.receipt != first.receipt


def test_extend_keeps_message_invisible_past_original_expiry(engine: Engine) -> None:
    queue = engine.open()
    queue.publish(messages("a"))
    (lease,) = queue.lease(1, visibility=engine.t(4))
    engine.advance(2)
    extended = queue.extend(lease, visibility=engine.t(5))
    assert extended.expires_at == engine.expires_about(engine.now() + engine.t(5))
    assert (extended.message_id, extended.receipt, extended.attempt) == ("a", lease.receipt, 1)
    engine.advance(3)  # past the original expiry, before the extended one
    assert queue.lease(1, engine.t(4)) == []
    assert queue.depth() == Depth(visible=0, in_flight=1, delayed=0, dead=0)
    queue.ack(extended)
    assert queue.depth().total == 0


def test_stale_receipt_cannot_extend_ack_or_nack(engine: Engine) -> None:
    queue = engine.open()
    queue.publish(messages("a"))
    (stale,) = queue.lease(1, visibility=engine.t(2))
    engine.advance(3)
    (current,) = queue.lease(1, visibility=engine.t(10))
    with pytest.raises(LeaseLostError, match="no longer held"):
        queue.extend(stale, engine.t(10))
    with pytest.raises(LeaseLostError):
        queue.ack(stale)
    with pytest.raises(LeaseLostError):
        queue.nack(stale, reason="late")
    assert issubclass(LeaseLostError, RetryableError)
    queue.ack(current)  # the redelivered copy is untouched by the stale attempts
    with pytest.raises(LeaseLostError):
        queue.ack(current)  # acked and gone


def test_nack_with_delay_hides_message_until_delay_passes(engine: Engine) -> None:
    queue = engine.open()
    queue.publish(messages("a"))
    (lease,) = queue.lease(1, engine.t(30))
    queue.nack(lease, delay=engine.t(4), reason="busy")
    assert queue.depth() == Depth(visible=0, in_flight=0, delayed=1, dead=0)
    engine.advance(3)
    assert queue.lease(1, engine.t(30)) == []
    engine.advance(2)
    (again,) = queue.lease(1, engine.t(30))
    assert (again.message_id, again.attempt) == ("a", 2)


def test_nack_without_delay_is_visible_at_once(engine: Engine) -> None:
    queue = engine.open()
    queue.publish(messages("a"))
    (lease,) = queue.lease(1, engine.t(30))
    queue.nack(lease)
    (again,) = queue.lease(1, engine.t(30))
    assert (again.message_id, again.attempt) == ("a", 2)


def test_dead_letter_after_max_attempts_via_nack(engine: Engine) -> None:
    queue = engine.open(max_attempts=2)
    queue.publish(messages("a"))
    (lease,) = queue.lease(1, engine.t(30))
    queue.nack(lease, reason="model raised: first")
    engine.advance(1)
    (lease,) = queue.lease(1, engine.t(30))
    assert lease.attempt == 2
    died = engine.now()
    queue.nack(lease, delay=engine.t(2), reason="model raised: second")
    engine.advance(3)
    assert queue.lease(1, engine.t(30)) == []
    assert queue.depth() == Depth(visible=0, in_flight=0, delayed=0, dead=1)
    (dead,) = queue.dead_letters()
    assert (dead.message_id, dead.body, dead.attempts) == ("a", b"body of a", 2)
    assert dead.reason == "model raised: second"
    assert dead.died_at == engine.expires_about(died)


def test_dead_letter_after_repeated_lease_expiry(engine: Engine) -> None:
    queue = engine.open(max_attempts=3)
    queue.publish(messages("a"))
    for attempt in (1, 2, 3):
        leases = queue.lease(1, visibility=engine.t(2))
        assert [(le.message_id, le.attempt) for le in leases] == [("a", attempt)]
        engine.advance(3)  # the worker died: the lease expires
    queue.publish(messages("b"))
    # "a" used its last attempt; the next lease dead-letters it and hands out "b" instead
    assert queue.depth().dead == 1
    assert [le.message_id for le in queue.lease(5, engine.t(10))] == ["b"]
    (dead,) = queue.dead_letters()
    assert dead.message_id == "a" and dead.attempts == 3
    assert dead.reason == expiry_reason(3) == "lease expired 3 times (worker died or was too slow)"
    assert dead.died_at <= engine.now()


def test_requeue_dead_resets_attempts(engine: Engine) -> None:
    queue = engine.open(max_attempts=1)
    queue.publish(messages("a", "b"))
    for lease in queue.lease(2, engine.t(30)):
        queue.nack(lease, reason="bad")
    assert queue.depth().dead == 2
    assert queue.requeue_dead(["a", "missing"]) == 1
    (lease,) = queue.lease(5, engine.t(30))
    assert (lease.message_id, lease.attempt) == ("a", 1)
    assert [d.message_id for d in queue.dead_letters()] == ["b"]
    assert queue.requeue_dead() == 1
    assert queue.requeue_dead() == 0
    assert queue.depth() == Depth(visible=1, in_flight=1, delayed=0, dead=0)


def test_depth_counts_each_state(engine: Engine) -> None:
    queue = engine.open(max_attempts=2)
    queue.publish(messages("dead"))
    for _ in range(2):
        (lease,) = queue.lease(1, engine.t(30))
        queue.nack(lease, reason="fails")
    queue.publish(messages("delayed"))
    (lease,) = queue.lease(1, engine.t(30))
    queue.nack(lease, delay=engine.t(3))
    queue.publish(messages("f1", "f2"))
    assert len(queue.lease(2, visibility=engine.t(100))) == 2
    queue.publish(messages("v1", "v2", "v3"))
    assert queue.depth() == Depth(visible=3, in_flight=2, delayed=1, dead=1)
    engine.advance(4)
    assert queue.depth() == Depth(visible=4, in_flight=2, delayed=0, dead=1)
    assert queue.purge() == 7
    assert queue.depth().total == 0


def test_bad_arguments_are_rejected_and_change_nothing(engine: Engine) -> None:
    queue = engine.open()
    with pytest.raises(InvalidRequestError, match="bytes"):
        queue.publish([Message("a", b"ok"), Message("b", "text")])  # type: ignore[arg-type]
    assert queue.depth().total == 0
    with pytest.raises(InvalidRequestError, match="non-empty"):
        queue.publish([Message("", b"x")])
    with pytest.raises(InvalidRequestError, match="lease count"):
        queue.lease(-1, 30.0)
    with pytest.raises(InvalidRequestError, match="visibility"):
        queue.lease(1, 0.0)
    queue.publish(messages("a"))
    (lease,) = queue.lease(1, engine.t(30))
    with pytest.raises(InvalidRequestError, match="delay"):
        queue.nack(lease, delay=-1.0)
    queue.ack(lease)  # the rejected nack left the lease intact


def test_closed_queue_refuses_work(engine: Engine) -> None:
    queue = engine.open()
    queue.close()
    with pytest.raises(QueueError, match="closed"):
        queue.lease(1, engine.t(30))


def test_messages_and_leases_survive_close_and_reopen(engine: Engine) -> None:
    if not engine.case.leases_survive_close:
        pytest.skip(
            f"{engine.case.id} ties a lease to the connection that took it: close() gives it "
            f"back at once (docs/engines/{engine.case.id}.md)"
        )
    queue = engine.open()
    queue.publish(messages("a", "b"))
    (lease,) = queue.lease(1, visibility=engine.t(30))
    queue.close()
    reopened = engine.open()
    assert reopened.depth() == Depth(visible=1, in_flight=1, delayed=0, dead=0)
    (other,) = reopened.lease(5, engine.t(30))
    assert other.message_id != lease.message_id
    reopened.ack(
        reopened.extend(lease, engine.t(30))
    )  # a lease taken before the restart still works
    assert reopened.depth() == Depth(visible=0, in_flight=1, delayed=0, dead=0)


def test_lease_expires_in_real_time(engine: Engine) -> None:
    queue = engine.open(clock=time.time)
    queue.publish(messages("a"))
    (lease,) = queue.lease(1, visibility=0.5)
    assert queue.lease(1, 0.5) == [] or time.time() >= lease.expires_at
    time.sleep(max(0.0, lease.expires_at - time.time()) + 0.1)
    (again,) = queue.lease(1, visibility=30.0)
    assert (again.message_id, again.attempt) == ("a", 2)


def _need_cross_process(engine: Engine) -> None:
    if not engine.cross_process:
        pytest.skip(f"{engine.case.id}:// lives inside one process; nothing to share")


def test_processes_leasing_concurrently_never_share_or_lose(engine: Engine, tmp_path: Path) -> None:
    _need_cross_process(engine)
    queue = engine.open(clock=time.time)
    ids = [f"job:img:{i}" for i in range(600)]
    queue.publish(messages(*ids))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    outs = [tmp_path / f"child{i}.json" for i in range(2)]
    children = [
        ctx.Process(
            target=_children.lease_until_empty, args=(engine.url, engine.name, barrier, str(o))
        )
        for o in outs
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    per_child = [json.loads(o.read_text()) for o in outs]
    assert sorted(per_child[0] + per_child[1]) == sorted(ids)  # none twice, none lost
    assert queue.depth().total == 0


def test_killed_consumer_message_is_redelivered(engine: Engine) -> None:
    _need_cross_process(engine)
    queue = engine.open(clock=time.time)
    queue.publish(messages("region-7"))
    ctx = multiprocessing.get_context("spawn")
    reports = ctx.Queue()
    child = ctx.Process(
        target=_children.lease_one_and_hang, args=(engine.url, engine.name, 1.5, reports)
    )
    child.start()
    try:
        (taken,) = reports.get(timeout=60)
    finally:
        child.kill()  # SIGKILL: no cleanup, no nack
        child.join(timeout=30)
    assert child.exitcode == -9
    assert taken.message_id == "region-7" and taken.attempt == 1
    checked_at = time.time()
    early = queue.lease(1, engine.t(30))
    if checked_at < taken.expires_at and not engine.case.returns_on_disconnect:
        assert early == []  # still leased by the dead child
    time.sleep(max(0.0, taken.expires_at - time.time()) + 0.1)
    (again,) = early or queue.lease(1, visibility=30.0)
    assert (again.message_id, again.body, again.attempt) == ("region-7", b"body of region-7", 2)
