"""Unit tests of the pure core: spec parsing, conditions, commit rules, key lifecycle, vault."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from cryptography.fernet import Fernet

from byok_operator.api import ConditionType, Mode, Provider
from byok_operator.core.conditions import Condition, merge_conditions
from byok_operator.core.gateway import (
    KeyShape,
    byok_plan,
    platform_key_shape,
    platform_team,
    shared_model_name,
)
from byok_operator.core.keys import forget, plan_virtual_key, promote
from byok_operator.core.status import budget_display
from byok_operator.core.vault import CommittedKey, KeyRecord, TenantRef, VaultState, commit_keys
from byok_operator.crypto import DecryptionError, Vault, VaultConfigError, fingerprint
from byok_operator.models import SpecError, parse_duration, parse_spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REF = TenantRef("tenant-a", "acme", "0d9c8f8e-1111-2222-3333-444455556666", 3)
BYOK = {
    "mode": "BYOK",
    "providers": {
        "openai": {
            "secretRef": {"name": "k", "key": "openai"},
            "models": ["gpt-4o"],
            "rpmLimit": 5,
        },
        "anthropic": {"secretRef": {"name": "k", "key": "anthropic"}},
    },
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0s", timedelta(0)), ("90d", timedelta(days=90)), ("1h30m", timedelta(minutes=90))],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "1w", "h", "-1s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_spec_defaults_tenant_id_and_mode() -> None:
    spec = parse_spec({}, name="acme")
    assert (spec.tenant_id, spec.mode) == ("acme", Mode.PLATFORM)
    assert spec.rotation.max_key_age == timedelta(days=90)


def test_byok_without_providers_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="names no provider"):
        parse_spec({"mode": "BYOK"}, name="acme")


def test_bad_budget_names_the_field() -> None:
    with pytest.raises(SpecError, match=r"spec\.platform\.budget\.maxUSD"):
        parse_spec({"platform": {"budget": {"maxUSD": "-3"}}}, name="acme")


def test_conditions_keep_transition_time_while_status_holds() -> None:
    first = merge_conditions(
        None, [Condition(ConditionType.READY, "False", "X", "m")], generation=1, now=T0
    )
    later = T0 + timedelta(minutes=5)
    same = merge_conditions(
        first, [Condition(ConditionType.READY, "False", "Y", "n")], generation=2, now=later
    )
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert (same[0]["reason"], same[0]["observedGeneration"]) == ("Y", 2)
    flipped = merge_conditions(
        same, [Condition(ConditionType.READY, "True", "Ready", "ok")], generation=2, now=later
    )
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"


def test_conditions_keep_types_not_mentioned() -> None:
    first = merge_conditions(
        None, [Condition(ConditionType.KEYS_VALID, "True", "KeysValid", "")], generation=1, now=T0
    )
    both = merge_conditions(
        first, [Condition(ConditionType.READY, "True", "Ready", "")], generation=1, now=T0
    )
    assert [c["type"] for c in both] == ["Ready", "KeysValid"]


def _committed(fp: str, at: datetime) -> CommittedKey:
    return CommittedKey(
        provider=Provider.OPENAI,
        fingerprint=fp,
        committed_at=at,
        validated_at=at,
        models=("gpt-4o",),
    )


def test_commit_keeps_the_working_key_when_the_new_one_fails() -> None:
    previous = {Provider.OPENAI: _committed("sha256:old", T0)}
    committed = commit_keys({Provider.OPENAI: None}, previous, {}, T0 + timedelta(days=1))
    assert committed[Provider.OPENAI].fingerprint == "sha256:old"


def test_commit_replaces_on_a_validated_new_key_and_keeps_commit_time_for_the_same_key() -> None:
    previous = {Provider.OPENAI: _committed("sha256:old", T0)}
    later = T0 + timedelta(days=1)
    same = commit_keys(
        {Provider.OPENAI: None}, previous, {Provider.OPENAI: ("sha256:old", (), later)}, later
    )
    assert same[Provider.OPENAI].committed_at == T0
    new = commit_keys(
        {Provider.OPENAI: None}, previous, {Provider.OPENAI: ("sha256:new", (), later)}, later
    )
    assert (new[Provider.OPENAI].fingerprint, new[Provider.OPENAI].committed_at) == (
        "sha256:new",
        later,
    )


def test_commit_drops_providers_no_longer_configured() -> None:
    previous = {Provider.OPENAI: _committed("sha256:old", T0)}
    assert commit_keys({}, previous, {}, T0) == {}


def test_byok_shape_names_models_and_aliases_and_limits() -> None:
    spec = parse_spec(BYOK, name="acme")
    committed = {
        Provider.OPENAI: _committed("sha256:a", T0),
        Provider.ANTHROPIC: CommittedKey(
            provider=Provider.ANTHROPIC,
            fingerprint="sha256:b",
            committed_at=T0,
            validated_at=T0,
            models=("claude-x", "claude-y"),
        ),
    }
    plan = byok_plan(
        REF.uid, "tenant-a/acme", spec, {p: c.models for p, c in committed.items()}, cap=1
    )
    # Shared deployments, named by provider and model only: never by tenant.
    assert [d.name for d in plan.deployments] == ["byok-openai-gpt-4o", "byok-anthropic-claude-x"]
    assert plan.key.aliases == {
        "gpt-4o": "byok-openai-gpt-4o",
        "claude-x": "byok-anthropic-claude-x",
    }
    assert set(plan.key.models) == set(plan.key.aliases.values()) == set(plan.team.models)
    assert plan.key.team_id == plan.team.team_id == f"tlc-{REF.uid}-byok"
    # rpmLimit is per model of the provider, keyed by the shared name LiteLLM resolves to.
    assert plan.key.model_rpm_limit == {"byok-openai-gpt-4o": 5}
    # Each shared model points at this tenant's credential of that model's provider only.
    assert plan.team.model_config == {
        "byok-openai-gpt-4o": {"openai": {"litellm_credentials": f"byok-{REF.uid}-openai"}},
        "byok-anthropic-claude-x": {
            "anthropic": {"litellm_credentials": f"byok-{REF.uid}-anthropic"}
        },
    }
    assert "defaultconfig" not in plan.team.model_config


def test_shared_names_never_collide_or_carry_a_slash() -> None:
    names = {shared_model_name(Provider.OPENAI, m) for m in ("gpt-4o", "gpt_4o", "GPT-4o", "a/b")}
    assert len(names) == 4
    assert not any("/" in n for n in names)
    assert shared_model_name(Provider.OPENAI, "x") != shared_model_name(Provider.ANTHROPIC, "x")


def test_platform_team_carries_the_budget_and_the_key_none() -> None:
    spec = parse_spec({"platform": {"budget": {"maxUSD": "500", "period": "30d"}}}, name="a")
    team = platform_team(REF.uid, "ns/a", spec, ["gpt-4o-mini"])
    assert (team.models, team.max_budget, team.budget_duration) == (
        ("gpt-4o-mini",),
        Decimal("500"),
        "30d",
    )
    shape = platform_key_shape(team)
    assert (shape.team_id, shape.models) == (f"tlc-{REF.uid}", ("gpt-4o-mini",))
    assert budget_display(spec) == "$500/30d"
    assert budget_display(parse_spec(BYOK, name="a")) == "N/A"


def _live(mode: Mode, shape: KeyShape, issued: datetime = T0) -> KeyRecord:
    return KeyRecord(
        alias="tlc-u-1", serial=1, mode=mode, shape=shape.digest(), state="live", issued_at=issued
    )


def test_plan_issues_on_mode_change_and_updates_on_shape_change() -> None:
    shape = KeyShape(mode=Mode.PLATFORM, team_id="tlc-u", models=("gpt-4o-mini",))
    state = VaultState(keys=[_live(Mode.PLATFORM, shape)])
    assert not plan_virtual_key(state, shape, now=T0, rotate_request=None, max_age=None).issue
    byok = KeyShape(mode=Mode.BYOK, team_id="tlc-u-byok", models=("byok-openai-gpt-4o",))
    assert plan_virtual_key(state, byok, now=T0, rotate_request=None, max_age=None).issue
    wider = KeyShape(mode=Mode.PLATFORM, team_id="tlc-u", models=("gpt-4o-mini", "gpt-4o"))
    plan = plan_virtual_key(state, wider, now=T0, rotate_request=None, max_age=None)
    assert (plan.issue, plan.update_live) == (False, True)


def test_plan_rotates_on_new_annotation_value_and_on_age() -> None:
    shape = KeyShape(mode=Mode.PLATFORM, team_id="tlc-u", models=("m",))
    state = VaultState(keys=[_live(Mode.PLATFORM, shape)], rotate_request="1")
    assert not plan_virtual_key(state, shape, now=T0, rotate_request="1", max_age=None).issue
    assert plan_virtual_key(state, shape, now=T0, rotate_request="2", max_age=None).issue
    old = T0 + timedelta(days=31)
    assert plan_virtual_key(
        state, shape, now=old, rotate_request="1", max_age=timedelta(days=30)
    ).issue


def test_promote_starts_grace_and_revocation_waits_for_it() -> None:
    shape = KeyShape(mode=Mode.PLATFORM, team_id="tlc-u", models=("m",))
    pending = KeyRecord(alias="tlc-u-2", serial=2, mode=Mode.PLATFORM, shape="s", state="pending")
    state = VaultState(keys=[_live(Mode.PLATFORM, shape), pending])
    state = promote(state, "tlc-u-2", now=T0, grace=timedelta(minutes=10))
    assert [(k.alias, k.state) for k in state.keys] == [
        ("tlc-u-1", "retiring"),
        ("tlc-u-2", "live"),
    ]
    during = plan_virtual_key(
        state, shape, now=T0 + timedelta(minutes=5), rotate_request=None, max_age=None
    )
    assert during.revoke == ()
    assert during.next_check == T0 + timedelta(minutes=10)
    after = plan_virtual_key(
        state, shape, now=T0 + timedelta(minutes=10), rotate_request=None, max_age=None
    )
    assert after.revoke == ("tlc-u-1",)
    assert [k.alias for k in forget(state, after.revoke).keys] == ["tlc-u-2"]


def test_fingerprint_reveals_no_part_of_the_key() -> None:
    key = "sk-canary-0123456789abcdefghijklmnop"
    fp = fingerprint(key)
    assert fp.startswith("sha256:")
    assert len(fp) == 19
    assert not any(key[i : i + 4] in fp for i in range(len(key) - 4))


def test_vault_rewrap_lets_the_old_key_go() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = Vault.from_text(old, source="t").encrypt("sk-secret")
    both = Vault.from_text(f"{new}\n{old}", source="t")
    assert not both.is_current(token)
    rewrapped = both.rewrap(token)
    assert both.is_current(rewrapped)
    assert Vault.from_text(new, source="t").decrypt(rewrapped) == "sk-secret"
    with pytest.raises(DecryptionError, match="cannot be decrypted") as caught:
        Vault.from_text(new, source="t").decrypt(token)
    assert "sk-secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "match"), [("", "No encryption key"), ("abc", "not a Fernet key")]
)
def test_vault_config_errors_are_clear(text: str, match: str) -> None:
    with pytest.raises(VaultConfigError, match=match):
        Vault.from_text(text, source="Secret byok-system/enc")


def _retiring(alias: str, shape: KeyShape, revoke_after: datetime) -> KeyRecord:
    return KeyRecord(
        alias=alias,
        serial=1,
        mode=Mode.PLATFORM,
        shape=shape.digest(),
        state="retiring",
        revoke_after=revoke_after,
    )


def test_regrace_counts_grace_from_a_publication_that_happens_now() -> None:
    from byok_operator.core.keys import regrace

    shape = KeyShape(mode=Mode.PLATFORM, team_id="tlc-u", models=("m",))
    old = _retiring("a-1", shape, T0 + timedelta(seconds=2))
    later = old.model_copy(update={"alias": "a-0", "revoke_after": T0 + timedelta(hours=1)})
    live = _live(Mode.PLATFORM, shape).model_copy(update={"alias": "a-2"})
    state = regrace(VaultState(keys=[old, later, live]), now=T0, grace=timedelta(seconds=30))
    by_alias = {k.alias: k for k in state.keys}
    assert by_alias["a-1"].revoke_after == T0 + timedelta(seconds=30)  # extended, never cut
    assert by_alias["a-0"].revoke_after == T0 + timedelta(hours=1)
    assert by_alias["a-2"].state == "live"


def test_a_confirmed_deadline_survives_the_trip_through_status_whole() -> None:
    """Status carries whole seconds; a publication at .9 s must not come back a second early
    (the chaos test once saw a 5 s grace end after 4.7 s this way)."""
    from byok_operator.core.conditions import rfc3339
    from byok_operator.core.keys import regrace
    from byok_operator.core.schedule import confirmed_deadlines

    shape = KeyShape(mode=Mode.PLATFORM, team_id="tlc-u", models=("m",))
    published = T0 + timedelta(seconds=2, microseconds=900_000)
    old = _retiring("a-1", shape, T0 + timedelta(seconds=1))
    live = _live(Mode.PLATFORM, shape).model_copy(update={"alias": "a-2"})
    state = regrace(VaultState(keys=[old, live]), now=published, grace=timedelta(seconds=5))
    deadline = {k.alias: k.revoke_after for k in state.keys}["a-1"]
    assert deadline == T0 + timedelta(seconds=8)
    assert deadline is not None
    status = {"retiringVirtualKeys": [{"alias": "a-1", "revokeAfter": rfc3339(deadline)}]}
    assert confirmed_deadlines(status)["a-1"] == deadline >= published + timedelta(seconds=5)


def test_a_trusted_pass_takes_the_confirmed_deadlines_from_status() -> None:
    """The vault's revocation times are written before publication (estimates); the status,
    written after it, has the confirmed ones. The later time wins, so a slow pass that published
    seconds after its plan never has the replaced key revoked early by the next pass."""
    from byok_operator.core.keys import due_revocations, hold_until
    from byok_operator.core.schedule import confirmed_deadlines

    shape = KeyShape(mode=Mode.PLATFORM, team_id="tlc-u", models=("m",))
    old = _retiring("a-1", shape, T0 + timedelta(seconds=5))
    live = _live(Mode.PLATFORM, shape).model_copy(update={"alias": "a-2"})
    status = {
        "retiringVirtualKeys": [
            {"alias": "a-1", "tokenHash": "t", "revokeAfter": "2026-01-01T00:00:09Z"},
            {"alias": "gone", "revokeAfter": "2026-01-01T00:00:30Z"},
            {"alias": "a-2", "revokeAfter": "not a time"},
        ]
    }
    deadlines = confirmed_deadlines(status)
    assert set(deadlines) == {"a-1", "gone"}
    state = hold_until(VaultState(keys=[old, live]), deadlines)
    now = T0 + timedelta(seconds=7)  # after the planned deadline, before the confirmed one
    assert due_revocations(VaultState(keys=[old, live]), now)[0] == ("a-1",)
    assert due_revocations(state, now) == ((), deadlines["a-1"])
    # An earlier confirmed time never cuts a grace short.
    earlier = hold_until(state, {"a-1": T0})
    assert {k.alias: k.revoke_after for k in earlier.keys}["a-1"] == deadlines["a-1"]
    assert [k.alias for k in state.keys] == ["a-1", "a-2"]


def test_platform_models_come_only_from_the_catalogue() -> None:
    """DESIGN §7: a spec names platform models the platform serves, nothing wider and nothing
    of BYOK's, even when the catalogue itself was written carelessly."""
    from byok_operator.core.boundaries import platform_model_problems, platform_models_message

    catalogue = ["gpt-4o-mini", "gpt-4o", "all-proxy-models", "byok-openai-gpt-4o"]
    assert platform_model_problems(["gpt-4o-mini", "gpt-4o"], catalogue) == []
    hostile = [
        "all-proxy-models",
        "all-team-models",
        "openai/*",
        "byok-openai-gpt-4o",
        "tlc-0d1e-byok",
        "claude-3-opus",
    ]
    problems = platform_model_problems(hostile, catalogue)
    assert len(problems) == len(hostile), problems
    assert "not in the platform's catalogue" in problems[-1]
    message = platform_models_message(problems, ["gpt-4o", "gpt-4o-mini"])
    assert message.startswith("spec.platform.models: ")
    assert "The platform serves: gpt-4o, gpt-4o-mini." in message


