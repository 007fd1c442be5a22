"""Key validation through the real OpenAI and Anthropic SDKs against the in-process stand-ins.

No mocks: every provider call is an HTTP request the stub answers and records, so the tests
count real calls (single-flight, cache, concurrency bound) and see the SDKs' real errors.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import secrets
import socket
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic as anthropic_sdk
import pytest
import pytest_asyncio

from byok_dev.provider_stub import ANTHROPIC_MODELS, OPENAI_MODELS, ProviderStub
from byok_operator.api import Provider, Reason
from byok_operator.crypto import fingerprint
from byok_operator.providers import (
    KeyValidationError,
    KeyValidator,
    ValidatedKey,
    anthropic,
    check_format,
    openai,
)

OPENAI, ANTHROPIC = Provider.OPENAI, Provider.ANTHROPIC


def new_key(provider: Provider, tag: str = "t") -> str:
    prefix = "sk-ant-api03-" if provider is ANTHROPIC else "sk-proj-"
    return f"{prefix}{tag}-{secrets.token_hex(12)}"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 11, 7, 10, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def stub() -> Iterator[ProviderStub]:
    with ProviderStub.in_process(slow_seconds=5) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_stub(stub: ProviderStub) -> None:
    stub.reset()


def make_validator(stub: ProviderStub, **settings: Any) -> KeyValidator:
    settings.setdefault("timeout", 3.0)
    return KeyValidator(
        openai_base_url=stub.openai_base_url,
        anthropic_base_url=stub.anthropic_base_url,
        **settings,
    )


@pytest_asyncio.fixture(loop_scope="function")
async def validator(stub: ProviderStub) -> AsyncIterator[KeyValidator]:
    async with make_validator(stub) as running:
        yield running


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def validation_error(
    validator: KeyValidator, provider: Provider, key: str, allowed: tuple[str, ...] = ()
) -> KeyValidationError:
    with pytest.raises(KeyValidationError) as info:
        await validator.validate(provider, key, allowed)
    return info.value


# -- valid keys ------------------------------------------------------------------------------


async def test_valid_openai_key_lists_its_models(
    validator: KeyValidator, stub: ProviderStub
) -> None:
    key = new_key(OPENAI)

    validated = await validator.validate(OPENAI, key, ["gpt-4o", "gpt-4o-mini"])

    assert validated.provider is OPENAI
    assert validated.fingerprint == fingerprint(key)
    assert validated.models == tuple(sorted(m[0] for m in OPENAI_MODELS))
    assert validated.validated_at.tzinfo is not None
    assert stub.keys_seen() == [fingerprint(key)]
    [request] = stub.requests()
    assert (request.provider, request.method, request.path) == ("openai", "GET", "/v1/models")


async def test_valid_anthropic_key_lists_its_models(
    validator: KeyValidator, stub: ProviderStub
) -> None:
    key = new_key(ANTHROPIC)

    validated = await validator.validate(ANTHROPIC, key, ["claude-sonnet-4-20250514"])

    assert validated.models == tuple(sorted(m[0] for m in ANTHROPIC_MODELS))
    assert stub.keys_seen(provider="anthropic") == [fingerprint(key)]


async def test_anthropic_listing_follows_pages(stub: ProviderStub) -> None:
    """45 models at the stub's default page size of 20: the paginator must follow the cursor."""
    key = new_key(ANTHROPIC)
    many = [f"claude-test-{i:02d}" for i in range(45)]
    stub.set_models(key, many)

    async with anthropic.AnthropicModelLister(base_url=stub.anthropic_base_url) as lister:
        assert await lister.list_models(key) == many  # one page of up to 1000
    stub.reset()
    stub.set_models(key, many)
    # The SDK itself pages when asked for smaller pages; the stub implements the cursor.
    async with anthropic_sdk.AsyncAnthropic(
        api_key=key, base_url=stub.anthropic_base_url, max_retries=0
    ) as client:
        assert [m.id async for m in client.models.list(limit=20)] == many
    assert len(stub.requests()) == 3


