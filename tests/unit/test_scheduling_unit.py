"""Unit tests of when tenants get passes: the operator-wide scheduler (a real asyncio loop, a
fake clock only where a test says so) and the resume rule read from status alone."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from byok_operator.core.schedule import is_settled, next_due, seconds_until
from byok_operator.models import parse_spec
from byok_operator.scheduler import Scheduler
from byok_operator.tenant.checks import key_changed

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_scheduler_fires_each_tenant_once_at_its_time() -> None:
    fired: list[tuple[str, float]] = []
    both = asyncio.Event()
    start = time.monotonic()

    async def run(uid: str) -> None:
        fired.append((uid, time.monotonic() - start))
        if len(fired) == 2:
            both.set()

    scheduler = Scheduler(run)
    task = asyncio.create_task(scheduler.run_forever())
    scheduler.wake_in("late", 0.4)
    scheduler.wake_in("early", 0.1)
    scheduler.wake_in("late", 0.2)  # an earlier wake-up replaces the later one
    scheduler.wake_in("cancelled", 0.1)
    scheduler.cancel("cancelled")
    await asyncio.wait_for(both.wait(), timeout=5)
    await asyncio.sleep(0.4)  # nothing else may fire: the superseded 0.4 s entry is dead
    task.cancel()
    assert [uid for uid, _ in fired] == ["early", "late"]
    early, late = (at for _, at in fired)
    assert 0.1 <= early < 0.1 + 1.0
    assert 0.2 <= late < 0.2 + 1.0
    assert scheduler.pending() == 0


async def test_reschedule_to_none_drops_the_wake_up() -> None:
    fired: list[str] = []

    async def run(uid: str) -> None:
        fired.append(uid)

    scheduler = Scheduler(run)
    task = asyncio.create_task(scheduler.run_forever())
    scheduler.wake_in("t", 0.1)
    scheduler.reschedule("t", None)
    await asyncio.sleep(0.3)
    task.cancel()
    assert fired == []


def _ready(generation: int) -> dict[str, object]:
    return {
        "observedGeneration": generation,
        "gatewayRevision": 3,
        "conditions": [
            {"type": "Ready", "status": "True", "observedGeneration": generation, "reason": "Ready"}
        ],
    }


def test_settled_needs_this_generation_ready_and_a_finished_gateway_pass() -> None:
    assert is_settled({"generation": 2}, _ready(2))
    assert not is_settled({"generation": 3}, _ready(2))
    assert not is_settled({"generation": 2}, {**_ready(2), "gatewayRevision": None})
    not_ready = _ready(2)
    not_ready["conditions"] = [{"type": "Ready", "status": "False", "observedGeneration": 2}]
    assert not is_settled({"generation": 2}, not_ready)


def test_next_due_is_the_earliest_revocation_rotation_or_revalidation() -> None:
    spec = parse_spec(
        {
            "mode": "BYOK",
            "providers": {"openai": {"secretRef": {"name": "k", "key": "openai"}}},
            "rotation": {"virtualKeyMaxAge": "30d", "maxKeyAge": "90d"},
            "validation": {"interval": "6h"},
        },
        name="a",
    )
    status = {
        "virtualKey": {"issuedAt": _iso(T0)},
        "providers": [{"lastValidated": _iso(T0), "committedAt": _iso(T0)}],
        "retiringVirtualKeys": [{"revokeAfter": _iso(T0 + timedelta(minutes=5))}],
    }
    assert next_due(spec, status, T0) == T0 + timedelta(minutes=5)
    status["retiringVirtualKeys"] = []
    assert next_due(spec, status, T0) == T0 + timedelta(hours=6)
    # A key already past maxKeyAge does not make every restart run a pass for it.
    later = T0 + timedelta(days=100)
    status["providers"] = [{"committedAt": _iso(T0)}]
    assert next_due(spec, status, later) == T0 + timedelta(days=30)
    assert seconds_until(T0 + timedelta(seconds=90), T0) == 90
    assert seconds_until(T0, T0 + timedelta(seconds=5)) == 0


def test_a_secret_event_wakes_a_tenant_only_when_its_served_key_differs() -> None:
    from byok_operator.crypto import fingerprint
    from byok_operator.kube import SecretData

    spec = {"mode": "BYOK", "providers": {"openai": {"secretRef": {"name": "k", "key": "openai"}}}}
    status = {"providers": [{"name": "openai", "keyFingerprint": fingerprint("sk-old")}]}

    def secret(data: dict[str, str], name: str = "k") -> SecretData:
        return SecretData(name, data, {}, {}, "1")

    assert not key_changed(spec, status, secret({"openai": "sk-old"}))
    assert key_changed(spec, status, secret({"openai": "sk-new"}))
    assert key_changed(spec, status, secret({}))  # the key went missing: the pass says so
    assert not key_changed(spec, status, secret({"openai": "sk-new"}, name="other"))
    assert not key_changed({**spec, "mode": "Platform"}, status, secret({"openai": "sk-new"}))


def test_drift_is_a_missing_live_key_team_or_credential() -> None:
    from byok_operator.maintenance import _missing

    uid = "u1"
    byok = {
        "mode": "BYOK",
        "providers": [{"name": "openai", "committedAt": "2026-01-01T00:00:00Z"}],
    }
    teams, creds = {f"tlc-{uid}-byok"}, {f"byok-{uid}-openai"}
    assert not _missing(uid, byok, "tok", {"tok"}, teams, creds)
    assert _missing(uid, byok, "tok", set(), teams, creds)  # the live key is gone
    assert _missing(uid, byok, "tok", {"tok"}, set(), creds)  # the BYOK team is gone
    assert _missing(uid, byok, "tok", {"tok"}, teams, set())  # the credential is gone
    platform = {"mode": "Platform"}
    assert not _missing(uid, platform, "tok", {"tok"}, {f"tlc-{uid}"}, set())
    assert _missing(uid, platform, "tok", {"tok"}, teams, set())


def test_a_first_enable_is_one_event_and_periodic_work_spreads() -> None:
    from byok_operator.api import AuditAction
    from byok_operator.audit import AuditEvent
    from byok_operator.tenant.reconciler import _merge_first_issue, _spread

    issued = AuditEvent(AuditAction.VIRTUAL_KEY_ISSUED, "Virtual key k issued.")
    enabled = AuditEvent(AuditAction.BYOK_ENABLED, "BYOK enabled.")
    (merged,) = _merge_first_issue([issued, enabled])
    assert merged.action is AuditAction.BYOK_ENABLED
    assert "Virtual key k issued." in merged.message
    rotated = AuditEvent(AuditAction.VIRTUAL_KEY_ROTATED, "rotated")
    assert _merge_first_issue([rotated, enabled]) == [rotated, enabled]
    width = timedelta(minutes=36)
    offsets = {_spread(f"uid-{i}", width) for i in range(200)}
    assert all(timedelta(0) <= o < width for o in offsets)
    assert len(offsets) > 150  # spread, not bunched
    assert _spread("same", width) == _spread("same", width)


def test_a_tenant_that_keeps_failing_backs_off_and_a_success_starts_over() -> None:
    """Retries double from the (jittered) base, capped, and reset after a pass that works."""
    from types import SimpleNamespace

    from byok_operator.tenant.reconciler import MAX_RETRY_DELAY, Outcome, Reconciler

    state = SimpleNamespace(_failures={})

    def outcome(retry: float | None) -> float | None:
        return Reconciler._back_off(state, "u", Outcome({}, retry_after=retry)).retry_after  # type: ignore[arg-type]

    assert [outcome(30) for _ in range(3)] == [30, 60, 120]
    assert outcome(None) is None
    assert outcome(30) == 30
    for _ in range(10):
        last = outcome(30)
    assert last == MAX_RETRY_DELAY
