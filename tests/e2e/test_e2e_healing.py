"""Self-healing end to end (issue 4, items 5 and 6): drift repair, a LiteLLM that lost its
database, the orphan sweep, and encryption-key rotation. Real API server, real LiteLLM,
provider stand-ins, the operator as a local process. Nothing is mocked.

The gateway model is DESIGN §6: shared deployments per (provider, model) that belong to no
tenant; per tenant its teams (``tlc-<uid>``: platform, ``tlc-<uid>-byok``: BYOK), its
credentials (``byok-<uid>-<provider>``, BYOK only) and one virtual key. Drift is found by the
operator's bulk sweep (every BYOK_REPAIR_INTERVAL seconds), which wakes the tenants concerned.

These tests touch session-wide things (the LiteLLM proxy, the operator process, its
encryption-key file) and leave each of them running and consistent for the tests after them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet, InvalidToken

from byok_dev import litellm as litellm_testbed
from byok_dev.litellm import LiteLLMTestbed
from byok_dev.operator import OPERATOR_NAMESPACE, OperatorProcess
from byok_dev.provider_stub import ProviderStub, fingerprint_of
from byok_dev.tenants import NOTHING, Tenants, canary, condition_of, uid_of
from byok_dev.waiting import wait_for
from byok_operator.core.gateway import SENTINEL_KEY
from byok_operator.crypto import fingerprint

pytestmark = [pytest.mark.cluster, pytest.mark.gateway]

MODEL = "gpt-4o-mini"
SHARED = "byok-openai-gpt-4o-mini"  # the shared deployment every OpenAI BYOK tenant of MODEL uses
# One sweep interval (BYOK_REPAIR_INTERVAL, 5 s in tests) + the repair pass, with slack for a
# busy 2-core machine: the sweep wakes a drifted tenant at once, there is no per-tenant tick.
REPAIR_DEADLINE = 20.0
ENCRYPTION_KEY_ID = "llm.byok.io/encryption-key-id"


def byok(secret: str) -> dict[str, Any]:
    return {
        "mode": "BYOK",
        "providers": {
            "openai": {"secretRef": {"name": secret, "key": "openai"}, "models": [MODEL]}
        },
    }


PLATFORM = {"mode": "Platform", "platform": {"budget": {"maxUSD": "10", "period": "30d"}}}


def _say(message: str) -> None:
    print(f"[healing] {message}", flush=True)


def _byok_tenant(tenants: Tenants, namespace: str, name: str) -> tuple[dict[str, Any], str]:
    """A Ready BYOK tenant (OpenAI, one model) and the provider key it was given."""
    key = canary("openai")
    tenants.put_secret(namespace, f"{name}-keys", {"openai": key})
    tenants.apply(namespace, name, byok(f"{name}-keys"))
    return tenants.wait_condition(namespace, name), key


def _platform_tenant(tenants: Tenants, namespace: str, name: str) -> dict[str, Any]:
    tenants.apply(namespace, name, PLATFORM)
    return tenants.wait_condition(namespace, name)


def _assert_serves(
    tenants: Tenants,
    provider_stub: ProviderStub,
    virtual_key: str,
    provider_key: str | None,
    what: str,
) -> None:
    """An agent call with ``virtual_key`` succeeds and (BYOK) reaches the stub with the
    tenant's own key."""
    before = len(provider_stub.requests(key=provider_key)) if provider_key else 0
    response = tenants.chat(virtual_key, MODEL)
    assert response.status_code == 200, f"{what}: {response.status_code} {response.text[:300]}"
    if provider_key:
        assert len(provider_stub.requests(key=provider_key)) > before, (
            f"{what}: the call did not reach the provider with the tenant's own key"
        )


