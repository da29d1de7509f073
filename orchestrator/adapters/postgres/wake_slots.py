"""Which worker sweeps a notified call (issue 14): calls are split by their id into a fixed
number of slots, each owned by one worker through a session advisory lock held on its LISTEN
connection. Every worker still receives every NOTIFY, but only the slot's owner sweeps the call,
so adding workers adds capacity instead of contention (before, every worker swept every call
and all but one of the claims were wasted).

No partition is ever left unswept:
- a slot nobody owns (as last seen) is swept by every worker that sees it free, so the gap
  while slots move (a worker releasing extras, a newcomer not yet holding them) costs only a
  redundant claim, which the leases make harmless;
- a worker that dies loses its locks with its connection; the others see the slots free at
  their next rebalance (every `WORKER_LEASE_SECONDS / 3`) and take them, and whoever gains a
  slot re-scans everything due, so wake-ups missed in between are recovered at once;
- the backstop scan (RECONCILE_INTERVAL) still covers every call regardless of slots.
The lock connection is the LISTEN connection itself: a worker that cannot hear
notifications cannot hold a slot.
"""

from __future__ import annotations

import math
import random
from uuid import UUID

import asyncpg

SLOT_LOCK_CLASS = 7340  # advisory locks (SLOT_LOCK_CLASS, slot): one per slot
MEMBER_LOCK_CLASS = 7341  # (MEMBER_LOCK_CLASS, backend pid): "I am listening", slots or not
SLOT_COUNT = 64

# Members (with their slots, if any): a newcomer holding no slot yet still counts in the
# share, so the others make room for it.
_OWNERS = (
    "select classid::int as kind, objid::int as key, pid from pg_locks"
    " where locktype = 'advisory' and classid in ($1, $2) and objsubid = 2 and granted"
    " and database = (select d.oid from pg_database as d where d.datname = current_database())"
)
_JOIN = "select pg_advisory_lock($1, pg_backend_pid())"
# One candidate per wanted slot: a WHERE over more would lock every one it evaluates.
_TRY = "select s from unnest($2::int[]) s where pg_try_advisory_lock($1, s)"
_RELEASE = "select count(*) from unnest($2::int[]) s where pg_advisory_unlock($1, s)"


class WakeSlots:
    def __init__(self, count: int = SLOT_COUNT) -> None:
        self.count = count
        self.mine: set[int] = set()
        self.others: set[int] = set()  # owned by another worker, as last seen
        self.active = False  # not holding the lock connection: sweep every wake-up

    def slot_of(self, call_id: UUID) -> int:
        return call_id.int % self.count

    def wants(self, call_id: UUID) -> bool:
        """Sweep this call's wake-up here? (Mine, or nobody's as far as we know.)"""
        if not self.active:
            return True
        slot = self.slot_of(call_id)
        return slot in self.mine or slot not in self.others

    def reset(self) -> None:
        """The lock connection is gone, and its locks with it."""
        self.active = False
        self.mine.clear()
        self.others.clear()

    async def rebalance(self, conn: asyncpg.Connection) -> bool:
        """Release slots beyond a fair share, take free ones up to it. True when a slot was
        gained (the caller re-scans: wake-ups of that slot may have gone unswept)."""
        me = conn.get_server_pid()
        if not self.active:
            await conn.execute(
                _JOIN, MEMBER_LOCK_CLASS
            )  # never waits: the key is this backend's own pid
        owners: dict[int, set[int]] = {}
        for row in await conn.fetch(_OWNERS, SLOT_LOCK_CLASS, MEMBER_LOCK_CLASS):
            slots = owners.setdefault(row["pid"], set())
            if row["kind"] == SLOT_LOCK_CLASS:
                slots.add(row["key"])
        mine = owners.pop(me, set())
        share = math.ceil(self.count / (len(owners) + 1))
        if len(mine) > share:
            extra = sorted(mine)[share:]
            await conn.fetchval(_RELEASE, SLOT_LOCK_CLASS, extra)
            mine -= set(extra)
        taken = set().union(*owners.values()) if owners else set()
        free = [s for s in range(self.count) if s not in taken and s not in mine]
        gained: set[int] = set()
        if len(mine) < share and free:
            # Random picks, so two newcomers rarely race for the same slots.
            wanted = random.sample(free, min(share - len(mine), len(free)))
            gained = {r["s"] for r in await conn.fetch(_TRY, SLOT_LOCK_CLASS, wanted)}
            mine |= gained
        self.mine, self.others = mine, taken - mine
        self.active = True
        return bool(gained)
