"""Kubernetes reads and writes the operator makes besides kopf's own (Secrets, resource lookups).

The calls go over one aiohttp session on the operator's event loop, the HTTP client kopf itself
runs on. The official client only loads the configuration (in-cluster ServiceAccount or
kubeconfig, with every auth form it knows: client certificates, tokens, exec plugins), and its
token refresh hook supplies the token: at most every TOKEN_REUSE seconds, and again at once
when the API server answers 401 (the call is then retried once). Run per request, the
kubeconfig loader's hook re-derived the proxy from the whole environment on every call
(`hack/kube_call_cpu.py`: 0.71-0.80 -> 0.51-0.55 CPU-ms per Secret create). Neither the
official client's synchronous transport (worker threads, urllib3, model serialization; its
pool of 10 overflowed and reopened TLS connections) nor httpx is used here: a Secret create
over TLS cost 4.2 CPU-ms with httpx against 0.49 with aiohttp (`hack/kube_call_cpu.py`), and
these calls were a sixth of the operator's CPU.

Answers are read as plain JSON: the operator needs a field or two of each. Listings go in pages
of LIST_PAGE, so a sweep over 10,000 tenants never holds more than one page of the API server's
answer at once; the tenant listing asks for metadata only. Secret payloads are never logged:
errors name the Secret and the status code only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
from kubernetes import client
from kubernetes import config as kube_config

from byok_operator import api
from byok_operator.audit import AuditEvent, log_tenant_audit
from byok_operator.crypto import Vault, VaultConfigError
from byok_operator.settings import Settings

LIST_PAGE = 500  # objects per list call (the API server's own chunking, `limit`/`continue`)
# The tenant listing of sweeps needs uids only: the API server then sends no spec or status.
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
REQUEST_TIMEOUT = 30.0  # seconds per call, as kopf's own (settings.networking.request_timeout)
TOKEN_REUSE = 10.0  # seconds a token from the refresh hook is reused (a 401 refreshes at once)


def load_configuration() -> client.Configuration:
    """In a pod: the ServiceAccount (its token re-read as it rotates); elsewhere: the current
    kubeconfig context (as kopf does)."""
    configuration = client.Configuration()
    try:
        kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        kube_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration


def api_client() -> client.ApiClient:
    """The official client, for the few synchronous callers (the Lease of leader election)."""
    return client.ApiClient(load_configuration())


def _tls(configuration: client.Configuration) -> ssl.SSLContext:
    """TLS as the configuration says: its CA (else the system's), its client certificate."""
    context = ssl.create_default_context(
        cafile=configuration.ssl_ca_cert, cadata=configuration.ca_cert_data
    )
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


class KubeError(RuntimeError):
    """A Kubernetes call failed for a reason other than 'not found'."""


class SecretConflict(KubeError):
    """A create found the Secret already there, or a replace found it changed since read."""


class _Refused(Exception):
    """The API server answered with an error status (turned into a KubeError by the caller,
    which knows what the call was for)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class SecretData:
    name: str
    data: dict[str, str] = field(repr=False)
    labels: dict[str, str]
    annotations: dict[str, str]
    resource_version: str


def _decode(data: Mapping[str, bytes | str] | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (data or {}).items()}


def _encode(data: Mapping[str, str]) -> dict[str, str]:
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


def _secret_body(
    namespace: str,
    name: str,
    data: Mapping[str, str],
    *,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    resource_version: str | None = None,
    owner: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "annotations": dict(annotations),
    }
    if resource_version is not None:
        meta["resourceVersion"] = resource_version
    if owner:
        meta["ownerReferences"] = [_camel(owner)]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": _encode(data),
    }


def _camel(fields: Mapping[str, Any]) -> dict[str, Any]:
    """snake_case keyword names (as the official client's models take them) -> the API's JSON."""
    return {
        name.split("_")[0] + "".join(part.title() for part in name.split("_")[1:]): value
        for name, value in fields.items()
    }


def _explain(action: str, exc: _Refused) -> KubeError:
    hint = {
        403: "grant the operator's ServiceAccount this permission (see charts/byok-operator RBAC)",
        422: "the object was rejected as invalid",
    }.get(exc.status, "retrying")
    return KubeError(f"{action} failed with HTTP {exc.status} {exc.reason}: {hint}")


def _secrets(namespace: str, name: str = "") -> str:
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets"
    return f"{path}/{quote(name, safe='')}" if name else path


def _tenants(namespace: str | None = None, name: str = "") -> str:
    if namespace is None:
        return f"/apis/{api.GROUP}/{api.VERSION}/{api.PLURAL}"
    path = f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{quote(namespace, safe='')}/{api.PLURAL}"
    return f"{path}/{quote(name, safe='')}" if name else path


class Kube:
    """The API server the configuration names. The session is made on the first call (aiohttp
    binds it to the running loop). Environment proxies are ignored, as by the official client;
    a kubeconfig's ``proxy-url`` is honoured."""

    def __init__(
        self, configuration: client.Configuration, *, timeout: float = REQUEST_TIMEOUT
    ) -> None:
        self._configuration = configuration
        # Read once: the official Configuration computes `host` on every access, going
        # through the environment's proxy variables (5% of the operator's CPU per tenant).
        self._host = configuration.host
        self._proxy = configuration.proxy or None
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_until = float("-inf")

    @classmethod
    def from_kubeconfig(cls, path: Path | str) -> Kube:
        """For tools and tests: the current context of one kubeconfig file."""
        configuration = client.Configuration()
        kube_config.load_kube_config(config_file=str(path), client_configuration=configuration)  # type: ignore[no-untyped-call]
        return cls(configuration)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=_tls(self._configuration)),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": api.MANAGER, "Accept": "application/json"},
                trust_env=False,
            )
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One call; its answer as the API server's JSON. Raises _Refused for an error status,
        KubeError when the API server cannot be reached or does not answer in time."""
        sent = dict(headers or {})
        if body is not None:
            sent.setdefault("Content-Type", "application/json")
        data = json.dumps(body).encode() if body is not None else None
        status, reason, content = await self._send(method, path, params, data, sent, fresh=False)
        if status == 401:  # a rotated ServiceAccount token, an expired exec-plugin token
            status, reason, content = await self._send(method, path, params, data, sent, fresh=True)
        if status >= 400:
            raise _Refused(status, reason)
        answer: dict[str, Any] = json.loads(content) if content else {}
        return answer

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        data: bytes | None,
        headers: dict[str, str],
        *,
        fresh: bool,
    ) -> tuple[int, str, bytes]:
        token = self._authorization(fresh=fresh)
        if token:
            headers = {**headers, "Authorization": token}
        try:
            async with self._open().request(
                method,
                self._host + path,
                params=params,
                data=data,
                headers=headers,
                proxy=self._proxy,
            ) as response:
                return response.status, response.reason or "", await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(
                f"{method} {path} failed: no answer from the Kubernetes API server "
                f"({type(exc).__name__}); retrying. If it persists, check that the API server "
                "is up and reachable from the operator (its kubeconfig or in-cluster address)."
            ) from None

    def _authorization(self, *, fresh: bool) -> str | None:
        """The Authorization header: the refresh hook re-reads a rotated ServiceAccount token
        or re-runs an exec plugin; its answer is reused for TOKEN_REUSE seconds."""
        now = asyncio.get_running_loop().time()
        if fresh or now >= self._token_until:
            self._token = self._configuration.get_api_key_with_prefix(
                "BearerToken", alias="authorization"
            )
            self._token_until = now + TOKEN_REUSE
        return self._token

    async def _pages(
        self, path: str, *, params: Mapping[str, str] | None = None, **options: Any
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The items of a listing, a page at a time. An expired continue token (410, after
        minutes) fails the listing; its caller's next pass lists afresh."""
        token: str | None = None
        while True:
            query: dict[str, str | int] = {**(params or {}), "limit": LIST_PAGE}
            if token:
                query["continue"] = token
            answer = await self._call("GET", path, params=query, **options)
            yield answer.get("items") or []
            token = (answer.get("metadata") or {}).get("continue")
            if not token:
                return

    async def read_secret(self, namespace: str, name: str) -> SecretData | None:
        try:
            obj = await self._call("GET", _secrets(namespace, name))
        except _Refused as exc:
            if exc.status == 404:
                return None
            raise _explain(f"reading Secret {namespace}/{name}", exc) from None
        return secret_from_body(obj)

    async def namespace_uid(self, name: str) -> str | None:
        """The namespace's uid; None when it does not exist."""
        try:
            obj = await self._call("GET", f"/api/v1/namespaces/{quote(name, safe='')}")
        except _Refused as exc:
            if exc.status == 404:
                return None
            raise _explain(f"reading Namespace {name}", exc) from None
        uid = (obj.get("metadata") or {}).get("uid")
        return str(uid) if uid else None

    async def list_secrets(self, namespace: str, label_selector: str) -> list[SecretData]:
        found: list[SecretData] = []
        try:
            async for page in self._pages(
                _secrets(namespace), params={"labelSelector": label_selector}
            ):
                found.extend(secret_from_body(item) for item in page)
        except _Refused as exc:
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
        owner: Mapping[str, Any] | None = None,  # ownerReference fields, snake_case
        exists: bool = False,
    ) -> None:
        """Create or replace a Secret with exactly ``data``: one call when the caller knows
        whether it ``exists`` (a create that finds one, or a replace that finds none, falls
        back to the other)."""
        body = _secret_body(
            namespace, name, data, labels=labels, annotations=annotations or {}, owner=owner
        )
        create = ("POST", _secrets(namespace), 409)
        replace = ("PUT", _secrets(namespace, name), 404)
        first, then = (replace, create) if exists else (create, replace)
        try:
            await self._call(first[0], first[1], body=body)
            return
        except _Refused as exc:
            if exc.status != first[2]:
                raise _explain(f"writing Secret {namespace}/{name}", exc) from None
        try:
            await self._call(then[0], then[1], body=body)
        except _Refused as exc:
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
        body = _secret_body(
            namespace,
            name,
            data,
            labels=labels,
            annotations=annotations,
            resource_version=resource_version,
        )
        try:
            if resource_version is None:
                obj = await self._call("POST", _secrets(namespace), body=body)
            else:
                obj = await self._call("PUT", _secrets(namespace, name), body=body)
        except _Refused as exc:
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
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = ref["namespace"]
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ref['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "name": ref["name"],
                "namespace": namespace,
                "uid": ref["uid"],
            },
            "reason": reason,
            "message": message[:1024],
            "type": type,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": api.MANAGER},
            "reportingComponent": api.MANAGER,
        }
        try:
            await self._call(
                "POST", f"/api/v1/namespaces/{quote(namespace, safe='')}/events", body=event
            )
        except _Refused as exc:
            raise _explain(f"posting an Event on {namespace}/{ref['name']}", exc) from None

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
            await self._call(
                "PATCH",
                f"{_tenants(namespace, name)}/status",
                body={"status": dict(status)},
                headers=MERGE_PATCH,
            )
        except _Refused as exc:
            if exc.status != 404:
                raise _explain(f"writing the status of {namespace}/{name}", exc) from None

    async def delete_secret(self, namespace: str, name: str) -> bool:
        try:
            await self._call("DELETE", _secrets(namespace, name))
        except _Refused as exc:
            if exc.status == 404:
                return False
            raise _explain(f"deleting Secret {namespace}/{name}", exc) from None
        return True

    async def list_tenant_uids(self) -> set[str]:
        """The uids of every TenantLLMConfig in the cluster (for orphan sweeps): metadata only,
        a page at a time, so 10,000 tenants cost a few MiB here, not their whole objects."""
        uids: set[str] = set()
        try:
            async for page in self._pages(_tenants(), headers=METADATA_ONLY):
                uids.update(item["metadata"]["uid"] for item in page)
        except _Refused as exc:
            raise _explain("listing TenantLLMConfigs", exc) from None
        return uids

    async def annotate_tenant(
        self, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> None:
        patch = {"metadata": {"annotations": dict(annotations)}}
        try:
            await self._call("PATCH", _tenants(namespace, name), body=patch, headers=MERGE_PATCH)
        except _Refused as exc:
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
