"""Operator settings, read once at startup from environment variables (see README)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta


class SettingsError(RuntimeError):
    """A required setting is missing or malformed; the message names the variable."""


def _names(value: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in value.split(",") if m.strip())


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name) or ""
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise SettingsError(
            f"{name}={raw!r} is not a share of the budget; set a number above 0 and at most 1, "
            f"e.g. {name}={default:g} (warn at {default:.0%} spent)"
        )
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(
            f"{name}={raw!r} is not a number of seconds; set e.g. {name}={default:g}"
        ) from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    litellm_url: str
    litellm_master_key: str = field(repr=False)
    gateway_public_url: str
    operator_namespace: str
    encryption_secret: str
    encryption_keys_file: str | None
    openai_base_url: str | None
    anthropic_base_url: str | None
    platform_models: tuple[str, ...]
    platform_catalogue: tuple[str, ...]  # what spec.platform.models may name
    max_default_models: int
    validation_timeout: float
    validation_cache_ttl: float
    validation_concurrency: int
    repair_interval: float
    spend_interval: float
    retry_delay: float
    instance_id: str
    unplanned_rotation_grace: float
    gateway_timeout: float
    max_concurrent_reconciles: int
    gateway_concurrency: int  # LiteLLM requests in flight, across all passes and sweeps
    narrowing_confirm_after: timedelta = timedelta(minutes=10)  # see core.vault.served_models
    budget_warning_share: float = 0.8  # BudgetNearlySpent (and one Warning) from this share on

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        url = env.get("LITELLM_URL", "").rstrip("/")
        master = env.get("LITELLM_MASTER_KEY", "")
        if not url:
            raise SettingsError(
                "LITELLM_URL is not set: point it at the LiteLLM proxy, e.g. http://litellm:4000"
            )
        if not master:
            raise SettingsError(
                "LITELLM_MASTER_KEY is not set: give the operator the proxy's master key "
                "(the chart reads it from a Secret)"
            )
        models = _names(env.get("BYOK_PLATFORM_MODELS", "gpt-4o-mini"))
        # The catalogue always offers the default models, whatever else it lists.
        catalogue = tuple(dict.fromkeys(models + _names(env.get("BYOK_PLATFORM_CATALOGUE", ""))))
        return cls(
            litellm_url=url,
            litellm_master_key=master,
            gateway_public_url=env.get("BYOK_GATEWAY_PUBLIC_URL", url).rstrip("/"),
            operator_namespace=env.get("BYOK_OPERATOR_NAMESPACE", "byok-system"),
            encryption_secret=env.get("BYOK_ENCRYPTION_SECRET", "byok-operator-encryption"),
            encryption_keys_file=env.get("BYOK_ENCRYPTION_KEYS_FILE") or None,
            openai_base_url=env.get("OPENAI_BASE_URL") or None,
            anthropic_base_url=env.get("ANTHROPIC_BASE_URL") or None,
            platform_models=models,
            platform_catalogue=catalogue,
            max_default_models=int(_seconds(env, "BYOK_MAX_DEFAULT_MODELS", 50)),
            validation_timeout=_seconds(env, "BYOK_VALIDATION_TIMEOUT", 10),
            validation_cache_ttl=_seconds(env, "BYOK_VALIDATION_CACHE_TTL", 300),
            validation_concurrency=int(_seconds(env, "BYOK_VALIDATION_CONCURRENCY", 16)),
            repair_interval=_seconds(env, "BYOK_REPAIR_INTERVAL", 60),
            spend_interval=_seconds(env, "BYOK_SPEND_INTERVAL", 60),
            retry_delay=_seconds(env, "BYOK_RETRY_DELAY", 30),
            instance_id=env.get("BYOK_INSTANCE_ID", ""),  # "" = the cluster's (see startup)
            unplanned_rotation_grace=_seconds(env, "BYOK_UNPLANNED_ROTATION_GRACE", 120),
            gateway_timeout=_seconds(env, "BYOK_GATEWAY_TIMEOUT", 60),
            # Passes overlap their provider checks and Kubernetes writes; what is sized to the
            # gateway is the number of LiteLLM requests in flight (see LiteLLMGateway).
            max_concurrent_reconciles=int(_seconds(env, "BYOK_MAX_CONCURRENT_RECONCILES", 64)),
            gateway_concurrency=int(_seconds(env, "BYOK_GATEWAY_CONCURRENCY", 16)),
            narrowing_confirm_after=timedelta(
                seconds=_seconds(env, "BYOK_NARROWING_CONFIRM_AFTER", 600)
            ),
            budget_warning_share=_share(env, "BYOK_BUDGET_WARNING_SHARE", 0.8),
        )