async def test_sdks_honour_base_url_environment(
    stub: ProviderStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """base_url=None means the SDKs read OPENAI_BASE_URL / ANTHROPIC_BASE_URL."""
    monkeypatch.setenv("OPENAI_BASE_URL", stub.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.anthropic_base_url)

    assert "gpt-4o" in await openai.list_models(new_key(OPENAI))
    assert "claude-3-5-sonnet-20241022" in await anthropic.list_models(new_key(ANTHROPIC))
    assert {r.provider for r in stub.requests()} == {"openai", "anthropic"}


async def test_platform_openai_org_is_not_sent_with_a_tenant_key(
    stub: ProviderStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OPENAI_ORG_ID belongs to the platform; sent with a tenant key OpenAI answers 401."""
    monkeypatch.setenv("OPENAI_ORG_ID", "org-platform")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-platform")

    await openai.list_models(new_key(OPENAI), base_url=stub.openai_base_url)

    [request] = stub.requests()
    assert request.organization is None


# -- provider refusals and outages -----------------------------------------------------------


@pytest.mark.parametrize("provider", [OPENAI, ANTHROPIC])
@pytest.mark.parametrize(
    ("behaviour", "reason", "fragment"),
    [
        ("401", Reason.INVALID_KEY, "HTTP 401"),
        ("403", Reason.INVALID_KEY, "HTTP 403"),
        ("429", Reason.VALIDATION_UNAVAILABLE, "rate-limited"),
        ("500", Reason.VALIDATION_UNAVAILABLE, "server error"),
    ],
)
async def test_provider_refusals_map_to_reasons(
    validator: KeyValidator,
    stub: ProviderStub,
    provider: Provider,
    behaviour: str,
    reason: Reason,
    fragment: str,
) -> None:
    key = new_key(provider)
    stub.set_behaviour(key, behaviour)

    err = await validation_error(validator, provider, key)

    assert err.reason is reason
    assert err.retryable is (reason is Reason.VALIDATION_UNAVAILABLE)
    assert err.provider is provider
    assert err.fingerprint == fingerprint(key)
    assert fragment in err.message
    assert fingerprint(key) in err.message
    assert str(err) == f"{reason.value}: {err.message}"
    if behaviour == "429":
        assert err.retry_after == 1.0


@pytest.mark.parametrize(
    ("marker", "reason"),
    [
        ("-invalid", Reason.INVALID_KEY),
        ("-forbidden", Reason.INVALID_KEY),
        ("-ratelimited", Reason.VALIDATION_UNAVAILABLE),
        ("-broken", Reason.VALIDATION_UNAVAILABLE),
    ],
)
async def test_key_markers_pick_the_behaviour(
    validator: KeyValidator, marker: str, reason: Reason
) -> None:
    err = await validation_error(validator, OPENAI, new_key(OPENAI) + marker)
    assert err.reason is reason


async def test_invalid_key_message_says_what_to_do(validator: KeyValidator) -> None:
    key = new_key(OPENAI) + "-invalid"

    err = await validation_error(validator, OPENAI, key)

    assert err.message.startswith(f"OpenAI rejected the key {fingerprint(key)} (HTTP 401")
    assert "code invalid_api_key" in err.message
    assert "wrong, revoked or expired" in err.message
    assert "update" in err.message or "put it in the Secret" in err.message


@pytest.mark.parametrize("provider", [OPENAI, ANTHROPIC])
async def test_slow_provider_times_out_as_unavailable(
    stub: ProviderStub, provider: Provider
) -> None:
    key = new_key(provider)
    stub.set_behaviour(key, "slow")
    started = time.monotonic()

    async with make_validator(stub, timeout=0.3) as validator:
        err = await validation_error(validator, provider, key)

    assert time.monotonic() - started < 3
    assert err.reason is Reason.VALIDATION_UNAVAILABLE
    assert err.retryable
    assert "did not answer within 0.3s" in err.message


@pytest.mark.parametrize("provider", [OPENAI, ANTHROPIC])
async def test_connection_refused_is_unavailable(provider: Provider) -> None:
    url = closed_port_url()
    async with KeyValidator(openai_base_url=f"{url}/v1", anthropic_base_url=url) as validator:
        err = await validation_error(validator, provider, new_key(provider))

    assert err.reason is Reason.VALIDATION_UNAVAILABLE
    assert err.retryable
    assert err.message.startswith("Could not connect to")
    assert "127.0.0.1" in err.message


async def test_wrong_base_url_is_unavailable_not_invalid(stub: ProviderStub) -> None:
    """An OpenAI base URL without /v1 gets 404: nothing is known about the key."""
    async with KeyValidator(openai_base_url=stub.url) as validator:
        err = await validation_error(validator, OPENAI, new_key(OPENAI))

    assert err.reason is Reason.VALIDATION_UNAVAILABLE
    assert "HTTP 404" in err.message
    assert "base URL" in err.message


async def test_base_url_credentials_never_reach_messages() -> None:
    url = closed_port_url().replace("http://", "http://admin:hunter2@")
    async with KeyValidator(openai_base_url=f"{url}/v1?token=abc") as validator:
        err = await validation_error(validator, OPENAI, new_key(OPENAI))

    assert "hunter2" not in err.message
    assert "token=abc" not in err.message


# -- offline format checks -------------------------------------------------------------------

FORMAT_CASES = [
    pytest.param(OPENAI, "", "is empty", id="empty"),
    pytest.param(OPENAI, "   \n", "is empty (only whitespace)", id="only-whitespace"),
    pytest.param(
        OPENAI, new_key(OPENAI) + "\n", "trailing whitespace or a newline", id="trailing-newline"
    ),
    pytest.param(
        ANTHROPIC, " " + new_key(ANTHROPIC), "leading or trailing whitespace", id="leading-space"
    ),
    pytest.param(
        OPENAI, "sk-proj-abc def-0123456789", "whitespace or a line break inside", id="inner"
    ),
    pytest.param(OPENAI, '"' + new_key(OPENAI) + '"', "wrapped in quote characters", id="quotes"),
    pytest.param(
        OPENAI, new_key(OPENAI) + "\u200b", "non-ASCII or control characters", id="zero-width"
    ),
    pytest.param(OPENAI, new_key(ANTHROPIC), "looks like an Anthropic key", id="swapped-openai"),
    pytest.param(ANTHROPIC, new_key(OPENAI), "looks like an OpenAI key", id="swapped-anthropic"),
    pytest.param(OPENAI, "pk-" + "a" * 40, "does not start with `sk-`", id="openai-prefix"),
    pytest.param(ANTHROPIC, "key-" + "a" * 40, "does not start with `sk-ant-`", id="ant-prefix"),
    pytest.param(OPENAI, "sk-short", "only 8 characters long", id="too-short"),
    pytest.param(OPENAI, "sk-" + "a" * 2000, "2003 characters long", id="too-long"),
]


@pytest.mark.parametrize(("provider", "key", "fragment"), FORMAT_CASES)
async def test_format_errors_are_caught_offline(
    validator: KeyValidator, stub: ProviderStub, provider: Provider, key: str, fragment: str
) -> None:
    err = await validation_error(validator, provider, key)

    assert err.reason is Reason.INVALID_FORMAT
    assert not err.retryable
    assert fragment in err.message
    assert "kubectl create secret generic" in err.message
    assert stub.requests() == []


def test_check_format_accepts_real_looking_keys() -> None:
    check_format(OPENAI, "sk-proj-" + "A1b2_C3d4-" * 15)
    check_format(OPENAI, "sk-" + "a" * 48)
    check_format(ANTHROPIC, "sk-ant-api03-" + "x" * 93 + "AA")


# -- allow-listed models ---------------------------------------------------------------------


async def test_missing_allow_listed_models(validator: KeyValidator) -> None:
    key = new_key(OPENAI)

    err = await validation_error(validator, OPENAI, key, ("gpt-4o", "gpt-4o-mnii", "gpt-9"))

    assert err.reason is Reason.MODELS_NOT_AVAILABLE
    assert not err.retryable
    assert err.missing_models == ("gpt-4o-mnii", "gpt-9")
    assert "cannot use 2 allow-listed models: gpt-4o-mnii, gpt-9." in err.message
    assert "Did you mean gpt-4o-mini for gpt-4o-mnii" in err.message
    assert f"OpenAI lists {len(OPENAI_MODELS)} models for this key" in err.message
    assert "spec.providers.openai.models" in err.message


async def test_models_follow_the_key_and_each_allow_list_is_checked(
    validator: KeyValidator, stub: ProviderStub
) -> None:
    """Tenants sharing a key share one provider call but each get their own allow-list check."""
    key = new_key(ANTHROPIC)
    stub.set_models(key, ["claude-3-5-haiku-20241022"])

    validated = await validator.validate(ANTHROPIC, key, ["claude-3-5-haiku-20241022"])
    err = await validation_error(validator, ANTHROPIC, key, ("claude-opus-4-20250514",))

    assert validated.models == ("claude-3-5-haiku-20241022",)
    assert err.missing_models == ("claude-opus-4-20250514",)
    assert "Anthropic lists 1 models for this key (claude-3-5-haiku-20241022)" in err.message
    assert len(stub.requests()) == 1


# -- cache, single-flight, concurrency bound -------------------------------------------------


async def test_thousand_concurrent_validations_cost_one_call(
    validator: KeyValidator, stub: ProviderStub
) -> None:
    key = new_key(OPENAI)
    stub.configure(latency_seconds=0.05)

    results = await asyncio.gather(*(validator.validate(OPENAI, key) for _ in range(1000)))

    assert len(stub.requests()) == 1
    assert len(set(results)) == 1
    await validator.validate(OPENAI, key)
    assert len(stub.requests()) == 1


async def test_concurrent_failures_coalesce_and_only_invalid_key_is_cached(
    validator: KeyValidator, stub: ProviderStub
) -> None:
    invalid, broken = new_key(OPENAI), new_key(OPENAI)
    stub.set_behaviour(invalid, "401")
    stub.set_behaviour(broken, "500")
    stub.configure(latency_seconds=0.05)

    outcomes = await asyncio.gather(
        *(validator.validate(OPENAI, k) for k in [invalid, broken] * 200), return_exceptions=True
    )

    assert all(isinstance(o, KeyValidationError) for o in outcomes)
    assert len(stub.requests()) == 2
    # Every waiter gets its own exception object, not one shared traceback.
    assert len({id(o) for o in outcomes}) == len(outcomes)
    await validation_error(validator, OPENAI, invalid)  # cached InvalidKey
    await validation_error(validator, OPENAI, broken)  # retryable: asked again
    assert len(stub.requests(key=invalid)) == 1
    assert len(stub.requests(key=broken)) == 2


async def test_concurrency_bound_is_respected(stub: ProviderStub) -> None:
    keys = [new_key(OPENAI, f"k{i}") for i in range(50)]
    stub.configure(latency_seconds=0.05)

    async with make_validator(stub, max_concurrency=4) as validator:
        await asyncio.gather(*(validator.validate(OPENAI, k) for k in keys))

    assert len(stub.requests()) == 50
    assert 2 <= stub.stats()["max_in_flight"] <= 4


async def test_cache_expires_after_ttl(stub: ProviderStub) -> None:
    clock = FakeClock()
    key = new_key(OPENAI)
    async with make_validator(stub, cache_ttl=300, clock=clock) as validator:
        first = await validator.validate(OPENAI, key)
        clock.advance(299)
        assert await validator.validate(OPENAI, key) is first
        assert len(stub.requests()) == 1

        clock.advance(1)
        second = await validator.validate(OPENAI, key)

    assert len(stub.requests()) == 2
    assert second.validated_at == first.validated_at + timedelta(seconds=300)


async def test_cached_invalid_key_until_ttl_or_invalidate(stub: ProviderStub) -> None:
    clock = FakeClock()
    key = new_key(ANTHROPIC)
    stub.set_behaviour(key, "401")
    async with make_validator(stub, cache_ttl=300, clock=clock) as validator:
        await validation_error(validator, ANTHROPIC, key)
        stub.set_behaviour(key, "valid")
        await validation_error(validator, ANTHROPIC, key)  # still the cached verdict
        assert len(stub.requests()) == 1

        validator.invalidate(fingerprint(key))
        assert isinstance(await validator.validate(ANTHROPIC, key), ValidatedKey)
        assert len(stub.requests()) == 2


async def test_revalidation_bypasses_the_cache_and_sees_a_revoked_key(
    validator: KeyValidator, stub: ProviderStub
) -> None:
    key = new_key(OPENAI)
    await validator.validate(OPENAI, key)
    stub.set_behaviour(key, "401")  # revoked at the provider

    assert isinstance(await validator.validate(OPENAI, key), ValidatedKey)  # cached
    err = await validation_error_uncached(validator, OPENAI, key)

    assert err.reason is Reason.INVALID_KEY
    assert len(stub.requests()) == 2
    await validation_error(validator, OPENAI, key)  # the revocation replaced the cached success


async def validation_error_uncached(
    validator: KeyValidator, provider: Provider, key: str
) -> KeyValidationError:
    with pytest.raises(KeyValidationError) as info:
        await validator.validate(provider, key, use_cache=False)
    return info.value


async def test_a_cancelled_waiter_does_not_cancel_the_shared_call(
    validator: KeyValidator, stub: ProviderStub
) -> None:
    key = new_key(OPENAI)
    stub.configure(latency_seconds=0.2)
    impatient = asyncio.create_task(validator.validate(OPENAI, key))
    patient = asyncio.create_task(validator.validate(OPENAI, key))
    await asyncio.sleep(0.05)

    impatient.cancel()

    assert isinstance(await patient, ValidatedKey)
    assert len(stub.requests()) == 1


# -- no key material anywhere ----------------------------------------------------------------


async def test_canary_key_never_appears_in_errors_or_logs(
    stub: ProviderStub, caplog: pytest.LogCaptureFixture
) -> None:
    """Plant recognisable keys, drive every failure mode, scan everything for any part of them.

    The stub's OpenAI 401 quotes the key masked (`sk-proj***ZQZQ`), as the real API does, so
    the scan also looks for the masked ends, not just the whole key.
    """
    caplog.set_level(logging.DEBUG)
    secret_part = "CANARY" + secrets.token_hex(16) + "ZQZQ"
    canaries = {OPENAI: f"sk-proj-{secret_part}", ANTHROPIC: f"sk-ant-api03-{secret_part}"}
    forbidden = [secret_part, "ZQZQ", "CANARY", "sk-pro", "sk-ant-api"]
    texts: list[str] = []
    errors_seen: list[KeyValidationError] = []

    async def attempt(validator: KeyValidator, provider: Provider, key: str, *allowed: str) -> None:
        try:
            await validator.validate(provider, key, allowed, use_cache=False)
        except KeyValidationError as err:
            errors_seen.append(err)
            texts.extend(
                [str(err), repr(err), err.message, "".join(traceback.format_exception(err))]
            )

    dead = closed_port_url()
    async with (
        make_validator(stub, timeout=0.3) as validator,
        KeyValidator(openai_base_url=f"{dead}/v1", anthropic_base_url=dead) as unreachable,
    ):
        for provider, key in canaries.items():
            for behaviour in ("401", "403", "429", "500", "slow"):
                stub.set_behaviour(key, behaviour)
                await attempt(validator, provider, key)
            stub.set_behaviour(key, "valid")
            await attempt(validator, provider, key)  # success is logged too
            await attempt(validator, provider, key, "no-such-model")
            await attempt(unreachable, provider, key)
            for broken in (key + "\n", key[:12] + " " + key[12:], '"' + key + '"', key + "\u00e9"):
                await attempt(validator, provider, broken)
            other = ANTHROPIC if provider is OPENAI else OPENAI
            await attempt(validator, other, key)

    texts.extend(record.getMessage() for record in caplog.records)
    texts.append(caplog.text)
    assert len(errors_seen) == 2 * 12
    assert all(e.__cause__ is None and e.__context__ is None for e in errors_seen)
    assert {e.reason for e in errors_seen} == {
        Reason.INVALID_KEY,
        Reason.VALIDATION_UNAVAILABLE,
        Reason.MODELS_NOT_AVAILABLE,
        Reason.INVALID_FORMAT,
    }
    # The scan must have seen the provider's masked echo to prove anything about stripping it.
    assert any(r.status == 401 and r.provider == "openai" for r in stub.requests())
    leaks = [(word, text) for text in texts for word in forbidden if word in text]
    assert leaks == []


# -- the exception type ----------------------------------------------------------------------


def test_error_rejects_reasons_outside_the_validation_taxonomy() -> None:
    with pytest.raises(ValueError, match="not a key validation reason"):
        KeyValidationError(OPENAI, Reason.READY, "nope")


def test_error_survives_pickling_and_cloning() -> None:
    err = KeyValidationError(
        ANTHROPIC,
        Reason.VALIDATION_UNAVAILABLE,
        "down",
        fingerprint="sha256:0123456789ab",
        retry_after=2.0,
    )
    for copy in (pickle.loads(pickle.dumps(err)), err.clone()):
        assert (copy.provider, copy.reason, copy.message, copy.retry_after, copy.retryable) == (
            ANTHROPIC,
            Reason.VALIDATION_UNAVAILABLE,
            "down",
            2.0,
            True,
        )
        assert repr(copy) == repr(err)
