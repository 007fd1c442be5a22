"""When a settled tenant next needs a pass, read from its status alone: what an operator that
just restarted needs to resume without replaying a full reconcile for every tenant."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from byok_operator.api import ConditionType
from byok_operator.core.conditions import find
from byok_operator.models import TenantSpec


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def is_settled(meta: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """The last pass saw this generation, finished its gateway writes and left it Ready:
    nothing to redo after a restart."""
    generation = meta.get("generation")
    ready = find(status.get("conditions"), ConditionType.READY) or {}
    return (
        generation is not None
        and status.get("observedGeneration") == generation
        and ready.get("observedGeneration") == generation
        and ready.get("status") == "True"
        and isinstance(status.get("gatewayRevision"), int)
    )


def next_due(spec: TenantSpec, status: Mapping[str, Any], now: datetime) -> datetime | None:
    """The earliest of: a retiring key's revocation, the virtual key's scheduled rotation, a
    provider key's re-validation, a provider key turning older than maxKeyAge."""
    due: list[datetime] = []
    for retiring in status.get("retiringVirtualKeys") or []:
        if (when := _time(retiring.get("revokeAfter"))) is not None:
            due.append(when)
    issued = _time((status.get("virtualKey") or {}).get("issuedAt"))
    if issued is not None and spec.rotation.virtual_key_max_age is not None:
        due.append(issued + spec.rotation.virtual_key_max_age)
    for provider in status.get("providers") or []:
        if (validated := _time(provider.get("lastValidated"))) is not None:
            due.append(validated + spec.validation.interval)
        committed = _time(provider.get("committedAt"))
        if committed is not None and committed + spec.rotation.max_key_age > now:
            due.append(committed + spec.rotation.max_key_age)  # RotationDue turns True
    return min(due) if due else None


def confirmed_deadlines(status: Mapping[str, Any]) -> dict[str, datetime]:
    """When each retiring key may be revoked, as the last finished pass wrote it after
    publishing its successor (by alias)."""
    deadlines = {}
    for retiring in status.get("retiringVirtualKeys") or []:
        when = _time(retiring.get("revokeAfter"))
        if when is not None and isinstance(retiring.get("alias"), str):
            deadlines[retiring["alias"]] = when
    return deadlines


def seconds_until(when: datetime | None, now: datetime) -> float | None:
    if when is None:
        return None
    return max(0.0, (when - now) / timedelta(seconds=1))
