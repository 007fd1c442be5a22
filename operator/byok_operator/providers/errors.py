"""The error taxonomy of key validation: one exception type, one condition reason per failure.

Every message is written for the admin reading `kubectl describe`: what is wrong, why it
usually happens, and what to do. Messages name a key by its fingerprint only. Nothing a
provider or an SDK says is copied into a message verbatim, because provider error texts can
echo (part of) the key: OpenAI's 401 reads "Incorrect API key provided: sk-abc***wxyz".
Only short, well-formed tokens (an error code, a request id) are carried over.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from byok_operator.api import Provider, Reason

VALIDATION_REASONS: Final = frozenset(
    {
        Reason.SECRET_NOT_FOUND,
        Reason.INVALID_FORMAT,
        Reason.INVALID_KEY,
        Reason.VALIDATION_UNAVAILABLE,
        Reason.MODELS_NOT_AVAILABLE,
    }
)

PROVIDER_NAMES: Final = {Provider.OPENAI: "OpenAI", Provider.ANTHROPIC: "Anthropic"}

# Provider error codes and request ids look like `invalid_api_key` or `req_011CZk...`.
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.:\-]{1,80}")
_RETRY_HINT = "the operator retries with backoff"


class KeyValidationError(Exception):
    """A provider key could not be validated; `reason` is the condition reason to report.

    `retryable` is True only for `ValidationUnavailable` (network, timeout, 429, 5xx): the key
    may be fine and a later attempt can succeed. Every other reason is permanent until the
    Secret or the spec changes, so retrying it would only hammer the provider.
    """

    provider: Provider
    reason: Reason
    message: str
    fingerprint: str | None
    retryable: bool
    retry_after: float | None
    missing_models: tuple[str, ...]

    def __init__(
        self,
        provider: Provider,
        reason: Reason,
        message: str,
        *,
        fingerprint: str | None = None,
        retry_after: float | None = None,
        missing_models: Sequence[str] = (),
    ) -> None:
        if reason not in VALIDATION_REASONS:
            raise ValueError(f"{reason!r} is not a key validation reason")
        super().__init__(message)
        self.provider = Provider(provider)
        self.reason = reason
        self.message = message
        self.fingerprint = fingerprint
        self.retryable = reason is Reason.VALIDATION_UNAVAILABLE
        self.retry_after = retry_after
        self.missing_models = tuple(missing_models)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"KeyValidationError(provider={self.provider.value!r}, reason={self.reason.value!r}, "
            f"fingerprint={self.fingerprint!r}, retryable={self.retryable})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.provider, self.reason, self.message), self.__dict__)

    def clone(self) -> KeyValidationError:
        """A fresh exception with the same fields, to raise again without a shared traceback."""
        return KeyValidationError(
            self.provider,
            self.reason,
            self.message,
            fingerprint=self.fingerprint,
            retry_after=self.retry_after,
            missing_models=self.missing_models,
        )


def provider_name(provider: Provider) -> str:
    return PROVIDER_NAMES[provider]


def key_label(provider: Provider, fingerprint: str) -> str:
    """How messages name a key: `The OpenAI key sha256:1a2b3c4d5e6f`."""
    return f"The {provider_name(provider)} key {fingerprint}"


def safe_url(url: object) -> str:
    """A URL fit for a message: no user info, query or fragment (they may carry credentials)."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # IPv6 literal
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def safe_token(value: object) -> str | None:
    """`value` if it is a short identifier-like string that cannot be (part of) a key, else None."""
    if not isinstance(value, str) or not _SAFE_TOKEN.fullmatch(value) or "sk-" in value:
        return None
    return value


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `retry-after` header given in seconds; None if absent or an HTTP date."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 86400 else None


def _details(status: int | None, code: str | None, request_id: str | None) -> str:
    parts = [f"HTTP {status}"] if status is not None else []
    if code:
        parts.append(f"code {code}")
    if request_id:
        parts.append(f"request id {request_id}")
    return f" ({', '.join(parts)})" if parts else ""