def _events(tenants: Tenants, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    return [
        e
        for e in tenants.events(namespace)
        if e["involvedObject"]["name"] == name and e["reason"] == reason
    ]


def _vault_secrets(tenants: Tenants) -> list[dict[str, Any]]:
    result = tenants.cluster.kubectl("get", "secrets", "-n", OPERATOR_NAMESPACE, "-o", "json")
    return [
        s
        for s in json.loads(result.stdout)["items"]
        if s["metadata"]["name"].startswith("tlc-vault-")
    ]


def _vault(tenants: Tenants, uid: str) -> dict[str, Any] | None:
    result = tenants.cluster.kubectl(
        "get", "secret", f"tlc-vault-{uid}", "-n", OPERATOR_NAMESPACE, "-o", "json", check=False
    )
    return json.loads(result.stdout) if result.returncode == 0 else None


def _copies(vault: dict[str, Any]) -> dict[str, str]:
    """The Fernet tokens of a vault Secret (everything but its plain state)."""
    return {
        k: base64.b64decode(v).decode()
        for k, v in (vault.get("data") or {}).items()
        if k != "state.json"
    }


def _unreadable(vault: dict[str, Any], key: str) -> list[str]:
    """Names of the stored copies that ``key`` alone cannot decrypt (never their values)."""
    fernet = Fernet(key.encode())
    bad = []
    for name, token in _copies(vault).items():
        try:
            fernet.decrypt(token.encode())
        except InvalidToken:
            bad.append(name)
    return bad


# --- 1. drift repair ----------------------------------------------------------------------------


def _byok_objects(uid: str) -> dict[str, list[str]]:
    """What a BYOK tenant (OpenAI, never in Platform mode) has in the gateway, but its key."""
    return {"teams": [f"tlc-{uid}-byok"], "deployments": [], "credentials": [f"byok-{uid}-openai"]}


def _repair_messages(tenants: Tenants, namespace: str, name: str, since: int) -> str:
    """The GATEWAY_REPAIRED events of the tenant after the first ``since`` of them (all Warning)."""
    repaired = _events(tenants, namespace, name, "GATEWAY_REPAIRED")[since:]
    assert all(e["type"] == "Warning" for e in repaired), repaired
    return " ".join(e["message"] for e in repaired)


def test_objects_deleted_behind_our_back_are_rebuilt_with_the_same_virtual_key(
    tenants: Tenants, namespace: str, provider_stub: ProviderStub, operator: OperatorProcess
) -> None:
    """The tenant's key, BYOK team and credential deleted in LiteLLM (the shared deployment
    stays: it is no tenant's): the sweep notices, a repair pass rebuilds all three from the
    encrypted copies, and the agents' unchanged virtual key works again."""
    obj, provider_key = _byok_tenant(tenants, namespace, "drift")
    uid = uid_of(obj)
    alias = obj["status"]["virtualKey"]["alias"]
    virtual_key = tenants.virtual_key(namespace, "drift")
    assert virtual_key
    _assert_serves(tenants, provider_stub, virtual_key, provider_key, "before the drift")
    before = tenants.gateway_objects(uid)
    assert before == {"keys": [alias], **_byok_objects(uid)}, before
    assert SHARED in tenants.shared_deployments()
    events_before = len(_events(tenants, namespace, "drift", "GATEWAY_REPAIRED"))

    # Each delete is checked by the admin helper (it raises on an error answer). Whether all
    # three are gone at once is not asserted: the sweep (every 5 s here) may already be
    # repairing between two of them. The repair event below proves they were lost.
    tenants.admin("POST", "/key/delete", json={"key_aliases": [alias]})
    tenants.admin("POST", "/team/delete", json={"team_ids": [f"tlc-{uid}-byok"]})
    tenants.admin("DELETE", f"/credentials/byok-{uid}-openai")
    lost = time.monotonic()

    wait_for(
        lambda: tenants.gateway_objects(uid) == before,
        timeout=REPAIR_DEADLINE,
        interval=0.5,
        what="the key, team and credential to be rebuilt",
        describe=lambda: json.dumps(tenants.gateway_objects(uid)),
    )
    wait_for(
        lambda: tenants.chat(virtual_key, MODEL).status_code == 200,
        timeout=max(5.0, REPAIR_DEADLINE - (time.monotonic() - lost)),
        interval=0.5,
        what="the agents' unchanged virtual key to work again",
    )
    _say(f"drift repaired {time.monotonic() - lost:.1f}s after the deletion")
    _assert_serves(tenants, provider_stub, virtual_key, provider_key, "after the repair")
    assert tenants.virtual_key(namespace, "drift") == virtual_key, "agents were given a new key"
    assert (tenants.get(namespace, "drift") or {})["status"]["virtualKey"]["alias"] == alias
    info = tenants.admin("GET", "/key/info", params={"key": virtual_key})["info"]
    assert info["team_id"] == f"tlc-{uid}-byok", info["team_id"]
    assert info["models"], "the rebuilt key names no models (LiteLLM reads that as all models)"
    assert SHARED in tenants.shared_deployments()
    tenants.wait_condition(namespace, "drift", timeout=30)

    wait_for(
        lambda: _repair_messages(tenants, namespace, "drift", events_before),
        timeout=10,
        what="a GATEWAY_REPAIRED event",
    )
    assert any(
        a["audit"] == "GATEWAY_REPAIRED" and a["name"] == "drift" and a["namespace"] == namespace
        for a in operator.audit_lines()
    )
    # The event says what was lost, so an operator on call knows what to look for.
    messages = _repair_messages(tenants, namespace, "drift", events_before)
    assert "virtual key" in messages, messages
    assert f"byok-{uid}-openai" in messages, f"the lost credential is not named: {messages}"
    assert f"tlc-{uid}-byok" in messages, f"the lost team is not named: {messages}"


def test_a_shared_deployment_deleted_behind_our_back_is_recreated(
    tenants: Tenants, namespace: str, provider_stub: ProviderStub
) -> None:
    """The shared deployment is no tenant's, so no tenant drifts when it goes (its key, team
    and credential are all there): the sweep itself notices and re-creates it, and the
    tenant's unchanged virtual key reaches its own provider key again."""
    obj, provider_key = _byok_tenant(tenants, namespace, "sharedloss")
    virtual_key = tenants.virtual_key(namespace, "sharedloss")
    assert virtual_key
    _assert_serves(tenants, provider_stub, virtual_key, provider_key, "before the loss")
    before = tenants.gateway_objects(uid_of(obj))

    tenants.admin("POST", "/model/delete", json={"id": SHARED})
    assert SHARED not in tenants.shared_deployments(), "the admin API did not delete it"

    wait_for(
        lambda: SHARED in tenants.shared_deployments(),
        timeout=REPAIR_DEADLINE,
        interval=0.5,
        what=f"the shared deployment {SHARED} to be re-created",
    )
    wait_for(
        lambda: tenants.chat(virtual_key, MODEL).status_code == 200,
        timeout=REPAIR_DEADLINE,
        interval=0.5,
        what="the tenant's unchanged virtual key to work again",
    )
    _assert_serves(tenants, provider_stub, virtual_key, provider_key, "after the re-creation")
    assert tenants.gateway_objects(uid_of(obj)) == before, "the tenant's objects were touched"


def test_a_credential_lost_alone_is_rebuilt_and_reported(
    tenants: Tenants, namespace: str, provider_stub: ProviderStub, operator: OperatorProcess
) -> None:
    """Only the credential gone (key and team still there, so agents get the shared
    deployment's sentinel and fail): the sweep still finds it, and the repair says so."""
    obj, provider_key = _byok_tenant(tenants, namespace, "credless")
    uid = uid_of(obj)
    virtual_key = tenants.virtual_key(namespace, "credless")
    assert virtual_key
    _assert_serves(tenants, provider_stub, virtual_key, provider_key, "before the drift")
    before = tenants.gateway_objects(uid)
    assert before == {"keys": [obj["status"]["virtualKey"]["alias"]], **_byok_objects(uid)}
    events_before = len(_events(tenants, namespace, "credless", "GATEWAY_REPAIRED"))

    # Like a real provider, the stand-in refuses the shared deployments' sentinel key.
    provider_stub.set_behaviour(SENTINEL_KEY, "401")
    tenants.admin("DELETE", f"/credentials/byok-{uid}-openai")
    lost = time.monotonic()
    assert tenants.gateway_objects(uid)["credentials"] == []
    sent = len(provider_stub.requests(key=provider_key))
    assert tenants.chat(virtual_key, MODEL).status_code != 200, "served without a credential"
    assert len(provider_stub.requests(key=provider_key)) == sent, "the lost credential was used"
    assert provider_stub.requests(key=SENTINEL_KEY), "the call did not fall back to the sentinel"

    wait_for(
        lambda: tenants.gateway_objects(uid) == before,
        timeout=REPAIR_DEADLINE,
        interval=0.5,
        what="the credential to be rebuilt",
        describe=lambda: json.dumps(tenants.gateway_objects(uid)),
    )
    wait_for(
        lambda: tenants.chat(virtual_key, MODEL).status_code == 200,
        timeout=max(5.0, REPAIR_DEADLINE - (time.monotonic() - lost)),
        interval=0.5,
        what="the virtual key to work again",
    )
    _say(f"lost credential repaired {time.monotonic() - lost:.1f}s after the deletion")
    _assert_serves(tenants, provider_stub, virtual_key, provider_key, "after the repair")
    assert tenants.virtual_key(namespace, "credless") == virtual_key
    tenants.wait_condition(namespace, "credless", timeout=30)
    messages = wait_for(
        lambda: _repair_messages(tenants, namespace, "credless", events_before),
        timeout=10,
        what="a GATEWAY_REPAIRED event for the lost credential",
        describe=lambda: json.dumps(
            [
                (e["reason"], e["message"])
                for e in tenants.events(namespace)
                if e["involvedObject"]["name"] == "credless"
            ]
        ),
    )
    assert f"byok-{uid}-openai" in messages, f"the lost credential is not named: {messages}"


# --- 2. LiteLLM lost its database ------------------------------------------------------------------


def test_a_litellm_restarted_on_an_empty_database_is_rebuilt_for_every_tenant(
    tenants: Tenants,
    namespace: str,
    provider_stub: ProviderStub,
    litellm: LiteLLMTestbed,
    operator: OperatorProcess,
) -> None:
    """Everything in LiteLLM's database is gone: keys, teams, credentials and the shared
    deployments. Every tenant is rebuilt with its agents' unchanged virtual key."""
    if litellm.external:
        pytest.skip("an external LiteLLM (LITELLM_URL) cannot be restarted by the tests")
    byok_obj, provider_key = _byok_tenant(tenants, namespace, "amnesia-byok")
    plat_obj = _platform_tenant(tenants, namespace, "amnesia-plat")
    keys = {
        "amnesia-byok": (tenants.virtual_key(namespace, "amnesia-byok"), provider_key),
        "amnesia-plat": (tenants.virtual_key(namespace, "amnesia-plat"), None),
    }
    for name, (virtual_key, pkey) in keys.items():
        assert virtual_key
        _assert_serves(tenants, provider_stub, virtual_key, pkey, f"{name} before the restart")
    byok_uid, plat_uid = uid_of(byok_obj), uid_of(plat_obj)
    expected = {uid: tenants.gateway_objects(uid) for uid in (byok_uid, plat_uid)}
    assert expected[byok_uid] == {
        "keys": [byok_obj["status"]["virtualKey"]["alias"]],
        **_byok_objects(byok_uid),
    }, expected
    assert expected[plat_uid] == {
        "keys": [plat_obj["status"]["virtualKey"]["alias"]],
        "teams": [f"tlc-{plat_uid}"],
        "deployments": [],
        "credentials": [],
    }, expected
    shared = tenants.shared_deployments()
    assert SHARED in shared, shared
    repaired_before = {
        name: len(_events(tenants, namespace, name, "GATEWAY_REPAIRED")) for name in keys
    }

    started = time.monotonic()
    restarted = litellm_testbed.restart(litellm)
    assert (restarted.url, restarted.master_key) == (litellm.url, litellm.master_key)
    back = time.monotonic()
    _say(f"LiteLLM restarted on an empty database in {back - started:.1f}s")

    answers: dict[str, str] = {}

    def rebuilt() -> bool:
        for name, (virtual_key, _) in keys.items():
            answer = tenants.chat(virtual_key or "", MODEL)
            answers[name] = f"{answer.status_code} {answer.text[:300]}"
            if answer.status_code != 200:
                return False
        if tenants.shared_deployments() != shared:
            return False
        return all(tenants.gateway_objects(uid) == objs for uid, objs in expected.items())

    wait_for(
        rebuilt,
        timeout=45,
        interval=1,
        what="every tenant and the shared deployments rebuilt in the restarted LiteLLM",
        describe=lambda: json.dumps(
            {
                "shared": tenants.shared_deployments(),
                "last answers": answers,
                **{uid: tenants.gateway_objects(uid) for uid in expected},
            }
        ),
    )
    _say(f"all tenants served again {time.monotonic() - back:.1f}s after LiteLLM came back")
    for name, (virtual_key, pkey) in keys.items():
        assert tenants.virtual_key(namespace, name) == virtual_key, f"{name}: key replaced"
        _assert_serves(tenants, provider_stub, virtual_key or "", pkey, f"{name} after")
        tenants.wait_condition(namespace, name, timeout=30)
    # The platform budget is back on the platform team (a new team, not a keyless default).
    team = tenants.admin("GET", "/team/info", params={"team_id": f"tlc-{plat_uid}"})["team_info"]
    assert (team["max_budget"], team["budget_duration"]) == (10.0, "30d"), team
    # The events say the gateway had lost them (so the database really came back empty).
    for name in keys:
        assert len(_events(tenants, namespace, name, "GATEWAY_REPAIRED")) > repaired_before[name]
    plat_messages = _repair_messages(
        tenants, namespace, "amnesia-plat", repaired_before["amnesia-plat"]
    )
    assert "virtual key" in plat_messages, plat_messages
    byok_messages = _repair_messages(
        tenants, namespace, "amnesia-byok", repaired_before["amnesia-byok"]
    )
    assert "virtual key" in byok_messages, byok_messages
    assert f"byok-{byok_uid}-openai" in byok_messages, byok_messages
    assert f"tlc-{byok_uid}-byok" in byok_messages, byok_messages


# --- 3. orphan sweep -----------------------------------------------------------------------------


def _not_foreign(objs: dict[str, list[str]]) -> dict[str, list[str]]:
    """``objs`` without the objects this test planted (all named ``foreign-...``)."""
    return {
        kind: [n for n in names if not n.startswith("foreign-")] for kind, names in objs.items()
    }


def test_gateway_objects_of_a_vanished_tenant_are_swept_and_foreign_ones_left_alone(
    tenants: Tenants, namespace: str, operator: OperatorProcess
) -> None:
    obj, _ = _byok_tenant(tenants, namespace, "vanish")
    uid = uid_of(obj)
    assert tenants.gateway_objects(uid)["credentials"]
    assert _vault(tenants, uid) is not None
    shared = tenants.shared_deployments()
    assert SHARED in shared, shared

    # Objects in the same gateway that are not ours (or not this operator instance's), some
    # even naming the vanished tenant's uid: the sweep must not touch them.
    tag = secrets.token_hex(4)
    stranger = str(uuid.uuid4())
    other_instance = {"managed_by": "byok-operator", "instance": "another-cluster"}
    foreign_keys = {
        f"foreign-plain-{tag}": {"owner": "another-team", "tlc_uid": uid},
        f"foreign-marker-{tag}": {"byok": {"managed_by": "someone-else", "tlc_uid": uid}},
        f"foreign-instance-{tag}": {
            "byok": {
                **other_instance,
                "tlc_uid": stranger,
                "tlc_namespace": "elsewhere",
                "tlc_name": "elsewhere",
            }
        },
    }
    foreign_teams = {
        f"foreign-team-plain-{tag}-{uid}": {"owner": "another-team", "tlc_uid": uid},
        f"foreign-team-instance-{tag}-{uid}": {"byok": {**other_instance, "tlc_uid": uid}},
    }
    foreign_credential = f"foreign-cred-{tag}-{uid}"
    foreign_deployment = f"foreign-dep-{tag}-{uid}"
    try:
        for team_id, metadata in foreign_teams.items():
            tenants.admin(
                "POST",
                "/team/new",
                json={"team_id": team_id, "models": [MODEL], "metadata": metadata},
            )
        for alias, metadata in foreign_keys.items():
            tenants.admin(
                "POST",
                "/key/generate",
                json={"key_alias": alias, "models": [MODEL], "metadata": metadata},
            )
        tenants.admin(
            "POST",
            "/credentials",
            json={
                "credential_name": foreign_credential,
                "credential_values": {"api_key": "sk-not-ours-" + secrets.token_hex(8)},
                "credential_info": {"custom_llm_provider": "openai", "tlc_uid": uid},
            },
        )
        tenants.admin(
            "POST",
            "/model/new",
            json={
                "model_name": f"foreign-{tag}-{uid[:8]}",
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_key": "sk-not-ours-" + secrets.token_hex(8),
                },
                "model_info": {
                    "id": foreign_deployment,
                    "byok": {**other_instance, "tlc_uid": uid},
                },
            },
        )
        operator.stop()
        try:
            tenants.cluster.kubectl(
                "patch",
                "tlc",
                "vanish",
                "-n",
                namespace,
                "--type=json",
                "-p",
                '[{"op":"remove","path":"/metadata/finalizers"}]',
            )
            tenants.cluster.kubectl("delete", "tlc", "vanish", "-n", namespace, "--timeout=30s")
            assert tenants.get(namespace, "vanish") is None
            left = _not_foreign(tenants.gateway_objects(uid))
            assert left["credentials"], "nothing left to sweep?"
            assert left["teams"], "nothing left to sweep?"
            assert left["keys"], "nothing left to sweep?"
            assert _vault(tenants, uid) is not None
        finally:
            operator.start()
        started = time.monotonic()

        def swept() -> bool:
            objs = _not_foreign(tenants.gateway_objects(uid))
            return objs == NOTHING and _vault(tenants, uid) is None

        wait_for(
            swept,
            timeout=30,
            interval=1,
            what="the vanished tenant's gateway objects and vault Secret to be swept",
            describe=lambda: json.dumps(tenants.gateway_objects(uid)),
        )
        _say(f"orphans swept {time.monotonic() - started:.1f}s after the operator started")
        # The sweep logs its report after its last delete, so the line can trail the state.
        wait_for(
            lambda: "Orphan sweep removed" in operator.tail(400),
            timeout=10,
            interval=0.2,
            what="the sweep to report what it removed",
            describe=lambda: operator.tail(20),
        )

        # The pass that removed the orphans saw the foreign objects too, and kept them; and
        # the shared deployments belong to no tenant, so a vanished one takes none with it.
        for alias in foreign_keys:
            found = tenants.admin(
                "GET", "/key/list", params={"key_alias": alias, "return_full_object": "true"}
            )["keys"]
            assert [k.get("key_alias") for k in found] == [alias], f"{alias} was swept"
        left = tenants.gateway_objects(uid)
        assert left["teams"] == sorted(foreign_teams), f"a foreign team was swept: {left}"
        assert left["credentials"] == [foreign_credential], (
            f"a foreign credential was swept: {left}"
        )
        assert left["deployments"] == [foreign_deployment], (
            f"a foreign deployment was swept: {left}"
        )
        assert tenants.shared_deployments() == shared, "the sweep touched the shared deployments"
    finally:
        for method, path, body in (
            ("POST", "/key/delete", {"key_aliases": list(foreign_keys)}),
            ("POST", "/team/delete", {"team_ids": list(foreign_teams)}),
            ("DELETE", f"/credentials/{foreign_credential}", None),
            ("POST", "/model/delete", {"id": foreign_deployment}),
        ):
            with contextlib.suppress(httpx.HTTPStatusError):  # one not made, or already gone
                tenants.admin(method, path, json=body)


