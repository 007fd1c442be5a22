"""What a tenant should have in the gateway (DESIGN §6), as data: pure, no I/O.

The gateway model:

- one *shared* deployment per (provider, model) any tenant uses, named without ``/``
  (``byok-openai-gpt-4o-mini``), whose own key is a sentinel no provider accepts; their
  number grows with the distinct models, never with the tenants;
- per BYOK tenant one credential per provider holding the tenant's key, and a BYOK team
  whose ``metadata.model_config`` points each shared model at that credential (model
  entries only, never ``defaultconfig``, so an OpenAI key is never sent to Anthropic);
- per tenant a platform team that carries the platform budget, so no virtual-key rotation
  or mode switch resets spend;
- one virtual key in the team of the mode in effect, with explicit models and aliases.

Two teams, not one: LiteLLM books every call's spend on the key's team, so a BYOK call in a
shared team would eat the platform budget. The platform team is the tenant's ledger and
lives as long as the resource; the BYOK team lives as long as a BYOK key does.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from byok_operator.api import Mode, Provider
from byok_operator.models import TenantSpec

SENTINEL_KEY = "sk-byok-sentinel-placeholder-not-a-key"
"""The shared deployments' own api_key: a call that reaches a provider with it (a key outside
any BYOK team, a credential gone missing) is refused by the provider, never served on
somebody's key. It is not a secret."""


def _slug(model: str) -> str:
    slug = re.sub(r"[^a-z0-9.-]+", "-", model.lower()).strip("-")[:48]
    if slug == model:
        return slug
    # Models that slug alike ("gpt_4o" and "gpt-4o") must not share a deployment.
    return f"{slug}-{hashlib.sha256(model.encode()).hexdigest()[:6]}"


def shared_model_name(provider: Provider, model: str) -> str:
    """The shared deployment's public name (no ``/``: LiteLLM would read a provider from it)."""
    return f"byok-{provider.value}-{_slug(model)}"


def credential_name(uid: str, provider: Provider) -> str:
    return f"byok-{uid}-{provider.value}"


def platform_team_id(uid: str) -> str:
    return f"tlc-{uid}"


def byok_team_id(uid: str) -> str:
    return f"tlc-{uid}-byok"


def team_mode(team_id: str) -> Mode:
    return Mode.BYOK if team_id.endswith("-byok") else Mode.PLATFORM


def digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


@dataclass(frozen=True)
class SharedDeployment:
    provider: Provider
    model: str

    @property
    def name(self) -> str:
        return shared_model_name(self.provider, self.model)

    @property
    def litellm_model(self) -> str:
        return f"{self.provider.value}/{self.model}"


@dataclass(frozen=True)
class TeamShape:
    """A LiteLLM team as the operator wants it; ``digest`` tells when it must be rewritten."""

    team_id: str
    alias: str
    models: tuple[str, ...]
    # shared model name -> {provider: {"litellm_credentials": credential name}}
    model_config: Mapping[str, Mapping[str, Mapping[str, str]]] = field(default_factory=dict)
    max_budget: Decimal | None = None
    budget_duration: str | None = None

    def digest(self) -> str:
        return digest(
            {
                "alias": self.alias,
                "models": sorted(self.models),
                "model_config": self.model_config,
                "max_budget": str(self.max_budget) if self.max_budget is not None else None,
                "budget_duration": self.budget_duration,
            }
        )


@dataclass(frozen=True)
class KeyShape:
    """Everything a virtual key is limited to; its digest tells when the key must be updated."""

    mode: Mode
    team_id: str
    models: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)
    model_rpm_limit: Mapping[str, int] = field(default_factory=dict)
    model_tpm_limit: Mapping[str, int] = field(default_factory=dict)

    def digest(self) -> str:
        return digest(
            {
                "mode": self.mode.value,
                "team": self.team_id,
                "models": sorted(self.models),
                "aliases": dict(sorted(self.aliases.items())),
                "rpm": dict(sorted(self.model_rpm_limit.items())),
                "tpm": dict(sorted(self.model_tpm_limit.items())),
            }
        )


@dataclass(frozen=True)
class ByokPlan:
    deployments: tuple[SharedDeployment, ...]
    credentials: Mapping[Provider, str]
    team: TeamShape
    key: KeyShape


def byok_models(
    spec: TenantSpec, provider: Provider, available: Sequence[str], cap: int
) -> tuple[str, ...]:
    """A tenant's models from one provider: its allow-list, else what its key lists (capped)."""
    configured = spec.providers.configured()[provider]
    if configured.models:
        return tuple(configured.models)
    return tuple(sorted(available)[:cap])


def byok_plan(
    uid: str,
    label: str,
    spec: TenantSpec,
    available: Mapping[Provider, Sequence[str]],
    cap: int,
) -> ByokPlan:
    """The BYOK objects for the providers whose key is committed (``available``: their models).

    ``rpmLimit`` / ``tpmLimit`` become per-model limits on the key (LiteLLM limits a key per
    model or as a whole, not per provider): each of the provider's models gets the limit.
    """
    deployments = [
        SharedDeployment(provider, model)
        for provider in spec.providers.configured()
        if provider in available
        for model in byok_models(spec, provider, available[provider], cap)
    ]
    credentials = {
        p: credential_name(uid, p) for p in spec.providers.configured() if p in available
    }
    limits = spec.providers.configured()
    team = TeamShape(
        team_id=byok_team_id(uid),
        alias=f"{label} (BYOK)",
        models=tuple(d.name for d in deployments),
        model_config={
            d.name: {d.provider.value: {"litellm_credentials": credentials[d.provider]}}
            for d in deployments
        },
    )
    key = KeyShape(
        mode=Mode.BYOK,
        team_id=team.team_id,
        models=team.models,
        aliases={d.model: d.name for d in deployments},
        model_rpm_limit={
            d.name: rpm for d in deployments if (rpm := limits[d.provider].rpm_limit) is not None
        },
        model_tpm_limit={
            d.name: tpm for d in deployments if (tpm := limits[d.provider].tpm_limit) is not None
        },
    )
    return ByokPlan(tuple(deployments), credentials, team, key)


def platform_team(
    uid: str, label: str, spec: TenantSpec, default_models: Sequence[str]
) -> TeamShape:
    """The tenant's ledger: the platform models and budget (none while in BYOK mode)."""
    budget = spec.platform.budget if spec.mode is Mode.PLATFORM else None
    return TeamShape(
        team_id=platform_team_id(uid),
        alias=label,
        models=tuple(spec.platform.models or default_models),
        max_budget=budget.max_usd if budget else None,
        budget_duration=budget.period if budget else None,
    )


def platform_key_shape(team: TeamShape) -> KeyShape:
    return KeyShape(mode=Mode.PLATFORM, team_id=team.team_id, models=team.models)


def missing_deployments(
    wanted: Sequence[SharedDeployment], existing: set[str]
) -> list[SharedDeployment]:
    """Shared deployments to create: wanted and not yet in the gateway (created on first use)."""
    return [d for d in dict.fromkeys(wanted) if d.name not in existing]
