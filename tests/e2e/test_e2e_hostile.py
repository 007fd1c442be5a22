"""Hostile and broken input, table-driven (issue 8.13): each case breaks a Ready BYOK tenant in
one way and asserts the outcome: the reason, a message that says what is wrong, and that nothing
that worked stopped working (the agents' virtual key still reaches the provider with the key
that was committed before).

Spec values the schema can refuse are in test_crd_validation.py (90+ cases against the real API
server); these are the inputs only the operator can judge. Real API server, LiteLLM and
provider stand-in. The gateway's errors come from a fault-injecting proxy in front of the real
LiteLLM (tests/stubs/fault_proxy.py): this module's operator calls LiteLLM's admin API through
it, agents call LiteLLM directly, and a faulted request never reaches LiteLLM.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from byok_dev.litellm import LiteLLMTestbed
from byok_dev.operator import OPERATOR_NAMESPACE, OperatorProcess
from byok_dev.provider_stub import ProviderStub
from byok_dev.tenants import NOTHING, Tenants, canary, uid_of
from byok_dev.waiting import wait_for
from byok_operator.crypto import fingerprint
from stubs.fault_proxy import FaultProxy

pytestmark = [pytest.mark.cluster, pytest.mark.gateway]

MODEL = "gpt-4o-mini"
NAME = "victim"
SECRET = "victim-keys"
GATEWAY_TIMEOUT = 8  # the faulty operator's BYOK_GATEWAY_TIMEOUT: a stall outlasts it


@dataclass
class FaultyGateway:
    proxy: FaultProxy
    operator: OperatorProcess


@pytest.fixture(scope="module")
def faulty_gateway(
    operator: OperatorProcess, litellm: LiteLLMTestbed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultyGateway]:
    """For this module, the suite's operator swapped for one whose LiteLLM calls pass through a
    FaultProxy (published gateway URL: the real proxy's)."""
    with FaultProxy.in_process(litellm.url, stall_seconds=3 * GATEWAY_TIMEOUT) as proxy:
        env = {
            **operator.env,
            "LITELLM_URL": proxy.url,
            "BYOK_GATEWAY_PUBLIC_URL": litellm.url,
            "BYOK_GATEWAY_TIMEOUT": str(GATEWAY_TIMEOUT),
        }
        faulty = OperatorProcess(state_dir=tmp_path_factory.mktemp("faulty-operator"), env=env)
        operator.stop()
        try:
            faulty.start()
            yield FaultyGateway(proxy, faulty)
        finally:
            faulty.stop()
            operator.start()


@pytest.fixture
def gateway(faulty_gateway: FaultyGateway) -> Iterator[FaultyGateway]:
    """The faulty gateway, its faults cleared after each test (and before it, for safety)."""
    faulty_gateway.proxy.clear()
    try:
        yield faulty_gateway
    finally:
        faulty_gateway.proxy.clear()


@dataclass
class World:
    tenants: Tenants
    namespace: str
    stub: ProviderStub
    good_key: str
    uid: str
    faults: FaultProxy

    def put_key(self, value: str, *, key: str = "openai") -> None:
        self.tenants.put_secret(self.namespace, SECRET, {key: value})

    def new_key(self, behaviour: str | None = None, models: list[str] | None = None) -> None:
        """A fresh, well-formed key the stand-in answers with ``behaviour``."""
        key = canary("openai")
        if behaviour:
            self.stub.set_behaviour(key, behaviour, models=models)
        elif models is not None:
            self.stub.set_models(key, models)
        self.put_key(key)

    def spec(self, **changes: Any) -> None:
        spec = _spec()
        spec.update(changes)
        self.tenants.apply(self.namespace, NAME, spec)

    def kubectl(self, *args: str) -> None:
        self.tenants.cluster.kubectl(*args)

    def rotate_virtual_key(self) -> None:
        self.kubectl(
            "annotate",
            "tlc",
            NAME,
            "-n",
            self.namespace,
            "--overwrite",
            f"llm.byok.io/rotate-virtual-key={datetime.now(UTC).timestamp()}",
        )


def _spec() -> dict[str, Any]:
    return {
        "mode": "BYOK",
        "providers": {
            "openai": {"secretRef": {"name": SECRET, "key": "openai"}, "models": [MODEL]}
        },
    }


def _replace_secret(world: World, data: dict[str, str]) -> None:
    world.kubectl("delete", "secret", SECRET, "-n", world.namespace)
    world.tenants.put_secret(world.namespace, SECRET, data)


def _edit_vault(world: World) -> None:
    """A hand edit of the operator's vault Secret (not its format any more), then a pass."""
    patch = {"data": {"state.json": base64.b64encode(b'{"keys": "not a list"}').decode()}}
    world.kubectl(
        "patch",
        "secret",
        f"tlc-vault-{world.uid}",
        "-n",
        OPERATOR_NAMESPACE,
        "--type=merge",
        "-p",
        json.dumps(patch),
    )
    world.kubectl(
        "annotate",
        "tlc",
        NAME,
        "-n",
        world.namespace,
        "--overwrite",
        "llm.byok.io/rotate-virtual-key=after-the-edit",
    )


def _gateway_fault(route: str, fault: str, *, then: str = "new-key") -> Callable[[World], None]:
    """The gateway answers ``route`` ("METHOD /path-prefix") with ``fault``, then the tenant
    changes in a way that needs that route: a new provider key (the credential is rewritten)
    or a virtual-key rotation (a key is generated)."""
    method, path = route.split(" ", 1)

    def mutate(world: World) -> None:
        world.faults.fail(method, path, fault)  # type: ignore[arg-type]
        world.rotate_virtual_key() if then == "rotate" else world.new_key()

    return mutate


def _openai_key_as_anthropic(world: World) -> None:
    keys = {"openai": world.good_key, "anthropic": canary("openai")}
    world.tenants.put_secret(world.namespace, SECRET, keys)
    anthropic = {"secretRef": {"name": SECRET, "key": "anthropic"}}
    world.spec(providers={**_spec()["providers"], "anthropic": anthropic})


Case = tuple[Callable[[World], None], str, str]  # mutation, Ready reason, message fragment
ANTHROPIC_KEY = "sk-ant-" + "x" * 40

CASES: dict[str, Case] = {
    # Secret contents
    "empty": (lambda w: w.put_key(""), "InvalidFormat", "is empty"),
    "whitespace-only": (lambda w: w.put_key("   "), "InvalidFormat", "only whitespace"),
    "trailing-newline": (
        lambda w: w.put_key(canary("openai") + "\n"),
        "InvalidFormat",
        "leading or trailing whitespace or a newline",
    ),
    "two-values": (
        lambda w: w.put_key(canary("openai") + " " + canary("openai")),
        "InvalidFormat",
        "whitespace or a line break inside it",
    ),
    "quoted": (lambda w: w.put_key(f'"{canary("openai")}"'), "InvalidFormat", "quote characters"),
    "smart-quote-unicode": (
        lambda w: w.put_key(canary("openai") + "\u201d"),
        "InvalidFormat",
        "non-ASCII or control characters",
    ),
    "zero-width-space": (
        lambda w: w.put_key(canary("openai").replace("-", "-\u200b", 1)),
        "InvalidFormat",
        "non-ASCII or control characters",
    ),
    "one-mebibyte": (
        lambda w: w.put_key("sk-" + "a" * (1024 * 1024 - 4096)),
        "InvalidFormat",
        "a file or several values were probably pasted",
    ),
    "the-other-providers-key": (
        lambda w: w.put_key(ANTHROPIC_KEY),
        "InvalidFormat",
        "looks like an Anthropic key",
    ),
    "no-prefix": (
        lambda w: w.put_key("pk-" + "y" * 40),
        "InvalidFormat",
        "does not start with `sk-`",
    ),
    "placeholder": (lambda w: w.put_key("sk-xxxx"), "InvalidFormat", "placeholder or truncated"),
    "data-key-missing": (
        lambda w: _replace_secret(w, {"open-ai": canary("openai")}),
        "SecretNotFound",
        "has no data key 'openai'",
    ),
    "secret-deleted": (
        lambda w: w.kubectl("delete", "secret", SECRET, "-n", w.namespace),
        "SecretNotFound",
        "was not found",
    ),
    # Provider replies to a new, well-formed key
    "provider-401": (lambda w: w.new_key("401"), "InvalidKey", "openai"),
    "provider-403": (lambda w: w.new_key("403"), "InvalidKey", "openai"),
    "provider-429": (lambda w: w.new_key("429"), "ValidationUnavailable", "openai"),
    "provider-429-retry-after": (
        lambda w: w.new_key("429-retry-after"),
        "ValidationUnavailable",
        "openai",
    ),
    "provider-500": (lambda w: w.new_key("500"), "ValidationUnavailable", "openai"),
    "provider-garbage-200": (
        lambda w: w.new_key("garbage"),
        "ValidationUnavailable",
        "openai",
    ),
    "provider-redirect": (lambda w: w.new_key("redirect"), "ValidationUnavailable", "openai"),
    "provider-empty-model-list": (
        lambda w: w.new_key("empty-list"),
        "ModelsNotAvailable",
        MODEL,
    ),
    "provider-lacks-the-allow-listed-model": (
        lambda w: w.new_key(models=["gpt-4o"]),
        "ModelsNotAvailable",
        MODEL,
    ),
    "provider-slow": (lambda w: w.new_key("slow"), "ValidationUnavailable", "openai"),
    # Spec values the schema lets through
    "allow-list-of-an-unknown-model": (
        lambda w: w.spec(
            providers={
                "openai": {"secretRef": {"name": SECRET, "key": "openai"}, "models": ["gpt-9"]}
            }
        ),
        "ModelsNotAvailable",
        "gpt-9",
    ),
    "openai-key-as-anthropic": (
        _openai_key_as_anthropic,
        "InvalidFormat",
        "looks like an OpenAI key",
    ),
    "anthropic-secret-missing": (
        lambda w: w.spec(
            providers={
                **_spec()["providers"],
                "anthropic": {"secretRef": {"name": "nowhere", "key": "anthropic"}},
            }
        ),
        "SecretNotFound",
        "nowhere",
    ),
    "platform-models-too-wide": (
        lambda w: w.spec(mode="Platform", platform={"models": ["all-proxy-models"]}),
        "InvalidSpec",
        "spec.platform.models",
    ),
    "platform-model-of-byok": (
        lambda w: w.spec(mode="Platform", platform={"models": ["byok-openai-gpt-4o-mini"]}),
        "InvalidSpec",
        "BYOK gateway name",
    ),
    # The gateway's answers, through the fault proxy
    "gateway-500": (
        _gateway_fault("PATCH /credentials/", "500"),
        "GatewayUnavailable",
        "LiteLLM update credential",
    ),
    "gateway-401-master-key-rejected": (
        _gateway_fault("PATCH /credentials/", "401"),
        "GatewayError",
        "HTTP 401",
    ),
    "gateway-drops-the-connection": (
        _gateway_fault("PATCH /credentials/", "drop"),
        "GatewayUnavailable",
        "cannot reach",
    ),
    "gateway-stalls": (
        _gateway_fault("PATCH /credentials/", "stall"),
        "GatewayUnavailable",
        f"within {float(GATEWAY_TIMEOUT)}s",
    ),
    "gateway-garbage-200": (
        _gateway_fault("POST /key/generate", "garbage", then="rotate"),
        "GatewayError",
        "unexpected response",
    ),
    # The operator's own state
    "hand-edited-vault": (_edit_vault, "VaultUnreadable", "tlc-vault-"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_hostile_input_gets_a_clear_answer_and_breaks_nothing(
    tenants: Tenants,
    namespace: str,
    provider_stub: ProviderStub,
    gateway: FaultyGateway,
    case: str,
) -> None:
    good = canary("openai")
    tenants.put_secret(namespace, SECRET, {"openai": good})
    tenants.apply(namespace, NAME, _spec())
    obj = tenants.wait_condition(namespace, NAME)
    virtual = tenants.virtual_key(namespace, NAME)
    assert virtual
    world = World(tenants, namespace, provider_stub, good, uid_of(obj), gateway.proxy)
    mutate, reason, fragment = CASES[case]

    mutate(world)
    # The message is waited for, not only the reason: a case that deletes and re-creates the
    # Secret passes through "was not found" (same reason) before its own message.
    broken = tenants.wait_condition(
        namespace, NAME, status="False", reason=reason, containing=fragment, timeout=60
    )
    assert good not in json.dumps(broken), "a key in status"

    # Nothing that worked stopped working: the agents' key, on the committed provider key.
    assert tenants.virtual_key(namespace, NAME) == virtual
    served = {p["name"]: p.get("keyFingerprint") for p in broken["status"].get("providers") or []}
    if reason != "InvalidSpec":
        assert served.get("openai") == fingerprint(good), served
    seen = len(provider_stub.requests(key=good))
    assert tenants.chat(virtual, MODEL).status_code == 200
    assert len(provider_stub.requests(key=good)) > seen, "the call did not carry the good key"


def test_a_tenant_with_a_hand_edited_vault_can_still_be_deleted(
    tenants: Tenants, namespace: str, provider_stub: ProviderStub, gateway: FaultyGateway
) -> None:
    """Deletion must not hang on a vault Secret that is not in the operator's format (the
    finalizer used to fail on it every 60 s, forever, holding the namespace): the tenant's
    gateway objects are found by name and removed, and the resource goes."""
    good = canary("openai")
    tenants.put_secret(namespace, SECRET, {"openai": good})
    tenants.apply(namespace, NAME, _spec())
    obj = tenants.wait_condition(namespace, NAME)
    world = World(tenants, namespace, provider_stub, good, uid_of(obj), gateway.proxy)
    _edit_vault(world)
    tenants.wait_condition(namespace, NAME, status="False", reason="VaultUnreadable")
    world.kubectl("delete", "tlc", NAME, "-n", namespace, "--wait=false")
    wait_for(
        lambda: tenants.get(namespace, NAME) is None,
        timeout=30,
        what="the tenant with the hand-edited vault to be deleted",
    )
    assert tenants.gateway_objects(world.uid) == NOTHING


def test_a_failing_pass_still_revokes_the_keys_whose_grace_ended(
    tenants: Tenants, namespace: str, provider_stub: ProviderStub, gateway: FaultyGateway
) -> None:
    """Issue 8.8: revocations happen on failing passes too. A replaced key's grace ends while
    the operator is down; the first pass after the restart fails on a gateway error (a new
    provider key whose credential update gets HTTP 500), and still deletes the replaced key in
    LiteLLM and audits it, rather than leaving it to the gateway-side expiry and no audit."""
    good = canary("openai")
    tenants.put_secret(namespace, SECRET, {"openai": good})
    tenants.apply(namespace, NAME, {**_spec(), "rotation": {"gracePeriod": "15s"}})
    obj = tenants.wait_condition(namespace, NAME)
    old = tenants.virtual_key(namespace, NAME)
    world = World(tenants, namespace, provider_stub, good, uid_of(obj), gateway.proxy)
    world.rotate_virtual_key()
    retiring = wait_for(
        lambda: ((tenants.get(namespace, NAME) or {}).get("status") or {}).get(
            "retiringVirtualKeys"
        ),
        timeout=30,
        what="status to list the replaced key as retiring",
    )
    assert tenants.virtual_key(namespace, NAME) != old
    gateway.operator.stop()
    try:
        assert len(tenants.gateway_objects(world.uid)["keys"]) == 2, (
            "revoked before its grace ended"
        )
        revoke_after = datetime.fromisoformat(retiring[0]["revokeAfter"].replace("Z", "+00:00"))
        gateway.proxy.fail("PATCH", "/credentials/", "500")
        world.new_key()
        wait_for(
            lambda: datetime.now(UTC) > revoke_after,
            timeout=40,
            what="the replaced key's grace to end with the operator down",
        )
    finally:
        gateway.operator.start()
    tenants.wait_condition(namespace, NAME, status="False", reason="GatewayUnavailable")
    wait_for(
        lambda: len(tenants.gateway_objects(world.uid)["keys"]) == 1,
        timeout=20,
        what="the failing pass to delete the replaced key in LiteLLM",
    )
    assert gateway.proxy.hits("PATCH", "/credentials/") >= 1, "the pass did not fail as planned"
    revoked = [
        a
        for a in gateway.operator.audit_lines()
        if a["audit"] == "VIRTUAL_KEY_REVOKED" and a["name"] == NAME
    ]
    assert revoked, "the revocation was not audited"
    status = (tenants.get(namespace, NAME) or {})["status"]
    assert not status.get("retiringVirtualKeys"), status.get("retiringVirtualKeys")


def test_a_malformed_encryption_key_stops_the_start_with_a_clear_message(
    operator: OperatorProcess, tmp_path: Path
) -> None:
    """The operator's own input: an encryption-key file that is not Fernet keys."""
    bad = tmp_path / "keys"
    bad.write_text("not-a-fernet-key\n")
    env = {**operator.env, "BYOK_ENCRYPTION_KEYS_FILE": str(bad)}
    broken = OperatorProcess(state_dir=tmp_path, env=env)
    broken.start(wait=False)
    assert broken.proc is not None
    assert broken.proc.wait(60) != 0
    log = broken.tail()
    assert "cannot start" in log, log
    assert str(bad) in log, log
    assert "not-a-fernet-key" not in log, "the bad key was echoed"
