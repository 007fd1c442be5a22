"""The vault Secret of each tenant (``tlc-vault-<uid>`` in the operator's namespace): the
reconciler's memory (no secrets) beside Fernet tokens of the keys.

Lean by design: the last record read or written is cached with its resourceVersion, so a
pass reads the API server only after a restart, and writes with optimistic concurrency
(a replace carries the resourceVersion); a tenant that never finished a pass is assumed to
have no vault at all, and the rare crash that proves otherwise surfaces as a conflict on
create, after which the pass starts again from the stored record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from byok_operator import api
from byok_operator.core.vault import TenantRef, VaultState, vault_secret_name
from byok_operator.crypto import Vault
from byok_operator.kube import SecretConflict
from byok_operator.ports import Cluster

STATE_KEY = "state.json"


class VaultConflict(Exception):
    """The vault Secret changed under us (another writer, or a pass that crashed after
    writing it): reload and run the pass again."""


@dataclass
class Record:
    """The vault Secret: state (no secrets) plus Fernet tokens of keys."""

    state: VaultState
    tokens: dict[str, str] = field(repr=False)
    resource_version: str | None = None

    def copy(self) -> Record:
        return Record(self.state.model_copy(), dict(self.tokens), self.resource_version)


def tenant_labels(ref: TenantRef) -> dict[str, str]:
    return {
        api.MANAGED_BY_LABEL: api.MANAGER,
        api.TENANT_UID_LABEL: ref.uid,
        api.TENANT_NAME_LABEL: ref.name[:63],
        api.TENANT_NAMESPACE_LABEL: ref.namespace[:63],
    }


class VaultStore:
    def __init__(self, kube: Cluster, namespace: str, vault: Vault) -> None:
        self.kube = kube
        self.namespace = namespace
        self.vault = vault
        self._cache: dict[str, Record] = {}

    async def load(self, ref: TenantRef, *, assume_new: bool = False) -> Record:
        """The tenant's record: cached, else read; ``assume_new`` skips the read for a tenant
        whose status shows no finished pass (a stored record then turns up as a conflict)."""
        cached = self._cache.get(ref.uid)
        if cached is not None:
            return cached.copy()
        if assume_new:
            return Record(VaultState(), {})
        return await self.reload(ref)

    async def reload(self, ref: TenantRef) -> Record:
        found = await self.kube.read_secret(self.namespace, vault_secret_name(ref.uid))
        if found is None:
            record = Record(VaultState(), {})
        else:
            tokens = {k: v for k, v in found.data.items() if k != STATE_KEY}
            state = VaultState.model_validate_json(found.data.get(STATE_KEY) or "{}")
            record = Record(state, tokens, found.resource_version)
        self._cache[ref.uid] = record.copy()
        return record

    async def save(self, ref: TenantRef, record: Record) -> None:
        """Write the record (revision bumped): create it, or replace exactly the version read."""
        record.state = record.state.model_copy(update={"revision": record.state.revision + 1})
        data = {**record.tokens, STATE_KEY: record.state.model_dump_json()}
        try:
            record.resource_version = await self.kube.put_secret(
                self.namespace,
                vault_secret_name(ref.uid),
                data,
                labels=tenant_labels(ref),
                annotations={api.ENCRYPTION_KEY_ID_ANNOTATION: self.vault.primary_id},
                resource_version=record.resource_version,
            )
        except SecretConflict:
            self._cache.pop(ref.uid, None)
            raise VaultConflict(ref.uid) from None
        self._cache[ref.uid] = record.copy()

    async def delete(self, ref: TenantRef) -> None:
        await self.kube.delete_secret(self.namespace, vault_secret_name(ref.uid))
        self.forget(ref.uid)

    def forget(self, uid: str) -> None:
        self._cache.pop(uid, None)
