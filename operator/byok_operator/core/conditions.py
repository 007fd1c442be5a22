"""metav1.Condition bookkeeping: transition times kept while a status holds, observedGeneration set.

kopf has no conditions of its own; this mirrors cert-manager's conditions helper. The clock is a
parameter so the rules are testable without waiting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from byok_operator.api import ConditionType

Status = Literal["True", "False", "Unknown"]

# The order conditions appear in; kubectl and dashboards show them as written.
_ORDER = [t.value for t in ConditionType]


@dataclass(frozen=True)
class Condition:
    """A condition the reconciler wants to be true now (without a transition time)."""

    type: ConditionType
    status: Status
    reason: str
    message: str


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    existing: Sequence[Mapping[str, Any]] | None,
    desired: Iterable[Condition],
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """The complete new conditions list (status patches replace lists whole).

    lastTransitionTime changes only when a condition's status changes; conditions that are
    not in ``desired`` are kept as they were, so a partial update never drops one.
    """
    by_type: dict[str, dict[str, Any]] = {c["type"]: dict(c) for c in existing or () if "type" in c}
    for cond in desired:
        previous = by_type.get(cond.type.value)
        keep_time = previous is not None and previous.get("status") == cond.status
        by_type[cond.type.value] = {
            "type": cond.type.value,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": (
                previous["lastTransitionTime"]
                if keep_time and previous and previous.get("lastTransitionTime")
                else rfc3339(now)
            ),
            "observedGeneration": generation,
        }
    return sorted(by_type.values(), key=_order_key)


def _order_key(cond: Mapping[str, Any]) -> tuple[int, str]:
    kind = str(cond.get("type", ""))
    return (_ORDER.index(kind) if kind in _ORDER else len(_ORDER), kind)


def find(
    conditions: Sequence[Mapping[str, Any]] | None, kind: ConditionType
) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == kind.value), None)
