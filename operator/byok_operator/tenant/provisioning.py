"""Gateway objects of a tenant besides its virtual keys: shared deployments, credentials, teams.

Each step writes only what differs from the vault's record of what the gateway was told;
``trusted=False`` (an earlier pass stopped half-way, or the gateway lost state) re-applies
everything with update-else-create calls, which are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from byok_operator.api import MANAGER, Provider
from byok_operator.core.gateway import (
    SENTINEL_KEY,
    SharedDeployment,
    TeamShape,
    byok_team_id,
    credential_name,
    missing_deployments,
    platform_team_id,
)
from byok_operator.core.vault import CommittedKey, TenantRef
from byok_operator.crypto import Vault
from byok_operator.gateway import DeploymentInfo, GatewayError, LiteLLMGateway, TeamSpec
from byok_operator.settings import Settings
from byok_operator.tenant.vault_store import Record

log = logging.getLogger(__name__)


def markers(ref: TenantRef, instance: str) -> dict[str, str]:
    """Metadata on every per-tenant gateway object, so sweeps can tell ours (and whose) apart;
    the instance id keeps operators of several clusters sharing one gateway off each other's."""
    return {
        "managed_by": MANAGER,
        "instance": instance,
        "tlc_uid": ref.uid,
        "tlc_namespace": ref.namespace,
        "tlc_name": ref.name,
    }


async def gateway_warnings(gateway: LiteLLMGateway) -> list[str]:
    """What the operator can check of the gateway settings DESIGN §6 needs, and what not."""
    warnings = [
        "LiteLLM does not report litellm_settings.enable_model_config_credential_overrides; "
        "it must be true, or BYOK calls reach providers with the shared deployments' sentinel "
        "key and fail with 401 (see README, Gateway settings)."
    ]
    try:
        router = await gateway.router_settings()
    except GatewayError as exc:
        return [*warnings, f"Could not read LiteLLM's router settings ({exc})."]
    if router.get("disable_cooldowns") is not True:
        warnings.append(
            "LiteLLM runs with router_settings.disable_cooldowns unset: one tenant's revoked key "
            "would put a shared deployment in cooldown and give every other tenant 429s. Set "
            "router_settings.disable_cooldowns: true in LiteLLM's config."
        )
    return warnings


class SharedDeployments:
    """The shared BYOK deployments the gateway has, learned once and then kept in memory:
    each is created on first use, one at a time (LiteLLM reloads its router on each)."""

    def __init__(self, gateway: LiteLLMGateway, settings: Settings) -> None:
        self.gateway = gateway
        self.settings = settings
        self._known: set[str] | None = None
        self._used: dict[str, SharedDeployment] = {}  # every one a tenant here asked for
        self._lock = asyncio.Lock()

    async def ensure(self, wanted: Iterable[SharedDeployment]) -> None:
        wanted = list(wanted)
        self._used.update((d.name, d) for d in wanted)
        if self._known is not None and not missing_deployments(wanted, self._known):
            return
        async with self._lock:
            if self._known is None:
                found = await self.gateway.list_deployments(
                    search="byok-", match={"shared": "true"}
                )
                self._known = {d.id for d in found}
            for deployment in missing_deployments(wanted, self._known):
                await self.gateway.create_shared_deployment(
                    deployment.name,
                    deployment.litellm_model,
                    sentinel_key=SENTINEL_KEY,
                    api_base=self._base_url(deployment.provider),
                    info={"shared": "true", "instance": self.settings.instance_id},
                )
                self._known.add(deployment.name)

    async def restore(self) -> list[str]:
        """Re-create the shared deployments tenants here use that the gateway no longer has
        (an admin deleted one, or LiteLLM lost its database while no tenant drifted): one
        listing, then a create per missing deployment. Returns the names re-created."""
        if not self._used:
            return []
        found = await self.gateway.list_deployments(search="byok-", match={"shared": "true"})
        have = {d.id for d in found}
        missing = missing_deployments(list(self._used.values()), have)
        if missing:
            async with self._lock:
                self._known = have
            await self.ensure(missing)
        return [d.name for d in missing]

    def forget(self) -> None:
        """The gateway may have lost them (a repair found it empty): learn them again."""
        self._known = None

    def _base_url(self, provider: Provider) -> str | None:
        if provider is Provider.OPENAI:
            return self.settings.openai_base_url
        return self.settings.anthropic_base_url