# --- 4. encryption-key rotation -------------------------------------------------------------------


def test_encryption_key_rotation_loses_nothing_and_a_lost_key_heals_without_a_crash(
    tenants: Tenants, namespace: str, provider_stub: ProviderStub, operator: OperatorProcess
) -> None:
    keys_file = Path(operator.env["BYOK_ENCRYPTION_KEYS_FILE"])
    original = [line.strip() for line in keys_file.read_text().splitlines() if line.strip()]
    second, third = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    byok_obj, provider_key = _byok_tenant(tenants, namespace, "wrap-byok")
    plat_obj = _platform_tenant(tenants, namespace, "wrap-plat")
    uids = {"wrap-byok": uid_of(byok_obj), "wrap-plat": uid_of(plat_obj)}
    agents = {name: tenants.virtual_key(namespace, name) for name in uids}
    provider_keys = {"wrap-byok": provider_key, "wrap-plat": None}
    for name, virtual_key in agents.items():
        assert virtual_key
        assert _vault(tenants, uids[name]) is not None

    try:
        # (a) Add a new key, newest first: every stored copy is re-encrypted with it.
        log_mark = len(operator.all_logs())
        keys_file.write_text("\n".join([second, *original]) + "\n")
        started = time.monotonic()

        def all_rewrapped() -> bool:
            vaults = _vault_secrets(tenants)
            return bool(vaults) and all(
                (v["metadata"].get("annotations") or {}).get(ENCRYPTION_KEY_ID)
                == fingerprint(second)
                for v in vaults
            )

        wait_for(
            all_rewrapped,
            timeout=30,
            interval=0.5,
            what="every vault Secret re-encrypted with the new key",
            describe=lambda: json.dumps(
                {
                    v["metadata"]["name"]: (v["metadata"].get("annotations") or {}).get(
                        ENCRYPTION_KEY_ID
                    )
                    for v in _vault_secrets(tenants)
                }
            ),
        )
        _say(f"rewrap to a new encryption key done in {time.monotonic() - started:.1f}s")
        logs = operator.all_logs()[log_mark:]
        assert "Encryption keys changed: 2 key(s)" in logs, "no log of the key change"
        assert "Rewrap progress" in logs, "no rewrap progress in the log"
        for name, uid in uids.items():
            vault = _vault(tenants, uid)
            assert vault is not None
            assert _unreadable(vault, second) == [], f"{name}: copies not rewrapped"
        snapshot = {name: _copies(_vault(tenants, uid) or {}) for name, uid in uids.items()}

        # (b) Remove the old key: nothing is lost. Force a rebuild from the encrypted copy.
        log_mark = len(operator.all_logs())
        keys_file.write_text(second + "\n")
        wait_for(
            lambda: "Encryption keys changed: 1 key(s)" in operator.all_logs()[log_mark:],
            timeout=20,
            what="the operator to reload the key file",
        )
        byok_uid = uids["wrap-byok"]
        tenants.admin("DELETE", f"/credentials/byok-{byok_uid}-openai")
        wait_for(
            lambda: tenants.gateway_objects(byok_uid)["credentials"] == [f"byok-{byok_uid}-openai"],
            timeout=REPAIR_DEADLINE,
            interval=1,
            what="the credential rebuilt from the copy encrypted with the new key",
        )
        for name, virtual_key in agents.items():
            assert tenants.virtual_key(namespace, name) == virtual_key, f"{name}: key replaced"
            _assert_serves(
                tenants, provider_stub, virtual_key or "", provider_keys[name], f"{name} (b)"
            )
            tenants.wait_condition(namespace, name, timeout=30)
        # Rebuilt from the rewrapped copies, not re-made: the stored copies did not change.
        for name, uid in uids.items():
            assert _copies(_vault(tenants, uid) or {}) == snapshot[name], (
                f"{name}: a stored copy was re-made, so the rewrapped one was not usable"
            )
        logs = operator.all_logs()[log_mark:]
        assert "DecryptionFailed" not in logs
        assert "cannot be decrypted" not in logs
        assert not _events(tenants, namespace, "wrap-byok", "VIRTUAL_KEY_ROTATED")

        # (c) Replace the file with a brand-new key only: no stored copy can be opened. The
        # virtual keys are re-issued unasked, so the old ones get the unplanned-rotation grace.
        grace = float(operator.env["BYOK_UNPLANNED_ROTATION_GRACE"])
        log_mark = len(operator.all_logs())
        keys_file.write_text(third + "\n")
        lost = time.monotonic()
        assert operator.proc is not None

        def healed() -> bool:
            assert operator.proc is not None
            assert operator.proc.poll() is None, f"the operator died:\n{operator.tail()}"
            for name, uid in uids.items():
                vault = _vault(tenants, uid)
                if vault is None or _unreadable(vault, third):
                    return False
                if condition_of(tenants.get(namespace, name) or {}).get("status") != "True":
                    return False
                current = tenants.virtual_key(namespace, name)
                if not current or tenants.chat(current, MODEL).status_code != 200:
                    return False
            return True

        seen_reasons: set[str] = set()
        replaced_at: dict[str, float] = {}  # when the test first saw each tenant's new key

        def healed_watching() -> bool:
            for name in uids:
                ready = condition_of(tenants.get(namespace, name) or {})
                if ready.get("reason"):
                    seen_reasons.add(f"{name}:{ready['status']}/{ready['reason']}")
                if name not in replaced_at and tenants.virtual_key(namespace, name) != agents[name]:
                    replaced_at[name] = time.monotonic()
            return healed()

        wait_for(
            healed_watching,
            timeout=60,
            interval=1,
            what="every tenant healed after losing its encryption key",
            describe=lambda: operator.tail(40),
        )
        _say(
            f"after a total loss of encryption keys, all tenants healed in "
            f"{time.monotonic() - lost:.1f}s; Ready states seen: {sorted(seen_reasons)}"
        )
        assert operator.proc.poll() is None, "the operator exited"
        logs = operator.all_logs()[log_mark:]
        assert "Encryption keys changed: 1 key(s)" in logs
        for line in logs.splitlines():
            if "no configured encryption key opens" in line or "DecryptionFailed" in line:
                _say(f"operator said: {line.strip()[:300]}")

        # BYOK: the provider key was re-encrypted from the tenant's Secret (same key served).
        byok_vault = _vault(tenants, byok_uid) or {}
        assert _copies(byok_vault)["provider.openai"] != snapshot["wrap-byok"]["provider.openai"]
        assert (byok_vault["metadata"].get("annotations") or {}).get(
            ENCRYPTION_KEY_ID
        ) == fingerprint(third)
        # Virtual keys: the old copies cannot be opened, so each tenant got a new one, agents
        # find it in their Secret, and the old one is revoked (one live key per tenant).
        for name, old_key in agents.items():
            new_key = tenants.virtual_key(namespace, name)
            assert new_key, name
            assert new_key != old_key, f"{name}: virtual key not re-issued"
            _assert_serves(tenants, provider_stub, new_key, provider_keys[name], f"{name} (c)")
            # Revoked when its grace ends (the scheduler wakes the tenant then, no tick).
            wait_for(
                lambda k=old_key: tenants.chat(k or "", MODEL).status_code == 401,
                timeout=max(1.0, replaced_at[name] + grace + 4 - time.monotonic()),
                interval=0.5,
                what=f"{name}: the unreadable old virtual key revoked {grace:.0f}s after",
            )
            rotated = _events(tenants, namespace, name, "VIRTUAL_KEY_ROTATED")
            assert any("cannot be decrypted" in e["message"] for e in rotated), rotated
            _say(f"{name}: {rotated[-1]['message']}")
            live = [
                k
                for k in tenants.paged("/key/list", "keys", return_full_object="true")
                if uids[name] in (k.get("key_alias") or "")
            ]
            assert len(live) == 1, [k.get("key_alias") for k in live]
        assert fingerprint_of(provider_key) in {
            p["keyFingerprint"]
            for p in (tenants.get(namespace, "wrap-byok") or {})["status"]["providers"]
        }
    finally:
        # Every key this test wrote, newest first: all stored copies stay readable.
        keys_file.write_text("\n".join([third, second, *original]) + "\n")
        if operator.proc is None or operator.proc.poll() is not None:
            operator.start()  # the session's operator serves the tests after this one
