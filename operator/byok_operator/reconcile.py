"""Pure decisions of the reconciler: names, desired gateway objects, key lifecycle, status.

Nothing here does I/O or imports kopf: each function takes data and returns data, so every
rule (what to commit, when to issue or revoke a virtual key, what the status says) is tested
without a cluster or a gateway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from byok_operator.api import Mode, Provider
from byok_operator.core.gateway import KeyShape
from byok_operator.models import TenantSpec


@dataclass(frozen=True)
class TenantRef:
    """Identity of one TenantLLMConfig."""

    namespace: str
    name: str
    uid: str
    generation: int = 0


# --- Names. Deterministic from the resource uid, so a retry after a crash finds, rather
# --- than duplicates, what an earlier attempt created.


def key_alias(uid: str, serial: int) -> str:
    return f"tlc-{uid}-{serial}"


def vault_secret_name(uid: str) -> str:
    return f"tlc-vault-{uid}"


def gateway_secret_name(name: str) -> str:
    return f"{name}-llm-gateway"


# --- What the operator remembers between reconciles (stored as JSON beside the encrypted
# --- copies in the vault Secret; it holds no secret material).

KeyState = Literal["pending", "live", "retiring"]


class KeyRecord(BaseModel):
    alias: str
    serial: int
    mode: Mode
    shape: str
    state: KeyState
    token: str | None = None
    issued_at: datetime | None = None
    revoke_after: datetime | None = None


class CommittedKey(BaseModel):
    provider: Provider
    fingerprint: str
    committed_at: datetime
    validated_at: datetime
    models: tuple[str, ...] = ()


class VaultState(BaseModel):
    keys: list[KeyRecord] = Field(default_factory=list)
    committed: dict[Provider, CommittedKey] = Field(default_factory=dict)
    # What the gateway was told, so a pass writes only changes and never looks before a
    # create this record says never happened: the committed key (fingerprint) each
    # credential holds, and the digest of each team as last written.
    credentials: dict[Provider, str] = Field(default_factory=dict)
    teams: dict[str, str] = Field(default_factory=dict)
    # Bumped on every write; the status echoes the revision whose gateway writes completed,
    # so a pass knows when an earlier one stopped half-way and must re-apply everything.
    revision: int = 0
    # 1: per-tenant deployments (before DESIGN §6); 2: shared deployments and teams.
    gateway_model: int = 1
    enabled_since: datetime | None = None
    rotate_request: str | None = None

    def live(self) -> KeyRecord | None:
        return next((k for k in self.keys if k.state == "live"), None)

    def pending(self) -> KeyRecord | None:
        return next((k for k in self.keys if k.state == "pending"), None)

    def next_serial(self) -> int:
        return max((k.serial for k in self.keys), default=0) + 1

    def is_new(self) -> bool:
        """Nothing was ever written for this tenant (so it has no legacy objects either)."""
        return not self.keys and not self.committed and self.revision == 0


# --- Virtual key lifecycle: issue new, publish, then revoke the old after the grace period.


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


def forget(state: VaultState, aliases: Sequence[str]) -> VaultState:
    return state.model_copy(update={"keys": [k for k in state.keys if k.alias not in aliases]})


# --- Presentation.


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


def commit_keys(
    configured: Mapping[Provider, object],
    previous: Mapping[Provider, CommittedKey],
    fresh: Mapping[Provider, tuple[str, tuple[str, ...], datetime]],
    now: datetime,
) -> dict[Provider, CommittedKey]:
    """Validate, then commit: a freshly validated key replaces the committed one; a provider
    whose new key failed keeps its last committed key; providers no longer configured go.

    ``fresh`` maps provider -> (fingerprint, models, validated_at) for keys that passed.
    """
    committed: dict[Provider, CommittedKey] = {}
    for provider in configured:
        old = previous.get(provider)
        if provider in fresh:
            fp, models, validated_at = fresh[provider]
            since = old.committed_at if old is not None and old.fingerprint == fp else now
            committed[provider] = CommittedKey(
                provider=provider,
                fingerprint=fp,
                committed_at=since,
                validated_at=validated_at,
                models=models,
            )
        elif old is not None:
            committed[provider] = old
    return committed
