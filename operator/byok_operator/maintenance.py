"""Operator-wide housekeeping, on a timer: orphan sweep, encryption-key reload and rewrap.

kopf timers belong to one object each; these jobs concern all of them, so they run as one
background task started by the startup handler. No kopf here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from byok_operator import api
from byok_operator.crypto import DecryptionError, Vault
from byok_operator.kube import SecretData, load_vault
from byok_operator.reconcile import vault_secret_name
from byok_operator.tenant import STATE_KEY, Reconciler

logger = logging.getLogger("byok_operator.maintenance")


@dataclass(frozen=True)
class SweepReport:
    keys: int = 0
    deployments: int = 0
    credentials: int = 0
    vaults: int = 0

    def total(self) -> int:
        return self.keys + self.deployments + self.credentials + self.vaults


@dataclass(frozen=True)
class RewrapReport:
    rewrapped: int
    current: int
    failed: tuple[str, ...]


class Maintenance:
    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.deps = reconciler.deps

    async def run_forever(self, interval: float) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # the loop outlives any one gateway or API server hiccup
                logger.warning("Maintenance pass failed, retrying in %.0fs: %s", interval, exc)
            await asyncio.sleep(interval)

    async def run_once(self) -> None:
        await self.reload_encryption_keys()
        await self.rewrap()
        report = await self.sweep_orphans()
        if report.total():
            logger.info(
                "Orphan sweep removed %d keys, %d deployments, %d credentials, %d vault Secrets "
                "whose TenantLLMConfig no longer exists.",
                report.keys,
                report.deployments,
                report.credentials,
                report.vaults,
            )

    async def reload_encryption_keys(self) -> bool:
        """Pick up a changed encryption-key Secret (or file) without a restart."""
        fresh = await load_vault(self.deps.settings, self.deps.kube)
        if fresh.key_ids == self.deps.vault.key_ids:
            return False
        self.deps.vault = fresh
        logger.info(
            "Encryption keys changed: %d key(s), newest %s; re-encrypting stored copies.",
            len(fresh.key_ids),
            fresh.primary_id,
        )
        return True

    async def rewrap(self) -> RewrapReport:
        """Re-encrypt every vault Secret not yet written with the newest encryption key."""
        vault = self.deps.vault
        vaults = await self._vault_secrets()
        stale = [
            s
            for s in vaults
            if s.annotations.get(api.ENCRYPTION_KEY_ID_ANNOTATION) != vault.primary_id
        ]
        failed: list[str] = []
        for done, secret in enumerate(stale, start=1):
            uid = secret.labels.get(api.TENANT_UID_LABEL, "")
            try:
                async with self.reconciler.lock(uid):
                    await self._rewrap_one(uid, vault)
            except DecryptionError:
                owner = f"{secret.labels.get(api.TENANT_NAMESPACE_LABEL)}/{secret.labels.get(api.TENANT_NAME_LABEL)}"
                failed.append(owner)
                logger.warning(
                    "Vault Secret %s (tenant %s) has a copy no configured encryption key opens. "
                    "The tenant's next periodic pass re-encrypts its provider key from its Secret "
                    "and issues a new virtual key; if the Secret no longer holds the committed "
                    "key, it reports DecryptionFailed until the old encryption key is added back.",
                    secret.name,
                    owner,
                )
            if done % 50 == 0 or done == len(stale):
                logger.info("Rewrap progress: %d/%d vault Secrets checked.", done, len(stale))
        return RewrapReport(len(stale) - len(failed), len(vaults) - len(stale), tuple(failed))

    async def _rewrap_one(self, uid: str, vault: Vault) -> None:
        ref_name = vault_secret_name(uid)
        namespace = self.deps.settings.operator_namespace
        current = await self.deps.kube.read_secret(namespace, ref_name)
        if current is None:
            return
        data = {
            key: value if key == STATE_KEY else vault.rewrap(value)
            for key, value in current.data.items()
        }
        await self.deps.kube.write_secret(
            namespace,
            ref_name,
            data,
            labels=current.labels,
            annotations={**current.annotations, api.ENCRYPTION_KEY_ID_ANNOTATION: vault.primary_id},
        )

    async def sweep_orphans(self) -> SweepReport:
        """Delete gateway objects and vault Secrets whose TenantLLMConfig is gone.

        The gateway is listed before the cluster: an object made for a resource created in
        between then belongs to a uid the cluster listing already shows.
        """
        gateway = self.deps.gateway
        ours = {"instance": self.deps.settings.instance_id}
        keys = await gateway.list_keys(match=ours)
        deployments = await gateway.list_deployments(match=ours)
        credentials = await gateway.list_credentials(match=ours)
        vaults = await self._vault_secrets()
        alive = await self.deps.kube.list_tenant_uids()

        def orphan(uid: str | None) -> bool:
            return bool(uid) and uid not in alive

        stale_keys = [k.token for k in keys if orphan(k.metadata.get("tlc_uid"))]
        if stale_keys:
            await gateway.delete_keys(stale_keys)
        stale_deployments = [d.id for d in deployments if orphan(d.info.get("tlc_uid"))]
        for deployment_id in stale_deployments:
            await gateway.delete_deployment(deployment_id)
        stale_credentials = [c.name for c in credentials if orphan(c.info.get("tlc_uid"))]
        for name in stale_credentials:
            await gateway.delete_credential(name)
        stale_vaults = [v.name for v in vaults if orphan(v.labels.get(api.TENANT_UID_LABEL))]
        for name in stale_vaults:
            await self.deps.kube.delete_secret(self.deps.settings.operator_namespace, name)
        return SweepReport(
            len(stale_keys), len(stale_deployments), len(stale_credentials), len(stale_vaults)
        )

    async def _vault_secrets(self) -> list[SecretData]:
        selector = f"{api.MANAGED_BY_LABEL}={api.MANAGER},{api.TENANT_UID_LABEL}"
        return await self.deps.kube.list_secrets(self.deps.settings.operator_namespace, selector)