def test_a_tenant_id_is_held_by_its_oldest_claim() -> None:
    from byok_operator.core.boundaries import holder

    def body(ns: str, name: str, uid: str, created: str, **spec: str) -> dict[str, Any]:
        meta = {"namespace": ns, "name": name, "uid": uid, "creationTimestamp": created}
        return {"metadata": meta, "spec": spec}

    first = body("a", "acme", "u-2", "2026-01-01T00:00:00Z")
    second = body("b", "other", "u-1", "2026-01-02T00:00:00Z", tenantId="acme")
    tie = body("c", "acme", "u-0", "2026-01-01T00:00:00Z")
    assert holder("acme", [second, first]).namespace == "a"  # type: ignore[union-attr]
    assert holder("acme", [first, second, tie]).uid == "u-0"  # type: ignore[union-attr]
    assert holder("nobody", [first]) is None
    first["metadata"]["deletionTimestamp"] = "2026-01-03T00:00:00Z"
    assert holder("acme", [first, second]).namespace == "b"  # type: ignore[union-attr]


def test_a_provisioned_claim_keeps_its_tenant_id_against_a_newcomer_of_the_same_second() -> None:
    """The CI failure of session 14: the holder was Ready, a second claim created in the same
    second had the smaller uid, and the tie-break handed it the tenant id."""
    from byok_operator.core.boundaries import holder

    created = "2026-01-01T00:00:00Z"
    settled = {
        "metadata": {"namespace": "a", "name": "first", "uid": "u-9", "creationTimestamp": created},
        "spec": {"tenantId": "acme"},
        "status": {"virtualKey": {"alias": "tlc-u-9-1"}},
    }
    newcomer = {
        "metadata": {
            "namespace": "b",
            "name": "second",
            "uid": "u-1",
            "creationTimestamp": created,
        },
        "spec": {"tenantId": "acme"},
        "status": {},
    }
    assert holder("acme", [newcomer, settled]).namespace == "a"  # type: ignore[union-attr]
    older = {**newcomer, "metadata": {**newcomer["metadata"], "creationTimestamp": "2025-01-01"}}
    assert holder("acme", [older, settled]).namespace == "a"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("rotation", "message"),
    [
        ({"gracePeriod": "8d"}, "gracePeriod must be at most 7d"),
        ({"virtualKeyMaxAge": "0s"}, "virtualKeyMaxAge must be more than zero"),
        ({"gracePeriod": "2h", "virtualKeyMaxAge": "2h"}, "longer than gracePeriod"),
    ],
)
def test_live_virtual_keys_stay_bounded(rotation: dict[str, str], message: str) -> None:
    """The operator keeps the CRD's caps too: a spec that slipped past them is InvalidSpec."""
    with pytest.raises(SpecError, match=message):
        parse_spec({"rotation": rotation}, name="acme")
    assert parse_spec({"rotation": {"gracePeriod": "7d", "virtualKeyMaxAge": "8d"}}, name="a")


