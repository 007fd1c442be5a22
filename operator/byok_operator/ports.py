"""The operator's ports: what the reconciler and the sweep need from the world, as types.

- :class:`Cluster`: Secrets (with optimistic concurrency), TenantLLMConfig status, Events.
  :class:`byok_operator.kube.Kube` is the production adapter; the fast tests use an
  in-memory one that a contract test holds to the real API server's semantics.
- :class:`KeyChecker`: a provider key accepted, and the models it may use.
  :class:`byok_operator.providers.KeyValidator` is the adapter (the official SDKs).
- The gateway's port is LiteLLM's HTTP admin API itself, not a Python interface: the one
  adapter, :class:`byok_operator.gateway.LiteLLMGateway`, holds logic worth testing (the
  fallbacks on LiteLLM's 400/409 answers, paging, parsing), so the fast tests keep it and
  swap the proxy behind it for an in-memory one (an ``httpx`` transport) instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from byok_operator.api import Provider
from byok_operator.audit import AuditEvent
from byok_operator.kube import SecretData
from byok_operator.providers import ValidatedKey


class Cluster(Protocol):
    async def read_secret(self, namespace: str, name: str) -> SecretData | None: ...

    async def list_secrets(self, namespace: str, label_selector: str) -> list[SecretData]: ...

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
    ) -> None: ...

    async def put_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        *,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        resource_version: str | None,
    ) -> str: ...

    async def delete_secret(self, namespace: str, name: str) -> bool: ...

    async def namespace_uid(self, name: str) -> str | None: ...

    async def patch_tenant_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None: ...

    async def list_tenant_uids(self) -> set[str]: ...

    async def annotate_tenant(
        self, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> None: ...

    async def post_event(
        self, ref: Mapping[str, str], *, type: str, reason: str, message: str
    ) -> None: ...

    async def post_audit(
        self, body: Mapping[str, Any], event: AuditEvent, *, actor: str | None
    ) -> None: ...


class KeyChecker(Protocol):
    async def validate(
        self,
        provider: Provider,
        key: str,
        allowed_models: Sequence[str] = (),
        *,
        use_cache: bool = True,
    ) -> ValidatedKey: ...
