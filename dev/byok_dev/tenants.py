"""What tests, the demo and the bench ask of tenants: manifests applied with server-side apply,
status and conditions, the agents' Secret, an agent's call through the gateway, and the gateway
objects of one tenant as LiteLLM itself reports them."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from byok_dev.cluster import Cluster
from byok_dev.litellm import LiteLLMTestbed
from byok_dev.operator import OPERATOR_NAMESPACE
from byok_dev.waiting import wait_for
from byok_operator import api
from byok_operator.crypto import fingerprint

API_VERSION = f"{api.GROUP}/{api.VERSION}"
KIND = "TenantLLMConfig"
CREDENTIALS_LABEL = api.CREDENTIALS_LABEL

# What tests.gateway_objects() returns for a tenant with nothing left in the gateway.
NOTHING: dict[str, list[str]] = {"keys": [], "teams": [], "deployments": [], "credentials": []}


def canary(provider: str) -> str:
    """A fresh provider key that tests plant and later search for everywhere."""
    prefix = "sk-ant-" if provider == "anthropic" else "sk-"
    return f"{prefix}canary-{secrets.token_hex(16)}"


def tenants_path(namespace: str, name: str = "") -> str:
    """The API path of a namespace's TenantLLMConfigs, or of one of them."""
    path = f"/apis/{API_VERSION}/namespaces/{namespace}/{api.PLURAL}"
    return f"{path}/{name}" if name else path


def tenant_manifest(
    namespace: str, name: str, spec: Mapping[str, Any], labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A TenantLLMConfig: the one builder tests, the demo and the bench use."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": dict(spec)}


def key_secret_manifest(
    namespace: str,
    name: str,
    data: Mapping[str, str],
    *,
    labelled: bool = True,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Secret holding provider keys, labelled for the operator's watch unless told not."""
    all_labels = {**(labels or {}), **({CREDENTIALS_LABEL: "true"} if labelled else {})}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": all_labels},
        "stringData": dict(data),
    }


class Tenants:
    """Test-side view of tenants: apply, wait, read status, read the agents' Secret."""

    def __init__(self, cluster: Cluster, litellm: LiteLLMTestbed) -> None:
        self.cluster = cluster
        self.litellm = litellm

    def put_secret(
        self, namespace: str, name: str, data: dict[str, str], labelled: bool = True
    ) -> None:
        self.server_side_apply(key_secret_manifest(namespace, name, data, labelled=labelled))

    def apply(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.server_side_apply(tenant_manifest(namespace, name, spec))

    def server_side_apply(self, *objects: dict[str, Any]) -> None:
        """Applied as an admin with kubectl would (kubectl's own field manager)."""
        self.cluster.server_side_apply(objects, field_manager=None, timeout=60)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.cluster.read(tenants_path(namespace, name))

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
        containing: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:
        """The tenant once its ``kind`` condition, written for its current generation, has this
        status (and reason; and a message ``containing`` this, to wait past a transitional
        state with the same reason)."""

        def probe() -> dict[str, Any] | None:
            obj = self.get(namespace, name) or {}
            cond = condition_of(obj, kind)
            fresh = cond.get("observedGeneration") == obj.get("metadata", {}).get("generation")
            if (
                fresh
                and cond.get("status") == status
                and (reason is None or cond.get("reason") == reason)
                and (containing is None or containing in str(cond.get("message")))
            ):
                return obj
            return None

        return wait_for(
            probe,
            timeout=timeout,
            what=f"{namespace}/{name} {kind}={status} {reason or ''} {containing or ''}",
            describe=lambda: json.dumps((self.get(namespace, name) or {}).get("status"), indent=1),
        )

    def virtual_key(self, namespace: str, name: str) -> str | None:
        secret = self.cluster.read(f"/api/v1/namespaces/{namespace}/secrets/{name}-llm-gateway")
        if secret is None:
            return None
        data = secret.get("data") or {}
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
        return list(
            (self.cluster.read(f"/api/v1/namespaces/{namespace}/events") or {}).get("items") or []
        )

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


def leaks(secrets: Iterable[str], places: Mapping[str, str], *, suffix: int = 0) -> list[str]:
    """Every known secret found in plain text in any of the places (name -> text), named by
    its fingerprint: the leak scan of tests and the demo. With ``suffix``, a secret's last
    ``suffix`` characters count as found too (what a masking that keeps the end would show)."""
    values = [v for v in secrets if v]
    return [
        f"{fingerprint(value)} in {place}"
        for place, text in places.items()
        for value in values
        if value in text or (suffix and value[-suffix:] in text)
    ]


def vault_leaks(cluster: Cluster, secrets: Iterable[str]) -> tuple[int, list[str]]:
    """How many vault Secrets the operator keeps, and any known secret stored in them in
    plain text (they must hold only Fernet tokens)."""
    listing = cluster.kubectl("get", "secrets", "-n", OPERATOR_NAMESPACE, "-o", "json")
    vaults = [
        item
        for item in json.loads(listing.stdout)["items"]
        if item["metadata"]["name"].startswith("tlc-vault-")
    ]
    places = {
        f"{item['metadata']['name']}/{name}": base64.b64decode(raw).decode(errors="replace")
        for item in vaults
        for name, raw in (item.get("data") or {}).items()
    }
    return len(vaults), leaks(list(secrets), places)