def test_the_budget_condition_and_its_one_warning() -> None:
    from byok_operator.core.status import budget_audits, budget_condition

    spec = parse_spec({"mode": "Platform", "platform": {"budget": {"maxUSD": "500"}}}, name="acme")
    within = budget_condition(spec, 120, 0.8)
    nearly = budget_condition(spec, 400, 0.8)
    spent = budget_condition(spec, 500.0, 0.8)
    assert (within.status, within.reason) == ("True", "WithinBudget")
    assert within.message == "$120.00 of $500/30d spent (24%)."
    assert (nearly.status, nearly.reason) == ("True", "BudgetNearlySpent")
    assert (spent.status, spent.reason) == ("False", "BudgetExhausted")
    byok = parse_spec(
        {"mode": "BYOK", "providers": {"openai": {"secretRef": {"name": "k", "key": "o"}}}},
        name="a",
    )
    assert budget_condition(byok, 9999, 0.8).reason == "NoBudget"

    def listed(*conds: Condition) -> list[dict[str, Any]]:
        return merge_conditions(None, conds, generation=1, now=T0)

    assert budget_audits(listed(within), listed(nearly))[0].action.value == "BUDGET_WARNING"
    assert budget_audits(listed(nearly), listed(nearly)) == []  # not once per refresh
    assert budget_audits(listed(nearly), listed(spent))[0].action.value == "BUDGET_EXHAUSTED"
    assert budget_audits(listed(spent), listed(within)) == []


