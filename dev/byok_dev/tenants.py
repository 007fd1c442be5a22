"""What tests, the demo and the bench ask of tenants: manifests applied with server-side apply,
status and conditions, the agents' Secret, an agent's call through the gateway, and the gateway
objects of one tenant as LiteLLM itself reports them."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import httpx

from byok_dev.cluster import Cluster
from byok_dev.litellm import LiteLLMTestbed
from byok_dev.waiting import wait_for

# What tests.gateway_objects() returns for a tenant with nothing left in the gateway.
NOTHING: dict[str, list[str]] = {"keys": [], "teams": [], "deployments": [], "credentials": []}


def canary(provider: str) -> str:
    """A fresh provider key that tests plant and later search for everywhere."""
    prefix = "sk-ant-" if provider == "anthropic" else "sk-"
    return f"{prefix}canary-{secrets.token_hex(16)}"


class Tenants:
    """Test-side view of tenants: apply, wait, read status, read the agents' Secret."""

    def __init__(self, cluster: Cluster, litellm: LiteLLMTestbed) -> None:
        self.cluster = cluster
        self.litellm = litellm

    def put_secret(
        self, namespace: str, name: str, data: dict[str, str], labelled: bool = True
    ) -> None:
        labels = {"llm.byok.io/credentials": "true"} if labelled else {}
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "stringData": data,
        }
        # Server-side apply: client-side apply would copy the key into an annotation.
        self.cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(body)
        )

    def apply(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": "llm.byok.io/v1alpha1",
            "kind": "TenantLLMConfig",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        self.cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(body)
        )

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        result = self.cluster.kubectl(
            "get", "tlc", name, "-n", namespace, "-o", "json", check=False
        )
        return json.loads(result.stdout) if result.returncode == 0 else None

    def condition(self, namespace: str, name: str, kind: str = "Ready") -> dict[str, Any]:
        return condition_of(self.get(namespace, name) or {}, kind)

    def wait_condition(
        self,
        namespace: str,
        name: str,
        *,
        kind: str = "Ready",
        status: str = "True",
        reason: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            obj = self.get(namespace, name) or {}
            cond = condition_of(obj, kind)
            fresh = cond.get("observedGeneration") == obj.get("metadata", {}).get("generation")
            if (
                fresh
                and cond.get("status") == status
                and (reason is None or cond.get("reason") == reason)
            ):
                return obj
            return None

        return wait_for(
            probe,
            timeout=timeout,
            what=f"{namespace}/{name} {kind}={status} {reason or ''}",
            describe=lambda: json.dumps((self.get(namespace, name) or {}).get("status"), indent=1),
        )

    def virtual_key(self, namespace: str, name: str) -> str | None:
        result = self.cluster.kubectl(
            "get", "secret", f"{name}-llm-gateway", "-n", namespace, "-o", "json", check=False
        )
        if result.returncode != 0:
            return None
        data = json.loads(result.stdout).get("data") or {}
        raw = data.get("LITELLM_API_KEY")
        return base64.b64decode(raw).decode() if raw else None

    def chat(self, key: str, model: str) -> httpx.Response:
        """An agent's call through the gateway (OpenAI format, as agents make it)."""
        return httpx.post(
            f"{self.litellm.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": model,
                "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 16,
            },
            timeout=60,
        )

    def events(self, namespace: str) -> list[dict[str, Any]]:
        result = self.cluster.kubectl("get", "events", "-n", namespace, "-o", "json")
        return list(json.loads(result.stdout)["items"])

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method,
            f"{self.litellm.url}{path}",
            headers={"Authorization": f"Bearer {self.litellm.master_key}"},
            timeout=30,
            **kwargs,
        )
        response.raise_for_status()
        return response.json()

    def paged(
        self, path: str, items: str, size_param: str = "size", **params: Any
    ) -> list[dict[str, Any]]:
        """Every item of a LiteLLM list endpoint (they page by at most 100; the team list
        names its page size ``page_size``)."""
        found: list[dict[str, Any]] = []
        for page in range(1, 1000):
            batch = self.admin("GET", path, params={**params, size_param: 100, "page": page})
            found.extend(batch.get(items) or [])
            if page >= int(batch.get("total_pages") or 1):
                return found
        raise AssertionError(f"LiteLLM's {path} never ended")

    def gateway_objects(self, uid: str) -> dict[str, list[str]]:
        """Everything in LiteLLM that belongs to the tenant with ``uid`` (asked of LiteLLM itself):
        keys, teams and credentials, and per-tenant deployments (DESIGN §6: there must be none;
        the shared deployments belong to no tenant)."""
        keys = self.paged("/key/list", "keys", return_full_object="true")
        models = self.paged("/v2/model/info", "data")
        teams = self.paged(
            "/v2/team/list", "teams", "page_size", sort_by="team_id", sort_order="asc"
        )
        creds = self.admin("GET", "/credentials")
        return {
            "keys": sorted(
                str(k.get("key_alias") or k.get("token"))
                for k in keys
                if uid in json.dumps(k.get("metadata") or {}) or uid in (k.get("key_alias") or "")
            ),
            "teams": sorted(t["team_id"] for t in teams if uid in t.get("team_id", "")),
            "deployments": sorted(
                m["model_info"]["id"]
                for m in models
                if uid[:8] in json.dumps(m.get("model_info") or {}) + m.get("model_name", "")
            ),
            "credentials": sorted(
                c["credential_name"]
                for c in creds.get("credentials", [])
                if uid in c.get("credential_name", "")
            ),
        }

    def shared_deployments(self) -> list[str]:
        """The shared BYOK deployments (model names) the gateway has."""
        return sorted(
            m["model_name"]
            for m in self.paged("/v2/model/info", "data")
            if '"shared": "true"' in json.dumps(m.get("model_info") or {})
        )


def condition_of(obj: dict[str, Any], kind: str = "Ready") -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return {}


def uid_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["uid"])
