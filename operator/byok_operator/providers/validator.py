"""Validate provider keys: offline format check, then the provider's model list.

Provider calls are the scarce resource: a platform where 1,000 tenants share one key must
cost one call, and a restart that re-validates every tenant must not open a connection per
tenant at once. So the validator
- caches outcomes per (provider, base URL, key fingerprint) for `cache_ttl` seconds: successes
  and `InvalidKey` (permanent until the Secret changes), never retryable failures;
- coalesces concurrent validations of the same key into one provider call (single-flight);
- bounds concurrent provider calls with a semaphore (`max_concurrency`).
The allow-list check runs on every call, against the cached model list, so tenants sharing a
key with different allow-lists each get their own answer.

The cache holds fingerprints and model lists, never keys. A `KeyValidator` belongs to the event
loop that first uses it; close it with `aclose()` (or `async with`).
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Protocol

from byok_operator import metrics
from byok_operator.api import Provider, Reason
from byok_operator.crypto import fingerprint
from byok_operator.providers import errors
from byok_operator.providers.anthropic import AnthropicModelLister
from byok_operator.providers.errors import KeyValidationError
from byok_operator.providers.formats import check_format
from byok_operator.providers.openai import OpenAIModelLister

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_CACHE_TTL: Final = 300.0
DEFAULT_MAX_CONCURRENCY: Final = 16
# Expired entries are dropped lazily; past this size a store also sweeps the whole cache.
_SWEEP_THRESHOLD: Final = 4096


@dataclass(frozen=True, slots=True)
class ValidatedKey:
    """A key the provider accepted, by fingerprint, with the models it can use."""

    provider: Provider
    fingerprint: str
    models: tuple[str, ...]
    validated_at: datetime


class ModelLister(Protocol):
    async def list_models(self, key: str) -> list[str]: ...

    async def aclose(self) -> None: ...


Outcome = ValidatedKey | KeyValidationError
_CacheKey = tuple[Provider, str | None, str]


@dataclass(frozen=True, slots=True)
class _Entry:
    outcome: Outcome
    stored_at: datetime


def _utcnow() -> datetime:
    return datetime.now(UTC)


class KeyValidator:
    """Validates provider keys with caching, single-flight and a concurrency bound.

    `openai_base_url` / `anthropic_base_url` of None let the SDKs read `OPENAI_BASE_URL` /
    `ANTHROPIC_BASE_URL`, then use the public APIs. `clock` returns an aware datetime; tests
    inject a fake one to expire the cache.
    """

    def __init__(
        self,
        *,
        openai_base_url: str | None = None,
        anthropic_base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if timeout <= 0 or cache_ttl < 0 or max_concurrency < 1:
            raise ValueError("timeout must be > 0, cache_ttl >= 0 and max_concurrency >= 1")
        self._base_urls: dict[Provider, str | None] = {
            Provider.OPENAI: openai_base_url,
            Provider.ANTHROPIC: anthropic_base_url,
        }
        self._listers: dict[Provider, ModelLister] = {
            Provider.OPENAI: OpenAIModelLister(base_url=openai_base_url, timeout=timeout),
            Provider.ANTHROPIC: AnthropicModelLister(base_url=anthropic_base_url, timeout=timeout),
        }
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._cache: dict[_CacheKey, _Entry] = {}
        self._inflight: dict[_CacheKey, asyncio.Task[Outcome]] = {}
        self._tasks: set[asyncio.Task[Outcome]] = set()

    async def validate(
        self,
        provider: Provider,
        key: str,
        allowed_models: Sequence[str] = (),
        *,
        use_cache: bool = True,
    ) -> ValidatedKey:
        """Check `key`'s format, then that the provider accepts it and offers `allowed_models`.

        `use_cache=False` forces a provider call (periodic re-validation); a call already in
        flight for the same key is joined rather than duplicated. Raises `KeyValidationError`.
        """
        provider = Provider(provider)
        check_format(provider, key)
        cache_key = (provider, self._base_urls[provider], fingerprint(key))
        outcome = self._cached(cache_key) if use_cache else None
        if outcome is None:
            outcome = await self._join_or_call(cache_key, key)
        if isinstance(outcome, KeyValidationError):
            raise outcome.clone()
        _check_allowed(outcome, allowed_models)
        return outcome

    def invalidate(self, fingerprint: str) -> None:
        """Forget every cached outcome for the key with this fingerprint.

        A provider call already in flight still answers its current waiters, but its outcome
        is not cached and later validations start a new call.
        """
        for cache_key in [k for k in self._cache if k[2] == fingerprint]:
            del self._cache[cache_key]
        for cache_key in [k for k in self._inflight if k[2] == fingerprint]:
            del self._inflight[cache_key]

    async def aclose(self) -> None:
        for lister in self._listers.values():
            await lister.aclose()

    async def __aenter__(self) -> KeyValidator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _cached(self, cache_key: _CacheKey) -> Outcome | None:
        entry = self._cache.get(cache_key)
        if entry is None:
            return None
        if self._expired(entry):
            del self._cache[cache_key]
            return None
        log.debug("Cached validation outcome for %s key %s", cache_key[0].value, cache_key[2])
        return entry.outcome

    def _expired(self, entry: _Entry) -> bool:
        return (self._clock() - entry.stored_at).total_seconds() >= self._cache_ttl

    async def _join_or_call(self, cache_key: _CacheKey, key: str) -> Outcome:
        task = self._inflight.get(cache_key)
        if task is None:
            task = asyncio.create_task(self._call_provider(cache_key, key))
            self._inflight[cache_key] = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # One waiter giving up (cancelled) must not cancel the call the others wait for.
        return await asyncio.shield(task)

    async def _call_provider(self, cache_key: _CacheKey, key: str) -> Outcome:
        provider, _, fp = cache_key
        outcome: Outcome
        try:
            async with self._semaphore:
                models = await self._listers[provider].list_models(key)
        except KeyValidationError as exc:
            # A clone carries no traceback, so the cache keeps no frames (and no key) alive.
            outcome = exc.clone()
            metrics.VALIDATIONS.labels(provider.value, outcome.reason.value).inc()
            log.info("Validation of %s key %s failed: %s", provider.value, fp, outcome)
        else:
            outcome = ValidatedKey(provider, fp, tuple(sorted(models)), self._clock())
            metrics.VALIDATIONS.labels(provider.value, "Valid").inc()
            log.info("Validated %s key %s: %d models", provider.value, fp, len(models))
        finally:
            # Still registered means nobody invalidated the key meanwhile: the outcome is current.
            current = self._inflight.get(cache_key) is asyncio.current_task()
            if current:
                del self._inflight[cache_key]
        if current and (isinstance(outcome, ValidatedKey) or outcome.reason is Reason.INVALID_KEY):
            self._store(cache_key, outcome)
        return outcome

    def _store(self, cache_key: _CacheKey, outcome: Outcome) -> None:
        if len(self._cache) >= _SWEEP_THRESHOLD:
            for stale in [k for k, entry in self._cache.items() if self._expired(entry)]:
                del self._cache[stale]
        self._cache[cache_key] = _Entry(outcome, self._clock())


_DATED_SNAPSHOT = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")


def offered(available: Iterable[str], model: str) -> bool:
    """Whether ``model`` is among ``available``, directly or as the alias of a dated snapshot.

    Providers list dated ids (``claude-sonnet-4-5-20250929``) and accept the undated alias
    (``claude-sonnet-4-5``) in requests, so an allow-list may name either.
    """
    return any(
        name == model or (name.startswith(model) and _DATED_SNAPSHOT.fullmatch(name[len(model) :]))
        for name in available
    )


def _check_allowed(validated: ValidatedKey, allowed_models: Sequence[str]) -> None:
    missing = [
        model for model in dict.fromkeys(allowed_models) if not offered(validated.models, model)
    ]
    if not missing:
        return
    suggestions = {}
    for model in missing:
        close = difflib.get_close_matches(model, validated.models, n=1, cutoff=0.75)
        if close:
            suggestions[model] = close[0]
    raise errors.models_not_available(
        validated.provider,
        validated.fingerprint,
        missing=missing,
        available=validated.models,
        suggestions=suggestions,
    )
