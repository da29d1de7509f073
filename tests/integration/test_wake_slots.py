"""Wake-up slots on a real PostgreSQL (issue 14): workers split the slots fairly and disjointly,
a newcomer gets its share, a dead worker's slots are taken over at the next rebalance, and a
call whose slot nobody holds is swept by everyone who sees it free."""

from __future__ import annotations

import time
import uuid

import asyncpg
import pytest

from orchestrator.adapters.postgres.wake_slots import WakeSlots

pytestmark = pytest.mark.postgres


async def _settle(pairs: list[tuple[WakeSlots, asyncpg.Connection]], rounds: int = 4) -> None:
    for _ in range(rounds):
        for slots, conn in pairs:
            await slots.rebalance(conn)


def _assert_partition(all_slots: list[WakeSlots]) -> None:
    owned = [s.mine for s in all_slots]
    assert set().union(*owned) == set(range(all_slots[0].count))  # nothing unowned
    assert sum(len(m) for m in owned) == all_slots[0].count  # nothing owned twice
    assert max(len(m) for m in owned) - min(len(m) for m in owned) <= 1 + len(owned)


async def test_slots_are_split_disjointly_and_taken_over_when_a_worker_dies(
    fresh_dsn: str,
) -> None:
    conns = [await asyncpg.connect(fresh_dsn) for _ in range(3)]
    try:
        first = WakeSlots()
        assert await first.rebalance(conns[0])  # alone: it gains every slot
        assert first.mine == set(range(first.count))
        pairs = [(first, conns[0]), (WakeSlots(), conns[1]), (WakeSlots(), conns[2])]
        await _settle(pairs)
        _assert_partition([s for s, _ in pairs])
        assert all(len(s.mine) >= first.count // 3 - 1 for s, _ in pairs)

        # Exactly one worker sweeps a given call.
        for _ in range(200):
            call = uuid.uuid4()
            assert sum(s.wants(call) for s, _ in pairs) == 1

        # Worker 3's connection dies: its locks go with it; the others take them over.
        dead = pairs.pop()
        lost = set(dead[0].mine)
        await dead[1].close()
        # (The backend ends a moment after the close: rebalance until the locks are free.)
        deadline = time.monotonic() + 10
        gained = False
        while time.monotonic() < deadline and not lost <= pairs[0][0].mine | pairs[1][0].mine:
            for slots, conn in pairs:
                gained = await slots.rebalance(conn) or gained
        assert gained
        await _settle(pairs)
        _assert_partition([s for s, _ in pairs])
        assert lost <= pairs[0][0].mine | pairs[1][0].mine
    finally:
        for conn in conns:
            if not conn.is_closed():
                await conn.close()


async def test_a_free_slot_is_swept_by_whoever_sees_it_free(fresh_dsn: str) -> None:
    a_conn, b_conn = await asyncpg.connect(fresh_dsn), await asyncpg.connect(fresh_dsn)
    try:
        a, b = WakeSlots(), WakeSlots()
        await a.rebalance(a_conn)  # a holds all 64
        await b.rebalance(b_conn)  # b sees a's 64: over its share of 32, but a has not let go
        assert b.mine == set() and len(b.others) == b.count
        call = uuid.uuid4()
        assert a.wants(call) and not b.wants(call)
        await a.rebalance(a_conn)  # a releases its extras; until b takes them, a sweeps them
        released = set(range(a.count)) - a.mine
        assert len(released) == a.count // 2
        freed_call = next(c for c in iter(uuid.uuid4, None) if a.slot_of(c) in released)
        assert a.wants(freed_call)  # free as far as a knows: a still sweeps it
        assert not b.wants(freed_call)  # b's view is stale: a's, until b rebalances
        assert await b.rebalance(b_conn)
        assert b.wants(freed_call)
        await a.rebalance(a_conn)
        assert not a.wants(freed_call)
        # A source without its lock connection sweeps everything.
        b.reset()
        assert b.wants(call) and b.wants(freed_call)
    finally:
        await a_conn.close()
        await b_conn.close()