def from_status(
    provider: Provider,
    fingerprint: str,
    status: int,
    *,
    base_url: str,
    code: str | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> KeyValidationError:
    """Map the HTTP status of a failed model listing to the taxonomy.

    401 and 403 mean the provider looked at the key and refused it: permanent until the Secret
    changes. Everything else says nothing about the key (rate limit, outage, a wrong base URL
    or a proxy in between), so it is `ValidationUnavailable` and retried.
    """
    name = provider_name(provider)
    label = f"the key {fingerprint}"
    details = _details(status, safe_token(code), safe_token(request_id))
    url = safe_url(base_url)
    if status == 401:
        return KeyValidationError(
            provider,
            Reason.INVALID_KEY,
            f"{name} rejected {label}{details} at {url}: the key is wrong, revoked or expired. "
            f"Create a new key in the {name} console and put it in the Secret; "
            "the key is validated again as soon as the Secret changes.",
            fingerprint=fingerprint,
        )
    if status == 403:
        return KeyValidationError(
            provider,
            Reason.INVALID_KEY,
            f"{name} refused to list models for {label}{details} at {url}: the key is "
            "recognised but lacks permission, for example a restricted key without read "
            "access to models, or a disabled project, organization or workspace. Give the key "
            "read access to models (or use an unrestricted key) and update the Secret; "
            "the key is validated again as soon as the Secret changes.",
            fingerprint=fingerprint,
        )
    when = f" (retry suggested after {retry_after:g}s)" if retry_after is not None else ""
    if status == 429:
        message = (
            f"{name} rate-limited the validation of {label}{details} at {url}. This is "
            f"temporary and {_RETRY_HINT}{when}. If it persists, check the account's rate "
            "limits and quota: code insufficient_quota means the account is out of credit."
        )
    elif status >= 500:
        message = (
            f"{name} answered with a server error while validating {label}{details} at {url}. "
            f"This is usually temporary and {_RETRY_HINT}{when}; if it persists, check the "
            f"{name} status page."
        )
    else:
        message = (
            f"{name} answered the model listing for {label} with an unexpected status"
            f"{details} at {url}. This says nothing about the key; check the configured base "
            f"URL (for OpenAI it ends in /v1) and any proxy in between. {_RETRY_HINT.capitalize()}."
        )
    return KeyValidationError(
        provider,
        Reason.VALIDATION_UNAVAILABLE,
        message,
        fingerprint=fingerprint,
        retry_after=retry_after,
    )


def timed_out(
    provider: Provider, fingerprint: str, *, base_url: str, timeout: float
) -> KeyValidationError:
    name = provider_name(provider)
    url = safe_url(base_url)
    return KeyValidationError(
        provider,
        Reason.VALIDATION_UNAVAILABLE,
        f"{name} did not answer within {timeout:g}s while validating the key {fingerprint} "
        f"at {url}. {_RETRY_HINT.capitalize()}; if it "
        "persists, check the operator's network egress to the provider (proxy, firewall, "
        "NetworkPolicy, DNS) or raise the validation timeout.",
        fingerprint=fingerprint,
    )


def unreachable(
    provider: Provider, fingerprint: str, *, base_url: str, cause: str
) -> KeyValidationError:
    name = provider_name(provider)
    url = safe_url(base_url)
    return KeyValidationError(
        provider,
        Reason.VALIDATION_UNAVAILABLE,
        f"Could not connect to {name} at {url} to validate the key {fingerprint} "
        f"({cause}). {_RETRY_HINT.capitalize()}; if it persists, check DNS, egress rules "
        "(NetworkPolicy, firewall, proxy) and the configured base URL.",
        fingerprint=fingerprint,
    )


def unexpected(
    provider: Provider, fingerprint: str, *, base_url: str, cause: str
) -> KeyValidationError:
    """An error the taxonomy does not foresee; only its type name is kept, never its text."""
    name = provider_name(provider)
    url = safe_url(base_url)
    return KeyValidationError(
        provider,
        Reason.VALIDATION_UNAVAILABLE,
        f"Validating the key {fingerprint} against {name} at {url} failed "
        f"unexpectedly ({cause}). {_RETRY_HINT.capitalize()}; if it persists, check the "
        "configured base URL and report it with the operator version.",
        fingerprint=fingerprint,
    )


def models_not_available(
    provider: Provider,
    fingerprint: str,
    *,
    missing: Sequence[str],
    available: Sequence[str],
    suggestions: dict[str, str],
) -> KeyValidationError:
    """Allow-listed models the key cannot use, with near matches and a sample of what it can."""
    name = provider_name(provider)
    shown = ", ".join(missing[:10]) + (
        f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    )
    hints = "; ".join(f"did you mean {suggestions[m]} for {m}" for m in missing if m in suggestions)
    sample = ", ".join(available[:5]) + (", ..." if len(available) > 5 else "")
    offer = f"{name} lists {len(available)} models for this key"
    offer += f" ({sample})" if available else ""
    return KeyValidationError(
        provider,
        Reason.MODELS_NOT_AVAILABLE,
        f"{key_label(provider, fingerprint)} cannot use "
        f"{len(missing)} allow-listed model{'s' if len(missing) != 1 else ''}: {shown}. "
        f"{offer}.{' ' + hints[0].upper() + hints[1:] + '.' if hints else ''} Remove or correct "
        f"them in spec.providers.{provider.value}.models, or use a key whose account can use "
        "them; validation runs again when the spec or the Secret changes.",
        fingerprint=fingerprint,
        missing_models=missing,
    )
