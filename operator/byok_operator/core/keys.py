"""The virtual-key plan: issue new, publish, then revoke the old after the grace period. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from byok_operator.core.gateway import KeyShape
from byok_operator.core.vault import VaultState


@dataclass(frozen=True)
class KeyPlan:
    issue: bool
    update_live: bool
    revoke: tuple[str, ...]
    next_check: datetime | None
    reason: str


def plan_virtual_key(
    state: VaultState,
    shape: KeyShape,
    *,
    now: datetime,
    rotate_request: str | None,
    max_age: timedelta | None,
) -> KeyPlan:
    """Decide whether to issue a new virtual key, update the live one, and what to revoke."""
    live = state.live()
    reason = ""
    if live is None:
        reason = "no live virtual key"
    elif live.mode is not shape.mode:
        reason = f"mode changed to {shape.mode.value}"
    elif rotate_request is not None and rotate_request != state.rotate_request:
        reason = "rotation requested by annotation"
    elif max_age is not None and live.issued_at is not None and now - live.issued_at >= max_age:
        reason = "virtual key older than spec.rotation.virtualKeyMaxAge"
    issue = bool(reason)
    update_live = not issue and live is not None and live.shape != shape.digest()
    revoke, next_revocation = due_revocations(state, now)
    checks = [next_revocation] if next_revocation is not None else []
    if max_age is not None and live is not None and live.issued_at is not None and not issue:
        checks.append(live.issued_at + max_age)
    return KeyPlan(issue, update_live, revoke, min(checks) if checks else None, reason)


def due_revocations(state: VaultState, now: datetime) -> tuple[tuple[str, ...], datetime | None]:
    """Retiring keys whose grace period has ended, and when the next one ends."""
    retiring = [k for k in state.keys if k.state == "retiring"]
    due = tuple(k.alias for k in retiring if k.revoke_after is None or k.revoke_after <= now)
    waiting = [
        k.revoke_after for k in retiring if k.revoke_after is not None and k.revoke_after > now
    ]
    return due, min(waiting) if waiting else None


def promote(state: VaultState, alias: str, *, now: datetime, grace: timedelta) -> VaultState:
    """The pending key ``alias`` is published: make it live and start the old one's grace window."""
    keys = []
    for key in state.keys:
        if key.alias == alias:
            keys.append(key.model_copy(update={"state": "live", "issued_at": key.issued_at or now}))
        elif key.state == "live":
            keys.append(key.model_copy(update={"state": "retiring", "revoke_after": now + grace}))
        else:
            keys.append(key)
    return state.model_copy(update={"keys": keys})


def regrace(state: VaultState, *, now: datetime, grace: timedelta) -> VaultState:
    """The live key is (re)published at ``now``, so every retiring key keeps working for at
    least ``grace`` from then. Grace periods count from publication, never from a plan: a pass
    plans (and writes the vault) before its gateway calls, which can take seconds under load.

    The deadline is rounded up to a whole second: status carries times in whole seconds, and
    the next pass takes its deadlines from there, so a deadline truncated on the way would cut
    up to a second off the grace (seen in the chaos test as a 4.7 s grace of 5)."""
    floor = whole_second_up(now + grace)
    retiring = [k.alias for k in state.keys if k.state == "retiring" and k.revoke_after]
    return hold_until(state, dict.fromkeys(retiring, floor))


def whole_second_up(moment: datetime) -> datetime:
    """The first whole second at or after ``moment`` (what status can say without losing time)."""
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def hold_until(state: VaultState, deadlines: Mapping[str, datetime]) -> VaultState:
    """Retiring keys are revoked no earlier than ``deadlines`` (by alias; the later time wins).

    The vault is written before publication, so its deadlines are estimates; the status written
    after publication carries the confirmed ones, and a pass that trusts its status takes them.
    """
    keys = [
        k.model_copy(update={"revoke_after": deadlines[k.alias]})
        if k.state == "retiring"
        and k.revoke_after is not None
        and k.alias in deadlines
        and k.revoke_after < deadlines[k.alias]
        else k
        for k in state.keys
    ]
    return state.model_copy(update={"keys": keys})


def forget(state: VaultState, aliases: Sequence[str]) -> VaultState:
    return state.model_copy(update={"keys": [k for k in state.keys if k.alias not in aliases]})
