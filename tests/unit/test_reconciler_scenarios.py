"""The reconciler's stories over the in-memory LiteLLM admin API and cluster (tests/doubles):
the real Reconciler, Maintenance, gateway client and key validator; only LiteLLM and the API
server are doubles (DESIGN §4 allows the first; the second is held to the real API server by
tests/test_contract_cluster.py). Each story ends with DESIGN §5's invariants checked on the
state it reached. These run in ``make test-fast``: a bug in a decision shows up here in
seconds, not as a slow end-to-end failure."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from byok_operator.api import AuditAction
from byok_operator.core.schedule import next_due, seconds_until
from byok_operator.maintenance import MAX_SWEEP_DEFERRAL, sweep_deferred
from byok_operator.models import parse_spec
from byok_operator.tenant.reconciler import Outcome
from doubles.litellm_admin import Fault
from doubles.world import PLATFORM_KEY, World, world

OPENAI = "sk-scenario-openai-canary-1111111111"
ANTHROPIC = "sk-ant-scenario-anthropic-canary-2222"


def byok_spec(**extra: Any) -> dict[str, Any]:
    return {
        "tenantId": "acme",
        "mode": "BYOK",
        "providers": {
            "openai": {"secretRef": {"name": "keys", "key": "openai"}, "models": ["gpt-4o-mini"]},
        },
        **extra,
    }


@pytest.fixture
async def w() -> AsyncIterator[World]:
    async with world() as built:
        yield built


def ready(body: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == "Ready")


async def test_enable_byok_serves_the_tenant_its_own_key(w: World) -> None:
    w.key_secret("team-a", "keys", openai=OPENAI)
    w.apply("team-a", "acme", byok_spec())
    outcome = await w.reconcile("team-a", "acme")
    body = w.body("team-a", "acme")
    assert ready(body)["status"] == "True", ready(body)
    assert outcome.retry_after is None
    w.check_invariants(own_keys={"acme": {"gpt-4o-mini": OPENAI}})


async def enabled(w: World, **spec: Any) -> dict[str, Any]:
    w.key_secret("team-a", "keys", openai=OPENAI)
    w.apply("team-a", "acme", byok_spec(**spec))
    await w.reconcile("team-a", "acme")
    body = w.body("team-a", "acme")
    assert ready(body)["status"] == "True", ready(body)
    return body


async def test_a_rotated_provider_key_is_swapped_in_place(w: World) -> None:
    await enabled(w)
    agent = w.agent_key("team-a", "acme")
    fresh = "sk-scenario-openai-rotated-3333333333"
    w.key_secret("team-a", "keys", openai=fresh)
    await w.reconcile("team-a", "acme")
    assert w.agent_key("team-a", "acme") == agent, "a provider key rotation keeps the virtual key"
    w.check_invariants(own_keys={"acme": {"gpt-4o-mini": fresh}})
    assert w.litellm.route(agent, "gpt-4o-mini") == fresh


async def test_a_virtual_key_rotation_keeps_the_old_key_for_its_grace_then_revokes_it(
    w: World,
) -> None:
    body = await enabled(w, rotation={"gracePeriod": "10m"})
    old = w.agent_key("team-a", "acme")
    await w.reconcile("team-a", "acme", rotate="request-1")
    new = w.agent_key("team-a", "acme")
    assert new != old
    assert old is not None
    assert new is not None
    assert w.litellm.route(old, "gpt-4o-mini") == OPENAI, "the old key works during its grace"
    assert [r["alias"] for r in body["status"]["retiringVirtualKeys"]]
    # The handler wakes the tenant from what status says (kopf's resume and the watch).
    spec = parse_spec(body["spec"], name="acme")
    due = seconds_until(next_due(spec, body["status"], w.clock.now()), w.clock.now())
    assert due == 600, due
    w.check_invariants(own_keys={"acme": {"gpt-4o-mini": OPENAI}})
    w.clock.advance(minutes=10, seconds=1)
    await w.reconcile("team-a", "acme")
    assert w.litellm.route(old, "gpt-4o-mini") is None, "revoked once the grace ended"
    assert w.litellm.route(new, "gpt-4o-mini") == OPENAI
    assert not w.body("team-a", "acme")["status"].get("retiringVirtualKeys")
    w.check_invariants(own_keys={"acme": {"gpt-4o-mini": OPENAI}})


async def test_revert_to_platform_moves_the_agents_to_the_platform_key(w: World) -> None:
    body = await enabled(w, rotation={"gracePeriod": "0s"})
    w.apply("team-a", "acme", {"tenantId": "acme", "mode": "Platform"})
    await w.reconcile("team-a", "acme")
    assert ready(body)["status"] == "True", ready(body)
    agent = w.agent_key("team-a", "acme")
    assert agent is not None
    assert w.litellm.route(agent, "gpt-4o-mini") == PLATFORM_KEY
    assert not w.litellm.credentials, "the BYOK credential outlived the switch"
    w.check_invariants(own_keys={"acme": {"gpt-4o-mini": PLATFORM_KEY}})


async def test_delete_leaves_nothing_behind(w: World) -> None:
    body = await enabled(w)
    uid = body["metadata"]["uid"]
    await w.delete("team-a", "acme")
    assert not [k for k in w.litellm.keys.values() if uid in repr(k)]
    assert not w.litellm.teams
    assert not w.litellm.credentials
    assert not [n for (_, n) in w.cluster.secrets if uid in n or n == "acme-llm-gateway"]
    w.check_invariants(own_keys={})


async def test_a_gateway_that_lost_everything_is_rebuilt_by_the_sweep(w: World) -> None:
    """Agents keep their key: the operator re-creates it with the value from its encrypted
    copy (LiteLLM takes a chosen key), so nobody has to re-read a Secret."""
    body = await enabled(w)
    agent = w.agent_key("team-a", "acme")
    platform = w.litellm.deployments["platform-gpt-4o-mini"]
    w.litellm.lose_everything()
    w.litellm.deployments["platform-gpt-4o-mini"] = platform  # the proxy's config file
    await w.sweep()
    assert w.woken == [body["metadata"]["uid"]]
    await w.reconcile("team-a", "acme")
    assert ready(body)["status"] == "True", ready(body)
    assert w.agent_key("team-a", "acme") == agent
    w.check_invariants(own_keys={"acme": {"gpt-4o-mini": OPENAI}})


@pytest.mark.parametrize("mode", ["BYOK", "Platform"])
async def test_a_first_pass_cut_short_is_audited_as_enabled_not_as_repaired(
    w: World, mode: str
) -> None:
    """The first pass records its planned key, then LiteLLM fails before the key exists. The
    retry creates it: nothing agents held was lost, so the audit trail says the mode was
    enabled (once), not that the gateway lost a key."""
    spec = byok_spec() if mode == "BYOK" else {"tenantId": "acme"}
    async with world() as clean:  # which call of the first pass generates the key
        clean.key_secret("team-a", "keys", openai=OPENAI)
        clean.apply("team-a", "acme", spec)
        await clean.reconcile("team-a", "acme")
        at = clean.litellm.calls.log.index(("POST", "/key/generate")) + 1
    w.key_secret("team-a", "keys", openai=OPENAI)
    w.apply("team-a", "acme", spec)
    w.litellm.faults.append(Fault(len(w.litellm.calls.log) + at, "before"))
    first = await w.reconcile("team-a", "acme")
    assert first.retry_after is not None, "the failed key generation went unnoticed"
    assert not w.litellm.faults, "the key generation was never attempted"
    retry = await w.reconcile("team-a", "acme")
    actions = [a.action for a in first.audits + retry.audits]
    enabled_action = AuditAction.BYOK_ENABLED if mode == "BYOK" else AuditAction.PLATFORM_ENABLED
    assert actions.count(enabled_action) == 1, actions
    assert AuditAction.GATEWAY_REPAIRED not in actions, actions
    assert ready(w.body("team-a", "acme"))["status"] == "True"


async def test_a_key_the_gateway_lost_after_agents_had_it_is_audited_as_repaired(
    w: World,
) -> None:
    """The other side of the rule above: a published key that vanished is a repair."""
    await enabled(w)
    w.litellm.keys.clear()
    w.reconciler.distrust(w.body("team-a", "acme")["metadata"]["uid"])
    outcome = await w.reconcile("team-a", "acme")
    actions = [a.action for a in outcome.audits]
    assert actions == [AuditAction.GATEWAY_REPAIRED], actions


def lose_the_encryption_key(w: World) -> None:
    from cryptography.fernet import Fernet

    from byok_operator.crypto import Vault

    w.reconciler.use_vault(Vault.from_text(Fernet.generate_key().decode(), source="new"))


async def test_an_unreadable_copy_is_rebuilt_from_the_tenants_secret(w: World) -> None:
    """The encryption key that sealed the copies is gone: the provider key comes again from
    the tenant's Secret, and the virtual key (whose value only the copy held) is replaced,
    the old one kept for the unplanned-rotation grace so agents can re-read their Secret."""
    body = await enabled(w)
    old = w.agent_key("team-a", "acme")
    lose_the_encryption_key(w)
    w.reconciler.distrust(body["metadata"]["uid"])
    await w.reconcile("team-a", "acme")
    assert ready(body)["status"] == "True", ready(body)
    new = w.agent_key("team-a", "acme")
    assert new != old
    assert old is not None
    assert new is not None
    assert w.litellm.route(old, "gpt-4o-mini") == OPENAI, "the old key works during its grace"
    w.check_invariants(own_keys={"acme": {"gpt-4o-mini": OPENAI}})
    w.clock.advance(seconds=w.settings.unplanned_rotation_grace + 1)
    await w.reconcile("team-a", "acme")
    assert w.litellm.route(old, "gpt-4o-mini") is None
    w.check_invariants(own_keys={"acme": {"gpt-4o-mini": OPENAI}})


async def test_an_unreadable_copy_with_no_good_key_to_rebuild_from_fails_safely(w: World) -> None:
    body = await enabled(w)
    agent = w.agent_key("team-a", "acme")
    lose_the_encryption_key(w)
    w.key_secret("team-a", "keys", openai="sk-scenario-now-invalid-5555555555")
    w.stub.set_behaviour("sk-scenario-now-invalid-5555555555", "401")
    w.reconciler.distrust(body["metadata"]["uid"])
    outcome = await w.reconcile("team-a", "acme")
    assert ready(body)["status"] == "False", ready(body)
    assert ready(body)["reason"] == "DecryptionFailed", ready(body)
    assert outcome.retry_after is not None
    assert w.agent_key("team-a", "acme") == agent
    assert w.litellm.route(agent, "gpt-4o-mini") == OPENAI, "what worked stopped working"


async def test_a_vault_that_keeps_changing_fails_the_pass_cleanly(w: World) -> None:
    """The second conflict in a row used to escape the pass (a traceback in kopf's log and
    its own backoff); now it is a KubernetesError in status, naming the Secret, and a retry."""
    body = await enabled(w)
    agent = w.agent_key("team-a", "acme")
    w.cluster.before_put = w.cluster.touch  # another writer replaces it before every write
    outcome = await w.reconcile("team-a", "acme", rotate="request-1")
    assert ready(body)["reason"] == "KubernetesError", ready(body)
    assert "changed twice while this pass ran" in ready(body)["message"]
    assert outcome.retry_after is not None
    assert w.agent_key("team-a", "acme") == agent
    w.cluster.before_put = lambda _ns, _name: None
    await w.reconcile("team-a", "acme", rotate="request-1")
    assert ready(body)["status"] == "True", ready(body)
    w.check_invariants(own_keys={"acme": {"gpt-4o-mini": OPENAI}})


async def test_two_tenants_never_reach_each_others_keys(w: World) -> None:
    await enabled(w)
    w.key_secret("team-b", "keys", openai="sk-scenario-other-tenant-4444444444")
    w.apply("team-b", "beta", {**byok_spec(), "tenantId": "beta"})
    await w.reconcile("team-b", "beta")
    w.apply("team-c", "gamma", {"tenantId": "gamma", "mode": "Platform"})
    await w.reconcile("team-c", "gamma")
    w.check_invariants(
        own_keys={
            "acme": {"gpt-4o-mini": OPENAI},
            "beta": {"gpt-4o-mini": "sk-scenario-other-tenant-4444444444"},
            "gamma": {"gpt-4o-mini": PLATFORM_KEY},
        }
    )


# --- a crash at every gateway call in turn ----------------------------------------------------


async def step_enable(w: World) -> Outcome:
    w.key_secret("team-a", "keys", openai=OPENAI)
    w.apply("team-a", "acme", byok_spec(rotation={"gracePeriod": "1m"}))
    return await w.reconcile("team-a", "acme")


async def step_rotate_virtual_key(w: World) -> Outcome:
    return await w.reconcile("team-a", "acme", rotate="request-1")


async def step_rotate_provider_key(w: World) -> Outcome:
    w.key_secret("team-a", "keys", openai=ROTATED)
    return await w.reconcile("team-a", "acme")


async def step_revert(w: World) -> Outcome:
    w.apply("team-a", "acme", {"tenantId": "acme", "mode": "Platform"})
    return await w.reconcile("team-a", "acme")


async def step_delete(w: World) -> None:
    await w.delete("team-a", "acme")


ROTATED = "sk-scenario-openai-rotated-6666666666"
# story -> (steps before, the step that crashes, what the agents must reach afterwards)
STORIES = {
    "enable": ((), step_enable, {"gpt-4o-mini": OPENAI}),
    "rotate-virtual-key": ((step_enable,), step_rotate_virtual_key, {"gpt-4o-mini": OPENAI}),
    "rotate-provider-key": ((step_enable,), step_rotate_provider_key, {"gpt-4o-mini": ROTATED}),
    "revert": ((step_enable,), step_revert, {"gpt-4o-mini": PLATFORM_KEY}),
    "delete": ((step_enable,), step_delete, None),
}


async def recover(w: World, story: str) -> None:
    """What the operator does after a crash: kopf retries the step, the sweep runs, the
    tenant's grace periods run out on the clock."""
    for _ in range(3):
        if story == "delete":
            if ("team-a", "acme") not in w.cluster.tenants:
                break
            try:
                await w.delete("team-a", "acme")
            except Exception:
                continue
            break
        outcome = await w.reconcile("team-a", "acme")
        if outcome.retry_after is None:
            break
    await w.sweep()
    for uid in w.woken:
        assert uid in {b["metadata"]["uid"] for b in w.cluster.tenants.values()}
    if story != "delete":
        w.clock.advance(minutes=3)  # past every grace, planned or not
        await w.reconcile("team-a", "acme")


