"""The LiteLLM admin client, and the contract between the real proxy and its double.

Tests taking the ``backend`` fixture (directly or through ``gateway`` / ``raw``) are contract
tests: they run once against the in-memory admin double (tests/doubles/litellm_admin.py, in
``make test-fast``) and once against the real LiteLLM test bed (marked ``gateway``), with the
same assertions, so the double the reconciler scenarios run on cannot drift from LiteLLM.
Tests taking ``real_gateway`` / ``litellm`` need the proxy itself (calls through it to a
provider). The rest are fast checks of the client's own logic with httpx's MockTransport.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from byok_dev.litellm import LiteLLMTestbed
from byok_operator.api import Provider
from byok_operator.gateway import (
    DuplicateKeyAliasError,
    DuplicateKeyValueError,
    GatewayError,
    KeySpec,
    LiteLLMGateway,
    TeamSpec,
    redact,
    token_of,
)
from doubles.litellm_admin import LiteLLMAdminDouble

gateway_test = pytest.mark.gateway


@pytest.fixture
def uid() -> str:
    """A fresh tenant uid, so tests sharing one proxy never see each other's objects."""
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class Backend:
    """A LiteLLM admin API: the real test bed, or the double behind an httpx transport."""

    url: str
    master_key: str
    transport: httpx.AsyncBaseTransport | None = None

    def gateway(self, master_key: str | None = None) -> LiteLLMGateway:
        return LiteLLMGateway(self.url, master_key or self.master_key, transport=self.transport)

    def raw(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.master_key}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, transport=self.transport)


