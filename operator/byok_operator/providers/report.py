"""Test keys without saving anything: the one check behind `kubectl byok test-keys` and the
HTTP API's `test-keys`, built on the operator's own validator and error taxonomy (so a key
that passes here passes in the operator, and fails there with the same reason and advice).

A report names a key by its fingerprint only; its `error` is the validator's message, which
never quotes a key or a provider's error text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from byok_operator.api import Provider, Reason
from byok_operator.crypto import fingerprint
from byok_operator.providers.errors import PROVIDER_NAMES, KeyValidationError
from byok_operator.providers.validator import KeyValidator

# One line per reason, as a dashboard shows it; the message below it says what to do.
SUMMARIES: Final = {
    Reason.INVALID_KEY: "Invalid API key",
    Reason.INVALID_FORMAT: "Not a valid key format",
    Reason.VALIDATION_UNAVAILABLE: "Could not be checked now",
    Reason.MODELS_NOT_AVAILABLE: "Models not available to this key",
    Reason.SECRET_NOT_FOUND: "Key not found",
}
SHOWN_MODELS: Final = 5


@dataclass(frozen=True)
class KeyReport:
    provider: Provider
    fingerprint: str
    valid: bool
    models: tuple[str, ...] = ()
    reason: Reason | None = None
    error: str | None = None

    @property
    def summary(self) -> str:
        name = PROVIDER_NAMES[self.provider]
        if self.valid:
            return f"✅ {name}: Valid ({len(self.models)} models available)"
        assert self.reason is not None
        return f"❌ {name}: {SUMMARIES.get(self.reason, self.reason.value)}"

    def as_json(self) -> dict[str, Any]:
        """The HTTP API's shape per provider, plus reason and fingerprint for scripts."""
        return {
            "valid": self.valid,
            "models": list(self.models),
            "error": self.error,
            "reason": self.reason.value if self.reason else None,
            "fingerprint": self.fingerprint,
        }


async def check_keys(
    validator: KeyValidator,
    keys: Mapping[Provider, str],
    allowed_models: Mapping[Provider, Sequence[str]] | None = None,
) -> dict[Provider, KeyReport]:
    """Validate each key against its provider (concurrently, bypassing the cache: a test is
    asked for now, not five minutes ago)."""
    allowed = allowed_models or {}
    providers = list(keys)
    results = await asyncio.gather(
        *(_test_one(validator, p, keys[p], allowed.get(p, ())) for p in providers)
    )
    return dict(zip(providers, results, strict=True))


async def _test_one(
    validator: KeyValidator, provider: Provider, key: str, allowed: Sequence[str]
) -> KeyReport:
    fp = fingerprint(key)
    try:
        validated = await validator.validate(provider, key, allowed, use_cache=False)
    except KeyValidationError as exc:
        return KeyReport(provider, fp, valid=False, reason=exc.reason, error=exc.message)
    return KeyReport(provider, fp, valid=True, models=validated.models)


def format_reports(reports: Mapping[Provider, KeyReport], *, shown: int = SHOWN_MODELS) -> str:
    """Human output: a summary line per key, then its first models or the advice."""
    lines: list[str] = []
    for report in reports.values():
        lines.append(report.summary)
        if report.valid:
            first = ", ".join(report.models[:shown])
            more = len(report.models) - shown
            lines.append(f"   {first}" + (f" (and {more} more)" if more > 0 else ""))
        elif report.error:
            lines.append(f"   {report.error}")
    return "\n".join(lines)
