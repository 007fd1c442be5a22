"""What the operator remembers of a tenant between passes (JSON beside the encrypted copies in
its vault Secret; no secret material), the names derived from the resource, and the commit rule.

Pure: data in, data out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from byok_operator.api import Mode, Provider


@dataclass(frozen=True)
class TenantRef:
    """Identity of one TenantLLMConfig."""

    namespace: str
    name: str
    uid: str
    generation: int = 0
    created: str = ""  # metadata.creationTimestamp: the oldest claim holds a tenant id


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
    # Models the provider stopped listing for this very key, still served until a re-check
    # at least the confirmation delay after ``unlisted_since`` shows them gone again.
    unlisted: tuple[str, ...] = ()
    unlisted_since: datetime | None = None

    def recheck_due(self, confirm_after: timedelta) -> datetime | None:
        """When the re-check that may confirm a narrowing is due (None: nothing pending)."""
        return self.unlisted_since + confirm_after if self.unlisted_since else None


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


def commit_keys(
    configured: Mapping[Provider, object],
    previous: Mapping[Provider, CommittedKey],
    fresh: Mapping[Provider, tuple[str, tuple[str, ...], datetime]],
    now: datetime,
    confirm_after: timedelta = timedelta(minutes=10),
) -> dict[Provider, CommittedKey]:
    """Validate, then commit: a freshly validated key replaces the committed one; a provider
    whose new key failed keeps its last committed key; providers no longer configured go.

    ``fresh`` maps provider -> (fingerprint, models, validated_at) for keys that passed. For a
    re-validation of the same key, models widen at once and narrow only when confirmed
    (:func:`served_models`).
    """
    committed: dict[Provider, CommittedKey] = {}
    for provider in configured:
        old = previous.get(provider)
        if provider not in fresh:
            if old is not None:
                committed[provider] = old
            continue
        fp, models, validated_at = fresh[provider]
        same = old is not None and old.fingerprint == fp
        if old is not None and same and validated_at == old.validated_at:
            committed[provider] = old  # not asked again this pass (still within the interval)
            continue
        key = CommittedKey(
            provider=provider,
            fingerprint=fp,
            committed_at=old.committed_at if old is not None and same else now,
            validated_at=validated_at,
            models=models,
        )
        committed[provider] = served_models(old, key, confirm_after) if same and old else key
    return committed


def served_models(old: CommittedKey, new: CommittedKey, confirm_after: timedelta) -> CommittedKey:
    """The rule for a provider that lists fewer models for the same key (issue 8.6): a single
    answer never takes access away. The models it stopped listing stay served and are noted
    (``unlisted``); only a re-check at least ``confirm_after`` later that still lacks them
    narrows the key to what the provider lists then. An empty list never confirms (it is what
    a provider hiccup looks like), and models that come back end the wait."""
    dropped = tuple(m for m in old.models if m not in new.models)
    if not dropped:
        return new
    since = old.unlisted_since or new.validated_at
    if new.models and old.unlisted_since and new.validated_at - since >= confirm_after:
        return new
    return new.model_copy(
        update={
            "models": new.models + dropped,
            "unlisted": dropped,
            "unlisted_since": since,
        }
    )