class Provisioner:
    def __init__(self, gateway: LiteLLMGateway, settings: Settings, vault: Vault) -> None:
        self.gateway = gateway
        self.settings = settings
        self.vault = vault
        self.shared = SharedDeployments(gateway, settings)

    def _info(self, ref: TenantRef) -> dict[str, str]:
        return markers(ref, self.settings.instance_id)

    async def credentials(
        self,
        ref: TenantRef,
        record: Record,
        committed: Mapping[Provider, CommittedKey],
        written: Mapping[Provider, str],
        *,
        trusted: bool,
    ) -> None:
        """Create the credentials never written, update those holding another key."""
        for provider, key in committed.items():
            if trusted and written.get(provider) == key.fingerprint:
                continue
            name = credential_name(ref.uid, provider)
            raw = self.vault.decrypt(record.tokens[f"provider.{provider.value}"])
            base = (
                self.settings.openai_base_url
                if provider is Provider.OPENAI
                else self.settings.anthropic_base_url
            )
            if trusted and provider not in written:
                await self.gateway.create_credential(
                    name, provider, raw, api_base=base, info=self._info(ref)
                )
            else:
                await self.gateway.upsert_credential(
                    name, provider, raw, api_base=base, info=self._info(ref)
                )

    async def team(
        self, ref: TenantRef, shape: TeamShape, written: Mapping[str, str], *, trusted: bool
    ) -> None:
        if trusted and written.get(shape.team_id) == shape.digest():
            return
        spec = TeamSpec(
            team_id=shape.team_id,
            alias=shape.alias,
            models=list(shape.models),
            model_config_map={
                k: {p: dict(v) for p, v in m.items()} for k, m in shape.model_config.items()
            },
            max_budget=float(shape.max_budget) if shape.max_budget is not None else None,
            budget_duration=shape.budget_duration,
            info=self._info(ref),
        )
        if trusted and shape.team_id not in written:
            await self.gateway.create_team(spec)
        else:
            await self.gateway.upsert_team(spec)

    async def remove_byok(self, ref: TenantRef, providers: Iterable[Provider]) -> bool:
        """The tenant's BYOK team (LiteLLM deletes its keys with it) and credentials; whether
        there was anything to remove."""
        removed = await self.gateway.delete_team(byok_team_id(ref.uid))
        for provider in providers:
            removed |= await self.gateway.delete_credential(credential_name(ref.uid, provider))
        return removed

    async def remove_all(self, ref: TenantRef) -> None:
        await self.remove_byok(ref, Provider)
        await self.gateway.delete_team(platform_team_id(ref.uid))

    async def legacy_deployments(self, ref: TenantRef) -> list[DeploymentInfo]:
        """Per-tenant deployments of the gateway model before DESIGN §6 (their public names
        carry the uid's first 8 characters)."""
        return await self.gateway.list_deployments(
            search=f"{ref.uid[:8]}/", match={"tlc_uid": ref.uid}
        )

    async def remove_legacy_deployments(
        self, ref: TenantRef, found: list[DeploymentInfo] | None = None
    ) -> int:
        """Removed once the tenant's key no longer needs them."""
        if found is None:
            found = await self.legacy_deployments(ref)
        for deployment in found:
            await self.gateway.delete_deployment(deployment.id)
        if found:
            log.info(
                "Removed %d per-tenant deployments of %s/%s.", len(found), ref.namespace, ref.name
            )
        return len(found)
