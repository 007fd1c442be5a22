"""Chaos: 20 tenants (BYOK_CHAOS_TENANTS; `make soak` runs 60) through enable -> rotate provider
key -> rotate virtual key -> revert to Platform -> delete, while a background thread SIGKILLs
and restarts the operator at random moments and LiteLLM is restarted once on an EMPTY
database in the middle.

At the end every DESIGN §5 invariant is checked by asking LiteLLM (admin API) and the API
server, never by reading the operator's own status:

- exactly one live virtual key per tenant once grace windows are over; it is the one in
  ``<name>-llm-gateway``, it sits in the tenant's platform team ``tlc-<uid>`` (which still
  carries the budget), it works, and it reaches the provider with the platform's key;
- no orphaned gateway objects of these tenants (keys, teams, credentials; and never a
  per-tenant deployment, DESIGN §6: only shared ones that belong to no tenant), and nothing
  carrying their uids once their TenantLLMConfigs are deleted;
- no planted provider key or issued virtual key in operator logs, events, TenantLLMConfigs or
  Secret metadata (nor in plaintext in the operator's vault Secrets);
- every virtual key names its models explicitly; during BYOK each tenant's key sits in its
  BYOK team ``tlc-<uid>-byok``, whose ``metadata.model_config`` maps each of its shared
  models to the tenant's own credentials ``byok-<uid>-<provider>``; and another tenant's
  key -- its agents' key, or one with ``all-proxy-models`` in its team or in none -- calling
  the same model names never carries the first tenant's key to the provider.

Along the way (DESIGN §2): the key published in an agent's Secret always works, except while
LiteLLM itself restarts; rotating a provider key keeps the agents' virtual key; and a replaced
virtual key keeps working for ``spec.rotation.gracePeriod`` after its successor is published,
then gets 401 (measured second by second for a few tenants by ``GraceWatcher``).

The seed is printed; ``BYOK_CHAOS_SEED=<n>`` replays the same tenant mix and kill gaps (wall
clock timing still varies). ``BYOK_CHAOS_TENANTS`` changes the tenant count (default 30).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import random
import re
import secrets
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from byok_dev.cluster import Cluster, delete_namespace
from byok_dev.litellm import LiteLLMTestbed, restart
from byok_dev.operator import OPERATOR_NAMESPACE, PLATFORM_KEY, OperatorProcess
from byok_dev.provider_stub import ProviderStub, fingerprint_of
from byok_dev.tenants import (
    Tenants,
    canary,
    key_secret_manifest,
    leaks,
    tenant_manifest,
    tenants_path,
)
from byok_dev.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.gateway]

# 20 in `make test`, which must stay under 25 minutes; `make soak` runs 60.
TENANT_COUNT = int(os.environ.get("BYOK_CHAOS_TENANTS", "20"))
NAMESPACE_COUNT = 3
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-sonnet-20241022"
FIELD_MANAGER = "chaos-test"
ROTATE_ANNOTATION = "llm.byok.io/rotate-virtual-key"
GATEWAY_KEY_FIELD = "LITELLM_API_KEY"
GATEWAY_SUFFIX = "-llm-gateway"
GRACE_SECONDS = 5.0
GRACE = f"{GRACE_SECONDS:.0f}s"  # spec.rotation.gracePeriod: replaced keys get revoked
WATCHED = 8  # tenants whose replaced keys are followed second by second

FIRST_KILL_WITHIN = 4.0  # seconds after a phase's change is applied
KILL_GAP = (1.0, 6.0)  # seconds between a restart completing and the next SIGKILL
STORM = (20.0, 32.0)  # how long kills continue once a phase starts
CONVERGE_TIMEOUT = 120.0  # per phase, after its storm
SETTLE_TIMEOUT = 60.0

_ANSWERED_WITH = re.compile(r"answered with key (sha256:[0-9a-f]+)")

# DESIGN §6: the shared deployment per (provider, model), named without "/", and the model
# name agents ask for (an alias on the key).
MODELS = {"openai": OPENAI_MODEL, "anthropic": ANTHROPIC_MODEL}
SHARED = {provider: f"byok-{provider}-{model}" for provider, model in MODELS.items()}
PLATFORM_MODELS = ["gpt-4o-mini"]  # BYOK_PLATFORM_MODELS of the test operator
PLATFORM_BUDGET = (10.0, "30d")  # spec.platform.budget of tlc_object


def platform_team(uid: str) -> str:
    return f"tlc-{uid}"


def byok_team(uid: str) -> str:
    return f"tlc-{uid}-byok"


def credential(uid: str, provider: str) -> str:
    return f"byok-{uid}-{provider}"


# --- the operator killer -------------------------------------------------------------------


@dataclass
class Kill:
    at: float  # seconds since the chaos began
    phase: str
    restart_seconds: float


class Chaos:
    """A background thread that, while armed, SIGKILLs the operator at random moments and
    starts it again (waiting for its startup line each time)."""

    def __init__(self, operator: OperatorProcess, rng: random.Random, t0: float) -> None:
        self.operator = operator
        self.rng = rng
        self.phase = "setup"
        self.kills: list[Kill] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._until = 0.0
        self._fresh = False
        self._first_within = FIRST_KILL_WITHIN
        self._stop = threading.Event()
        self._t0 = t0
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Chaos:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the killer thread (disarmed: nothing happens until ``storm``)."""
        assert self._thread is None, "the killer already runs"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-killer", daemon=True)
        self._thread.start()

    def storm(self, seconds: float, first_within: float = FIRST_KILL_WITHIN) -> None:
        """Keep killing for ``seconds`` from now; the first kill within ``first_within``."""
        with self._lock:
            self._until = time.monotonic() + seconds
            self._first_within = first_within
            self._fresh = True

    def calm(self) -> None:
        with self._lock:
            self._until = 0.0

    def close(self) -> None:
        """Stop the thread and leave the operator running (other tests share it)."""
        self.calm()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
            self._thread = None
        self._ensure_running()

    def _run(self) -> None:
        next_kill: float | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                until, fresh, self._fresh = self._until, self._fresh, False
                first_within = self._first_within
            if now >= until:
                next_kill = None
                self._stop.wait(0.05)
                continue
            if fresh or next_kill is None:
                next_kill = now + self.rng.uniform(0, first_within)
            if now < next_kill:
                self._stop.wait(min(0.02, next_kill - now))
                continue
            self._kill_and_restart()
            next_kill = time.monotonic() + self.rng.uniform(*KILL_GAP)

    def _kill_and_restart(self) -> None:
        began = time.monotonic()
        self.operator.kill()
        self._ensure_running()
        self.kills.append(Kill(began - self._t0, self.phase, time.monotonic() - began))

    def _ensure_running(self) -> None:
        for _ in range(3):
            proc = self.operator.proc
            if proc is not None and proc.poll() is None:
                return
            try:
                self.operator.start()
                return
            except AssertionError as exc:  # the operator died at startup: note it, try again
                self.errors.append(str(exc)[-2000:])
        raise AssertionError("the operator does not start any more:\n" + "\n".join(self.errors))


