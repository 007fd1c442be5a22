"""Operator-wide housekeeping in one background task: encryption-key reload and rewrap, and one
bulk sweep of the gateway that does for every tenant at once what a per-tenant timer did:

- orphans (objects of resources that no longer exist) and stray keys are deleted;
- drift (a live key, team or credential the gateway lost) wakes only the tenants concerned,
  with their record distrusted, so they rebuild from the encrypted copies;
- platform spend is read from the paged team list and written to the status of the tenants
  whose figure changed.

A sweep costs about (keys + teams) / 100 + 3 gateway calls and two API-server lists, however
idle the tenants are. No kopf here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from byok_operator import api, metrics
from byok_operator.api import ConditionType, Mode
from byok_operator.core.conditions import find, merge_conditions
from byok_operator.core.gateway import (
    byok_team_id,
    credential_name,
    platform_team_id,
    team_mode,
)
from byok_operator.core.status import budget_audits, budget_condition, money
from byok_operator.core.vault import VaultState, vault_secret_name
from byok_operator.crypto import DecryptionError, Vault
from byok_operator.gateway import PAGE_SIZE as PAGE
from byok_operator.gateway import CredentialInfo, KeyInfo, TeamInfo
from byok_operator.kube import SecretData, load_vault
from byok_operator.models import SpecError, parse_spec
from byok_operator.scheduler import Scheduler
from byok_operator.tenant import STATE_KEY, Reconciler

logger = logging.getLogger("byok_operator.maintenance")

KnownTenants = Callable[[], Mapping[str, Mapping[str, Any]]]
SWEEP_REQUESTS_PER_MINUTE = 100
# A sweep waits at most this many intervals for a backlog of passes to drain (see run_forever).
MAX_SWEEP_DEFERRAL = 10


@dataclass(frozen=True)
class SweepReport:
    keys: int = 0
    deployments: int = 0
    credentials: int = 0
    teams: int = 0
    vaults: int = 0
    drifted: tuple[str, ...] = ()
    restored: tuple[str, ...] = ()  # shared deployments re-created
    spend_updates: int = 0
    gateway_calls: int = 0  # what the listing cost

    def total(self) -> int:
        return self.keys + self.deployments + self.credentials + self.teams + self.vaults


@dataclass(frozen=True)
class RewrapReport:
    rewrapped: int
    current: int
    failed: tuple[str, ...]


@dataclass
class GatewaySnapshot:
    keys: list[KeyInfo]
    teams: list[TeamInfo]
    credentials: list[CredentialInfo]

    @cached_property
    def credential_names(self) -> set[str]:
        """Built once per snapshot: asked per tenant, a plain property made the sweep quadratic
        (10,000 tenants x 5,000 credentials, seconds of CPU per sweep)."""
        return {c.name for c in self.credentials}


class Maintenance:
    def __init__(
        self,
        reconciler: Reconciler,
        known: KnownTenants = dict,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.deps = reconciler.deps
        self.known = known
        self.scheduler = scheduler

    async def run_forever(self, interval: float) -> None:
        """Sweep every ``interval`` seconds, or less often when the gateway is large: a sweep
        lists keys and teams in pages of 100, and is spaced so that sweeping stays under
        SWEEP_REQUESTS_PER_MINUTE calls to LiteLLM (10,000 tenants: one sweep every ~2 min).

        While passes queue up for the gateway (a wave of new or changed tenants), a sweep waits
        for them, up to MAX_SWEEP_DEFERRAL intervals: its listings would take LiteLLM time
        the wave needs (at 10,000 tenants a sweep is ~250 listing pages), and what it repairs
        -- drift, orphans, spend -- can wait minutes, while each new tenant waits for the wave."""
        while True:
            await self._wait_for_backlog(interval)
            pause = interval
            try:
                report = await self.run_once()
                pause = max(interval, report.gateway_calls * 60 / SWEEP_REQUESTS_PER_MINUTE)
            except Exception as exc:  # the loop outlives any one gateway or API server hiccup
                logger.warning("Maintenance pass failed, retrying in %.0fs: %s", interval, exc)
            await asyncio.sleep(pause)

    async def _wait_for_backlog(self, interval: float) -> None:
        waited = 0.0
        step = min(interval, 5.0)
        while sweep_deferred(self.reconciler.backlog, self.busy_above, waited, interval):
            await asyncio.sleep(step)
            waited += step

    @property
    def busy_above(self) -> int:
        """More passes than this, running or waiting, is a backlog: twice what the gateway
        serves at once (BYOK_GATEWAY_CONCURRENCY)."""
        return 2 * self.deps.settings.gateway_concurrency

    async def run_once(self) -> SweepReport:
        await self.reload_encryption_keys()
        vaults = await self._vault_secrets()
        await self.rewrap(vaults)
        report = await self.sweep(vaults)
        if report.total():
            logger.info(
                "Orphan sweep removed %d keys, %d deployments, %d credentials, %d teams, "
                "%d vault Secrets whose TenantLLMConfig no longer exists (or that no record knows).",
                report.keys,
                report.deployments,
                report.credentials,
                report.teams,
                report.vaults,
            )
        if report.drifted:
            logger.warning(
                "The gateway lost objects of %d tenant(s); rebuilding them from the encrypted "
                "copies: %s",
                len(report.drifted),
                ", ".join(report.drifted[:10]),
            )
        return report

    async def reload_encryption_keys(self) -> bool:
        """Pick up a changed encryption-key Secret (or file) without a restart."""
        fresh = await load_vault(self.deps.settings, self.deps.kube)
        if fresh.key_ids == self.deps.vault.key_ids:
            return False
        self.reconciler.use_vault(fresh)
        logger.info(
            "Encryption keys changed: %d key(s), newest %s; re-encrypting stored copies.",
            len(fresh.key_ids),
            fresh.primary_id,
        )
        return True

    async def rewrap(self, vaults: list[SecretData] | None = None) -> RewrapReport:
        """Re-encrypt every vault Secret not yet written with the newest encryption key."""
        vault = self.deps.vault
        if vaults is None:
            vaults = await self._vault_secrets()
        stale = [
            s
            for s in vaults
            if s.annotations.get(api.ENCRYPTION_KEY_ID_ANNOTATION) != vault.primary_id
        ]
        failed: list[str] = []
        if stale:
            metrics.REWRAP_TOTAL.set(len(stale))
            metrics.REWRAP_CHECKED.set(0)
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
                    "The tenant's next pass re-encrypts its provider key from its Secret "
                    "and issues a new virtual key; if the Secret no longer holds the committed "
                    "key, it reports DecryptionFailed until the old encryption key is added back.",
                    secret.name,
                    owner,
                )
                self._wake(uid)
            metrics.REWRAP_CHECKED.set(done)
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
            exists=True,
        )
        self.reconciler.store.forget(uid)

    # --- the bulk sweep ---------------------------------------------------------------------

    async def sweep(self, vaults: list[SecretData] | None = None) -> SweepReport:
        """Orphans, strays, drift and spend, from one listing of the gateway.

        The gateway is listed before the cluster: an object made for a resource created in
        between then belongs to a uid the cluster listing already shows.
        """
        gateway = self.deps.gateway
        ours = {"instance": self.deps.settings.instance_id}
        listed_at = time.monotonic()
        snapshot = GatewaySnapshot(
            keys=await gateway.list_keys(match=ours),
            teams=[
                t for t in await gateway.list_teams() if t.info.get("instance") == ours["instance"]
            ],
            credentials=await gateway.list_credentials(match=ours),
        )
        if vaults is None:
            vaults = await self._vault_secrets()
        alive = await self.deps.kube.list_tenant_uids()
        report = await self._delete_orphans(snapshot, vaults, alive)
        drifted, strays = await self._check_tenants(snapshot, listed_at, _vault_tokens(vaults))
        spend_updates = await self._refresh_spend(snapshot)
        restored = await self.reconciler.provisioner.shared.restore()
        if restored:
            logger.warning(
                "The gateway lost shared deployment(s) %s; re-created them (with the sentinel "
                "key: each tenant's team supplies its own credential).",
                ", ".join(restored),
            )
        return SweepReport(
            keys=report.keys + strays,
            deployments=report.deployments,
            credentials=report.credentials,
            teams=report.teams,
            vaults=report.vaults,
            drifted=tuple(drifted),
            restored=tuple(restored),
            spend_updates=spend_updates,
            gateway_calls=len(snapshot.keys) // PAGE + len(snapshot.teams) // PAGE + 4,
        )

    async def _delete_orphans(
        self, snapshot: GatewaySnapshot, vaults: list[SecretData], alive: set[str]
    ) -> SweepReport:
        gateway = self.deps.gateway

        def orphan(uid: str | None) -> bool:
            return bool(uid) and uid not in alive

        stale_keys = [k.token for k in snapshot.keys if orphan(k.metadata.get("tlc_uid"))]
        if stale_keys:
            await gateway.delete_keys(stale_keys)
        stale_teams = [t.team_id for t in snapshot.teams if orphan(t.info.get("tlc_uid"))]
        for team_id in stale_teams:
            await gateway.delete_team(team_id)
        stale_credentials = [c.name for c in snapshot.credentials if orphan(c.info.get("tlc_uid"))]
        for name in stale_credentials:
            await gateway.delete_credential(name)
        deployments = 0
        if any(orphan(k.metadata.get("tlc_uid")) for k in snapshot.keys) or stale_credentials:
            # Per-tenant deployments exist only from before DESIGN §6: look for them only
            # when a gone tenant left other objects behind.
            legacy = await gateway.list_deployments(
                match={"instance": self.deps.settings.instance_id}
            )
            for deployment in legacy:
                if orphan(deployment.info.get("tlc_uid")):
                    deployments += await gateway.delete_deployment(deployment.id)
        stale_vaults = [v.name for v in vaults if orphan(v.labels.get(api.TENANT_UID_LABEL))]
        for name in stale_vaults:
            await self.deps.kube.delete_secret(self.deps.settings.operator_namespace, name)
        return SweepReport(
            len(stale_keys),
            deployments,
            len(stale_credentials),
            len(stale_teams),
            len(stale_vaults),
        )

    async def _check_tenants(
        self, snapshot: GatewaySnapshot, listed_at: float, recorded: Mapping[str, set[str]]
    ) -> tuple[list[str], int]:
        """Settled tenants whose live key, team or credentials are missing get a repair pass;
        keys under a tenant's alias that its status does not name are deleted. Tenants whose
        last pass ended after the listing began are left for the next sweep (the listing may
        predate what that pass made)."""
        tokens: dict[str, set[str]] = {}
        for key in snapshot.keys:
            tokens.setdefault(key.metadata.get("tlc_uid", ""), set()).add(key.token)
        teams = {t.team_id for t in snapshot.teams}
        drifted: list[str] = []
        strays: list[str] = []
        for uid, body in self.known().items():
            if (
                self.reconciler.lock(uid).locked()
                or self.reconciler.finished.get(uid, 0) > listed_at
            ):
                continue  # a pass is writing, or wrote after the listing
            if body["metadata"].get("deletionTimestamp"):
                continue  # being deleted: its finalizer removes everything, nothing to repair
            status = body.get("status") or {}
            live = (status.get("virtualKey") or {}).get("tokenHash")
            if not live or not isinstance(status.get("gatewayRevision"), int):
                continue  # no finished pass yet: nothing to compare with
            expected = {live} | {
                r.get("tokenHash")
                for r in status.get("retiringVirtualKeys") or []
                if r.get("tokenHash")
            }
            have = tokens.get(uid, set())
            # A key the vault records is never a stray, whatever an older status says (a pass
            # may have published it and died before writing status).
            strays += sorted(have - expected - recorded.get(uid, set()))
            lost = _missing(uid, status, live, have, teams, snapshot.credential_names)
            if lost:
                drifted.append(f"{body['metadata']['namespace']}/{body['metadata']['name']}")
                self.reconciler.distrust(uid, lost)
                self.reconciler.provisioner.shared.forget()
                self._wake(uid)
        if strays:
            await self.deps.gateway.delete_keys(strays)
        return drifted, len(strays)

    async def _refresh_spend(self, snapshot: GatewaySnapshot) -> int:
        """Platform spend from the team list, into the status of tenants whose figure moved."""
        known = self.known()
        updates = 0
        for team in snapshot.teams:
            if team_mode(team.team_id) is not Mode.PLATFORM:
                continue
            uid = team.info.get("tlc_uid", "")
            body = known.get(uid)
            if body is None or team.team_id != platform_team_id(uid):
                continue
            self.reconciler.spend[uid] = team.spend
            if await self._publish_spend(body, team.spend):
                updates += 1
        return updates

    async def _publish_spend(self, body: Mapping[str, Any], spent: float) -> bool:
        """Spend and the BudgetAvailable condition into status when either moved, with one
        Warning when the budget turns nearly spent or exhausted."""
        status = body.get("status") or {}
        meta = body["metadata"]
        old = find(status.get("conditions"), ConditionType.BUDGET_AVAILABLE)
        if status.get("mode") != Mode.PLATFORM.value or (
            status.get("spend") == money(spent) and old is not None
        ):
            return False  # nothing moved (a changed budget is a spec change: its pass says so)
        try:
            spec = parse_spec(dict(body.get("spec") or {}), name=meta["name"])
        except SpecError:
            return False  # its own pass reports the spec
        budget = budget_condition(spec, spent, self.deps.settings.budget_warning_share)
        conditions = merge_conditions(
            status.get("conditions"),
            [budget],
            generation=int(meta.get("generation") or 0),
            now=datetime.now(UTC),
        )
        await self.deps.kube.patch_tenant_status(
            meta["namespace"], meta["name"], {"spend": money(spent), "conditions": conditions}
        )
        for event in budget_audits(status.get("conditions"), conditions):
            await self.deps.kube.post_audit(body, event, actor=None)
        return True

    def _wake(self, uid: str) -> None:
        if self.scheduler is not None and uid:
            self.scheduler.wake_in(uid, 0)

    async def _vault_secrets(self) -> list[SecretData]:
        selector = f"{api.MANAGED_BY_LABEL}={api.MANAGER},{api.TENANT_UID_LABEL}"
        return await self.deps.kube.list_secrets(self.deps.settings.operator_namespace, selector)


def sweep_deferred(backlog: int, busy_above: int, waited: float, interval: float) -> bool:
    """Whether a due sweep waits longer: only behind a backlog of passes, and never more than
    MAX_SWEEP_DEFERRAL intervals in a row (so a gateway that stays busy is still swept)."""
    return backlog > busy_above and waited < MAX_SWEEP_DEFERRAL * interval


def _vault_tokens(vaults: list[SecretData]) -> dict[str, set[str]]:
    """The virtual-key tokens each tenant's vault record names (live and retiring)."""
    found: dict[str, set[str]] = {}
    for secret in vaults:
        uid = secret.labels.get(api.TENANT_UID_LABEL, "")
        try:
            state = VaultState.model_validate_json(secret.data.get(STATE_KEY) or "{}")
        except ValueError:
            continue  # the tenant's own pass reports an unreadable vault
        found[uid] = {k.token for k in state.keys if k.token}
    return found


def _missing(
    uid: str,
    status: Mapping[str, Any],
    live: str,
    have: set[str],
    teams: set[str],
    credentials: set[str],
) -> list[str]:
    """What of a settled tenant the gateway no longer has, in words for the repair event."""
    lost = [] if live in have else ["the tenant's virtual key"]
    if status.get("mode") == Mode.BYOK.value:
        if byok_team_id(uid) not in teams:
            lost.append(f"its BYOK team {byok_team_id(uid)}")
        names = [p.get("name") for p in status.get("providers") or [] if p.get("committedAt")]
        lost += [
            f"its {n} credential {credential_name(uid, api.Provider(n))}"
            for n in names
            if n and credential_name(uid, api.Provider(n)) not in credentials
        ]
    elif platform_team_id(uid) not in teams:
        lost.append(f"its platform team {platform_team_id(uid)}")
    return lost
