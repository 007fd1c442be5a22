"""The BYOK HTTP API (issue 10.2) as a real `byok-operator api` process on 127.0.0.1, against
the real API server, with the operator and LiteLLM running: the admin panel's calls through
enable → rotate → revert, the admin key, bad and missing keys, and a canary scan of every
answer and of the API's own log."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from byok_dev.cluster import delete_namespace
from byok_dev.provider_stub import ProviderStub
from byok_dev.tenants import Tenants, canary, leaks
from byok_dev.waiting import wait_for
from byok_operator.crypto import fingerprint

pytestmark = [pytest.mark.cluster, pytest.mark.gateway]

ADMIN_KEY = "admin-" + secrets.token_hex(16)
CONFIRMATION = "I understand this action will clear my BYOK configuration"
MODEL = "gpt-4o-mini"


@dataclass
class Api:
    url: str
    log: Path
    answers: list[str] = field(default_factory=list)

    def call(
        self,
        method: str,
        tenant: str,
        action: str,
        body: Any = None,
        *,
        key: str | None = ADMIN_KEY,
    ) -> httpx.Response:
        headers = {"X-Admin-Key": key} if key is not None else {}
        response = httpx.request(
            method,
            f"{self.url}/api/tenants/{tenant}/byok/{action}",
            json=body,
            headers=headers,
            timeout=120,
        )
        self.answers.append(response.text)
        return response


@pytest.fixture(scope="module")
def byok_api(
    tenants: Tenants, provider_stub: ProviderStub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    log = tmp_path_factory.mktemp("byok-api") / "api.log"
    env = {
        **os.environ,
        "KUBECONFIG": str(tenants.cluster.kubeconfig),
        "ADMIN_API_KEY": ADMIN_KEY,
        "OPENAI_BASE_URL": provider_stub.openai_base_url,
        "ANTHROPIC_BASE_URL": provider_stub.anthropic_base_url,
        "BYOK_API_WAIT_SECONDS": "60",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "byok_operator.cli.main", "api", "--port", "0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        found = wait_for(
            lambda: re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text()),
            timeout=60,
            what="the API to listen",
            describe=log.read_text,
        )
        yield Api(found.group(1), log)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


@pytest.fixture
def tenant(tenants: Tenants) -> Iterator[str]:
    """A new tenant id with its namespace (the default template: the namespace is the id)."""
    tenant_id = f"api-{secrets.token_hex(4)}"
    tenants.cluster.kubectl("create", "namespace", tenant_id)
    yield tenant_id
    delete_namespace(tenants.cluster, tenant_id)


@pytest.mark.parametrize(
    ("method", "action", "body"),
    [
        ("POST", "test-keys", {}),
        ("POST", "enable", {}),
        ("GET", "status", None),
        ("POST", "rotate", {}),
        ("POST", "revert", {"confirmation": CONFIRMATION}),
    ],
)
@pytest.mark.parametrize("key", [None, "wrong-" + secrets.token_hex(8), ADMIN_KEY[:-1]])
def test_every_endpoint_needs_the_admin_key(
    byok_api: Api, method: str, action: str, body: Any, key: str | None
) -> None:
    response = byok_api.call(method, "anyone", action, body, key=key)
    assert response.status_code == 403, response.text
    assert "X-Admin-Key" in response.json()["detail"]


def test_test_keys_answers_per_provider_and_never_echoes_a_key(
    byok_api: Api, provider_stub: ProviderStub
) -> None:
    good, bad = canary("openai"), canary("anthropic")
    provider_stub.set_behaviour(bad, "401")
    response = byok_api.call(
        "POST", "acme", "test-keys", {"openai_api_key": good, "anthropic_api_key": bad}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["openai"]["valid"] is True
    assert MODEL in answer["openai"]["models"]
    assert answer["openai"]["error"] is None
    assert answer["anthropic"]["valid"] is False
    assert answer["anthropic"]["reason"] == "InvalidKey"
    assert fingerprint(bad) in answer["anthropic"]["error"]

    none = byok_api.call("POST", "acme", "test-keys", {})
    assert none.status_code == 400
    assert "at least one key" in none.json()["detail"]
    misnamed = byok_api.call("POST", "acme", "test-keys", {"openai_key": good})
    assert misnamed.status_code == 422
    assert good not in misnamed.text
    for text in [*byok_api.answers, byok_api.log.read_text()]:
        assert good not in text
        assert bad not in text


def test_enable_rotate_revert_through_the_api(
    byok_api: Api, tenants: Tenants, tenant: str, provider_stub: ProviderStub
) -> None:
    first, second, bad = canary("openai"), canary("openai"), canary("openai")
    provider_stub.set_behaviour(bad, "401")
    assert byok_api.call("GET", tenant, "status").status_code == 404

    enabled = byok_api.call("POST", tenant, "enable", {"openai_api_key": first})
    assert enabled.status_code == 200, enabled.text
    state = enabled.json()
    assert state["mode"] == "BYOK"
    assert state["byok_enabled"] is True
    assert state["ready"] is True
    assert state["namespace"] == tenant
    assert state["costs"] == {
        "tracking": "BYOK",
        "total": "N/A",
        "budget": "Own Keys",
        "share_used": None,
    }
    assert state["providers"][0]["key_fingerprint"] == fingerprint(first)
    virtual = tenants.virtual_key(tenant, tenant)
    assert virtual
    answer = tenants.chat(virtual, MODEL)
    assert answer.status_code == 200, answer.text.replace(virtual, "<virtual key>")
    assert provider_stub.requests(key=first)

    assert byok_api.call("POST", tenant, "rotate", {}).status_code == 400
    refused = byok_api.call("POST", tenant, "rotate", {"openai_api_key": bad})
    assert refused.status_code == 422, refused.text
    assert refused.json()["keys"]["openai"]["reason"] == "InvalidKey"
    rotated = byok_api.call("POST", tenant, "rotate", {"openai_api_key": second})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["providers"][0]["key_fingerprint"] == fingerprint(second)
    status = byok_api.call("GET", tenant, "status").json()
    assert status["providers"][0]["key_fingerprint"] == fingerprint(second)

    wrong = byok_api.call("POST", tenant, "revert", {"confirmation": "yes"})
    assert wrong.status_code == 422
    assert "did not match" in wrong.json()["detail"]
    reverted = byok_api.call("POST", tenant, "revert", {"confirmation": CONFIRMATION})
    assert reverted.status_code == 200, reverted.text
    assert reverted.json()["mode"] == "Platform"
    assert reverted.json()["costs"]["tracking"] == "Platform"
    again = byok_api.call("POST", tenant, "rotate", {"openai_api_key": second})
    assert again.status_code == 409
    assert "BYOK is not enabled" in again.json()["detail"]
    places = {"answers": "\n".join(byok_api.answers), "API log": byok_api.log.read_text()}
    assert not leaks([first, second, bad, virtual], places)


def test_enable_for_a_new_tenant_without_its_namespace_says_so(byok_api: Api) -> None:
    tenant = f"nowhere-{secrets.token_hex(3)}"
    response = byok_api.call("POST", tenant, "enable", {"openai_api_key": canary("openai")})
    assert response.status_code == 404
    assert f"namespace {tenant!r} does not exist" in response.json()["detail"]


def test_the_schema_is_served(byok_api: Api) -> None:
    schema = httpx.get(f"{byok_api.url}/openapi.json", timeout=10).json()
    assert "/api/tenants/{tenant_id}/byok/enable" in schema["paths"]
    assert httpx.get(f"{byok_api.url}/readyz", timeout=10).status_code == 200
