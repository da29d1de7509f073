"""Abuse limits, the pure parts (issue 10): caller names, the per-user brake, fair slots."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.domain.brake import PruneBrake
from orchestrator.domain.names import clean_caller_name
from orchestrator.domain.tokens import apns_token_ok, fcm_token_ok
from orchestrator.engine.fair import FairLimiter

# --- caller names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("\u202eSecurity team: call +1 555\u202c", "Security team: call +1 555"),  # bidi (Cf)
        ("Ad\u200ba\u200d \ufeffLove\u2066lace\u2069", "Ada Lovelace"),  # zero-width, isolates
        ("Ada\nLovelace\r\nX", "AdaLovelaceX"),  # newlines are Cc: removed, as the contract says
        ("Ada\x00\x07\x1b[31mRed", "Ada[31mRed"),  # controls (Cc) go, printable text stays
        ("Ada\u2028Love\u2029lace", "AdaLovelace"),  # line / paragraph separators (Zl, Zp)
        ("  Ada \u00a0\u3000 Lovelace  ", "Ada Lovelace"),  # whitespace runs collapse
        ("\u200b\u202e\n\t ", None),  # nothing left: null
        ("", None),
        (None, None),
        ("é" * 100, "é" * 64),  # at most 64 characters
        ("a" * 63 + " b", "a" * 63),  # trimmed after the cut
        ("Łukasz 李 🙂", "Łukasz 李 🙂"),  # ordinary letters and emoji stay
    ],
)
def test_caller_names_come_out_clean(raw: str | None, clean: str | None) -> None:
    assert clean_caller_name(raw) == clean


@given(st.text(max_size=300))
def test_a_clean_name_has_no_removed_category_and_fits(raw: str) -> None:
    import unicodedata

    name = clean_caller_name(raw)
    if name is None:
        return
    assert 0 < len(name) <= 64 and name == name.strip() and "  " not in name
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name)


# --- token characters at the providers -------------------------------------------------------


@pytest.mark.parametrize(
    "token", ["../" + "a" * 64, "a" * 64 + "\r\n", "a" * 64 + "?x", "a b", "", "a" * 201]
)
def test_providers_refuse_apns_tokens_outside_hex(token: str) -> None:
    assert not apns_token_ok(token)


def test_providers_accept_apns_hex_and_fcm_alphabet() -> None:
    assert apns_token_ok("aB" * 32)
    assert fcm_token_ok("abc:DEF_123-xyz")
    for bad in ("a/b", "a b", "a\nb", "a?b", "a" * 4097, ""):
        assert not fcm_token_ok(bad)


# --- the brake counts users -----------------------------------------------------------------


def test_one_users_garbage_tokens_never_engage_the_brake() -> None:
    brake = PruneBrake(min_prunes=5, ratio=0.8)
    attacker = uuid.uuid4()
    for i in range(10_000):
        brake.record("fcm", True, 100.0 + i / 1000, attacker)
    assert brake.counts("fcm", 111.0) == (1, 1)
    assert brake.allows_prune("fcm", 111.0)


def test_a_misconfiguration_hitting_min_distinct_users_still_engages_it() -> None:
    brake = PruneBrake(min_prunes=5, ratio=0.8)
    users = [uuid.uuid4() for _ in range(5)]
    for user in users:
        for _ in range(3):  # several devices each: still one count per user
            brake.record("apns", True, 10.0, user)
    assert brake.counts("apns", 10.0) == (5, 5)
    assert not brake.allows_prune("apns", 10.0)
    four = PruneBrake(min_prunes=5, ratio=0.8)
    for user in users[:4]:
        four.record("apns", True, 10.0, user)
    assert four.allows_prune("apns", 10.0)


def test_a_user_counts_again_once_their_candidate_left_the_window() -> None:
    brake = PruneBrake(min_prunes=1, ratio=0.5, window_seconds=10)
    user = uuid.uuid4()
    brake.record("fcm", True, 0.0, user)
    brake.record("fcm", True, 5.0, user)  # same window: ignored
    assert brake.counts("fcm", 5.0) == (1, 1)
    brake.record("fcm", True, 12.0, user)  # the first left the window
    assert brake.counts("fcm", 12.0) == (1, 1)
    assert not brake.allows_prune("fcm", 12.0)


# --- fair slots -----------------------------------------------------------------------------


async def test_a_fan_out_never_takes_every_slot_and_rings_go_first() -> None:
    limiter = FairLimiter(4)
    gate = asyncio.Event()
    order: list[str] = []

    async def send(call: str, priority: int, label: str) -> None:
        async with limiter.slot(call, priority):
            order.append(label)
            await gate.wait()

    fan_out = [asyncio.create_task(send("A", 1, f"A{i}")) for i in range(10)]
    await asyncio.sleep(0)
    assert limiter.held["A"] == 2 and limiter.used == 2  # half the slots at most
    bystander = asyncio.create_task(send("B", 0, "B"))
    await asyncio.sleep(0)
    assert "B" in order  # no waiting behind the fan-out
    gate.set()
    await asyncio.gather(*fan_out, bystander)
    assert limiter.used == 0 and not limiter.held
    assert sorted(order) == sorted([f"A{i}" for i in range(10)] + ["B"])


async def test_free_slots_go_to_the_call_holding_fewest_and_cancelled_waiters_leave() -> None:
    limiter = FairLimiter(2, per_call=2)
    release = {c: asyncio.Event() for c in ("A", "B")}
    started: list[str] = []

    async def send(call: str) -> None:
        async with limiter.slot(call):
            started.append(call)
            await release[call].wait()

    first = [asyncio.create_task(send("A")) for _ in range(2)]
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(send("A")), asyncio.create_task(send("B"))]
    cancelled = asyncio.create_task(send("C"))
    await asyncio.sleep(0)
    cancelled.cancel()
    release["A"].set()
    await asyncio.gather(*first)
    await asyncio.sleep(0)
    assert started[2] == "B"  # B held none, A held two: B goes first
    release["B"].set()
    await asyncio.gather(*waiting)
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert limiter.used == 0
