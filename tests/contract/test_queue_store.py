"""Contract: QueueStore (queued messages, per-recipient state, claims, routes) on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete

from hardmail.store.ports import AlreadyExists, NotFound, Store
from hardmail.store.ports_queue import QueueEntry, QueueRecipient, QueueStore, RecipientOutcome, Route
from hardmail.store.sql.tables_queue import queue_messages, queue_recipients, queue_routes

NOW = 1_700_000_000.0


@pytest.fixture
async def queue(store: Store) -> AsyncIterator[QueueStore]:
    async with store.engine.begin() as conn:  # type: ignore[attr-defined]
        for table in (queue_recipients, queue_messages, queue_routes):
            await conn.execute(delete(table))
    yield store.queue


def _entry(queue_id: str = "Q0000000000001", *, due: float = NOW, recipients: tuple[str, ...] = (
        "a@one.example", "b@two.example")) -> QueueEntry:
    return QueueEntry(
        queue_id=queue_id, sender="alice@example.test",
        recipients=tuple(QueueRecipient(r, r.rpartition("@")[2]) for r in recipients),
        size=123, origin_account="alice@example.test", created_at=NOW, next_attempt_at=due,
    )


async def test_an_added_entry_reads_back_with_its_recipients(queue: QueueStore) -> None:
    await queue.add_queued(_entry())
    found = await queue.get_queued("Q0000000000001")
    assert found is not None
    assert [(r.address, r.domain, r.state) for r in found.recipients] == [
        ("a@one.example", "one.example", "pending"), ("b@two.example", "two.example", "pending")]
    assert (found.sender, found.size, found.next_attempt_at, found.attempts) == ("alice@example.test", 123, NOW, 0)


async def test_count_queued_counts_every_entry(queue: QueueStore) -> None:
    assert await queue.count_queued() == 0
    await queue.add_queued(_entry("Q0000000000001"))
    await queue.add_queued(_entry("Q0000000000002"))
    await queue.set_held("Q0000000000002", True)
    assert await queue.count_queued() == 2


async def test_a_queue_id_is_queued_once(queue: QueueStore) -> None:
    await queue.add_queued(_entry())
    with pytest.raises(AlreadyExists):
        await queue.add_queued(_entry())


async def test_only_due_unheld_entries_are_claimed_and_only_once(queue: QueueStore) -> None:
    await queue.add_queued(_entry("Q0000000000001"))
    await queue.add_queued(_entry("Q0000000000002", due=NOW + 60))
    await queue.add_queued(_entry("Q0000000000003"))
    await queue.set_held("Q0000000000003", True)
    claimed = await queue.claim_due(NOW, "runner-a", NOW + 600, 10)
    assert [e.queue_id for e in claimed] == ["Q0000000000001"]
    assert await queue.claim_due(NOW, "runner-b", NOW + 600, 10) == []


async def test_an_expired_claim_can_be_taken_over(queue: QueueStore) -> None:
    await queue.add_queued(_entry())
    await queue.claim_due(NOW, "dead", NOW + 10, 10)
    assert [e.claimed_by for e in await queue.claim_due(NOW + 11, "alive", NOW + 600, 10)] == ["alive"]


async def test_released_claims_are_due_again(queue: QueueStore) -> None:
    await queue.add_queued(_entry())
    await queue.claim_due(NOW, "me", NOW + 600, 10)
    assert await queue.release_claims("me") == 1
    assert len(await queue.claim_due(NOW, "me", NOW + 600, 10)) == 1


async def test_outcomes_and_finish_attempt_update_state_and_schedule(queue: QueueStore) -> None:
    await queue.add_queued(_entry())
    await queue.claim_due(NOW, "me", NOW + 600, 10)
    await queue.record_outcomes("Q0000000000001", [
        RecipientOutcome("a@one.example", "delivered", 250, "ok", "mx.one.example")], NOW)
    await queue.finish_attempt("Q0000000000001", next_attempt_at=NOW + 300, last_error="451 later",
                               delay_notified=False)
    found = await queue.get_queued("Q0000000000001")
    assert found is not None
    assert [r.state for r in found.recipients] == ["delivered", "pending"]
    assert found.recipients[0].remote_mta == "mx.one.example"
    assert (found.attempts, found.next_attempt_at, found.last_error, found.claimed_by) == (
        1, NOW + 300, "451 later", None)
    assert await queue.next_due_at() == NOW + 300


async def test_a_final_outcome_is_never_overwritten(queue: QueueStore) -> None:
    await queue.add_queued(_entry())
    await queue.record_outcomes("Q0000000000001", [RecipientOutcome("a@one.example", "delivered", 250)], NOW)
    await queue.record_outcomes("Q0000000000001", [RecipientOutcome("a@one.example", "failed", 550)], NOW)
    found = await queue.get_queued("Q0000000000001")
    assert found is not None and found.recipients[0].state == "delivered"


async def test_entries_without_pending_recipients_are_claimed_for_settling(queue: QueueStore) -> None:
    await queue.add_queued(_entry(recipients=("a@one.example",)))
    await queue.record_outcomes("Q0000000000001", [RecipientOutcome("a@one.example", "failed", 550)], NOW)
    [claimed] = await queue.claim_due(NOW, "me", NOW + 600, 10)
    assert claimed.is_finished


async def test_reschedule_one_or_all(queue: QueueStore) -> None:
    await queue.add_queued(_entry("Q0000000000001", due=NOW + 900))
    await queue.add_queued(_entry("Q0000000000002", due=NOW + 900))
    assert await queue.reschedule("Q0000000000001", NOW) == 1
    assert [e.queue_id for e in await queue.claim_due(NOW, "me", NOW + 1, 10)] == ["Q0000000000001"]
    assert await queue.reschedule(None, NOW) == 2


async def test_remove_and_unknown_ids(queue: QueueStore) -> None:
    await queue.add_queued(_entry())
    await queue.remove_queued("Q0000000000001")
    assert await queue.list_queued() == []
    with pytest.raises(NotFound):
        await queue.remove_queued("Q0000000000001")
    with pytest.raises(NotFound):
        await queue.set_held("Q0000000000001", True)
    assert await queue.next_due_at() is None


async def test_routes_are_replaced_listed_and_removed(queue: QueueStore) -> None:
    await queue.set_route(Route("*.example.org", "relay.example.net", 587, "starttls", "u", "token1", NOW))
    await queue.set_route(Route("*.example.org", "relay2.example.net", 25))
    await queue.set_route(Route("*", "smarthost.example.net", 465, "implicit"))
    routes = await queue.list_routes()
    assert [(r.pattern, r.host, r.port) for r in routes] == [
        ("*", "smarthost.example.net", 465), ("*.example.org", "relay2.example.net", 25)]
    await queue.remove_route("*")
    with pytest.raises(NotFound):
        await queue.remove_route("*")


def test_route_repr_hides_the_encrypted_password() -> None:
    assert "token-value" not in repr(Route("*", "h", password_encrypted="token-value"))


async def test_outcomes_and_finish_need_the_claim_when_an_owner_is_given(queue: QueueStore) -> None:
    await queue.add_queued(_entry("Q0000000000001"))
    await queue.claim_due(NOW, "a", NOW + 3, 10)
    [taken] = await queue.claim_due(NOW + 4, "b", NOW + 600, 10)
    lost = [RecipientOutcome(r.address, "delivered") for r in taken.recipients]
    assert await queue.record_outcomes(taken.queue_id, lost, NOW + 5, "a") is False
    assert await queue.finish_attempt(taken.queue_id, next_attempt_at=NOW, last_error="", delay_notified=False,
                                      owner="a") is False
    assert await queue.renew_claim([taken.queue_id], "a", NOW + 900) == set()
    assert await queue.renew_claim([taken.queue_id], "b", NOW + 900) == {taken.queue_id}
    found = await queue.get_queued(taken.queue_id)
    assert found is not None and found.pending and found.claimed_by == "b"
    await queue.mark_notified(taken.queue_id, [taken.recipients[0].address])
    found = await queue.get_queued(taken.queue_id)
    assert found is not None and found.recipients[0].notified