@pytest.mark.parametrize("story", list(STORIES))
async def test_a_crash_at_any_gateway_call_heals_on_the_retry(story: str) -> None:
    before, step, reaches = STORIES[story]
    async with world() as clean:
        for setup in before:
            await setup(clean)
        start = len(clean.litellm.calls.log)
        await step(clean)
        calls = len(clean.litellm.calls.log) - start
    assert calls > 0
    for at in range(1, calls + 1):
        for when in ("before", "after"):
            async with world() as w:
                for setup in before:
                    await setup(w)
                w.litellm.faults.append(Fault(len(w.litellm.calls.log) + at, when))
                if story == "delete":
                    with contextlib.suppress(Exception):  # kopf keeps the finalizer, retries
                        await step(w)
                else:
                    crashed = await step(w)
                    assert crashed is not None
                    assert crashed.retry_after is not None, f"{story}: crash {at} unnoticed"
                assert not w.litellm.faults, f"{story}: call {at} was never made"
                await recover(w, story)
                where = f"{story}, crash {when} call {at} of {calls}"
                if reaches is None:
                    assert not w.cluster.tenants, where
                    assert not [k for k in w.litellm.keys.values() if "tlc_uid" in repr(k)], where
                    assert not w.litellm.teams, where
                    assert not w.litellm.credentials, where
                else:
                    body = w.body("team-a", "acme")
                    assert ready(body)["status"] == "True", (where, ready(body))
                    assert not body["status"].get("retiringVirtualKeys"), where
                try:
                    w.check_invariants(own_keys={"acme": reaches} if reaches else {})
                except AssertionError as exc:
                    raise AssertionError(f"{where}: {exc}") from None