def test_one_shorter_model_list_never_takes_access_away() -> None:
    """Issue 8.6: the same key re-validated with fewer (or no) models keeps serving what was
    committed; a re-check at least the confirmation delay later narrows it; models coming
    back end the wait; a new key is taken as listed."""
    wait = timedelta(minutes=10)
    configured = {Provider.OPENAI: object()}
    first = commit_keys(configured, {}, {Provider.OPENAI: ("sha256:a", ("m1", "m2"), T0)}, T0)

    def revalidate(previous: dict[Provider, CommittedKey], models: tuple[str, ...], at: datetime):
        fresh = {Provider.OPENAI: ("sha256:a", models, at)}
        return commit_keys(configured, previous, fresh, at, confirm_after=wait)

    t1 = T0 + timedelta(hours=6)
    shorter = revalidate(first, ("m1",), t1)[Provider.OPENAI]
    assert shorter.models == ("m1", "m2")
    assert (shorter.unlisted, shorter.unlisted_since) == (("m2",), t1)
    assert shorter.recheck_due(wait) == t1 + wait

    empty = revalidate({Provider.OPENAI: shorter}, (), t1 + wait)[Provider.OPENAI]
    assert empty.models == ("m1", "m2"), "an empty answer never confirms"

    early = revalidate({Provider.OPENAI: shorter}, ("m1",), t1 + wait / 2)[Provider.OPENAI]
    assert early.models == ("m1", "m2")
    assert early.unlisted_since == t1, "the wait counts from the first shorter answer"

    confirmed = revalidate({Provider.OPENAI: shorter}, ("m1",), t1 + wait)[Provider.OPENAI]
    assert (confirmed.models, confirmed.unlisted, confirmed.unlisted_since) == (("m1",), (), None)

    back = revalidate({Provider.OPENAI: shorter}, ("m1", "m2", "m3"), t1 + wait / 2)
    assert (back[Provider.OPENAI].models, back[Provider.OPENAI].unlisted) == (
        ("m1", "m2", "m3"),
        (),
    )

    cached = commit_keys(
        configured,
        {Provider.OPENAI: shorter},
        {Provider.OPENAI: ("sha256:a", shorter.models, t1)},
        t1 + wait,
    )
    assert cached[Provider.OPENAI] == shorter, "a pass that did not ask keeps the pending state"

    new_key = commit_keys(
        configured, {Provider.OPENAI: shorter}, {Provider.OPENAI: ("sha256:b", ("m1",), t1)}, t1
    )
    assert new_key[Provider.OPENAI].models == ("m1",)


