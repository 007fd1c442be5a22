"""Kubernetes reads and writes the operator makes besides kopf's own (Secrets, resource lookups).

The official client is synchronous; calls run in worker threads so handlers stay async.
Secret payloads are never logged: errors name the Secret and the status code only.

Responses are read as plain JSON (``_preload_content=False``), not as the client's models:
the operator needs a field or two of each, and building models costs more CPU than the call.
Listings go in pages of LIST_PAGE, so a sweep over 10,000 tenants never holds more than one
page of the API server's answer at once; the tenant listing asks for metadata only.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from byok_operator import api
from byok_operator.audit import AuditEvent, log_tenant_audit
from byok_operator.crypto import Vault, VaultConfigError
from byok_operator.settings import Settings

LIST_PAGE = 500  # objects per list call (the API server's own chunking, `limit`/`continue`)
# The tenant listing of sweeps needs uids only: the API server then sends no spec or status.
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}


def api_client() -> client.ApiClient:
    """In a pod: the ServiceAccount; elsewhere: the current kubeconfig context (as kopf does)."""
    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        kube_config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


class KubeError(RuntimeError):
    """A Kubernetes call failed for a reason other than 'not found'."""


class SecretConflict(KubeError):
    """A create found the Secret already there, or a replace found it changed since read."""


@dataclass(frozen=True)
class SecretData:
    name: str
    data: dict[str, str] = field(repr=False)
    labels: dict[str, str]
    annotations: dict[str, str]
    resource_version: str


def _decode(data: Mapping[str, bytes | str] | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (data or {}).items()}


def _encode(data: Mapping[str, str]) -> dict[str, bytes | str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


def secret_from_body(body: Mapping[str, Any]) -> SecretData:
    """A Secret as a watch delivers it (a plain dict), in the shape ``read_secret`` returns."""
    meta = body.get("metadata") or {}
    return SecretData(
        name=meta.get("name") or "",
        data=_decode(body.get("data")),
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        resource_version=meta.get("resourceVersion") or "",
    )


async def _raw(call: Callable[..., Any], *args: Any, **params: Any) -> dict[str, Any]:
    """One client call in a worker thread, its answer as the API server's JSON."""
    response = await asyncio.to_thread(call, *args, _preload_content=False, **params)
    answer: dict[str, Any] = json.loads(response.data or b"{}")
    return answer


async def _pages(
    call: Callable[..., Any], *args: Any, **params: Any
) -> AsyncIterator[list[dict[str, Any]]]:
    """The items of a listing, a page at a time. An expired continue token (410, after minutes)
    fails the listing as ApiException; its caller's next pass lists afresh."""
    token: str | None = None
    while True:
        answer = await _raw(call, *args, limit=LIST_PAGE, _continue=token, **params)
        yield answer.get("items") or []
        token = (answer.get("metadata") or {}).get("continue")
        if not token:
            return


