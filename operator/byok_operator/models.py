"""Typed model of a TenantLLMConfig spec, parsed once per reconcile.

The CRD's OpenAPI schema and CEL rules reject most bad input at admission; this model
re-checks what the operator relies on (so a resource created before a schema change, or
an older CRD, still yields a clear error instead of a crash) and converts durations and
money into Python types.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from byok_operator.api import Mode, Provider

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class SpecError(ValueError):
    """The spec cannot be acted on; the message says which field and how to fix it."""


def parse_duration(text: str) -> timedelta:
    """Parse durations like ``90d``, ``6h``, ``1h30m``, ``0s`` (days, hours, minutes, seconds)."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration; write it like 30d, 6h, 1h30m or 0s")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


class SecretRef(_Model):
    name: str
    key: str


class ProviderSpec(_Model):
    secret_ref: SecretRef
    models: tuple[str, ...] = ()
    rpm_limit: int | None = Field(default=None, ge=1)
    tpm_limit: int | None = Field(default=None, ge=1)


class Providers(_Model):
    openai: ProviderSpec | None = None
    anthropic: ProviderSpec | None = None

    def configured(self) -> dict[Provider, ProviderSpec]:
        found = {Provider.OPENAI: self.openai, Provider.ANTHROPIC: self.anthropic}
        return {name: spec for name, spec in found.items() if spec is not None}


class Budget(_Model):
    max_usd: Decimal = Field(alias="maxUSD")
    period: str = "30d"

    @field_validator("max_usd", mode="before")
    @classmethod
    def _money(cls, value: Any) -> Decimal:
        try:
            amount = Decimal(str(value))
        except InvalidOperation as exc:
            raise ValueError(f'{value!r} is not an amount of US dollars, e.g. "500"') from exc
        if amount <= 0:
            raise ValueError("the budget must be a positive amount of US dollars")
        return amount

    @field_validator("period")
    @classmethod
    def _period(cls, value: str) -> str:
        parse_duration(value)
        return value


class PlatformSpec(_Model):
    budget: Budget | None = None
    models: tuple[str, ...] = ()


MAX_GRACE_PERIOD = timedelta(days=7)


class RotationSpec(_Model):
    grace_period: timedelta = timedelta(0)
    max_key_age: timedelta = timedelta(days=90)
    virtual_key_max_age: timedelta | None = None

    @field_validator("grace_period", "max_key_age", "virtual_key_max_age", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _bounded(self) -> RotationSpec:
        """The CRD's caps, again, so live virtual keys stay bounded whatever the API server
        let through: a grace of at most 7d, and a rotation schedule longer than it (so a new
        scheduled key never comes before the last replaced one is revoked)."""
        if self.grace_period > MAX_GRACE_PERIOD:
            raise ValueError("gracePeriod must be at most 7d")
        age = self.virtual_key_max_age
        if age is not None and (age <= timedelta(0) or age <= self.grace_period):
            raise ValueError("virtualKeyMaxAge must be more than zero and longer than gracePeriod")
        return self


class ValidationSpec(_Model):
    interval: timedelta = timedelta(hours=6)

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class TenantSpec(_Model):
    tenant_id: str
    mode: Mode = Mode.PLATFORM
    providers: Providers = Providers()
    platform: PlatformSpec = PlatformSpec()
    rotation: RotationSpec = RotationSpec()
    validation: ValidationSpec = ValidationSpec()


def parse_spec(spec: dict[str, Any], *, name: str) -> TenantSpec:
    """Parse and check a spec, defaulting ``tenantId`` to the resource name.

    Raises SpecError with a message that names the field and the fix.
    """
    data = dict(spec)
    data.setdefault("tenantId", name)
    try:
        parsed = TenantSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SpecError(
            f"The spec is invalid: {problems}. Fix the resource and apply it again."
        ) from None
    if parsed.mode is Mode.BYOK and not parsed.providers.configured():
        raise SpecError(
            "spec.mode is BYOK but spec.providers names no provider. Add spec.providers.openai "
            "or spec.providers.anthropic with a secretRef, or set spec.mode: Platform."
        )
    return parsed