def test_a_settled_loser_of_a_tenant_id_is_named_until_its_status_says_so() -> None:
    """Two resources provisioned with one tenant id before the check existed both look Ready;
    the watch wakes the loser (once: its refusal then names the conflict)."""
    from byok_operator.core.boundaries import unflagged_losers

    def claim(uid: str, created: str, reason: str = "Ready", key: bool = True) -> dict[str, Any]:
        status: dict[str, Any] = {"conditions": [{"type": "Ready", "reason": reason}]}
        if key:
            status["virtualKey"] = {"alias": f"tlc-{uid}-1"}
        meta = {"namespace": "ns", "name": uid, "uid": uid, "creationTimestamp": created}
        return {"metadata": meta, "spec": {"tenantId": "acme"}, "status": status}

    older, newer = claim("u-1", "2026-01-01T00:00:00Z"), claim("u-2", "2026-02-01T00:00:00Z")
    assert unflagged_losers("acme", [newer, older]) == ["u-2"]
    assert unflagged_losers("acme", [older]) == []
    flagged = claim("u-2", "2026-02-01T00:00:00Z", reason="TenantIdConflict")
    assert unflagged_losers("acme", [older, flagged]) == []
    unprovisioned = claim("u-3", "2026-03-01T00:00:00Z", key=False)
    assert unflagged_losers("acme", [older, unprovisioned]) == [], "its own first pass refuses it"
    assert unflagged_losers("other", [older, newer]) == []


def test_bookkeeping_success_lines_are_quiet_and_everything_else_logs() -> None:
    import logging

    from byok_operator.cli.main import _quiet_bookkeeping

    def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)

    assert not _quiet_bookkeeping(record("Handler 'remember' succeeded."))
    assert not _quiet_bookkeeping(record("Handler 'credentials_changed' succeeded."))
    assert _quiet_bookkeeping(record("Handler 'reconcile' succeeded."))
    assert _quiet_bookkeeping(record("Handler 'remember' failed with an exception.", 40))


async def test_an_api_server_that_does_not_answer_is_a_kube_error_that_says_what_to_check() -> None:
    import socket

    from kubernetes import client

    from byok_operator.kube import Kube, KubeError

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    configuration = client.Configuration(host=f"https://127.0.0.1:{port}")
    kube = Kube(configuration, timeout=5)
    try:
        with pytest.raises(KubeError, match="no answer from the Kubernetes API server") as info:
            await kube.read_secret("ns", "s")
    finally:
        await kube.aclose()
    assert "reachable from the operator" in str(info.value)
