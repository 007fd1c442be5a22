"""An in-memory stand-in for the operator's Kubernetes port (``byok_operator.ports.Cluster``):
Secrets with resourceVersions and optimistic concurrency, TenantLLMConfig status patches,
Events. ``tests/test_contract_cluster.py`` runs the same assertions against it and the real
API server (the Secret semantics the vault store relies on: create-conflict, replace of a
stale version, replace of a deleted one, label selectors), so it cannot drift.

It stores what the operator wrote, so a scenario can scan all of it for a planted key.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from byok_operator.audit import AuditEvent
from byok_operator.kube import SecretConflict, SecretData


@dataclass
class PostedEvent:
    namespace: str
    name: str
    type: str
    reason: str
    message: str


@dataclass
class MemoryCluster:
    secrets: dict[tuple[str, str], SecretData] = field(default_factory=dict)
    tenants: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # bodies
    events: list[PostedEvent] = field(default_factory=list)
    # Called before each put_secret: a scenario changes the Secret under the writer here.
    before_put: Callable[[str, str], None] = lambda _namespace, _name: None
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- Secrets ---

    def plant_secret(
        self, namespace: str, name: str, data: Mapping[str, str], labels: Mapping[str, str] = {}
    ) -> SecretData:
        """What ``kubectl create secret`` would do."""
        secret = SecretData(name, dict(data), dict(labels), {}, str(next(self._versions)))
        self.secrets[namespace, name] = secret
        return secret

    async def read_secret(self, namespace: str, name: str) -> SecretData | None:
        return self.secrets.get((namespace, name))

    async def list_secrets(self, namespace: str, label_selector: str) -> list[SecretData]:
        return [
            s
            for (ns, _), s in sorted(self.secrets.items())
            if ns == namespace and _selects(label_selector, s.labels)
        ]

    async def write_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        *,
        labels: Mapping[str, str],
        annotations: Mapping[str, str] | None = None,
        owner: Mapping[str, Any] | None = None,
        exists: bool = False,
    ) -> None:
        secret = SecretData(
            name, dict(data), dict(labels), dict(annotations or {}), str(next(self._versions))
        )
        self.secrets[namespace, name] = secret

    async def put_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        *,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        resource_version: str | None,
    ) -> str:
        self.before_put(namespace, name)
        current = self.secrets.get((namespace, name))
        if resource_version is None and current is not None:
            raise SecretConflict(f"Secret {namespace}/{name} changed meanwhile")
        if resource_version is not None and current is None:
            raise SecretConflict(f"Secret {namespace}/{name} was deleted meanwhile")
        if current is not None and current.resource_version != resource_version:
            raise SecretConflict(f"Secret {namespace}/{name} changed meanwhile")
        version = str(next(self._versions))
        self.secrets[namespace, name] = SecretData(
            name, dict(data), dict(labels), dict(annotations), version
        )
        return version

    def touch(self, namespace: str, name: str) -> None:
        """Another writer replaces the Secret (same data, new resourceVersion)."""
        current = self.secrets.get((namespace, name))
        if current is not None:
            self.secrets[namespace, name] = replace(
                current, resource_version=str(next(self._versions))
            )

    async def delete_secret(self, namespace: str, name: str) -> bool:
        return self.secrets.pop((namespace, name), None) is not None

    async def namespace_uid(self, name: str) -> str | None:
        return f"ns-uid-{name}"

    # --- TenantLLMConfigs ---

    async def patch_tenant_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        body = self.tenants.get((namespace, name))
        if body is not None:
            body["status"] = merge_patch(body.get("status") or {}, status)

    async def list_tenant_uids(self) -> set[str]:
        return {body["metadata"]["uid"] for body in self.tenants.values()}

    async def annotate_tenant(
        self, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> None:
        body = self.tenants.get((namespace, name))
        if body is not None:
            body["metadata"].setdefault("annotations", {}).update(annotations)

    async def post_event(
        self, ref: Mapping[str, str], *, type: str, reason: str, message: str
    ) -> None:
        self.events.append(PostedEvent(ref["namespace"], ref["name"], type, reason, message))

    async def post_audit(
        self, body: Mapping[str, Any], event: AuditEvent, *, actor: str | None
    ) -> None:
        meta = body["metadata"]
        kind = "Warning" if event.warning else "Normal"
        self.events.append(
            PostedEvent(meta["namespace"], meta["name"], kind, event.action.value, event.message)
        )

    def everything_written(self) -> str:
        """All the operator stored here, as text (for a leak scan)."""
        return json.dumps(
            {
                "secrets": {
                    f"{k[0]}/{k[1]}": [s.data, s.labels, s.annotations]
                    for k, s in self.secrets.items()
                },
                "tenants": list(self.tenants.values()),
                "events": [e.__dict__ for e in self.events],
            },
            default=str,
        )


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386, as the API server applies a merge patch (and kopf's status patch)."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged


def _selects(selector: str, labels: Mapping[str, str]) -> bool:
    """Equality and existence terms (``a=b,c``): what the operator's selectors use."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "=" in term:
            name, value = term.split("=", 1)
            if labels.get(name) != value:
                return False
        elif term not in labels:
            return False
    return True