# --- tenants and what the test knows about them ---------------------------------------------


@dataclass
class Tenant:
    namespace: str
    name: str
    anthropic: bool
    uid: str = ""
    openai_key: str = ""
    anthropic_key: str = ""
    vk: str | None = None  # the virtual key the agents were last seen using successfully
    retired_vks: list[str] = field(default_factory=list, repr=False)

    @property
    def secret(self) -> str:
        return f"{self.name}-keys"

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"

    def provider_keys(self) -> dict[str, str]:
        keys = {"openai": self.openai_key}
        if self.anthropic:
            keys["anthropic"] = self.anthropic_key
        return keys


def secret_object(t: Tenant) -> dict[str, Any]:
    return key_secret_manifest(t.namespace, t.secret, t.provider_keys())


def tlc_object(t: Tenant, mode: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"mode": mode, "rotation": {"gracePeriod": GRACE}}
    if mode == "BYOK":
        providers: dict[str, Any] = {
            "openai": {"secretRef": {"name": t.secret, "key": "openai"}, "models": [OPENAI_MODEL]}
        }
        if t.anthropic:
            providers["anthropic"] = {
                "secretRef": {"name": t.secret, "key": "anthropic"},
                "models": [ANTHROPIC_MODEL],
            }
        spec["providers"] = providers
    else:
        spec["platform"] = {"budget": {"maxUSD": "10", "period": "30d"}}
    return tenant_manifest(t.namespace, t.name, spec)


def apply_all(cluster: Cluster, objects: Iterable[dict[str, Any]]) -> None:
    cluster.server_side_apply(objects, field_manager=FIELD_MANAGER)


class AgentSecrets:
    """Reads the agents' ``<name>-llm-gateway`` Secrets as an agent would, through the API
    (the kubernetes client: no kubectl process per read). One per thread."""

    def __init__(self, cluster: Cluster) -> None:
        api_client = k8s_config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        self.api = k8s.CoreV1Api(api_client)

    def all(self, namespaces: Iterable[str]) -> dict[str, str]:
        """``namespace/name`` -> the virtual key published for that tenant."""
        found: dict[str, str] = {}
        for ns in namespaces:
            found.update(self.namespace(ns))
        return found

    def namespace(self, ns: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for item in self.api.list_namespaced_secret(ns, _request_timeout=30).items:
            name = str(item.metadata.name) if item.metadata else ""
            raw = (item.data or {}).get(GATEWAY_KEY_FIELD)
            if name.endswith(GATEWAY_SUFFIX) and raw:
                found[f"{ns}/{name.removesuffix(GATEWAY_SUFFIX)}"] = base64.b64decode(raw).decode()
        return found

    def one(self, t: Tenant) -> str | None:
        try:
            item = self.api.read_namespaced_secret(
                f"{t.name}{GATEWAY_SUFFIX}", t.namespace, _request_timeout=30
            )
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        raw = (item.data or {}).get(GATEWAY_KEY_FIELD)
        return base64.b64decode(raw).decode() if raw else None


@dataclass
class Retirement:
    """A published virtual key replaced by another, followed until it stops working."""

    tenant: str
    phase: str
    old: str = field(repr=False)
    not_before: float  # the new key was not yet published at this (monotonic) time
    seen: float  # ... and was published by this time
    last_ok: float | None = None  # start of the last call the old key answered with 200
    revoked_by: float | None = None  # end of the first call it answered with 401
    next_call: float = 0.0
    seen_wall: str = ""  # when the successor was seen (UTC), to find the operator's log lines

    @property
    def grace_at_most(self) -> float | None:
        """An upper bound of how long the old key kept working after its successor appeared."""
        return None if self.revoked_by is None else self.revoked_by - self.not_before

    @property
    def grace_at_least(self) -> float:
        """A lower bound: the old key still answered this long after its successor was seen."""
        return 0.0 if self.last_ok is None else max(0.0, self.last_ok - self.seen)


class GraceWatcher:
    """Watches a few tenants' agent Secrets (every ~0.25 s) and, whenever the published key
    changes, keeps calling the replaced key until it gets 401: the old key must keep working
    for ``spec.rotation.gracePeriod`` after its successor is published (DESIGN §2)."""

    def __init__(
        self, cluster: Cluster, tenants: Tenants, watched: list[Tenant], phase: Callable[[], str]
    ) -> None:
        self.cluster = cluster
        self.tenants = tenants
        self.watched = watched
        self.phase = phase
        self.retirements: list[Retirement] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="grace-watcher", daemon=True)

    def __enter__(self) -> GraceWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def _run(self) -> None:
        secrets_api = AgentSecrets(self.cluster)
        namespaces = sorted({t.namespace for t in self.watched})
        labels = {t.label for t in self.watched}
        published: dict[str, str] = {}
        last_read: dict[str, float] = {}
        while not self._stop.wait(0.25):
            for ns in namespaces:
                began = time.monotonic()
                try:
                    current = secrets_api.namespace(ns)
                except Exception as exc:  # an API hiccup: the next read decides
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    continue
                seen = time.monotonic()
                for label, value in current.items():
                    old = published.get(label)
                    if label in labels and old and value != old and ns in last_read:
                        wall = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
                        self.retirements.append(
                            Retirement(
                                label, self.phase(), old, last_read[ns], seen, seen_wall=wall
                            )
                        )
                    published[label] = value
                last_read[ns] = began
            self._probe_retired()

    def _probe_retired(self) -> None:
        now = time.monotonic()
        for r in self.retirements:
            if r.revoked_by is not None or now < r.next_call or now > r.seen + 90:
                continue
            began = time.monotonic()
            call = agent_call(self.tenants, r.old, OPENAI_MODEL)
            if call.status == 200:
                r.last_ok = began
            elif call.status == 401:
                r.revoked_by = time.monotonic()
            r.next_call = time.monotonic() + 0.4

    def violations(self, grace: float, evidence: Callable[[str], str]) -> list[str]:
        found = []
        for r in self.retirements:
            at_most = r.grace_at_most
            # While LiteLLM restarts on an empty database every key is lost anyway (and a key
            # replaced in that phase is reported as a violation of its own).
            if r.phase == "rotate-provider-keys":
                continue
            if at_most is not None and at_most < grace:
                found.append(
                    f"{r.phase}: {r.tenant}: the replaced virtual key got 401 at most "
                    f"{at_most:.2f}s after its successor was published (it still answered 200 "
                    f"{r.grace_at_least:.2f}s after; successor seen {r.seen_wall} UTC; "
                    f"gracePeriod {grace:.0f}s)\n{evidence(r.tenant)}"
                )
        return found

    def describe(self) -> str:
        done = [r.grace_at_most for r in self.retirements if r.grace_at_most is not None]
        if not done:
            return f"{len(self.retirements)} replacements seen, none measured"
        return (
            f"{len(self.retirements)} replacements of {len(self.watched)} watched tenants "
            f"({len(self.errors)} failed Secret reads); "
            f"old key worked for at most min {min(done):.1f}s / median "
            f"{statistics.median(done):.1f}s / max {max(done):.1f}s after the new one appeared"
        )