@pytest.fixture(params=["double", pytest.param("litellm", marks=pytest.mark.gateway)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "double":
        double = LiteLLMAdminDouble()
        # What the test bed's config file declares: one platform deployment.
        double.deployments["platform-gpt-4o-mini"] = {
            "model_name": "gpt-4o-mini",
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-platform"},
            "model_info": {"id": "platform-gpt-4o-mini"},
        }
        return Backend("http://litellm.double", double.master_key, double.transport())
    litellm: LiteLLMTestbed = request.getfixturevalue("litellm")
    return Backend(litellm.url, litellm.master_key)


@pytest_asyncio.fixture(loop_scope="function")
async def gateway(backend: Backend) -> AsyncIterator[LiteLLMGateway]:
    async with backend.gateway() as gw:
        yield gw


@pytest_asyncio.fixture(loop_scope="function")
async def raw(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP to the same admin API, for what the client does not expose."""
    async with backend.raw() as client:
        yield client


@pytest_asyncio.fixture(loop_scope="function")
async def real_gateway(litellm: LiteLLMTestbed) -> AsyncIterator[LiteLLMGateway]:
    async with LiteLLMGateway(litellm.url, litellm.master_key) as gw:
        yield gw


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def log_everything(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def mock_gateway(
    handler: Callable[[httpx.Request], httpx.Response], master_key: str = "sk-m"
) -> LiteLLMGateway:
    return LiteLLMGateway("http://litellm", master_key, transport=httpx.MockTransport(handler))


def names(uid: str, provider: str = "openai") -> tuple[str, str, str]:
    """Credential name, deployment id and tenant model name, as the operator derives them."""
    return f"byok-{uid}-{provider}", f"byok-{uid}-{provider}-gpt-4o-mini", f"byok-{uid}/gpt-4o-mini"


# --- fast: no proxy ---


def test_redact_removes_keys_tokens_and_named_secrets() -> None:
    text = (
        "bad key sk-abc123XYZ_-. and sk-ant-api03-AAAA, name sk-...eg5A, "
        "Authorization: Bearer sk-master123 / bearer opaque-token; custom hunter2; task-runner"
    )
    out = redact(text, ["hunter2"])
    for secret in ("abc123XYZ", "api03-AAAA", "eg5A", "master123", "opaque-token", "hunter2"):
        assert secret not in out
    assert "task-runner" in out  # no false positive inside words
    assert redact("nothing secret here") == "nothing secret here"


def test_token_of_hashes_keys_and_keeps_tokens() -> None:
    token = token_of("sk-ukNCpxAf7nxzDOXxJKeg5A")
    assert token == "6f03cc3720f246e629d7f63dcba63da566eba8a2a8fe9770a4499f7c3110579f"
    assert token_of(token) == token


def test_key_spec_refuses_empty_models() -> None:
    with pytest.raises(ValueError, match="explicit, non-empty model list"):
        KeySpec(alias="a", models=[])
    with pytest.raises(ValueError, match="may not call"):
        KeySpec(alias="a", models=["m1"], aliases={"x": "m2"})


def test_key_spec_refuses_a_bad_chosen_key_without_echoing_it() -> None:
    for bad in ("sk-short", "no-sk-prefix-0123456789", "sk-with space 0123456789"):
        with pytest.raises(ValueError, match="must start with 'sk-'") as caught:
            KeySpec(alias="a", models=["m"], key=bad, aliases={"x": "m"})
        assert bad not in str(caught.value)
    with pytest.raises(ValueError, match="may not call") as other:
        KeySpec(alias="a", models=["m"], key="sk-fine-but-secret-0123", aliases={"x": "y"})
    assert "sk-fine-but-secret-0123" not in str(other.value)  # no input echo in errors
    assert "sk-fine-but-secret-0123" not in repr(
        KeySpec(alias="a", models=["m"], key="sk-fine-but-secret-0123")
    )


async def test_generate_key_with_empty_models_makes_no_http_call() -> None:
    calls: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={})

    spec = KeySpec.model_construct(alias="x", models=[])  # bypasses validation on purpose
    async with mock_gateway(record) as gw:
        with pytest.raises(ValueError, match="non-empty model list"):
            await gw.generate_key(spec)
    assert calls == []


@pytest.mark.parametrize(
    ("status", "body", "retryable", "expected"),
    [
        (500, {"error": {"message": "boom", "type": "internal_server_error"}}, True, "boom"),
        (503, "upstream down", True, "upstream down"),
        (429, {"error": {"message": "slow down"}}, True, "slow down"),
        (401, {"error": {"message": "Invalid API key"}}, False, "LITELLM_MASTER_KEY"),
        (404, {"error": {"message": "{'error': 'No keys found'}"}}, False, "No keys found"),
        (422, {"detail": [{"loc": ["body", "max_budget"], "msg": "bad"}]}, False, "max_budget"),
    ],
)
async def test_http_errors_map_to_gateway_error(
    status: int, body: object, retryable: bool, expected: str
) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    async with mock_gateway(reply) as gw:
        with pytest.raises(GatewayError) as caught:
            await gw.list_credentials()
    assert caught.value.status == status
    assert caught.value.retryable is retryable
    assert expected in str(caught.value)


async def test_echoed_request_bodies_never_reach_the_exception(
    log_everything: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A proxy that echoes the request (as FastAPI's `input` or in its message) leaks nothing."""
    canary = f"canary-provider-key-{uuid.uuid4().hex}"  # not sk-shaped: redacted by value
    master = f"master-{uuid.uuid4().hex}"

    def echo(request: httpx.Request) -> httpx.Response:
        sent = request.content.decode()
        auth = request.headers["authorization"]
        if request.method == "PATCH":
            return httpx.Response(
                422, json={"detail": [{"loc": ["body"], "msg": f"bad {sent}", "input": sent}]}
            )
        return httpx.Response(400, json={"error": {"message": f"got {sent} with {auth}"}})

    async with mock_gateway(echo, master) as gw:
        for _ in range(2):
            with pytest.raises(GatewayError) as caught:
                await gw.upsert_credential(
                    "c", Provider.OPENAI, canary, api_base=None, info={"tenant": "x"}
                )
            text = f"{caught.value} {caught.value!r} {caught.value.args}"
            assert canary not in text
            assert master not in text
    out = capsys.readouterr()
    for secret in (canary, master):
        assert secret not in log_everything.text + out.out + out.err


async def test_unexpected_response_shape_is_a_clear_error() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>not litellm</html>")

    async with mock_gateway(reply) as gw:
        with pytest.raises(GatewayError, match="unexpected response") as caught:
            await gw.list_keys()
        assert not caught.value.retryable
        assert await gw.health() is False


# --- against the real proxy ---


async def test_health(gateway: LiteLLMGateway) -> None:
    assert await gateway.health() is True


async def test_credential_create_patch_delete(
    gateway: LiteLLMGateway, raw: httpx.AsyncClient, uid: str
) -> None:
    name, _, _ = names(uid)
    await gateway.upsert_credential(
        name,
        Provider.OPENAI,
        "sk-canary-first-key-11",
        api_base="http://127.0.0.1:9/v1",
        info={"tenant_uid": uid, "fingerprint": "sha256:aaaa"},
    )
    created = await gateway.get_credential(name)
    assert created is not None
    assert created.provider == "openai"
    assert created.managed
    assert created.info == {"tenant_uid": uid, "fingerprint": "sha256:aaaa"}

    # Same name again: updated in place (LiteLLM would answer 409 to a second create).
    await gateway.upsert_credential(
        name,
        Provider.OPENAI,
        "sk-canary-second-key-22",
        api_base=None,
        info={"tenant_uid": uid, "fingerprint": "sha256:bbbb"},
    )
    updated = await gateway.get_credential(name)
    assert updated is not None
    assert updated.info == {"tenant_uid": uid, "fingerprint": "sha256:bbbb"}
    assert [c.name for c in await gateway.list_credentials(match={"tenant_uid": uid})] == [name]
    # LiteLLM shows values only masked (first two and last two characters): enough to see
    # that the key was swapped and api_base removed.
    shown = (await raw.get(f"/credentials/by_name/{name}")).json()["credential_values"]
    assert shown["api_key"].endswith("22")
    assert "api_base" not in shown

    assert await gateway.delete_credential(name) is True
    assert await gateway.delete_credential(name) is False
    assert await gateway.get_credential(name) is None
    assert await gateway.list_credentials(match={"tenant_uid": uid}) == []


async def test_deployment_upsert_is_idempotent(gateway: LiteLLMGateway, uid: str) -> None:
    credential, deployment_id, model_name = names(uid)
    await gateway.upsert_credential(
        credential, Provider.OPENAI, "sk-canary-x", api_base=None, info={"tenant_uid": uid}
    )
    info = {"tenant_uid": uid, "provider": "openai"}
    for _ in range(2):
        await gateway.upsert_deployment(
            deployment_id, model_name, "openai/gpt-4o-mini", credential, info=info
        )
    listed = await gateway.list_deployments(match={"tenant_uid": uid})
    assert len(listed) == 1
    (deployment,) = listed
    assert deployment.id == deployment_id
    assert deployment.model_name == model_name
    assert deployment.litellm_model == "openai/gpt-4o-mini"
    assert deployment.credential_name == credential
    assert deployment.info == info
    assert deployment.managed

    # A changed spec is updated in place under the same id.
    await gateway.upsert_deployment(
        deployment_id, model_name, "openai/gpt-4o", credential, info=info
    )
    after = await gateway.list_deployments(match={"tenant_uid": uid})
    assert [(d.id, d.litellm_model) for d in after] == [(deployment_id, "openai/gpt-4o")]
    assert await gateway.list_deployments(search=f"byok-{uid}/") == after

    assert await gateway.delete_deployment(deployment_id) is True
    assert await gateway.delete_deployment(deployment_id) is False
    assert await gateway.get_deployment(deployment_id) is None
    assert await gateway.delete_credential(credential) is True


async def test_concurrent_upserts_create_one_object(gateway: LiteLLMGateway, uid: str) -> None:
    """Two reconciles racing: both see nothing, both create; the loser updates instead.

    LiteLLM answers a duplicate credential with 409 and a duplicate deployment id with 500.
    """
    credential, deployment_id, model_name = names(uid)
    info = {"tenant_uid": uid}
    await asyncio.gather(
        *(
            gateway.upsert_credential(
                credential, Provider.OPENAI, "sk-canary-z", api_base=None, info=info
            )
            for _ in range(3)
        )
    )
    await asyncio.gather(
        *(
            gateway.upsert_deployment(
                deployment_id, model_name, "openai/gpt-4o-mini", credential, info=info
            )
            for _ in range(3)
        )
    )
    assert [c.name for c in await gateway.list_credentials(match=info)] == [credential]
    assert [d.id for d in await gateway.list_deployments(match=info)] == [deployment_id]
    assert await gateway.delete_deployment(deployment_id) is True
    assert await gateway.delete_credential(credential) is True


async def test_virtual_key_lifecycle(gateway: LiteLLMGateway, uid: str) -> None:
    _, _, model_name = names(uid)
    alias = f"byok-{uid}-vk-1"
    spec = KeySpec(
        alias=alias,
        models=[model_name],
        aliases={"gpt-4o-mini": model_name},
        metadata={"tenant_uid": uid, "mode": "BYOK"},
        rpm_limit=100,
        tpm_limit=10_000,
        model_rpm_limit={model_name: 10},
    )
    issued = await gateway.generate_key(spec)
    secret = issued.key.get_secret_value()
    assert secret.startswith("sk-")
    assert secret not in repr(issued)
    assert secret not in str(issued)
    assert issued.token == token_of(secret)
    assert issued.alias == alias

    by_key = await gateway.key_info(secret)
    by_token = await gateway.key_info(issued.token)
    assert by_key is not None
    assert by_key == by_token
    assert by_key.token == issued.token
    assert by_key.alias == alias
    assert by_key.models == [model_name]
    assert by_key.aliases == {"gpt-4o-mini": model_name}
    assert by_key.metadata == {"tenant_uid": uid, "mode": "BYOK"}
    assert by_key.managed
    assert (by_key.rpm_limit, by_key.tpm_limit) == (100, 10_000)
    assert by_key.spend == 0.0

    found = await gateway.find_key_by_alias(alias)
    assert found is not None
    assert found.token == issued.token
    assert await gateway.find_key_by_alias(f"{alias}-nope") is None

    with pytest.raises(DuplicateKeyAliasError) as duplicate:
        await gateway.generate_key(spec)
    assert duplicate.value.existing is not None
    assert duplicate.value.existing.token == issued.token
    assert not duplicate.value.retryable

    assert [k.token for k in await gateway.list_keys(match={"tenant_uid": uid})] == [issued.token]

    assert await gateway.delete_keys([secret]) == 1
    assert await gateway.delete_keys([secret, issued.token]) == 0
    assert await gateway.key_info(issued.token) is None
    assert await gateway.find_key_by_alias(alias) is None


async def test_key_with_chosen_value_and_update(gateway: LiteLLMGateway, uid: str) -> None:
    """A caller-chosen value survives; a second key with that value is caught, not faked."""
    value = f"sk-chosen-{uuid.uuid4().hex}"
    spec = KeySpec(
        alias=f"byok-{uid}-vk-7",
        key=value,
        models=["m1"],
        metadata={"tenant_uid": uid, "generation": "1"},
        max_budget=3,
        budget_duration="30d",
        rpm_limit=7,
        model_rpm_limit={"m1": 5},
    )
    issued = await gateway.generate_key(spec)
    assert issued.key.get_secret_value() == value
    assert issued.token == token_of(value)

    # LiteLLM answers 200 here but keeps the existing key as it was.
    with pytest.raises(DuplicateKeyValueError) as duplicate:
        await gateway.generate_key(spec.model_copy(update={"alias": f"byok-{uid}-vk-8"}))
    assert duplicate.value.existing is not None
    assert duplicate.value.existing.alias == spec.alias
    assert value not in str(duplicate.value)
    assert await gateway.find_key_by_alias(f"byok-{uid}-vk-8") is None

    # Update: new models and aliases, metadata replaced, unset limits cleared.
    updated = KeySpec(
        alias=spec.alias,
        models=["m1", "m2"],
        aliases={"small": "m2"},
        metadata={"tenant_uid": uid, "generation": "2"},
        model_tpm_limit={"m2": 50},
    )
    assert await gateway.update_key(value, updated) is True
    info = await gateway.key_info(issued.token)
    assert info is not None
    assert info.models == ["m1", "m2"]
    assert info.aliases == {"small": "m2"}
    assert info.metadata == {"tenant_uid": uid, "generation": "2"}
    assert (info.max_budget, info.budget_duration, info.rpm_limit) == (None, None, None)

    assert await gateway.delete_keys([issued.token]) == 1
    assert await gateway.update_key(issued.token, updated) is False


async def test_budget_is_visible_in_key_info(gateway: LiteLLMGateway, uid: str) -> None:
    issued = await gateway.generate_key(
        KeySpec(
            alias=f"byok-{uid}-platform",
            models=["gpt-4o-mini"],
            metadata={"tenant_uid": uid, "mode": "Platform"},
            max_budget=12.5,
            budget_duration="30d",
        )
    )
    info = await gateway.key_info(issued.token)
    assert info is not None
    assert info.max_budget == 12.5
    assert info.budget_duration == "30d"
    assert info.budget_reset_at is not None
    assert info.models == ["gpt-4o-mini"]
    assert await gateway.delete_keys([issued.token]) == 1


async def test_sweep_helpers_select_by_marker(
    gateway: LiteLLMGateway, raw: httpx.AsyncClient, uid: str
) -> None:
    """list_* return only objects carrying our marker, narrowed by tenant info."""
    other = f"{uid}-other"
    tokens = []
    for tenant in (uid, other):
        credential, deployment_id, model_name = names(tenant)
        await gateway.upsert_credential(
            credential, Provider.OPENAI, "sk-canary-y", api_base=None, info={"tenant_uid": tenant}
        )
        await gateway.upsert_deployment(
            deployment_id, model_name, "openai/gpt-4o-mini", credential, info={"tenant_uid": tenant}
        )
        issued = await gateway.generate_key(
            KeySpec(alias=f"byok-{tenant}-vk", models=[model_name], metadata={"tenant_uid": tenant})
        )
        tokens.append(issued.token)
    # A key someone made by hand, without our marker.
    response = await raw.post(
        "/key/generate", json={"key_alias": f"manual-{uid}", "models": ["gpt-4o-mini"]}
    )
    manual_token = response.json()["token"]

    assert {c.name for c in await gateway.list_credentials(match={"tenant_uid": uid})} == {
        names(uid)[0]
    }
    assert {d.id for d in await gateway.list_deployments(match={"tenant_uid": other})} == {
        names(other)[1]
    }
    ours = {k.token for k in await gateway.list_keys()}
    assert set(tokens) <= ours
    assert manual_token not in ours
    everything = await gateway.list_keys(managed_only=False, alias_contains=uid)
    assert {k.token for k in everything} == {*tokens, manual_token}
    assert "gpt-4o-mini" not in {d.model_name for d in await gateway.list_deployments()}
    assert "gpt-4o-mini" in {
        d.model_name for d in await gateway.list_deployments(managed_only=False)
    }

    # The sweep itself: everything of both tenants goes, and a second sweep finds nothing.
    for tenant in (uid, other):
        match = {"tenant_uid": tenant}
        await gateway.delete_keys([k.token for k in await gateway.list_keys(match=match)])
        for d in await gateway.list_deployments(match=match):
            await gateway.delete_deployment(d.id)
        for c in await gateway.list_credentials(match=match):
            await gateway.delete_credential(c.name)
        assert await gateway.list_keys(match=match) == []
        assert await gateway.list_deployments(match=match) == []
        assert await gateway.list_credentials(match=match) == []
    assert await gateway.delete_keys([manual_token]) == 1


async def test_wrong_master_key_is_a_clear_permanent_error(
    backend: Backend, log_everything: pytest.LogCaptureFixture
) -> None:
    wrong = f"sk-wrong-master-{uuid.uuid4().hex}"
    async with backend.gateway(wrong) as gw:
        with pytest.raises(GatewayError) as caught:
            await gw.list_credentials()
    assert caught.value.status == 401
    assert caught.value.retryable is False
    assert "LITELLM_MASTER_KEY" in str(caught.value)
    assert wrong not in f"{caught.value!r} {log_everything.text}"


@gateway_test
async def test_closed_port_is_retryable(closed_port: int) -> None:
    async with LiteLLMGateway(f"http://127.0.0.1:{closed_port}", "sk-m", timeout=2) as gw:
        with pytest.raises(GatewayError) as caught:
            await gw.upsert_deployment("d", "m", "openai/m", "c", info={})
        assert caught.value.retryable is True
        assert caught.value.status is None
        assert "LITELLM_URL" in str(caught.value)
        assert await gw.health() is False


@gateway_test
async def test_provider_key_canary_never_leaks(
    real_gateway: LiteLLMGateway,
    litellm: LiteLLMTestbed,
    uid: str,
    closed_port: int,
    log_everything: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    canary = f"sk-canary-{uuid.uuid4().hex}"
    name, _, _ = names(uid)
    failures: list[GatewayError] = []
    for gw in (
        LiteLLMGateway(litellm.url, "sk-not-the-master"),  # 401
        LiteLLMGateway(f"http://127.0.0.1:{closed_port}", litellm.master_key),  # no proxy
    ):
        async with gw:
            with pytest.raises(GatewayError) as caught:
                await gw.upsert_credential(
                    name, Provider.OPENAI, canary, api_base=None, info={"tenant_uid": uid}
                )
            failures.append(caught.value)
    # And the success path: created, then patched with the same canary.
    for _ in range(2):
        await real_gateway.upsert_credential(
            name, Provider.OPENAI, canary, api_base=None, info={"tenant_uid": uid}
        )
    listed = await real_gateway.list_credentials(match={"tenant_uid": uid})
    await real_gateway.delete_credential(name)

    out = capsys.readouterr()
    haystack = " ".join(
        [*(f"{e} {e!r} {e.args}" for e in failures), repr(listed), log_everything.text]
    )
    haystack += out.out + out.err
    assert canary not in haystack
    assert canary[-12:] not in haystack
    assert litellm.master_key not in haystack


async def _recording_upstream() -> tuple[asyncio.Server, list[str]]:
    """A loopback "provider" that records each request's Authorization header and says 401."""
    seen: list[str] = []
    body = json.dumps({"error": {"message": "recorded", "type": "invalid_request_error"}})
    reply = (
        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    ).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode(errors="replace")
        auth = [line for line in head.split("\r\n") if line.lower().startswith("authorization:")]
        seen.append(auth[0].split(":", 1)[1].strip() if auth else "")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, seen


@gateway_test
async def test_tenant_key_cannot_call_another_tenants_deployment(
    real_gateway: LiteLLMGateway, litellm: LiteLLMTestbed, uid: str
) -> None:
    """B's key, limited to B's deployment, is refused A's; no request reaches A's provider."""
    server, seen = await _recording_upstream()
    upstream = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    tenant_a, tenant_b = f"{uid}-a", f"{uid}-b"
    key_a = f"sk-canary-tenant-a-{uuid.uuid4().hex}"
    created: dict[str, tuple[str, str, str]] = {}
    try:
        for tenant, provider_key in ((tenant_a, key_a), (tenant_b, "sk-canary-tenant-b")):
            credential, deployment_id, model_name = created[tenant] = names(tenant)
            await real_gateway.upsert_credential(
                credential,
                Provider.OPENAI,
                provider_key,
                api_base=upstream,
                info={"tenant_uid": tenant},
            )
            await real_gateway.upsert_deployment(
                deployment_id,
                model_name,
                "openai/gpt-4o-mini",
                credential,
                info={"tenant_uid": tenant},
            )
        model_a, model_b = created[tenant_a][2], created[tenant_b][2]
        issued_b = await real_gateway.generate_key(
            KeySpec(
                alias=f"byok-{tenant_b}-vk",
                models=[model_b],
                aliases={"gpt-4o-mini": model_b},
                metadata={"tenant_uid": tenant_b},
            )
        )
        chat = {"messages": [{"role": "user", "content": "hi"}]}
        async with httpx.AsyncClient(base_url=litellm.url, timeout=30) as client:
            denied = await client.post(
                "/v1/chat/completions",
                json={**chat, "model": model_a},
                headers={"Authorization": f"Bearer {issued_b.key.get_secret_value()}"},
            )
            assert denied.status_code in (401, 403), denied.text
            assert denied.json()["error"]["type"] == "key_model_access_denied"
            assert seen == []  # LiteLLM refused before any provider call

            # Contrast: the admin key does reach A's deployment, carrying A's provider key,
            # so the refusal above is the key's model list at work, not a broken deployment.
            await client.post(
                "/v1/chat/completions",
                json={**chat, "model": model_a},
                headers={"Authorization": f"Bearer {litellm.master_key}"},
            )
            assert seen
            assert set(seen) == {f"Bearer {key_a}"}
        await real_gateway.delete_keys([issued_b.token])
    finally:
        server.close()
        await server.wait_closed()
        for credential, deployment_id, _ in created.values():
            await real_gateway.delete_deployment(deployment_id)
            await real_gateway.delete_credential(credential)


# --- teams, shared deployments and one-call creates (the gateway model of DESIGN §6) -------


async def test_team_create_update_list_delete(gateway: LiteLLMGateway, uid: str) -> None:
    team = TeamSpec(
        team_id=f"tlc-{uid}",
        alias="ns/name",
        models=["gpt-4o-mini"],
        max_budget=5.0,
        budget_duration="30d",
        info={"tlc_uid": uid},
    )
    await gateway.create_team(team)
    await gateway.create_team(team)  # a retried pass: updates instead of failing
    info = await gateway.team_info(team.team_id)
    assert info is not None
    assert (info.models, info.max_budget, info.managed) == (["gpt-4o-mini"], 5.0, True)
    byok = team.model_copy(
        update={
            "models": ["byok-openai-x"],
            "model_config_map": {"byok-openai-x": {"openai": {"litellm_credentials": "c"}}},
            "max_budget": None,
            "budget_duration": None,
        }
    )
    assert await gateway.update_team(byok) is True
    info = await gateway.team_info(team.team_id)
    assert info is not None
    assert (info.models, info.max_budget) == (["byok-openai-x"], None)
    listed = [t for t in await gateway.list_teams() if t.team_id == team.team_id]
    assert [t.info.get("tlc_uid") for t in listed] == [uid]
    assert await gateway.delete_team(team.team_id) is True
    assert await gateway.delete_team(team.team_id) is False
    assert await gateway.update_team(team) is False
    assert await gateway.team_info(team.team_id) is None


def test_team_spec_refuses_empty_models() -> None:
    with pytest.raises(ValueError, match="explicit, non-empty model list"):
        TeamSpec(team_id="t", alias="a", models=[])


async def test_shared_deployment_and_one_call_credential(gateway: LiteLLMGateway, uid: str) -> None:
    name = f"byok-openai-{uid}"
    await gateway.create_shared_deployment(
        name,
        "openai/gpt-4o-mini",
        sentinel_key="sk-sentinel-x",
        api_base=None,
        info={"shared": "true"},
    )
    await gateway.create_shared_deployment(  # idempotent: found, not created twice
        name,
        "openai/gpt-4o-mini",
        sentinel_key="sk-sentinel-x",
        api_base=None,
        info={"shared": "true"},
    )
    found = [d for d in await gateway.list_deployments(match={"shared": "true"}) if d.id == name]
    assert [(d.model_name, d.litellm_model) for d in found] == [(name, "openai/gpt-4o-mini")]
    credential = f"byok-{uid}-openai"
    await gateway.create_credential(
        credential, Provider.OPENAI, "sk-first-key-0000", api_base=None, info={"tlc_uid": uid}
    )
    await gateway.create_credential(  # exists (a retried pass): updated in place
        credential, Provider.OPENAI, "sk-second-key-000", api_base=None, info={"tlc_uid": uid}
    )
    assert await gateway.get_credential(credential) is not None
    assert await gateway.delete_credential(credential) is True
    assert await gateway.delete_deployment(name) is True


async def test_router_settings_show_the_cooldown_setting(gateway: LiteLLMGateway) -> None:
    """The test bed runs with router_settings.disable_cooldowns (DESIGN §6)."""
    assert (await gateway.router_settings()).get("disable_cooldowns") is True


# --- the double's own guarantees --------------------------------------------------------------


async def test_the_double_refuses_a_field_litellm_does_not_declare() -> None:
    """LiteLLM drops unknown fields silently (its models ignore extras), so a misspelt field
    would pass in production and do nothing; the double answers 422 instead, as FastAPI does
    for a field that fails validation, naming the field."""
    double = LiteLLMAdminDouble()
    async with Backend("http://litellm.double", double.master_key, double.transport()).raw() as raw:
        misspelt = await raw.post("/key/generate", json={"models": ["m"], "max_budgte": 1})
        wrong_type = await raw.post("/team/new", json={"team_id": "t", "models": "m"})
        fine = await raw.post("/key/generate", json={"models": ["m"], "max_budget": 1})
    assert misspelt.status_code == 422
    assert "max_budgte" in misspelt.text
    assert wrong_type.status_code == 422
    assert fine.status_code == 200
    assert not double.teams


@pytest.mark.gateway
def test_the_doubles_schemas_are_those_of_the_installed_litellm() -> None:
    """The double validates with a snapshot of LiteLLM's request models (importing litellm
    here would cost ~10 s and 350 MB per run); regenerated from the test bed's LiteLLM, it must
    not differ. After a LiteLLM upgrade, regenerate it with the command in the exporter."""
    cache = Path(os.environ.get("LITELLM_TESTBED_CACHE", Path.home() / ".cache/litellm-testbed"))
    python = cache / "venv/bin/python"
    if not python.exists():
        pytest.skip(f"no LiteLLM test bed at {cache} (LITELLM_URL points elsewhere)")
    doubles = Path(__file__).parents[1] / "doubles"
    exported = subprocess.run(
        [str(python), str(doubles / "export_litellm_schemas.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    committed = (doubles / "litellm_requests.schema.json").read_text()
    assert json.loads(exported) == json.loads(committed), (
        "LiteLLM's request models changed: run the exporter (see its docstring) and review "
        "the diff of tests/doubles/litellm_requests.schema.json"
    )
