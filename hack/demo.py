#!/usr/bin/env python3
"""`make demo`: byok-operator's story on a local control plane, end to end.

Starts, through the development stack (`byok_dev.stack`), a real kube-apiserver + etcd, OpenAI- and Anthropic-compatible
provider stand-ins, the real LiteLLM proxy with one platform model, and the operator as a
local process; then applies `examples/` and walks through:

  platform tenant -> enable BYOK -> a tenant going Platform -> BYOK -> rotate a provider key
  -> revert to Platform -> audit trail -> key hygiene checks

Every claim is checked (an agent's call through its virtual key, and the fingerprint of the
key the provider stand-in received), and the run ends with a step -> result table. Exit code
0 only if every step worked. Keys are never printed: fingerprints identify them, and any
line that would contain a known key is redacted (and the redaction reported).

    python hack/demo.py --state DIR          # run and stop everything at the end
    python hack/demo.py --state DIR --keep   # leave it running; prints KUBECONFIG and how to stop
    python hack/demo.py --state DIR --stop   # stop what a --keep run left running

BYOK_TEST_KUBECONFIG=path uses an existing cluster instead (the demo's tenants are deleted
at the end); LITELLM_URL + LITELLM_MASTER_KEY use an existing LiteLLM proxy.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import secrets
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from demo_support import Transcript, table

from byok_dev.cluster import REPO_ROOT, Cluster
from byok_dev.litellm import PLATFORM_MODEL, LiteLLMTestbed
from byok_dev.operator import OPERATOR_NAMESPACE, PLATFORM_KEY
from byok_dev.process import descendants, listeners
from byok_dev.provider_stub import DEFAULT_MODELS, ProviderStub, fingerprint_of
from byok_dev.stack import Stack
from byok_dev.tenants import Tenants, condition_of, leaks, tenant_manifest, vault_leaks
from byok_dev.waiting import wait_for

REPO = REPO_ROOT
EXAMPLES = REPO / "examples"
CHAT_PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
STAND_IN = {"openai": "OpenAI stand-in", "anthropic": "Anthropic stand-in"}
READY_TIMEOUT = 120.0
ANTHROPIC_MODEL = "claude-sonnet-4-5"  # acme's allow-list in examples/byok-both-providers.yaml
UNLISTED_MODEL = "gpt-4.1"  # a model the OpenAI key lists, but outside acme's allow-list

ACME = ("tenant-acme", "acme-corp")
GLOBEX = ("tenant-globex", "globex")
INITECH = ("tenant-initech", "initech")


class DemoFailed(Exception):
    """A step did not do what the story says; the message says what happened instead."""


def shorten(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _lines_with_offsets(text: str) -> Iterator[tuple[int, str]]:
    offset = 0
    for line in text.splitlines(keepends=True):
        yield offset, line
        offset += len(line)


def check(condition: object, message: str) -> None:
    if not condition:
        raise DemoFailed(message)


def fp(value: str) -> str:
    return fingerprint_of(value)


@dataclass
class StepResult:
    phase: str
    name: str
    ok: bool
    detail: str


@dataclass
class Demo:
    state: Path
    keep: bool
    out: Transcript = field(default_factory=Transcript)
    results: list[StepResult] = field(default_factory=list)
    phases: list[tuple[str, float]] = field(default_factory=list)
    phase_name: str = ""
    keys: dict[str, str] = field(default_factory=dict, repr=False)  # label -> raw key
    stack: Stack = field(init=False)

    def __post_init__(self) -> None:
        self.stack = Stack(self.state, detach=self.keep)

    # --- framing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def phase(self, title: str) -> Iterator[None]:
        self.phase_name = title
        self.out.section(title)
        started = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            self.phases.append((title, elapsed))
            self.out.say(f"[{title}: {elapsed:.1f}s]")

    def step(self, name: str, action: Callable[[], str]) -> None:
        """Run one checked step; a failure is recorded and ends the story."""
        try:
            detail = action()
        except (DemoFailed, AssertionError) as exc:
            self._fail(name, str(exc))
            raise DemoFailed(f"{name}: {exc}") from None
        except Exception as exc:
            self._fail(name, f"{type(exc).__name__}: {exc}")
            raise
        self.results.append(StepResult(self.phase_name, name, True, detail))
        self.out.say(f"OK   {name}: {detail}")

    def _fail(self, name: str, message: str) -> None:
        first = message.strip().splitlines()[0] if message.strip() else "failed"
        self.results.append(StepResult(self.phase_name, name, False, first))
        self.out.say(f"FAIL {name}:")
        self.out.say(message, indent=5)

    @property
    def kube(self) -> Cluster:
        assert self.stack.cluster is not None
        return self.stack.cluster

    @property
    def provider(self) -> ProviderStub:
        assert self.stack.stub is not None
        return self.stack.stub

    @property
    def gateway(self) -> LiteLLMTestbed:
        assert self.stack.litellm is not None
        return self.stack.litellm

    @property
    def tenants(self) -> Tenants:
        return self.stack.tenants

    def show(self, *args: str, stdin: str | None = None, note: str = "") -> str:
        """Run kubectl as the admin and print the command and its output."""
        if note:
            self.out.sub(note)
        self.out.say("$ kubectl " + " ".join(args) + (" <<EOF" if stdin is not None else ""))
        result = self.kube.kubectl(*args, input=stdin, check=False)
        text = (result.stdout + result.stderr).rstrip()
        self.out.say(text or "(no output)", indent=2)
        if result.returncode != 0:
            raise DemoFailed(f"kubectl {' '.join(args)} exited {result.returncode}")
        return result.stdout

    def tlc_tables(self) -> None:
        self.show("get", "tlc", "-A")
        self.show("get", "tlc", "-A", "-o", "wide")

    def events(self, namespace: str) -> None:
        self.show(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            "involvedObject.kind=TenantLLMConfig",
            "--sort-by=.metadata.creationTimestamp",
        )

    def virtual_key(self, where: tuple[str, str]) -> str:
        value = self.tenants.virtual_key(*where)
        check(value, f"no virtual key in Secret {where[0]}/{where[1]}-llm-gateway")
        assert value is not None
        self.out.secret(value)
        return value

    def status(self, where: tuple[str, str]) -> dict[str, Any]:
        obj = self.tenants.get(*where)
        check(obj, f"{where[0]}/{where[1]} not found")
        assert obj is not None
        return dict(obj.get("status") or {})

    def wait_ready(self, where: tuple[str, str], timeout: float = READY_TIMEOUT) -> str:
        started = time.monotonic()
        obj = self.tenants.wait_condition(*where, timeout=timeout)
        ready = condition_of(obj, "Ready")
        status = obj.get("status") or {}
        return (
            f"Ready=True ({ready.get('reason')}) in {time.monotonic() - started:.1f}s, "
            f"mode {status.get('mode')}, providers {status.get('providerNames') or '-'}"
        )

    def provider_fingerprints(self, where: tuple[str, str]) -> dict[str, str]:
        return {
            p["name"]: p.get("keyFingerprint", "")
            for p in self.status(where).get("providers") or []
        }

    def print_status(self, where: tuple[str, str]) -> None:
        """The parts of status an admin looks at: providers, virtual key, conditions."""
        status = self.status(where)
        self.out.sub(f"status of {where[1]} (namespace {where[0]})")
        providers = [
            (
                p["name"],
                str(p.get("valid")),
                p.get("keyFingerprint", "-"),
                str(p.get("modelCount", 0)),
                ",".join(p.get("models") or [])[:60],
            )
            for p in status.get("providers") or []
        ]
        if providers:
            header = ("PROVIDER", "VALID", "KEY FINGERPRINT", "MODELS", "FIRST MODELS")
            self.out.say(table(providers, header), indent=2)
        vk = status.get("virtualKey") or {}
        self.out.say(
            f"mode {status.get('mode')}, costTracking {status.get('costTracking')}, "
            f"spend {status.get('spend')}, budget {status.get('budget')}, "
            f"virtual key alias {vk.get('alias')} (Secret {vk.get('secretName')})",
            indent=2,
        )
        conditions = [
            (c["type"], c["status"], c.get("reason", ""), c.get("message", ""))
            for c in status.get("conditions") or []
        ]
        self.out.say(table(conditions, ("CONDITION", "STATUS", "REASON", "MESSAGE")), indent=2)

    # --- agents -----------------------------------------------------------------------------

    def agent_call(
        self, who: str, vk: str, model: str, provider: str, expect_key: str, whose: str
    ) -> str:
        """An agent's chat call through the gateway; proves which key reached the provider."""
        before = len(self.provider.requests())
        self.out.say(
            f"agent of {who}: POST {self.gateway.url}/v1/chat/completions model={model} "
            f"(virtual key {fp(vk)})"
        )
        response = self.tenants.chat(vk, model)
        if response.status_code != 200:
            raise DemoFailed(f"HTTP {response.status_code}: {response.text[:300]}")
        reply = response.json()["choices"][0]["message"]["content"]
        self.out.say(f'reply: "{reply}"', indent=2)
        seen = [r for r in self.provider.requests()[before:] if r.path == CHAT_PATHS[provider]]
        check(seen, f"the call did not reach the {STAND_IN[provider]}")
        got = seen[-1].key_fingerprint or "(no key)"
        verdict = whose if got == fp(expect_key) else f"NOT {whose} ({fp(expect_key)})"
        self.out.say(f"the {STAND_IN[provider]} received key {got} = {verdict}", indent=2)
        check(got == fp(expect_key), f"{STAND_IN[provider]} got {got}, expected {whose}")
        return f"HTTP 200; {STAND_IN[provider]} received {got} ({whose})"

    def refused_call(self, who: str, vk: str, model: str, why: str) -> str:
        before = len(self.provider.requests())
        self.out.say(
            f"agent of {who}: POST /v1/chat/completions model={model} (virtual key {fp(vk)}, {why})"
        )
        response = self.tenants.chat(vk, model)
        message = ""
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            message = str(response.json()["error"]["message"]).splitlines()[0][:120]
        self.out.say(f"HTTP {response.status_code}: {message}", indent=2)
        check(
            response.status_code in (400, 401, 403, 404),
            f"expected a refusal, got HTTP {response.status_code}",
        )
        leaked = [
            r
            for r in self.provider.requests()[before:]
            if r.path in CHAT_PATHS.values() and r.status == 200
        ]
        check(not leaked, "the refused call still reached a provider")
        return f"HTTP {response.status_code}, nothing reached a provider"

    # --- the story ---------------------------------------------------------------------------

    def run(self) -> None:
        with self.phase("1. Start the parts"):
            self.start_parts()
        with self.phase("2. Apply the examples"):
            self.apply_examples()
        with self.phase("3. A platform tenant (initech) on the platform's keys"):
            self.platform_tenant()
        with self.phase("4. Enable: acme-corp brings its own OpenAI and Anthropic keys"):
            self.enable()
        with self.phase("5. Platform -> BYOK: initech switches to its own OpenAI key"):
            self.platform_to_byok()
        with self.phase("6. Rotate: acme-corp replaces its OpenAI key"):
            self.rotate()
        with self.phase("7. Revert: initech goes back to Platform"):
            self.revert()
        with self.phase("8. Audit trail"):
            self.audit()
        with self.phase("9. Key hygiene"):
            self.hygiene()

    def start_parts(self) -> None:
        stopped = self.stack.stop()  # whatever a --keep run left here
        if stopped:
            self.out.say(
                "stopped what an earlier --keep run left in this state dir: " + ", ".join(stopped)
            )
        self.out.secret(PLATFORM_KEY)

        def stand_ins() -> str:
            stub = self.stack.start_stub()
            return f"OpenAI at {stub.openai_base_url}, Anthropic at {stub.anthropic_base_url}"

        self.step("provider stand-ins up", stand_ins)
        with ThreadPoolExecutor(1, thread_name_prefix="litellm-up") as pool:
            # LiteLLM takes the longest (~15-20 s): start it while the control plane comes up.
            started = time.monotonic()
            pending = pool.submit(self.stack.start_litellm)
            self.step("Kubernetes control plane up", self.start_cluster)
            self.step("TenantLLMConfig CRD established", self.crd_established)

            def gateway() -> str:
                litellm = pending.result()
                self.out.secret(litellm.master_key)
                where = "external proxy" if litellm.external else "LiteLLM test bed"
                return (
                    f"{where} at {litellm.url}, platform model {PLATFORM_MODEL} -> "
                    f"OpenAI stand-in with the platform key {fp(PLATFORM_KEY)} "
                    f"(ready {time.monotonic() - started:.1f}s after start)"
                )

            self.step("LiteLLM proxy up", gateway)
        self.step("operator running", self.start_operator)

    def start_cluster(self) -> str:
        started = time.monotonic()
        cluster = self.stack.start_cluster()
        if cluster.external:
            return f"existing cluster {cluster.server} (BYOK_TEST_KUBECONFIG)"
        return f"kube-apiserver + etcd at {cluster.server} in {time.monotonic() - started:.1f}s" + (
            " (+ garbage collector, namespace controller)" if cluster.has_controllers else ""
        )

    def crd_established(self) -> str:
        self.kube.kubectl("wait", "--for=condition=Established", "crd/tenantllmconfigs.llm.byok.io")
        self.kube.kubectl("get", "namespace", OPERATOR_NAMESPACE)
        return f"crds/ applied; operator namespace {OPERATOR_NAMESPACE} exists"

    def start_operator(self) -> str:
        operator = self.stack.operator_process(extra={"BYOK_RETRY_DELAY": "2"})
        started = time.monotonic()
        operator.start()
        assert operator.proc is not None
        return (
            f"byok-operator run (pid {operator.proc.pid}) started in "
            f"{time.monotonic() - started:.1f}s"
        )

    def apply_examples(self) -> None:
        docs = [
            doc
            for path in sorted(EXAMPLES.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text())
            if doc
        ]
        secrets_by_ref: dict[tuple[str, str], dict[str, str]] = {
            (d["metadata"]["namespace"], d["metadata"]["name"]): dict(d.get("stringData") or {})
            for d in docs
            if d["kind"] == "Secret"
        }
        for data in secrets_by_ref.values():
            self.out.secret(*data.values())
        self.out.say(
            "The example Secrets hold placeholder keys; the provider stand-ins accept any key "
            "with the right prefix, so here they play the tenants' real keys (acme-corp and "
            "globex both use the OpenAI placeholder, so they share its fingerprint until "
            "acme-corp rotates)."
        )
        for doc in docs:
            if doc["kind"] != "TenantLLMConfig" or doc["spec"].get("mode") != "BYOK":
                continue
            namespace, name = doc["metadata"]["namespace"], doc["metadata"]["name"]
            for provider, pspec in doc["spec"]["providers"].items():
                ref = pspec["secretRef"]
                key = secrets_by_ref[(namespace, ref["name"])][ref["key"]]
                self.keys[f"{name}/{provider}"] = key
                missing = [
                    m for m in pspec.get("models") or [] if m not in DEFAULT_MODELS[provider]
                ]
                if missing:
                    self.provider.set_models(key, [*DEFAULT_MODELS[provider], *missing])
                    self.out.say(
                        f"NOTE: {name}'s {provider} allow-list names {', '.join(missing)}, which "
                        f"the {STAND_IN[provider]} does not list by default (it lists dated ids "
                        f"such as {DEFAULT_MODELS[provider][0]}); told the stand-in to list it "
                        f"for key {fp(key)}, as a real account would. Otherwise the tenant "
                        f"would end Ready=False ModelsNotAvailable."
                    )
        self.show(
            "apply",
            "--server-side",
            "-f",
            "examples/",
            note="kubectl apply --server-side -f examples/",
        )
        for where, what in (
            (INITECH, "Platform, $500/30d, gpt-4o-mini"),
            (ACME, "BYOK openai + anthropic, allow-lists"),
            (GLOBEX, "BYOK openai, no allow-list"),
        ):
            self.step(f"{where[1]} Ready ({what})", functools.partial(self.wait_ready, where))
        self.tlc_tables()

    def platform_tenant(self) -> None:
        self.print_status(INITECH)
        self.show("get", "secret", "initech-llm-gateway", "-n", INITECH[0])
        self.out.say("Agents mount that Secret (LITELLM_BASE_URL, LITELLM_API_KEY).")
        vk = self.virtual_key(INITECH)
        self.keys["initech/platform-vk"] = vk
        if self.gateway.external:
            self.out.say(
                "(external LiteLLM: its platform model is not pointed at the stand-in by this "
                "demo, so only the HTTP answer can be checked)"
            )
        self.step(
            "initech agent call uses the platform's key",
            lambda: self.agent_call(
                "initech", vk, PLATFORM_MODEL, "openai", PLATFORM_KEY, "the platform's key"
            ),
        )

    def enable(self) -> None:
        self.print_status(ACME)
        expected = {p: fp(self.keys[f"acme-corp/{p}"]) for p in ("openai", "anthropic")}
        self.step(
            "acme-corp status shows its own key fingerprints",
            lambda: self._fingerprints_match(ACME, expected),
        )
        self.step("the gateway holds shared deployments, no per-tenant ones", self.gateway_model)
        vk = self.virtual_key(ACME)
        self.keys["acme/vk"] = vk
        self.out.sub("acme-corp's agents call an OpenAI and an Anthropic model")
        self.step(
            "acme-corp OpenAI call carries acme's key",
            lambda: self.agent_call(
                "acme-corp",
                vk,
                "gpt-4o-mini",
                "openai",
                self.keys["acme-corp/openai"],
                "acme-corp's own OpenAI key",
            ),
        )
        self.step(
            "acme-corp Anthropic call carries acme's key",
            lambda: self.agent_call(
                "acme-corp",
                vk,
                ANTHROPIC_MODEL,
                "anthropic",
                self.keys["acme-corp/anthropic"],
                "acme-corp's own Anthropic key",
            ),
        )
        self.step(
            "acme-corp's allow-list is enforced",
            lambda: self.refused_call(
                "acme-corp", vk, UNLISTED_MODEL, "a model outside acme-corp's allow-list"
            ),
        )
        self.out.sub("globex: no allow-list, so every model its key lists")
        globex_vk = self.virtual_key(GLOBEX)
        self.step(
            f"globex calls {UNLISTED_MODEL} with its own key",
            lambda: self.agent_call(
                "globex",
                globex_vk,
                UNLISTED_MODEL,
                "openai",
                self.keys["globex/openai"],
                "globex's own OpenAI key",
            ),
        )
        self.events(ACME[0])

    def gateway_model(self) -> str:
        """DESIGN §6 on the real gateway: shared deployments, per-tenant teams and credentials,
        no per-tenant deployment."""
        tenants = self.tenants
        obj = tenants.get(*ACME) or {}
        mine = tenants.gateway_objects(obj["metadata"]["uid"])
        shared = tenants.shared_deployments()
        self.out.say(f"shared deployments (all tenants): {', '.join(shared)}", indent=2)
        self.out.say(
            f"acme-corp: team {', '.join(mine['teams'])}; credentials {len(mine['credentials'])}; "
            f"virtual keys {len(mine['keys'])}; per-tenant deployments {len(mine['deployments'])}",
            indent=2,
        )
        check(not mine["deployments"], f"per-tenant deployments exist: {mine['deployments']}")
        check(len(mine["credentials"]) == 2, f"expected 2 credentials, got {mine['credentials']}")
        return (
            f"{len(shared)} shared deployments, 0 per tenant; acme-corp has 1 team, 2 credentials"
        )

    def _fingerprints_match(self, where: tuple[str, str], expected: dict[str, str]) -> str:
        got = self.provider_fingerprints(where)
        check(got == expected, f"status fingerprints {got}, Secret's keys {expected}")
        return ", ".join(f"{p} {f}" for p, f in sorted(got.items())) + " (= the Secret's keys)"

    def platform_to_byok(self) -> None:
        key = f"sk-demo-initech-{secrets.token_hex(16)}"
        self.out.secret(key)
        self.keys["initech/openai"] = key
        platform_vk = self.keys["initech/platform-vk"]
        self.out.sub("the tenant admin stores initech's OpenAI key in a labelled Secret")
        self.out.say(
            "$ kubectl apply --server-side -f -   # Secret tenant-initech/initech-llm-keys, label "
            f"llm.byok.io/credentials=true, data.openai = key {fp(key)}"
        )
        self.tenants.put_secret(INITECH[0], "initech-llm-keys", {"openai": key})
        openai = {"secretRef": {"name": "initech-llm-keys", "key": "openai"}}
        spec = {"mode": "BYOK", "providers": {"openai": {**openai, "models": ["gpt-4o-mini"]}}}
        manifest = tenant_manifest(INITECH[0], INITECH[1], spec)
        text = yaml.safe_dump(manifest, sort_keys=False)
        self.out.sub("... and switches the TenantLLMConfig to BYOK")
        self.out.say(text, indent=2)
        self.show("apply", "--server-side", "-f", "-", stdin=text)
        self.step("initech Ready in BYOK mode", lambda: self._ready_in(INITECH, "BYOK"))
        self.tlc_tables()
        vk = self.virtual_key(INITECH)
        self.keys["initech/byok-vk"] = vk
        self.step(
            "initech got a new virtual key for BYOK",
            lambda: self._differs(platform_vk, vk, "platform", "BYOK"),
        )
        self.step(
            "initech agent call now carries initech's own key",
            lambda: self.agent_call(
                "initech", vk, "gpt-4o-mini", "openai", key, "initech's own OpenAI key"
            ),
        )
        self.step(
            "initech's old platform virtual key is revoked (gracePeriod 0s)",
            lambda: self._revoked(platform_vk, "initech's old platform virtual key"),
        )

    def _ready_in(self, where: tuple[str, str], mode: str) -> str:
        detail = self.wait_ready(where)
        status = self.status(where)
        check(status.get("mode") == mode, f"status.mode is {status.get('mode')}, not {mode}")
        return detail

    def _differs(self, old: str, new: str, old_name: str, new_name: str) -> str:
        check(old != new, f"the {new_name} virtual key equals the {old_name} one")
        return f"{old_name} {fp(old)} -> {new_name} {fp(new)}"

    def _revoked(self, vk: str, what: str) -> str:
        def refused() -> int | None:
            code = self.tenants.chat(vk, "gpt-4o-mini").status_code
            return code if code == 401 else None

        started = time.monotonic()
        code = wait_for(refused, timeout=30, interval=1, what=f"{what} to get 401")
        self.out.say(
            f"agent still holding {what} ({fp(vk)}): HTTP {code} "
            f"after {time.monotonic() - started:.1f}s"
        )
        return f"HTTP {code} for {fp(vk)}"

    def rotate(self) -> None:
        old_key = self.keys["acme-corp/openai"]
        anthropic_key = self.keys["acme-corp/anthropic"]
        new_key = f"sk-demo-acme-rotated-{secrets.token_hex(16)}"
        self.out.secret(new_key)
        vk_before = self.virtual_key(ACME)
        before = self.provider_fingerprints(ACME)
        self.out.say(
            f"acme-corp's OpenAI key {before.get('openai')} is replaced by {fp(new_key)} in "
            "Secret acme-llm-keys (the Anthropic key stays)."
        )
        self.out.say(
            "$ kubectl apply --server-side -f -   # Secret tenant-acme/acme-llm-keys: data.openai = key "
            f"{fp(new_key)}, data.anthropic = key {fp(anthropic_key)} (unchanged)"
        )
        started = time.monotonic()
        log_offset = len(self.operator_text())
        self.tenants.put_secret(
            ACME[0], "acme-llm-keys", {"openai": new_key, "anthropic": anthropic_key}
        )

        def rotated() -> str:
            def probe() -> str | None:
                return (
                    "ok" if self.provider_fingerprints(ACME).get("openai") == fp(new_key) else None
                )

            wait_for(
                probe,
                timeout=60,
                what="status.providers[openai].keyFingerprint to change",
                describe=lambda: json.dumps(self.status(ACME), indent=1),
            )
            elapsed = time.monotonic() - started
            how = self.what_reconciled(ACME, log_offset, "BYOK_KEYS_ROTATED")
            self.out.say(
                f"the new key reached status {elapsed:.1f}s after the Secret changed; {how}"
            )
            if "periodic" in how:
                self.out.say(
                    "WARN: a labelled Secret should wake its tenant at once (the operator "
                    "annotates the tenant), but only the periodic pass noticed the new key; "
                    "see the final report / the operator log."
                )
            return (
                f"status.providers[openai].keyFingerprint {before.get('openai')} -> "
                f"{fp(new_key)} in {elapsed:.1f}s (no spec change; {how})"
            )

        self.step("operator picked up the rotated key", rotated)
        self.step("acme-corp still Ready", lambda: self.wait_ready(ACME, timeout=30))
        self.print_status(ACME)
        vk_after = self.virtual_key(ACME)

        def same_vk() -> str:
            check(vk_after == vk_before, "acme-corp's agents got a different virtual key")
            return f"still {fp(vk_after)}: agents change nothing"

        self.step("acme-corp's virtual key unchanged", same_vk)
        self.step(
            "next acme-corp call carries the new key",
            lambda: self.agent_call(
                "acme-corp", vk_after, "gpt-4o-mini", "openai", new_key, "acme-corp's NEW key"
            ),
        )
        self.step(
            "acme-corp Anthropic key untouched",
            lambda: self.agent_call(
                "acme-corp",
                vk_after,
                ANTHROPIC_MODEL,
                "anthropic",
                anthropic_key,
                "acme-corp's unchanged Anthropic key",
            ),
        )
        self.step(
            "globex unaffected (still the old shared placeholder key)",
            lambda: self.agent_call(
                "globex",
                self.virtual_key(GLOBEX),
                "gpt-4o-mini",
                "openai",
                old_key,
                "globex's key",
            ),
        )
        self.keys["acme-corp/openai"] = new_key

    def revert(self) -> None:
        byok_vk = self.virtual_key(INITECH)
        self.out.say(
            "The admin re-applies the original example: mode Platform, budget $500/30d, "
            "gpt-4o-mini (kubectl's three-way merge drops spec.providers)."
        )
        self.show("apply", "--server-side", "-f", "examples/platform-budget.yaml")
        self.step("initech Ready in Platform mode", lambda: self._ready_in(INITECH, "Platform"))
        self.tlc_tables()
        self.print_status(INITECH)
        vk = self.virtual_key(INITECH)
        self.step(
            "initech got a new platform virtual key",
            lambda: self._differs(byok_vk, vk, "BYOK", "platform"),
        )
        self.step(
            "the old BYOK virtual key gets 401",
            lambda: self._revoked(byok_vk, "initech's old BYOK virtual key"),
        )
        self.step(
            "the new virtual key works, on the platform's key",
            lambda: self.agent_call(
                "initech", vk, PLATFORM_MODEL, "openai", PLATFORM_KEY, "the platform's key"
            ),
        )

    def audit(self) -> None:
        wanted = {
            INITECH: {"PLATFORM_ENABLED", "BYOK_ENABLED", "VIRTUAL_KEY_ROTATED", "BYOK_DISABLED"},
            ACME: {"BYOK_ENABLED", "BYOK_KEYS_ROTATED"},
        }
        for where, reasons in wanted.items():

            def events_present(where: tuple[str, str] = where, reasons: set[str] = reasons) -> str:
                def probe() -> set[str] | None:
                    found = {
                        e["reason"]
                        for e in self.tenants.events(where[0])
                        if e["involvedObject"].get("name") == where[1]
                    }
                    return found if reasons <= found else None

                found = wait_for(probe, timeout=30, what=f"{sorted(reasons)} events")
                return ", ".join(sorted(found))

            self.events(where[0])
            self.step(f"{where[1]} events include {', '.join(sorted(reasons))}", events_present)
        assert self.stack.operator is not None
        for where, reasons in wanted.items():
            lines = [
                a
                for a in self.stack.operator.audit_lines()
                if a.get("namespace") == where[0] and a.get("name") == where[1]
            ]
            self.out.sub(f"operator audit log (logger byok_operator.audit) for {where[1]}")
            for line in lines:
                self.out.say(json.dumps(line, sort_keys=True), indent=2)

            def logged(lines: list[dict[str, Any]] = lines, reasons: set[str] = reasons) -> str:
                found = {str(a.get("audit")) for a in lines}
                check(reasons <= found, f"missing {sorted(reasons - found)} in the audit log")
                return f"{len(lines)} JSON lines, incl. {', '.join(sorted(reasons))}"

            self.step(f"{where[1]} audit JSON lines", logged)

    def hygiene(self) -> None:
        self.step("no key in status, events, operator log or output", self.scan_for_keys)
        self.step("vault holds only encrypted copies", self.scan_vault)
        self.step("every listener is on 127.0.0.1", self.check_listeners)

    def scan_for_keys(self) -> str:
        assert self.stack.operator is not None
        places = {
            "TenantLLMConfigs (-o yaml)": self.kube.kubectl(
                "get", "tlc", "-A", "-o", "yaml"
            ).stdout,
            "events (-o yaml)": self.kube.kubectl("get", "events", "-A", "-o", "yaml").stdout,
            "operator log": self.stack.operator.all_logs(),
            "provider stand-in state": self.stack.stub_state.read_text(),
            "this demo's output": "\n".join(self.out.lines),
        }
        found = leaks(self.out.secrets, places)
        check(not found, "plaintext keys found: " + "; ".join(found))
        redacted = (
            f"; {len(self.out.redactions)} line(s) redacted before printing"
            if self.out.redactions
            else ""
        )
        return (
            f"{len(self.out.secrets)} known keys (provider, virtual, master) absent from "
            f"{', '.join(places)}{redacted}"
        )

    def scan_vault(self) -> str:
        vaults, found = vault_leaks(self.kube, self.out.secrets)
        check(vaults, f"no vault Secrets in {OPERATOR_NAMESPACE}")
        check(not found, "plaintext in the vault: " + "; ".join(found))
        return f"{vaults} vault Secrets in {OPERATOR_NAMESPACE}, no plaintext key in them"

    def check_listeners(self) -> str:
        roots = self.stack.all_pids()
        found = listeners(descendants(roots))
        rows = [
            (Path(f"/proc/{pid}/comm").read_text().strip(), str(pid), address)
            for pid, address, _ in found
        ]
        self.out.say(table(rows, ("PROCESS", "PID", "LISTENS ON")), indent=2)
        outside = [
            f"{r[0]} {r[2]}" for (r, (_, _, loop)) in zip(rows, found, strict=True) if not loop
        ]
        check(found, "found no listening sockets at all (cannot check)")
        check(not outside, "listening beyond loopback: " + ", ".join(outside))
        return (
            f"{len(found)} listening sockets of {len(descendants(roots))} processes, all loopback"
        )

    # --- the end -----------------------------------------------------------------------------

    def cleanup_external_cluster(self) -> None:
        """On someone else's cluster, remove the demo's tenants while the operator still runs
        (its finalizer cleans the gateway)."""
        if self.stack.cluster is None or not self.stack.cluster.external:
            return
        self.out.say("removing the demo's tenants from the external cluster")
        self.kube.kubectl(
            "delete",
            "-f",
            str(EXAMPLES),
            "--ignore-not-found",
            "--timeout=90s",
            check=False,
            timeout=120,
        )

    def operator_text(self) -> str:
        assert self.stack.operator is not None
        return self.stack.operator.all_logs()

    def what_reconciled(self, where: tuple[str, str], offset: int, audit: str) -> str:
        """Which operator pass wrote the `audit` event for the tenant after `offset` of its log:
        kopf's line that follows the audit line names an update handler or the periodic timer."""
        text = self.operator_text()[offset:]
        start = next(
            (
                index
                for index, line in _lines_with_offsets(text)
                if f'"audit": "{audit}"' in line and f'"name": "{where[1]}"' in line
            ),
            None,
        )
        if start is None:
            return f"no {audit} line in the operator log"
        tag = f"[{where[0]}/{where[1]}]"
        handler = text.find(f"{tag} Handler 'reconcile' succeeded", start)
        periodic = text.find(f"{tag} Periodic pass done", start)
        if handler >= 0 and (periodic < 0 or handler < periodic):
            return "woken by the Secret watch (update handler)"
        if periodic >= 0:
            return "picked up by the periodic pass, not the Secret watch"
        return "which pass handled it is not in the operator log"

    def operator_log(self) -> Path:
        return self.stack.operator.log_path if self.stack.operator else self.state / "operator"

    def summary(self) -> bool:
        self.out.section("Summary")
        rows = [
            (r.phase.split(".")[0], "ok" if r.ok else "FAILED", r.name, shorten(r.detail))
            for r in self.results
        ]
        self.out.say(table(rows, ("#", "RESULT", "STEP", "DETAIL")))
        self.out.say()
        timings = [(name, f"{seconds:6.1f}s") for name, seconds in self.phases]
        total = sum(seconds for _, seconds in self.phases)
        self.out.say(table([*timings, ("total", f"{total:6.1f}s")], ("PHASE", "TIME")))
        self.out.say()
        logs = [
            ("operator", self.operator_log()),
            ("LiteLLM", self.state / "litellm" / "litellm.log"),
            ("control plane", self.state / "cluster" / "kube-apiserver.log"),
            ("provider stand-ins", self.state / "provider-stub.log"),
        ]
        self.out.say(table([(n, str(p)) for n, p in logs if p.exists()], ("LOG", "PATH")))
        return bool(self.results) and all(r.ok for r in self.results)


