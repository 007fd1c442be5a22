"""The operator's remembered view of every TenantLLMConfig, kept from the watch (no API calls).

Scheduled passes, the sweep, the metrics and Secret events read tenants from here, not from
the API server. Each body is slimmed and compacted on the way in (at 10,000 tenants the raw
watch events would be most of the operator's memory), and the lookups an event needs at once
are kept beside it: by name, by tenant id (rival claims), by key Secret (who reads it).

The key-Secret lookup replaces a kopf index on purpose: an index is one more kopf handler run
on every event of every tenant, and kopf's handler machinery is most of the operator's CPU.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from byok_operator import api
from byok_operator.core.boundaries import tenant_id_of, unflagged_losers
from byok_operator.core.vault import TenantRef

INTERNED_UP_TO = 64  # characters: keys, condition types and reasons, model ids, modes

SecretKey = tuple[str, str]  # (namespace, Secret name)


@dataclass
class Tenant:
    """What the watch last showed of one TenantLLMConfig (slimmed, compacted)."""

    body: dict[str, Any]

    @property
    def ref(self) -> TenantRef:
        return tenant_ref(self.body)


def tenant_ref(body: Mapping[str, Any]) -> TenantRef:
    meta = body["metadata"]
    return TenantRef(
        meta["namespace"],
        meta["name"],
        meta["uid"],
        int(meta.get("generation") or 0),
        str(meta.get("creationTimestamp") or ""),
    )


def secrets_read(body: Mapping[str, Any]) -> set[SecretKey]:
    """The key Secrets a tenant's spec references (always in its own namespace)."""
    namespace = body["metadata"]["namespace"]
    providers = (body.get("spec") or {}).get("providers") or {}
    return {
        (namespace, p["secretRef"]["name"])
        for p in providers.values()
        if isinstance(p, Mapping)
        and isinstance(p.get("secretRef"), Mapping)
        and p["secretRef"].get("name")
    }


class TenantBook:
    """Every tenant as the watch last showed it, by uid, with the lookups events need."""

    def __init__(self) -> None:
        self._tenants: dict[str, Tenant] = {}
        self._uids: dict[tuple[str, str], str] = {}  # (namespace, name) -> uid
        self._claims: dict[str, set[str]] = {}  # tenant id -> uids claiming it (one, mostly)
        self._readers: dict[SecretKey, set[str]] = {}  # key Secret -> uids reading it

    def __len__(self) -> int:
        return len(self._tenants)

    def __iter__(self) -> Iterator[Tenant]:
        return iter(list(self._tenants.values()))

    def get(self, uid: str) -> Tenant | None:
        return self._tenants.get(uid)

    def named(self, namespace: str, name: str) -> Tenant | None:
        uid = self._uids.get((namespace, name))
        return self._tenants.get(uid) if uid is not None else None

    def bodies(self) -> dict[str, dict[str, Any]]:
        return {uid: t.body for uid, t in self._tenants.items()}

    def claimants(self, tenant_id: str) -> list[dict[str, Any]]:
        return [self._tenants[uid].body for uid in self._claims.get(tenant_id, ()) if uid in self]

    def readers(self, namespace: str, secret_name: str) -> list[Tenant]:
        """Tenants whose spec references this key Secret."""
        uids = self._readers.get((namespace, secret_name), ())
        return [self._tenants[uid] for uid in sorted(uids) if uid in self]

    def __contains__(self, uid: object) -> bool:
        return uid in self._tenants

    def saw(self, body: Mapping[str, Any]) -> list[str]:
        """Remember an ADDED/MODIFIED body. Returns the uids to wake: provisioned rival claims
        of the same tenant id whose status does not say they lost yet (rare)."""
        uid = str(body["metadata"]["uid"])
        previous = self._tenants.get(uid)
        if previous is not None:
            self._unlink(uid, previous.body)
        slimmed = slim(body)
        self._tenants[uid] = Tenant(slimmed)
        self._uids[(slimmed["metadata"]["namespace"], slimmed["metadata"]["name"])] = uid
        for secret in secrets_read(slimmed):
            self._readers.setdefault(secret, set()).add(uid)
        tenant_id = tenant_id_of(slimmed)
        claims = self._claims.setdefault(tenant_id, set())
        claims.add(uid)
        if len(claims) < 2:
            return []
        return unflagged_losers(tenant_id, self.claimants(tenant_id))

    def forgot(self, body: Mapping[str, Any]) -> list[str]:
        """Forget a DELETED tenant. Returns the uids of the other claims of its tenant id: the
        next one may hold it now."""
        uid = str(body["metadata"]["uid"])
        known = self._tenants.pop(uid, None)
        last = known.body if known is not None else body
        self._unlink(uid, last)
        self._uids.pop((last["metadata"]["namespace"], last["metadata"]["name"]), None)
        return sorted(self._claims.get(tenant_id_of(last), ()))

    def merge_status(self, uid: str, status: Mapping[str, Any]) -> None:
        """Lay a pass's status over the remembered one, so a scheduled pass that runs before
        the watch shows this one's status does not work from an older one (a status patch that
        changes nothing brings no event)."""
        tenant = self._tenants.get(uid)
        if tenant is not None:
            merged = {**(tenant.body.get("status") or {}), **_compact_mapping(status)}
            tenant.body = {**tenant.body, "status": merged}

    def _unlink(self, uid: str, body: Mapping[str, Any]) -> None:
        """Drop ``uid`` from the lookups ``body`` put it in (a spec change can move it)."""
        for secret in secrets_read(body):
            readers = self._readers.get(secret)
            if readers is not None:
                readers.discard(uid)
                if not readers:
                    del self._readers[secret]
        tenant_id = tenant_id_of(body)
        claims = self._claims.get(tenant_id)
        if claims is not None:
            claims.discard(uid)
            if not claims:
                del self._claims[tenant_id]


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """What passes and the sweep read of a tenant: no managedFields, no kopf diff base (at
    10,000 tenants those would be most of the operator's memory), compacted (see `_compact`)."""
    meta = body["metadata"]
    status = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
    return _compact_mapping(
        {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "generation": meta.get("generation"),
                "creationTimestamp": meta.get("creationTimestamp"),
                "deletionTimestamp": meta.get("deletionTimestamp"),
                "annotations": {
                    k: v
                    for k, v in (meta.get("annotations") or {}).items()
                    if k.startswith(api.GROUP)
                },
            },
            "spec": body.get("spec") or {},
            "status": status,
        }
    )


def _compact(value: Any) -> Any:
    """A deep copy sharing nothing with the watch event, its keys and short strings interned.

    A JSON decoder shares equal strings within one document only, so 10,000 remembered
    tenants would each carry their own "lastTransitionTime", "InvalidKey" and "gpt-4o";
    interned, each exists once. The copy also lets the whole event be freed."""
    if isinstance(value, Mapping):
        return _compact_mapping(value)
    if isinstance(value, list | tuple):
        return [_compact(v) for v in value]
    if isinstance(value, str) and len(value) <= INTERNED_UP_TO:
        # A pass's status holds StrEnum members (Reason, Mode), which sys.intern refuses:
        # str.__str__ gives the plain string the API server would have sent.
        return sys.intern(str.__str__(value))
    return value


def _compact_mapping(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {sys.intern(k): _compact(v) for k, v in mapping.items()}
