"""What ``kubectl get tlc`` and ``kubectl describe`` show: the status subresource, built
from the reconciler's findings. Pure functions; the conditions follow the Kubernetes API
conventions (see ``conditions``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from byok_operator.api import AuditAction, ConditionType, Mode, Provider, Reason
from byok_operator.audit import AuditEvent
from byok_operator.core.conditions import Condition, find, merge_conditions, rfc3339
from byok_operator.core.vault import (
    CommittedKey,
    TenantRef,
    VaultState,
    gateway_secret_name,
)
from byok_operator.models import TenantSpec


class Problem(Protocol):
    """A key problem to report (``providers.KeyValidationError`` is one)."""

    provider: Provider
    reason: Reason
    message: str


class Checked(Protocol):
    """What one provider's check found this pass."""

    @property
    def fingerprint(self) -> str | None: ...

    @property
    def error(self) -> Problem | None: ...


def fingerprints(committed: Mapping[Provider, CommittedKey]) -> str:
    return ", ".join(f"{p.value} {c.fingerprint}" for p, c in sorted(committed.items()))


def join_problems(errors: Sequence[Problem]) -> str:
    return " ".join(e.message for e in errors)


def provider_status(
    spec: TenantSpec,
    checks: Mapping[Provider, Checked],
    committed: Mapping[Provider, CommittedKey],
) -> list[dict[str, Any]]:
    entries = []
    for provider in spec.providers.configured():
        check = checks.get(provider)
        served = committed.get(provider)
        entry: dict[str, Any] = {
            "name": provider.value,
            "valid": bool(check and check.error is None),
            "keyFingerprint": served.fingerprint
            if served
            else (check.fingerprint if check else None),
            "modelCount": len(served.models) if served else 0,
            "models": list(served.models[:20]) if served else [],
            "lastValidated": rfc3339(served.validated_at) if served else None,
            "committedAt": rfc3339(served.committed_at) if served else None,
            "error": {"reason": check.error.reason.value, "message": check.error.message}
            if check and check.error
            else None,
        }
        entries.append({k: v for k, v in entry.items() if v is not None})
    return entries