def token_of(virtual_key: str) -> str:
    """What LiteLLM stores for a virtual key (sha256 hex)."""
    return hashlib.sha256(virtual_key.encode()).hexdigest()


# --- what LiteLLM says --------------------------------------------------------------------


@dataclass
class Snapshot:
    keys: list[dict[str, Any]]
    teams: list[dict[str, Any]]
    deployments: list[dict[str, Any]]
    credentials: list[dict[str, Any]]

    @classmethod
    def take(cls, tenants: Tenants) -> Snapshot:
        return cls(
            tenants.paged("/key/list", "keys", return_full_object="true"),
            tenants.paged(
                "/v2/team/list", "teams", "page_size", sort_by="team_id", sort_order="asc"
            ),
            tenants.paged("/v2/model/info", "data"),
            list(tenants.admin("GET", "/credentials").get("credentials") or []),
        )

    def of(self, uid: str) -> dict[str, list[dict[str, Any]]]:
        """Everything in LiteLLM that mentions ``uid`` anywhere (alias, id, team, metadata,
        credential). A deployment that does is per-tenant (DESIGN §6: there must be none; also
        those of the old model, whose public names carried the uid's first 8 characters)."""
        return {
            "keys": [k for k in self.keys if uid in json.dumps(k)],
            "teams": [t for t in self.teams if uid in json.dumps(t)],
            "deployments": [
                d
                for d in self.deployments
                if uid in json.dumps(d) or uid[:8] in str(d.get("model_name"))
            ],
            "credentials": [c for c in self.credentials if uid in json.dumps(c)],
        }

    def team(self, team_id: str) -> dict[str, Any] | None:
        return next((t for t in self.teams if t.get("team_id") == team_id), None)

    def shared(self) -> list[str]:
        """The shared BYOK deployments' names (marked shared, belonging to no tenant)."""
        return sorted(
            str(d.get("model_name"))
            for d in self.deployments
            if '"shared": "true"' in json.dumps(d.get("model_info") or {})
        )

    @staticmethod
    def names(objects: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
        return {
            "keys": sorted(str(k.get("key_alias") or k.get("token")) for k in objects["keys"]),
            "teams": sorted(str(t.get("team_id")) for t in objects["teams"]),
            "deployments": sorted(
                str((d.get("model_info") or {}).get("id")) for d in objects["deployments"]
            ),
            "credentials": sorted(str(c.get("credential_name")) for c in objects["credentials"]),
        }


@dataclass
class Call:
    status: int | None
    fingerprint: str | None
    error: str = ""

    def __str__(self) -> str:
        return f"{self.status} via {self.fingerprint}" if self.status else self.error


def agent_call(tenants: Tenants, key: str, model: str) -> Call:
    """An agent's chat call; the provider stand-in names the fingerprint of the key it got."""
    try:
        response = tenants.chat(key, model)
    except httpx.HTTPError as exc:
        return Call(None, None, f"{type(exc).__name__}")
    found = _ANSWERED_WITH.search(response.text) if response.status_code == 200 else None
    return Call(response.status_code, found.group(1) if found else None)


def litellm_healthy(litellm: LiteLLMTestbed) -> bool:
    try:
        return httpx.get(f"{litellm.url}/health/liveliness", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


# --- convergence: outside-in probes, polled round-robin ------------------------------------


@dataclass
class Round:
    """What one polling round reads once for all tenants."""

    vks: dict[str, str]
    snapshot: Snapshot | None = None


Probe = Callable[[Tenant, Round], str | None]  # None: converged; else why not yet


def converge(
    what: str,
    population: list[Tenant],
    probe: Probe,
    *,
    read: Callable[[], Round],
    timeout: float,
    evidence: Callable[[Tenant], str],
) -> float:
    """Poll ``probe`` for every tenant until all pass; returns the seconds it took."""
    began = time.monotonic()
    pending = list(population)
    why: dict[str, str] = {}
    while pending:
        try:
            current = read()
        except (httpx.HTTPError, subprocess.SubprocessError) as exc:  # LiteLLM restarting
            why = {t.label: f"read failed: {type(exc).__name__}" for t in pending}
            current = None
        if current is not None:
            still = []
            for t in pending:
                reason = probe(t, current)
                if reason is not None:
                    why[t.label] = reason
                    still.append(t)
            pending = still
        if not pending:
            break
        if time.monotonic() - began > timeout:
            detail = "\n".join(f"  {t.label} ({t.uid}): {why.get(t.label)}" for t in pending)
            raise AssertionError(
                f"{what}: {len(pending)}/{len(population)} tenants did not converge in "
                f"{timeout:.0f}s:\n{detail}\n{evidence(pending[0])}"
            )
        time.sleep(1.0)
    return time.monotonic() - began


# --- the test ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~5 min here; the suite default (600 s) includes session setup
def test_chaos_tenants_through_the_whole_lifecycle(
    tenants: Tenants,
    namespace: str,
    operator: OperatorProcess,
    provider_stub: ProviderStub,
    litellm: LiteLLMTestbed,
) -> None:
    seed = int(os.environ.get("BYOK_CHAOS_SEED") or secrets.randbits(32))
    print(f"\n[chaos] seed {seed} (replay with BYOK_CHAOS_SEED={seed})", flush=True)
    cluster = tenants.cluster
    namespaces = [namespace] + [f"{namespace}-{i}" for i in range(1, NAMESPACE_COUNT)]
    for ns in namespaces[1:]:
        cluster.kubectl("create", "namespace", ns)
    started = time.monotonic()
    try:
        with Chaos(operator, random.Random(seed ^ 0x5EED), started) as chaos:
            try:
                Scenario(
                    tenants, namespaces, operator, provider_stub, litellm, chaos, seed, started
                ).run()
            except AssertionError as exc:
                exc.args = (f"[BYOK_CHAOS_SEED={seed}] {exc.args[0] if exc.args else ''}",)
                raise
    finally:
        if not litellm_healthy(litellm):  # leave the shared gateway up for the next tests
            restart(litellm)
        for ns in namespaces[1:]:
            delete_namespace(cluster, ns)


class Scenario:
    """The phases, the outside-in probes that tell when each has converged, and the checks."""

    def __init__(
        self,
        tenants: Tenants,
        namespaces: list[str],
        operator: OperatorProcess,
        provider_stub: ProviderStub,
        litellm: LiteLLMTestbed,
        chaos: Chaos,
        seed: int,
        started: float,
    ) -> None:
        self.tenants = tenants
        self.cluster = tenants.cluster
        self.namespaces = namespaces
        self.operator = operator
        self.stub = provider_stub
        self.litellm = litellm
        self.chaos = chaos
        self.rng = random.Random(seed)
        self.started = started
        self.phases: dict[str, float] = {}
        self.planted: list[str] = [PLATFORM_KEY]
        self.issued: set[str] = set()
        self.violations: list[str] = []
        self.outages: list[str] = []
        self.watch_outages = False
        self.platform_fp = fingerprint_of(PLATFORM_KEY)
        self.secrets = AgentSecrets(self.cluster)
        self.population = [
            Tenant(namespaces[i % len(namespaces)], f"chaos-{i:02d}", self.rng.random() < 0.4)
            for i in range(TENANT_COUNT)
        ]
        # The isolation pairs need an owner with both providers.
        self.population[0].anthropic = True
        self.watcher = GraceWatcher(
            self.cluster,
            tenants,
            self.rng.sample(self.population, min(WATCHED, len(self.population))),
            lambda: self.chaos.phase,
        )

    # --- the story -------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.story()
        finally:
            self.watcher.__exit__()

    def story(self) -> None:
        rng, chaos, population = self.rng, self.chaos, self.population

        self.phase("setup")  # every tenant in Platform mode, their key Secrets in place
        self.plant_keys()
        apply_all(self.cluster, [secret_object(t) for t in population])
        apply_all(self.cluster, [tlc_object(t, "Platform") for t in population])
        for t in population:
            obj = self.tenants.get(t.namespace, t.name)
            assert obj is not None
            t.uid = obj["metadata"]["uid"]
        self.converge("setup (Platform)", self.replaced(self.on_platform))
        self.watcher.__enter__()  # from now on, replaced keys are followed until revoked

        self.phase("enable", rng.uniform(*STORM))
        apply_all(self.cluster, [tlc_object(t, "BYOK") for t in population])
        self.converge("enable", self.replaced(self.on_own_keys))
        self.violations += byok_checks(self.tenants, self.stub, population)

        self.phase("rotate-provider-keys", rng.uniform(*STORM) + 40)
        before = {t.label: t.vk for t in population}
        self.plant_keys()
        apply_all(self.cluster, [secret_object(t) for t in population])
        pause_until(time.monotonic() + rng.uniform(0, 6))
        began = time.monotonic()
        restart(self.litellm)  # on an EMPTY database: the operator must rebuild everything
        self.litellm_restart = time.monotonic() - began
        print(
            f"[chaos] LiteLLM restarted (empty database) in {self.litellm_restart:.1f}s",
            flush=True,
        )
        chaos.storm(rng.uniform(*STORM))
        self.converge("rotate provider keys", self.kept(self.on_own_keys))
        after = self.secrets.all(self.namespaces)
        for t in population:
            if after.get(t.label) != before[t.label]:
                self.violations.append(
                    f"{t.label}: rotating the provider key replaced the agents' virtual key "
                    "(it should stay and keep working)"
                )
                t.retired_vks, t.vk = [*t.retired_vks, t.vk or ""], after.get(t.label)

        self.phase("rotate-virtual-keys", rng.uniform(*STORM))
        value = f"chaos-{rng.getrandbits(32):08x}"
        for ns in self.namespaces:
            self.cluster.kubectl(
                "annotate", "tlc", "--all", "-n", ns, "--overwrite", f"{ROTATE_ANNOTATION}={value}"
            )
        self.converge("rotate virtual keys", self.replaced(self.on_own_keys))

        self.phase("revert", rng.uniform(*STORM))
        apply_all(self.cluster, [tlc_object(t, "Platform") for t in population])
        self.converge("revert", self.replaced(self.on_platform, byok_gone=True), snapshot=True)

        self.phase("settle")  # no more kills; grace windows end
        chaos.calm()
        try:
            self.settle_seconds = self.converge(
                "settle (one key each, no BYOK objects)",
                self.settled,
                snapshot=True,
                timeout=SETTLE_TIMEOUT,
            )
        except AssertionError as exc:
            self.violations.append(str(exc))
            self.settle_seconds = SETTLE_TIMEOUT

        self.phase("verify")
        self.watcher.__exit__()
        self.violations += self.watcher.violations(GRACE_SECONDS, self.key_audits)
        self.violations += final_checks(
            self.tenants, self.secrets, self.namespaces, population, self.evidence
        )
        tlcs_text = self.cluster.kubectl("get", "tlc", "-A", "-o", "json").stdout
        vault_text = vault_plaintext(self.cluster)

        self.phase("delete")
        uids = {t.uid: t for t in population}
        for ns in self.namespaces:
            self.cluster.kubectl("delete", "tlc", "--all", "-n", ns, "--wait=false")
        chaos.storm(rng.uniform(*STORM), first_within=1.5)  # while finalizers run
        wait_for(
            self.all_deleted,
            timeout=STORM[1] + CONVERGE_TIMEOUT,
            interval=1.0,
            what="every TenantLLMConfig deleted (finalizers done)",
            describe=lambda: self.cluster.kubectl("get", "tlc", "-A").stdout,
        )
        self.phase("sweep")
        chaos.close()  # the operator stays up, so an orphan sweep could still help
        left_now = leftovers(self.tenants, self.secrets, self.namespaces, uids)
        if left_now:
            try:
                wait_for(
                    lambda: not leftovers(self.tenants, self.secrets, self.namespaces, uids),
                    timeout=30,
                    interval=1.0,
                    what="orphans swept",
                )
                print(
                    f"[chaos] note: right after deletion {json.dumps(left_now)[:2000]} "
                    "remained; the orphan sweep removed them later",
                    flush=True,
                )
            except AssertionError:
                self.violations.append(
                    "after deleting every TenantLLMConfig these remained (not swept in 30s): "
                    + json.dumps(leftovers(self.tenants, self.secrets, self.namespaces, uids))[
                        :4000
                    ]
                )

        self.phase("canaries")
        self.violations += canary_scan(
            self.cluster, self.operator, tlcs_text, vault_text, self.planted, self.issued
        )
        self.phase("end")
        if self.outages:
            self.violations.append(
                f"{len(self.outages)} agent calls with the published virtual key failed outside "
                "the LiteLLM restart (agents left without a working key):\n  "
                + "\n  ".join(self.outages[:30])
            )
        self.summary()
        for violation in self.violations:
            print(f"[chaos] VIOLATION {violation}", flush=True)
        assert not chaos.errors, "the operator failed to start during the chaos:\n" + "\n".join(
            chaos.errors
        )
        assert chaos.kills, "no SIGKILL happened: the chaos did not run"
        assert not self.violations, (
            f"{len(self.violations)} invariant violation(s):\n" + "\n\n".join(self.violations)
        )

    # --- helpers ---------------------------------------------------------------------------

    def phase(self, name: str, storm: float = 0.0) -> None:
        # Agents must never be left without a working key (DESIGN §2), whatever the kills;
        # only while LiteLLM itself restarts on an empty database may their calls fail.
        self.watch_outages = name in ("enable", "rotate-virtual-keys", "revert")
        self.chaos.phase = name
        self.phases[name] = time.monotonic()
        if storm:
            self.chaos.storm(storm)
        print(f"[chaos] {time.monotonic() - self.started:6.1f}s phase {name}", flush=True)

    def plant_keys(self) -> None:
        """Fresh canary provider keys for every tenant (the old ones stay planted)."""
        for t in self.population:
            t.openai_key = canary("openai")
            t.anthropic_key = canary("anthropic") if t.anthropic else ""
            self.planted.extend(k for k in (t.openai_key, t.anthropic_key) if k)

    def read(self, snapshot: bool) -> Round:
        vks = self.secrets.all(self.namespaces)
        self.issued.update(vks.values())
        return Round(vks, Snapshot.take(self.tenants) if snapshot else None)

    def converge(
        self,
        what: str,
        probe: Probe,
        *,
        snapshot: bool = False,
        timeout: float = STORM[1] + CONVERGE_TIMEOUT,
    ) -> float:
        seconds = converge(
            what,
            self.population,
            probe,
            read=lambda: self.read(snapshot),
            timeout=timeout,
            evidence=self.evidence,
        )
        print(f"[chaos]   {what}: converged in {seconds:.1f}s", flush=True)
        return seconds

    def evidence(self, t: Tenant) -> str:
        prefix = f"[{t.namespace}/{t.name}]"
        lines = [line for line in self.operator.all_logs().splitlines() if prefix in line]
        try:
            objects: dict[str, list[str]] = Snapshot.names(Snapshot.take(self.tenants).of(t.uid))
        except httpx.HTTPError as exc:
            objects = {"error": [type(exc).__name__]}
        return (
            f"evidence for {t.label} uid {t.uid}:\n  LiteLLM: {objects}\n  operator log "
            f"(last 25 of {len(lines)} lines):\n    " + "\n    ".join(lines[-25:])
        )

    def key_audits(self, label: str) -> str:
        """The operator's own account of a tenant's virtual keys (audit log lines)."""
        namespace, name = label.split("/")
        lines = []
        for line in self.operator.all_logs().splitlines():
            start = line.find('{"')
            if "byok_operator.audit" not in line or start < 0 or "VIRTUAL_KEY" not in line:
                continue
            try:
                a = json.loads(line[start:])
            except ValueError:  # a line cut short by SIGKILL
                continue
            if a.get("namespace") == namespace and a.get("name") == name:
                lines.append(f"{a.get('ts')} {a.get('audit')}: {a.get('message')}")
        return "  operator audit log:\n    " + "\n    ".join(lines[-8:])

    def all_deleted(self) -> bool:
        return not any(
            (self.cluster.read(tenants_path(ns)) or {}).get("items") for ns in self.namespaces
        )

    # --- probes: None when the tenant is where the phase should leave it -------------------

    def agent(self, t: Tenant, vk: str, model: str) -> Call:
        """An agent's call with the key published in the tenant's Secret: while outages are
        watched (no LiteLLM restart in the phase), anything but 200 is an outage."""
        call = agent_call(self.tenants, vk, model)
        # Only if the Secret still holds this key: an agent re-reads it, and a round of probes
        # reads all Secrets first, so a key replaced meanwhile is no outage (GraceWatcher's part).
        if self.watch_outages and call.status != 200 and self.secrets.one(t) == vk:
            self.outages.append(f"{self.chaos.phase}: {t.label} {model}: {call}")
        return call

    def on_own_keys(self, t: Tenant, vk: str, r: Round) -> str | None:
        """Agents reach each provider carrying the tenant's current key."""
        call = self.agent(t, vk, OPENAI_MODEL)
        if call.status != 200 or call.fingerprint != fingerprint_of(t.openai_key):
            return f"openai call: {call}"
        if t.anthropic:
            call = self.agent(t, vk, ANTHROPIC_MODEL)
            if call.status != 200 or call.fingerprint != fingerprint_of(t.anthropic_key):
                return f"anthropic call: {call}"
        return None

    def on_platform(self, t: Tenant, vk: str, r: Round) -> str | None:
        call = self.agent(t, vk, OPENAI_MODEL)
        if call.status != 200 or call.fingerprint != self.platform_fp:
            return f"platform call: {call}"
        return None

    def replaced(
        self, works: Callable[[Tenant, str, Round], str | None], byok_gone: bool = False
    ) -> Probe:
        """A new virtual key is published and works; every replaced one gets 401."""

        def probe(t: Tenant, r: Round) -> str | None:
            vk = r.vks.get(t.label)
            if not vk or vk == t.vk:
                if vk:  # agents keep using the old key meanwhile: it must keep working
                    self.agent(t, vk, OPENAI_MODEL)
                elif t.vk and self.watch_outages:
                    self.outages.append(f"{self.chaos.phase}: {t.label}: gateway Secret gone")
                return "new virtual key not published yet"
            problem = works(t, vk, r)
            if problem:
                return f"new virtual key: {problem}"
            if byok_gone:
                assert r.snapshot is not None
                left = Snapshot.names(r.snapshot.of(t.uid))
                if (
                    left["credentials"]
                    or left["deployments"]
                    or left["teams"] != [platform_team(t.uid)]
                ):
                    return f"BYOK objects left in LiteLLM (or no platform team): {left}"
            retired = [k for k in [*t.retired_vks, t.vk] if k]
            for old in retired:
                call = agent_call(self.tenants, old, OPENAI_MODEL)
                if call.status != 401:
                    return f"a replaced virtual key still answers {call}"
            t.retired_vks, t.vk = retired, vk
            return None

        return probe

    def kept(self, works: Callable[[Tenant, str, Round], str | None]) -> Probe:
        """The same virtual key is published and works."""

        def probe(t: Tenant, r: Round) -> str | None:
            vk = r.vks.get(t.label)
            if not vk:
                return "no virtual key published"
            return works(t, vk, r)

        return probe

    def settled(self, t: Tenant, r: Round) -> str | None:
        assert r.snapshot is not None
        mine = Snapshot.names(r.snapshot.of(t.uid))
        if (
            len(mine["keys"]) != 1
            or mine["credentials"]
            or mine["deployments"]
            or mine["teams"] != [platform_team(t.uid)]
        ):
            return f"LiteLLM holds {mine}"
        return None

    def summary(self) -> None:
        kills, names = self.chaos.kills, list(self.phases)
        both = sum(1 for t in self.population if t.anthropic)
        lines = [
            f"[chaos] summary: {len(self.population)} tenants in {len(self.namespaces)} "
            f"namespaces ({both} with anthropic too), {len(kills)} SIGKILLs, 1 LiteLLM restart"
        ]
        for name, nxt in itertools.pairwise(names):
            count = sum(1 for k in kills if k.phase == name)
            took = self.phases[nxt] - self.phases[name]
            lines.append(f"[chaos]   {name:<22} {took:6.1f}s  kills {count}")
        restarts = [k.restart_seconds for k in kills]
        if restarts:
            lines.append(
                "[chaos]   operator restart after SIGKILL: "
                f"median {statistics.median(restarts):.1f}s, max {max(restarts):.1f}s"
            )
        lines.append(
            f"[chaos]   LiteLLM restart {self.litellm_restart:.1f}s; "
            f"settle {self.settle_seconds:.1f}s"
        )
        lines.append(f"[chaos]   grace: {self.watcher.describe()}")
        lines.append(f"[chaos]   agent calls failed with the published key: {len(self.outages)}")
        lines.append(f"[chaos]   kill moments (s): {', '.join(f'{k.at:.1f}' for k in kills)}")
        lines.append(f"[chaos]   total {time.monotonic() - self.started:.1f}s")
        print("\n".join(lines), flush=True)


def pause_until(deadline: float) -> None:
    """Wait for a chosen moment (a deadline, not a bare sleep: the moment is the point)."""
    while time.monotonic() < deadline:
        time.sleep(0.05)


# --- checks ---------------------------------------------------------------------------------


def byok_checks(
    tenants: Tenants, provider_stub: ProviderStub, population: list[Tenant]
) -> list[str]:
    """During BYOK (DESIGN §6), asked of LiteLLM: every tenant has the gateway layout of the
    model (``byok_layout``), and no key of another tenant reaches its provider keys
    (``isolation``)."""
    snapshot = Snapshot.take(tenants)
    violations = [
        f"{t.label}: {problem}" for t in population for problem in byok_layout(tenants, snapshot, t)
    ]
    print(
        f"[chaos] BYOK teams, credentials and keys checked for {len(population)} tenants",
        flush=True,
    )
    return violations + isolation(tenants, provider_stub, population)


def byok_layout(tenants: Tenants, snapshot: Snapshot, t: Tenant) -> list[str]:
    """One live key, in the tenant's BYOK team, naming exactly its shared models (with the
    agents' model names as aliases); the team maps each of them to the tenant's own credential
    for that provider; the credentials exist; no per-tenant deployment."""
    problems: list[str] = []
    providers = sorted(t.provider_keys())
    wanted = sorted(SHARED[p] for p in providers)
    mine = Snapshot.names(snapshot.of(t.uid))
    if mine["deployments"]:
        problems.append(f"per-tenant deployments exist: {mine['deployments']}")
    if mine["teams"] != sorted([platform_team(t.uid), byok_team(t.uid)]):
        problems.append(f"teams {mine['teams']} (want its platform and BYOK teams)")
    if mine["credentials"] != sorted(credential(t.uid, p) for p in providers):
        problems.append(f"credentials {mine['credentials']} (want one per provider)")
    if len(mine["keys"]) != 1:
        problems.append(f"{len(mine['keys'])} live virtual keys: {mine['keys']}")
    missing = sorted(set(wanted) - set(snapshot.shared()))
    if missing:
        problems.append(f"shared deployments missing: {missing}")
    assert t.vk
    info = tenants.admin("GET", "/key/info", params={"key": t.vk}).get("info") or {}
    if info.get("team_id") != byok_team(t.uid):
        problems.append(f"the virtual key is in team {info.get('team_id')!r}")
    if sorted(info.get("models") or []) != wanted:
        problems.append(f"the virtual key names models {info.get('models')!r}, not {wanted}")
    aliases = {MODELS[p]: SHARED[p] for p in providers}
    if (info.get("aliases") or {}) != aliases:
        problems.append(f"the virtual key's aliases are {info.get('aliases')!r}, not {aliases}")
    team = (
        tenants.admin("GET", "/team/info", params={"team_id": byok_team(t.uid)}).get("team_info")
        or {}
    )
    if sorted(team.get("models") or []) != wanted:
        problems.append(f"the BYOK team names models {team.get('models')!r}, not {wanted}")
    config = (team.get("metadata") or {}).get("model_config")
    own = {SHARED[p]: {p: {"litellm_credentials": credential(t.uid, p)}} for p in providers}
    if config != own:
        problems.append(f"the BYOK team's model_config is {config!r}, not {own}")
    platform = snapshot.team(platform_team(t.uid)) or {}
    if (platform.get("metadata") or {}).get("model_config"):
        problems.append("the platform team maps models to credentials")
    return problems


def isolation(tenants: Tenants, provider_stub: ProviderStub, population: list[Tenant]) -> list[str]:
    """A tenant's provider keys are reachable only through keys of its own team (DESIGN §5,
    §6). For a few (owner, intruder) pairs, the intruder's agents' key, a key in the
    intruder's BYOK team with ``all-proxy-models``, and a key in no team with
    ``all-proxy-models`` call every model name the owner's agents use (the shared deployments'
    names and their aliases): each call is refused, or answered on the intruder's own key (on
    no tenant's key, for the key in no team), and the owner's key never reaches the provider."""
    first = population[0]  # has both providers
    same_namespace = [t for t in population[1:] if t.namespace == first.namespace]
    other_namespace = [t for t in population if t.namespace != first.namespace]
    both = [t for t in population[1:] if t.anthropic]
    pairs = [(first, same_namespace[0]), (same_namespace[0], first)]
    if other_namespace:
        pairs += [(first, other_namespace[0]), (other_namespace[0], first)]
    if both:
        pairs.append((first, both[0]))
    pairs = list({(a.label, b.label): (a, b) for a, b in pairs}.values())
    fingerprints = {
        t.label: {fingerprint_of(k) for k in t.provider_keys().values()} for t in population
    }
    made: list[str] = []

    def probe_key(team: str | None) -> str:
        body: dict[str, Any] = {
            "key_alias": f"chaos-probe-{secrets.token_hex(6)}",
            "models": ["all-proxy-models"],
        }
        if team:
            body["team_id"] = team
        value = str(tenants.admin("POST", "/key/generate", json=body)["key"])
        made.append(value)
        return value

    def owner_calls(owner: Tenant) -> int:
        mine = fingerprints[owner.label]
        return sum(
            1
            for r in provider_stub.requests()
            if r.key_fingerprint in mine and not r.path.endswith("/models")
        )

    violations: list[str] = []
    calls = 0
    try:
        loose = probe_key(None)
        for owner, intruder in pairs:
            assert intruder.vk
            callers: list[tuple[str, str, Tenant | None]] = [
                (f"{intruder.label}'s agents' key", intruder.vk, intruder),
                (
                    f"a key in {intruder.label}'s BYOK team with all-proxy-models",
                    probe_key(byok_team(intruder.uid)),
                    intruder,
                ),
                ("a key in no team with all-proxy-models", loose, None),
            ]
            names = [n for p in sorted(owner.provider_keys()) for n in (SHARED[p], MODELS[p])]
            for what, key, holder in callers:
                for model in names:
                    before = owner_calls(owner)
                    call = agent_call(tenants, key, model)
                    leaked = owner_calls(owner) - before
                    calls += 1
                    allowed = fingerprints[holder.label] if holder else set()
                    foreign = set().union(*fingerprints.values()) - allowed
                    wrong = call.status == 200 and (
                        call.fingerprint in foreign
                        or (holder is not None and call.fingerprint not in allowed)
                    )
                    if leaked or wrong:
                        violations.append(
                            f"{what} called {model} (a model name of {owner.label}'s agents): "
                            f"{call}; {owner.label}'s key reached the provider {leaked} time(s)"
                        )
    finally:
        for value in made:
            tenants.admin("POST", "/key/delete", json={"keys": [value]})
    print(f"[chaos] isolation checked for {len(pairs)} tenant pairs ({calls} calls)", flush=True)
    return violations


def final_checks(
    tenants: Tenants,
    agent_secrets: AgentSecrets,
    namespaces: list[str],
    population: list[Tenant],
    evidence: Callable[[Tenant], str],
) -> list[str]:
    """DESIGN §5 after the storm, in Platform mode, asked of LiteLLM and the API server."""
    violations: list[str] = []
    snapshot = Snapshot.take(tenants)
    vks = agent_secrets.all(namespaces)
    platform_fp = fingerprint_of(PLATFORM_KEY)
    live_tokens: set[str] = set()
    for t in population:
        problems: list[str] = []
        mine = snapshot.of(t.uid)
        vk = vks.get(t.label)
        if not vk:
            problems.append("no virtual key in the gateway Secret")
        keys = mine["keys"]
        if len(keys) != 1:
            problems.append(f"{len(keys)} live virtual keys: {Snapshot.names(mine)['keys']}")
        if vk and keys and keys[0].get("token") != token_of(vk):
            problems.append(
                f"the live key {keys[0].get('key_alias')} is not the one in {t.name}-llm-gateway"
            )
        if vk:
            live_tokens.add(token_of(vk))
            call = agent_call(tenants, vk, OPENAI_MODEL)
            if call.status != 200 or call.fingerprint != platform_fp:
                problems.append(f"the published key does not reach the platform key: {call}")
            info = tenants.admin("GET", "/key/info", params={"key": vk}).get("info") or {}
            if info.get("models") != PLATFORM_MODELS:
                problems.append(f"the virtual key names models {info.get('models')!r}")
            if not str(info.get("key_alias") or "").startswith(f"tlc-{t.uid}-"):
                problems.append(f"unexpected alias {info.get('key_alias')!r}")
            if info.get("team_id") != platform_team(t.uid):
                problems.append(f"the virtual key is in team {info.get('team_id')!r}")
        names = Snapshot.names(mine)
        if names["credentials"] or names["deployments"] or names["teams"] != [platform_team(t.uid)]:
            problems.append(f"BYOK objects left in Platform mode (or no platform team): {names}")
        # The budget belongs to the platform team and outlives every key and mode switch.
        team = (
            tenants.admin("GET", "/team/info", params={"team_id": platform_team(t.uid)}).get(
                "team_info"
            )
            or {}
        )
        if (team.get("max_budget"), team.get("budget_duration")) != PLATFORM_BUDGET:
            problems.append(
                f"the platform team's budget is {team.get('max_budget')!r}/"
                f"{team.get('budget_duration')!r}, not {PLATFORM_BUDGET}"
            )
        if (team.get("metadata") or {}).get("model_config"):
            problems.append("the platform team still maps models to credentials")
        for old in t.retired_vks:
            if old and old != vk and agent_call(tenants, old, OPENAI_MODEL).status != 401:
                problems.append("a replaced virtual key still works")
        if problems:
            violations.append(f"{t.label}: " + "; ".join(problems) + "\n" + evidence(t))
    # No keys besides the live ones: anything in LiteLLM tagged with these namespaces.
    ours = [
        k
        for k in snapshot.keys
        if any(f'"{ns}"' in json.dumps(k.get("metadata") or {}) for ns in namespaces)
    ]
    extra = [k.get("key_alias") for k in ours if k.get("token") not in live_tokens]
    if extra:
        violations.append(f"keys besides the live ones tagged with the test namespaces: {extra}")

    # ... nor teams besides the platform teams, nor any credential, nor per-tenant deployments.
    def tagged(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [o for o in objects if any(f'"{ns}"' in json.dumps(o) for ns in namespaces)]

    platform_teams = {platform_team(t.uid) for t in population}
    teams = tagged(snapshot.teams)
    extra_teams = [t.get("team_id") for t in teams if t.get("team_id") not in platform_teams]
    if extra_teams:
        violations.append(f"teams tagged with the test namespaces: {extra_teams}")
    extra_creds = [c.get("credential_name") for c in tagged(snapshot.credentials)]
    if extra_creds:
        violations.append(f"credentials tagged with the test namespaces: {extra_creds}")
    per_tenant = [
        (d.get("model_info") or {}).get("id")
        for d in tagged(snapshot.deployments)
        if d.get("model_name") not in SHARED.values()
    ]
    if per_tenant:
        violations.append(f"per-tenant deployments tagged with the test namespaces: {per_tenant}")
    print(
        f"[chaos] verified {len(population)} tenants: {len(live_tokens)} live keys, "
        f"{len(ours)} keys and {len(teams)} teams tagged with the test namespaces; "
        f"shared deployments {snapshot.shared()}",
        flush=True,
    )
    return violations


def leftovers(
    tenants: Tenants, agent_secrets: AgentSecrets, namespaces: list[str], uids: dict[str, Tenant]
) -> dict[str, Any]:
    """Anything carrying a deleted tenant's uid: LiteLLM objects, vault and gateway Secrets."""
    snapshot = Snapshot.take(tenants)
    found: dict[str, Any] = {}
    for uid, t in uids.items():
        objects = Snapshot.names(snapshot.of(uid))
        if any(objects.values()):
            found[t.label] = objects
    vaults = json.loads(
        tenants.cluster.kubectl("get", "secrets", "-n", OPERATOR_NAMESPACE, "-o", "json").stdout
    )["items"]
    stale = [
        v["metadata"]["name"] for v in vaults if any(uid in v["metadata"]["name"] for uid in uids)
    ]
    if stale:
        found["vault Secrets"] = stale
    gateway = list(agent_secrets.all(namespaces))
    if gateway:
        found["gateway Secrets"] = gateway
    return found


def vault_plaintext(cluster: Cluster) -> str:
    """The decoded data of the operator's vault Secrets: encrypted copies only, never a key."""
    items = json.loads(
        cluster.kubectl("get", "secrets", "-n", OPERATOR_NAMESPACE, "-o", "json").stdout
    )["items"]
    return "\n".join(
        base64.b64decode(v).decode(errors="replace")
        for item in items
        if item["metadata"]["name"].startswith("tlc-vault-")
        for v in (item.get("data") or {}).values()
    )


def canary_scan(
    cluster: Cluster,
    operator: OperatorProcess,
    tlcs_text: str,
    vault_text: str,
    planted: list[str],
    issued: set[str],
) -> list[str]:
    secrets_all = json.loads(cluster.kubectl("get", "secrets", "-A", "-o", "json").stdout)["items"]
    places = {
        "operator logs": operator.all_logs(),
        "events": cluster.kubectl("get", "events", "-A", "-o", "json").stdout,
        "TenantLLMConfigs": tlcs_text + cluster.kubectl("get", "tlc", "-A", "-o", "json").stdout,
        "Secret metadata": json.dumps([s["metadata"] for s in secrets_all]),
        "vault Secrets (decoded)": vault_text,
    }
    violations = [
        *(f"a provider key {found}" for found in leaks(planted, places, suffix=12)),
        *(f"a virtual key {found}" for found in leaks(issued, places, suffix=12)),
    ]
    print(
        f"[chaos] canary scan: {len(planted)} provider keys, {len(issued)} virtual keys, "
        f"{len(places)} places",
        flush=True,
    )
    return violations
