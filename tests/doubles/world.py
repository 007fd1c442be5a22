"""The reconciler in one process: the real Reconciler, Maintenance, gateway client and key
validator over the in-memory LiteLLM admin API and cluster, with the provider stand-in on
loopback and a clock the test moves. What kopf does around a pass (status merge patch,
re-running after a failure) is done here by hand, in a few lines, so a scenario reads as
the story it tells: apply, reconcile, move the clock, crash, reconcile again, check.

``check_invariants`` asserts DESIGN §5 on whatever state a scenario reached.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet

from byok_dev.provider_stub import ProviderStub
from byok_operator import api
from byok_operator.core.vault import TenantRef, gateway_secret_name
from byok_operator.crypto import Vault
from byok_operator.gateway import LiteLLMGateway
from byok_operator.maintenance import Maintenance
from byok_operator.providers import KeyValidator
from byok_operator.settings import Settings
from byok_operator.tenant import Reconciler
from byok_operator.tenant.book import tenant_ref
from byok_operator.tenant.reconciler import Deps, Outcome
from doubles.cluster import MemoryCluster, merge_patch
from doubles.litellm_admin import LiteLLMAdminDouble, token_of

PLATFORM_KEY = "sk-platform-canary-0000000000000000"
PLATFORM_MODELS = ("gpt-4o-mini",)
OPERATOR_NAMESPACE = "byok-system"


@dataclass
class Clock:
    now_: datetime = field(default_factory=lambda: datetime(2026, 12, 1, 12, tzinfo=UTC))

    def now(self) -> datetime:
        return self.now_

    def advance(self, **delta: float) -> None:
        self.now_ += timedelta(**delta)


class World:
    def __init__(
        self,
        stub: ProviderStub,
        gateway: LiteLLMGateway,
        double: LiteLLMAdminDouble,
        clock: Clock,
        settings: Settings,
        validator: KeyValidator,
    ) -> None:
        self.stub = stub
        self.gateway = gateway
        self.litellm = double
        self.clock = clock
        self.cluster = MemoryCluster()
        self.settings = settings
        fernet_key = Fernet.generate_key().decode()
        self.vault = Vault.from_text(fernet_key, source="test")
        self.cluster.plant_secret(
            OPERATOR_NAMESPACE, settings.encryption_secret, {"keys": fernet_key}
        )
        self.reconciler = Reconciler(
            Deps(
                settings=settings,
                kube=self.cluster,
                gateway=gateway,
                validator=validator,
                vault=self.vault,
                clock=clock.now,
                claims=self._claims,
            )
        )
        self.woken: list[str] = []
        self.maintenance = Maintenance(self.reconciler, self._known)
        self.maintenance._wake = self.woken.append  # type: ignore[method-assign]
        self.provider_keys: set[str] = set()

    # --- what an admin does -------------------------------------------------------------

    def key_secret(self, namespace: str, name: str, **keys: str) -> None:
        self.provider_keys |= set(keys.values())
        self.cluster.plant_secret(namespace, name, keys, labels={api.CREDENTIALS_LABEL: "true"})

    def apply(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        body = self.cluster.tenants.get((namespace, name))
        if body is None:
            body = {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "metadata": {
                    "namespace": namespace,
                    "name": name,
                    "uid": str(uuid.uuid4()),
                    "generation": 0,
                    "creationTimestamp": self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "annotations": {},
                },
                "status": {},
            }
            self.cluster.tenants[namespace, name] = body
        body["spec"] = dict(spec)
        body["metadata"]["generation"] += 1
        return body

    def body(self, namespace: str, name: str) -> dict[str, Any]:
        return self.cluster.tenants[namespace, name]

    # --- what kopf does -----------------------------------------------------------------

    async def reconcile(self, namespace: str, name: str, *, rotate: str | None = None) -> Outcome:
        body = self.body(namespace, name)
        outcome = await self.reconciler.run(
            self.ref(body), body["spec"], body.get("status") or {}, rotate
        )
        # Through JSON, as the API server stores it (enums become strings).
        body["status"] = json.loads(
            json.dumps(merge_patch(body.get("status") or {}, outcome.status))
        )
        return outcome

    async def delete(self, namespace: str, name: str) -> None:
        body = self.body(namespace, name)
        await self.reconciler.delete(self.ref(body), abandon_gateway=False)
        del self.cluster.tenants[namespace, name]
        self.reconciler.forget_tenant(body["metadata"]["uid"])

    async def sweep(self) -> None:
        await self.maintenance.run_once()

    @staticmethod
    def ref(body: Mapping[str, Any]) -> TenantRef:
        return tenant_ref(body)

    def _known(self) -> dict[str, dict[str, Any]]:
        return {b["metadata"]["uid"]: b for b in self.cluster.tenants.values()}

    def _claims(self, tenant_id: str) -> list[dict[str, Any]]:
        return [
            b
            for b in self.cluster.tenants.values()
            if (b.get("spec") or {}).get("tenantId", b["metadata"]["name"]) == tenant_id
        ]

    # --- what agents see -----------------------------------------------------------------

    def agent_key(self, namespace: str, name: str) -> str | None:
        secret = self.cluster.secrets.get((namespace, gateway_secret_name(name)))
        return secret.data.get(api.GATEWAY_SECRET_KEY_KEY) if secret else None

    def vault_record(self, body: Mapping[str, Any]) -> str:
        from byok_operator.core.vault import vault_secret_name

        secret = self.cluster.secrets[
            OPERATOR_NAMESPACE, vault_secret_name(body["metadata"]["uid"])
        ]
        return secret.data["state.json"]

    # --- DESIGN §5 ----------------------------------------------------------------------

    def check_invariants(self, *, own_keys: Mapping[str, Mapping[str, str]]) -> None:
        """``own_keys``: tenant name -> {model: the provider key its calls must carry}."""
        live = {b["metadata"]["uid"]: b for b in self.cluster.tenants.values()}
        ours = [k for k in self.litellm.keys.values() if _uid(k)]
        # No orphans: every object the operator made belongs to a resource that exists.
        for row in [*ours, *self.litellm.teams.values(), *self.litellm.credentials.values()]:
            uid = _uid(row)
            assert uid is None or uid in live, f"orphaned gateway object of gone tenant {uid}"
        for body in live.values():
            meta, status = body["metadata"], body.get("status") or {}
            tenant_keys = [k for k in ours if _uid(k) == meta["uid"]]
            in_grace = {r["tokenHash"] for r in status.get("retiringVirtualKeys") or []}
            outside = [k for k in tenant_keys if k["token"] not in in_grace]
            if (status.get("virtualKey") or {}).get("tokenHash"):
                assert len(outside) == 1, f"{meta['name']}: {len(outside)} live keys outside grace"
                agent = self.agent_key(meta["namespace"], meta["name"])
                assert agent is not None
                assert token_of(agent) == outside[0]["token"]
                assert outside[0]["models"], "a virtual key without an explicit model list"
                for model, provider_key in own_keys.get(meta["name"], {}).items():
                    reached = self.litellm.route(agent, model)
                    assert reached == provider_key, f"{meta['name']}/{model} reached another key"
        self._check_isolation(own_keys)
        self._check_no_leaks()

    def _check_isolation(self, own_keys: Mapping[str, Mapping[str, str]]) -> None:
        """No key reaches a provider key that is not its own tenant's (or the platform's)."""
        owner = {b["metadata"]["uid"]: b["metadata"]["name"] for b in self.cluster.tenants.values()}
        models = {d["model_name"] for d in self.litellm.deployments.values()}
        for token, row in self.litellm.keys.items():
            secret = self._secret_of(token)
            if secret is None:
                continue
            allowed = set(own_keys.get(owner.get(_uid(row) or "", ""), {}).values()) | {
                PLATFORM_KEY
            }
            for model in models | set(row.get("aliases") or {}):
                reached = self.litellm.route(secret, model)
                assert reached is None or reached in allowed, f"key {token[:8]} crossed tenants"

    def _secret_of(self, token: str) -> str | None:
        for secret in self.cluster.secrets.values():
            value = secret.data.get(api.GATEWAY_SECRET_KEY_KEY)
            if value and token_of(value) == token:
                return value
        return None

    def _check_no_leaks(self) -> None:
        shown = "".join(
            repr([b.get("status"), b["metadata"].get("annotations")])
            for b in self.cluster.tenants.values()
        ) + repr([e.__dict__ for e in self.cluster.events])
        agent_keys = [
            s.data[api.GATEWAY_SECRET_KEY_KEY]
            for s in self.cluster.secrets.values()
            if api.GATEWAY_SECRET_KEY_KEY in s.data
        ]
        for planted in [*self.provider_keys, *agent_keys]:
            assert planted not in shown, "a key in status, annotations or events"
        for (ns, _), secret in self.cluster.secrets.items():
            if ns == OPERATOR_NAMESPACE:  # vault Secrets: Fernet tokens only
                assert not any(k in repr(secret.data) for k in self.provider_keys)


def _uid(row: Mapping[str, Any]) -> str | None:
    for container in ("metadata", "credential_info", "model_info"):
        marker = (row.get(container) or {}).get("byok")
        if isinstance(marker, Mapping) and marker.get("tlc_uid"):
            return str(marker["tlc_uid"])
    return None


@asynccontextmanager
async def world() -> Iterator[World]:  # type: ignore[misc]
    clock = Clock()
    double = LiteLLMAdminDouble(clock=clock.now)
    double.deployments["platform-gpt-4o-mini"] = {
        "model_name": "gpt-4o-mini",
        "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": PLATFORM_KEY},
        "model_info": {"id": "platform-gpt-4o-mini"},
    }
    with ProviderStub.in_process() as stub:
        settings = Settings.from_env(
            {
                "LITELLM_URL": "http://litellm.test",
                "LITELLM_MASTER_KEY": double.master_key,
                "BYOK_INSTANCE_ID": "scenario",
                "BYOK_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE,
                "BYOK_PLATFORM_MODELS": ",".join(PLATFORM_MODELS),
                "OPENAI_BASE_URL": stub.openai_base_url,
                "ANTHROPIC_BASE_URL": stub.anthropic_base_url,
                "BYOK_RETRY_DELAY": "1",
            }
        )
        gateway = LiteLLMGateway(
            settings.litellm_url, double.master_key, transport=double.transport()
        )
        validator = KeyValidator(
            openai_base_url=stub.openai_base_url,
            anthropic_base_url=stub.anthropic_base_url,
            timeout=5,
            clock=clock.now,
        )
        try:
            yield World(stub, gateway, double, clock, settings, validator)
        finally:
            await gateway.aclose()
            await validator.aclose()