def build_status(
    ref: TenantRef,
    spec: TenantSpec,
    state: VaultState,
    raw_status: Mapping[str, Any],
    providers: list[dict[str, Any]],
    now: datetime,
    *,
    ready: bool,
    errors: Sequence[Problem] = (),
    reason: Reason | None = None,
    message: str | None = None,
    spend: str | None = None,
    gateway_ok: bool = True,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    live = state.live()
    effective = live.mode if live else None
    in_sync = effective is spec.mode
    conditions = [
        keys_condition(spec, state, errors, notes),
        Condition(
            ConditionType.GATEWAY_READY,
            "True" if gateway_ok and live else "False",
            Reason.PROVISIONED if gateway_ok and live else (reason or Reason.RECONCILING),
            "The tenant's virtual key and team are live in the gateway."
            if gateway_ok and live
            else (message or "No virtual key has been issued yet."),
        ),
        rotation_condition(spec, state, now),
    ]
    ok = ready and gateway_ok and in_sync and not errors
    if ok:
        ready_cond = Condition(
            ConditionType.READY,
            "True",
            Reason.READY,
            f"{spec.mode.value} mode is in effect; agents use Secret {gateway_secret_name(ref.name)}.",
        )
    else:
        first = errors[0] if errors else None
        why = reason or (first.reason if first else Reason.RECONCILING)
        text = message or join_problems(errors) or f"Switching to {spec.mode.value} mode."
        if live is not None:
            text += f" Agents keep working: still serving the {live.mode.value} virtual key {live.alias}"
            if live.mode is Mode.BYOK and state.committed:
                text += f" with {fingerprints(state.committed)}"
            text += "."
        ready_cond = Condition(ConditionType.READY, "False", why, text)
    conditions.append(ready_cond)
    byok = effective is Mode.BYOK or (effective is None and spec.mode is Mode.BYOK)
    status: dict[str, Any] = {
        "observedGeneration": ref.generation,
        "mode": effective.value if effective else None,
        "costTracking": "BYOK" if byok else "Platform",
        "spend": "N/A" if byok else (spend or raw_status.get("spend") or "$0.00"),
        "budget": "N/A" if byok else budget_display(spec),
        "enabledSince": rfc3339(state.enabled_since) if state.enabled_since else None,
        "providers": providers,
        "providerNames": ",".join(p["name"] for p in providers) or ("platform" if not byok else ""),
        "virtualKey": {
            "alias": live.alias,
            "tokenHash": live.token,
            "secretName": gateway_secret_name(ref.name),
            "issuedAt": rfc3339(live.issued_at) if live.issued_at else None,
        }
        if live
        else None,
        "retiringVirtualKeys": [
            {"alias": k.alias, "tokenHash": k.token, "revokeAfter": rfc3339(k.revoke_after)}
            for k in state.keys
            if k.state == "retiring" and k.revoke_after is not None
        ],
        "conditions": merge_conditions(
            raw_status.get("conditions"), conditions, generation=ref.generation, now=now
        ),
    }
    return status


def keys_condition(
    spec: TenantSpec, state: VaultState, errors: Sequence[Problem], notes: Sequence[str] = ()
) -> Condition:
    if spec.mode is Mode.PLATFORM:
        return Condition(
            ConditionType.KEYS_VALID,
            "True",
            Reason.NOT_APPLICABLE,
            "Platform mode uses the platform's provider keys.",
        )
    advice = "".join(f" {note}" for note in notes)
    if errors:
        message = join_problems(errors) + advice
        return Condition(ConditionType.KEYS_VALID, "False", errors[0].reason, message)
    return Condition(
        ConditionType.KEYS_VALID,
        "True",
        Reason.KEYS_VALID,
        f"Validated with the providers: {fingerprints(state.committed)}.{advice}",
    )


def rotation_condition(spec: TenantSpec, state: VaultState, now: datetime) -> Condition:
    if spec.mode is Mode.PLATFORM or not state.committed:
        return Condition(
            ConditionType.ROTATION_DUE,
            "False",
            Reason.NOT_APPLICABLE,
            "No tenant key is committed.",
        )
    old = [c for c in state.committed.values() if now - c.committed_at >= spec.rotation.max_key_age]
    if old:
        names = ", ".join(
            f"{c.provider.value} ({c.fingerprint}, committed {rfc3339(c.committed_at)})"
            for c in old
        )
        return Condition(
            ConditionType.ROTATION_DUE,
            "True",
            Reason.KEY_TOO_OLD,
            f"Older than spec.rotation.maxKeyAge: {names}. Put a new key in the referenced Secret.",
        )
    return Condition(
        ConditionType.ROTATION_DUE,
        "False",
        Reason.KEY_FRESH,
        "Every committed key is younger than spec.rotation.maxKeyAge.",
    )


def budget_condition(spec: TenantSpec, spent: float | Decimal | None, warn_at: float) -> Condition:
    """How much of the platform budget is spent: a reason a platform team can alert on."""
    budget = spec.platform.budget
    if spec.mode is Mode.BYOK or budget is None:
        return Condition(
            ConditionType.BUDGET_AVAILABLE,
            "True",
            Reason.NO_BUDGET,
            "No platform budget applies (BYOK mode, or no spec.platform.budget).",
        )
    used = Decimal(str(spent or 0))
    share = used / budget.max_usd
    text = f"{money(used)} of {budget_display(spec)} spent ({share:.0%})."
    if used >= budget.max_usd:
        return Condition(
            ConditionType.BUDGET_AVAILABLE,
            "False",
            Reason.BUDGET_EXHAUSTED,
            f"{text} The gateway refuses the tenant's calls until the period resets, or until "
            "a platform admin raises spec.platform.budget.maxUSD.",
        )
    if share >= Decimal(str(warn_at)):
        return Condition(
            ConditionType.BUDGET_AVAILABLE,
            "True",
            Reason.BUDGET_NEARLY_SPENT,
            f"{text} That is over the warning share of {warn_at:.0%} (BYOK_BUDGET_WARNING_SHARE).",
        )
    return Condition(ConditionType.BUDGET_AVAILABLE, "True", Reason.WITHIN_BUDGET, text)


def budget_audits(
    before: Sequence[Mapping[str, Any]] | None, after: Sequence[Mapping[str, Any]]
) -> list[AuditEvent]:
    """One Warning when the budget condition turns nearly spent or exhausted (an event from a
    condition change, not one per refresh while it stays so)."""
    old = find(before, ConditionType.BUDGET_AVAILABLE) or {}
    new = find(after, ConditionType.BUDGET_AVAILABLE) or {}
    action = {
        Reason.BUDGET_NEARLY_SPENT.value: AuditAction.BUDGET_WARNING,
        Reason.BUDGET_EXHAUSTED.value: AuditAction.BUDGET_EXHAUSTED,
    }.get(str(new.get("reason")))
    if action is None or old.get("reason") == new.get("reason"):
        return []
    return [AuditEvent(action, str(new.get("message", "")), warning=True)]


def invalid_spec_status(
    ref: TenantRef,
    raw_status: Mapping[str, Any],
    message: str,
    now: datetime,
    reason: Reason = Reason.INVALID_SPEC,
) -> dict[str, Any]:
    """Ready=False for a spec the operator will not act on; nothing else in status changes
    (the tenant keeps what it was served)."""
    cond = Condition(ConditionType.READY, "False", reason, message)
    return {
        "observedGeneration": ref.generation,
        "conditions": merge_conditions(
            raw_status.get("conditions"), [cond], generation=ref.generation, now=now
        ),
    }


def money(amount: float | Decimal) -> str:
    """Dollars to the cent; a spend above zero but under a cent shows as "<$0.01", not "$0.00"."""
    value = Decimal(str(amount))
    if Decimal(0) < value < Decimal("0.01"):
        return "<$0.01"
    return f"${value.quantize(Decimal('0.01'))}"


def budget_display(spec: TenantSpec) -> str:
    budget = spec.platform.budget
    if spec.mode is Mode.BYOK or budget is None:
        return "N/A"
    amount = format(budget.max_usd.normalize(), "f")
    return f"${amount}/{budget.period}"