def _explain(action: str, exc: ApiException) -> KubeError:
    hint = {
        403: "grant the operator's ServiceAccount this permission (see charts/byok-operator RBAC)",
        422: "the object was rejected as invalid",
    }.get(exc.status or 0, "retrying")
    return KubeError(f"{action} failed with HTTP {exc.status} {exc.reason}: {hint}")


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    async def read_secret(self, namespace: str, name: str) -> SecretData | None:
        try:
            obj = await _raw(self._core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _explain(f"reading Secret {namespace}/{name}", exc) from None
        return secret_from_body(obj)

    async def namespace_uid(self, name: str) -> str | None:
        """The namespace's uid; None when it does not exist."""
        try:
            obj = await _raw(self._core.read_namespace, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _explain(f"reading Namespace {name}", exc) from None
        uid = (obj.get("metadata") or {}).get("uid")
        return str(uid) if uid else None

    async def list_secrets(self, namespace: str, label_selector: str) -> list[SecretData]:
        found: list[SecretData] = []
        try:
            async for page in _pages(
                self._core.list_namespaced_secret, namespace, label_selector=label_selector
            ):
                found.extend(secret_from_body(item) for item in page)
        except ApiException as exc:
            raise _explain(f"listing Secrets in {namespace}", exc) from None
        return found

    async def write_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        *,
        labels: Mapping[str, str],
        annotations: Mapping[str, str] | None = None,
        owner: Mapping[str, Any] | None = None,  # V1OwnerReference keyword arguments
        exists: bool = False,
    ) -> None:
        """Create or replace a Secret with exactly ``data``: one call when the caller knows
        whether it ``exists`` (a create that finds one, or a replace that finds none, falls
        back to the other)."""
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=namespace,
                labels=dict(labels),
                annotations=dict(annotations or {}),
                owner_references=[client.V1OwnerReference(**owner)] if owner else None,
            ),
            type="Opaque",
            data=_encode(data),
        )
        create = (self._core.create_namespaced_secret, (namespace, body), 409)
        replace = (self._core.replace_namespaced_secret, (name, namespace, body), 404)
        first, then = (replace, create) if exists else (create, replace)
        try:
            await _raw(first[0], *first[1])
            return
        except ApiException as exc:
            if exc.status != first[2]:
                raise _explain(f"writing Secret {namespace}/{name}", exc) from None
        try:
            await _raw(then[0], *then[1])
        except ApiException as exc:
            raise _explain(f"writing Secret {namespace}/{name}", exc) from None

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
        """Create the Secret (``resource_version`` None) or replace exactly that version;
        returns the new resourceVersion. Either way one call; SecretConflict otherwise."""
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=namespace,
                labels=dict(labels),
                annotations=dict(annotations),
                resource_version=resource_version,
            ),
            type="Opaque",
            data=_encode(data),
        )
        try:
            if resource_version is None:
                obj = await _raw(self._core.create_namespaced_secret, namespace, body)
            else:
                obj = await _raw(self._core.replace_namespaced_secret, name, namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                raise SecretConflict(f"Secret {namespace}/{name} changed meanwhile") from None
            if exc.status == 404 and resource_version is not None:
                raise SecretConflict(f"Secret {namespace}/{name} was deleted meanwhile") from None
            raise _explain(f"writing Secret {namespace}/{name}", exc) from None
        return str((obj.get("metadata") or {}).get("resourceVersion") or "")

    async def post_event(
        self, ref: Mapping[str, str], *, type: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event on a TenantLLMConfig, for passes that run outside kopf's handlers
        (kopf's own poster only works inside them). ``ref``: namespace, name, uid."""
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{ref['name']}.", namespace=ref["namespace"]
            ),
            involved_object=client.V1ObjectReference(
                api_version=api.API_VERSION,
                kind=api.KIND,
                name=ref["name"],
                namespace=ref["namespace"],
                uid=ref["uid"],
            ),
            reason=reason,
            message=message[:1024],
            type=type,
            count=1,
            first_timestamp=now,
            last_timestamp=now,
            source=client.V1EventSource(component=api.MANAGER),
            reporting_component=api.MANAGER,
        )
        try:
            await _raw(self._core.create_namespaced_event, ref["namespace"], event)
        except ApiException as exc:
            raise _explain(f"posting an Event on {ref['namespace']}/{ref['name']}", exc) from None

    async def post_audit(
        self, body: Mapping[str, Any], event: AuditEvent, *, actor: str | None
    ) -> None:
        """An audited action outside kopf's handlers: its JSON line and its Event."""
        log_tenant_audit(body, event, actor=actor)
        await self.post_event(
            body["metadata"],
            type="Warning" if event.warning else "Normal",
            reason=event.action.value,
            message=event.message,
        )

    async def patch_tenant_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        """A merge patch of a TenantLLMConfig's status (for passes kopf did not start)."""
        try:
            await _raw(
                self._custom.patch_namespaced_custom_object_status,
                api.GROUP,
                api.VERSION,
                namespace,
                api.PLURAL,
                name,
                {"status": dict(status)},
            )
        except ApiException as exc:
            if exc.status != 404:
                raise _explain(f"writing the status of {namespace}/{name}", exc) from None

    async def delete_secret(self, namespace: str, name: str) -> bool:
        try:
            await _raw(self._core.delete_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise _explain(f"deleting Secret {namespace}/{name}", exc) from None
        return True

    async def list_tenant_uids(self) -> set[str]:
        """The uids of every TenantLLMConfig in the cluster (for orphan sweeps): metadata only,
        a page at a time, so 10,000 tenants cost a few MiB here, not their whole objects."""
        uids: set[str] = set()
        try:
            async for page in _pages(
                self._custom.list_cluster_custom_object,
                api.GROUP,
                api.VERSION,
                api.PLURAL,
                _headers=dict(METADATA_ONLY),
            ):
                uids.update(item["metadata"]["uid"] for item in page)
        except ApiException as exc:
            raise _explain("listing TenantLLMConfigs", exc) from None
        return uids

    async def annotate_tenant(
        self, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> None:
        patch = {"metadata": {"annotations": dict(annotations)}}
        try:
            await _raw(
                self._custom.patch_namespaced_custom_object,
                api.GROUP,
                api.VERSION,
                namespace,
                api.PLURAL,
                name,
                patch,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise _explain(f"annotating TenantLLMConfig {namespace}/{name}", exc) from None


class SecretReader(Protocol):
    async def read_secret(self, namespace: str, name: str) -> SecretData | None: ...


async def load_vault(settings: Settings, kube: SecretReader) -> Vault:
    """The Fernet keys: from a mounted file if configured, else from the chart's Secret.

    Raises VaultConfigError (the operator refuses to start) when they are missing or malformed.
    """
    if settings.encryption_keys_file:
        return await asyncio.to_thread(_vault_from_file, Path(settings.encryption_keys_file))
    namespace, name = settings.operator_namespace, settings.encryption_secret
    secret = await kube.read_secret(namespace, name)
    if secret is None:
        raise VaultConfigError(
            f"Encryption-key Secret {namespace}/{name} not found. Create it with a data key 'keys' "
            "holding one Fernet key per line, newest first (the Helm chart creates it), or set "
            "BYOK_ENCRYPTION_KEYS_FILE."
        )
    return Vault.from_text(
        secret.data.get("keys", ""), source=f"Secret {namespace}/{name} (data key 'keys')"
    )


def _vault_from_file(path: Path) -> Vault:
    if not path.is_file():
        raise VaultConfigError(
            f"BYOK_ENCRYPTION_KEYS_FILE={path} does not exist. Mount the encryption-key Secret "
            "there, or unset the variable to read the Secret directly."
        )
    return Vault.from_text(path.read_text(), source=f"file {path}")