def stop_everything(stack: Stack, out: Transcript) -> None:
    """Stop, by recorded PID, what a demo started in its state dir (``Stack.stop``)."""
    try:
        stopped = stack.stop()
    except Exception as exc:
        out.say(f"could not stop everything: {exc}")
        return
    out.say("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def print_keep_instructions(demo: Demo) -> None:
    out = demo.out
    out.section("Still running (--keep)")
    kept = demo.stack.kept()
    for line in kept[:1]:
        out.say(line)
    out.say(f"export PATH={REPO / '.venv' / 'bin'}:$PATH")
    out.say("kubectl get tlc -A -o wide")
    for line in kept[1:-1]:
        out.say(line)
    out.say(
        f"stop everything:  {sys.executable} {Path(__file__).resolve()} --state {demo.state} --stop"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--state", type=Path, required=True, help="state directory (logs, PIDs)")
    parser.add_argument("--keep", action="store_true", help="leave everything running at the end")
    parser.add_argument("--stop", action="store_true", help="stop what a --keep run left running")
    args = parser.parse_args(argv)
    state: Path = args.state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    if args.stop:
        stop_everything(Stack(state), Transcript())
        return 0

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM both end the story and stop everything (a shell that started this in
    # the background may have left SIGINT ignored: take it back).
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    demo = Demo(state, keep=args.keep)
    started = time.monotonic()
    problem = ""
    interrupted = False
    try:
        demo.run()
    except DemoFailed as exc:
        problem = str(exc)
    except KeyboardInterrupt:
        interrupted = True
        problem = "interrupted"
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
        demo.out.say(traceback.format_exc())
    finally:
        # Shutting down takes a few seconds and must not be cut short half-way.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        keep = args.keep and not interrupted
        with demo.phase("Leave running" if keep else "Shut down"):
            if keep:
                print_keep_instructions(demo)
            else:
                with contextlib.suppress(Exception):
                    demo.cleanup_external_cluster()
                stop_everything(demo.stack, demo.out)
    ok = demo.summary() and not problem
    demo.out.say(f"\nwall clock {time.monotonic() - started:.1f}s")
    if ok:
        demo.out.say("DEMO PASSED: every step worked.")
        return 0
    demo.out.say(f"DEMO FAILED: {problem or 'a step failed'}")
    return 130 if interrupted else 1


if __name__ == "__main__":
    sys.exit(main())