def test_a_sweep_waits_only_behind_a_backlog_and_only_so_long() -> None:
    assert not sweep_deferred(backlog=32, busy_above=32, waited=0, interval=60)
    assert sweep_deferred(backlog=33, busy_above=32, waited=0, interval=60)
    assert sweep_deferred(backlog=500, busy_above=32, waited=599, interval=60)
    assert not sweep_deferred(backlog=500, busy_above=32, waited=600, interval=60)


async def test_a_sweep_behind_a_backlog_runs_once_its_deferral_is_used_up(w: World) -> None:
    """A wave of passes holds the sweep back, but never for more than its bound: the gateway
    is still swept while it stays busy."""
    await enabled(w)
    w.reconciler.backlog = 10_000
    interval = 0.02
    listings = w.litellm.calls.count("GET", "/key/list")
    started = time.monotonic()
    task = asyncio.create_task(w.maintenance.run_forever(interval))
    try:
        async with asyncio.timeout(10):
            # The double's call log has no event to await: poll it, under the deadline.
            while w.litellm.calls.count("GET", "/key/list") == listings:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
    finally:
        task.cancel()
    assert time.monotonic() - started >= MAX_SWEEP_DEFERRAL * interval * 0.99
    assert w.reconciler.backlog == 10_000, "the sweep itself is not a pass"


async def test_the_backlog_counts_passes_in_flight_and_returns_to_zero(w: World) -> None:
    w.key_secret("team-a", "keys", openai=OPENAI)
    w.apply("team-a", "acme", byok_spec())
    seen: list[int] = []
    original = w.reconciler.reconcile

    async def spy(*args: Any, **kwargs: Any) -> Outcome:
        await asyncio.sleep(0)  # the second pass starts and waits for the tenant's lock
        seen.append(w.reconciler.backlog)
        return await original(*args, **kwargs)

    w.reconciler.reconcile = spy  # type: ignore[method-assign]
    await asyncio.gather(w.reconcile("team-a", "acme"), w.reconcile("team-a", "acme"))
    assert max(seen) == 2, seen
    assert w.reconciler.backlog == 0
