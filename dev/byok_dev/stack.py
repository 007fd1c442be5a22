"""One development stack: a control plane, the LiteLLM test bed, the provider stand-ins and the
operator, each a real local process on 127.0.0.1, all under one state directory:

    STATE/cluster/            kube-apiserver + etcd (+ controller-manager): byok_dev.cluster
    STATE/litellm/            the LiteLLM test bed (../shared/litellm-testbed)
    STATE/provider-stub.json  the stand-ins' URLs and key overrides (fingerprints), their
                              .pid and .log beside it
    STATE/operator/           the operator's logs, operator.pid and its encryption keys

The pytest fixtures, ``make cluster-up``, ``make demo`` and ``make bench`` all start parts
through a ``Stack``: ``start_*`` one part at a time (callers overlap the slow ones),
``attach`` to what an earlier ``--keep`` run left, ``stop`` by recorded PID whatever runs in
the state directory - the processes this object started and the ones an earlier run left,
never a process it cannot prove is its own (``byok_dev.process.owned_pid``).

``BYOK_TEST_KUBECONFIG`` uses an existing cluster and ``LITELLM_URL`` + ``LITELLM_MASTER_KEY``
an existing proxy; those are never stopped.

Command line:  python -m byok_dev.stack up|down STATE   (``make cluster-up`` / ``cluster-down``:
``up`` starts a detached control plane with the test users and the repository's CRDs;
``down`` stops every part recorded in STATE).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from byok_dev import provider_stub
from byok_dev.cluster import (
    PROCESSES,
    REPO_ROOT,
    Cluster,
    ClusterError,
    KubectlError,
    bootstrap_tenants,
    external_cluster,
    install_crds,
    load_cluster,
    start_cluster,
    stop_cluster,
)
from byok_dev.litellm import (
    DEFAULT_CONFIG,
    LiteLLMTestbed,
    external_testbed,
    parse_env_lines,
    start_testbed,
    stop_testbed,
)
from byok_dev.operator import (
    OPERATOR_NAMESPACE,
    PLATFORM_KEY,
    OperatorProcess,
    operator_env,
    owned_operator_pid,
)
from byok_dev.process import recorded_pid, terminate
from byok_dev.provider_stub import ProviderStub, owned_stub_pid
from byok_dev.tenants import Tenants

CRD_DIR = REPO_ROOT / "crds"
STUB_STATE = "provider-stub.json"
LITELLM_CONFIG = "litellm.yaml"
T = TypeVar("T")
LITELLM_PIDS = ("LITELLM_PID", "POSTGRES_PID", "LITELLM_QE_PID", "QE_PID")


class StackError(RuntimeError):
    """A part of the stack could not be started or stopped; the message names it."""


@dataclass
class Stack:
    """The parts of one development stack (see the module docstring)."""

    state: Path
    detach: bool = False  # --keep: the parts outlive this process
    cluster: Cluster | None = None
    litellm: LiteLLMTestbed | None = None
    stub: ProviderStub | None = None
    operator: OperatorProcess | None = None

    def __post_init__(self) -> None:
        self.state = self.state.resolve()
        self.state.mkdir(parents=True, exist_ok=True)

    @property
    def cluster_dir(self) -> Path:
        return self.state / "cluster"

    @property
    def litellm_dir(self) -> Path:
        return self.state / "litellm"

    @property
    def operator_dir(self) -> Path:
        return self.state / "operator"

    @property
    def stub_state(self) -> Path:
        return self.state / STUB_STATE

    # --- starting -------------------------------------------------------------------------

    def start_cluster(self, *, test_users: bool = False) -> Cluster:
        """The control plane with the CRDs established and the operator's namespace; an
        existing cluster with BYOK_TEST_KUBECONFIG. ``test_users`` also creates the tenant
        namespaces and RBAC of the test users (the test suite's, never on its own)."""
        external = os.environ.get("BYOK_TEST_KUBECONFIG")
        if external:
            self.cluster = external_cluster(Path(external))
        else:
            self.cluster = start_cluster(self.cluster_dir, detach=self.detach)
        prepare_cluster(self.cluster, test_users=test_users)
        return self.cluster

    def start_stub(self) -> ProviderStub:
        """The stand-ins as a process; refused while an earlier run's still runs here (its
        PID would be lost: stop the stack first)."""
        if (pid := owned_stub_pid(self.stub_state)) is not None:
            raise RuntimeError(
                f"provider stand-ins (pid {pid}) from an earlier run still run in {self.state}; "
                f"stop them first: python -m byok_dev.stack down {self.state}"
            )
        self.stub = provider_stub.start_process(self.stub_state, detach=self.detach)
        return self.stub

    def start_litellm(
        self, config: Path | None = None, env: Mapping[str, str] | None = None
    ) -> LiteLLMTestbed:
        """The test bed with this config file (default: DEFAULT_CONFIG), by default its
        platform model pointed at the stand-ins with the platform key (start them first)."""
        if config is None:
            config = self.state / LITELLM_CONFIG
            config.write_text(DEFAULT_CONFIG)
        if env is None:
            stub = self._need(self.stub, "start_stub")
            env = {
                "PLATFORM_OPENAI_API_BASE": stub.openai_base_url,
                "PLATFORM_OPENAI_API_KEY": PLATFORM_KEY,
            }
        self.litellm = start_testbed(self.litellm_dir, config, env)
        return self.litellm

    def operator_process(
        self, extra: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> OperatorProcess:
        """The operator, configured for this stack's parts and not started yet (benchmarks
        start it when their clock starts)."""
        cluster = self._need(self.cluster, "start_cluster")
        litellm = self._need(self.litellm, "start_litellm")
        stub = self._need(self.stub, "start_stub")
        self.operator_dir.mkdir(parents=True, exist_ok=True)
        for old in self.operator_dir.glob("operator-*.log"):
            old.unlink()
        env = operator_env(
            kubeconfig=cluster.kubeconfig,
            litellm_url=litellm.url,
            master_key=litellm.master_key,
            openai_base_url=stub.openai_base_url,
            anthropic_base_url=stub.anthropic_base_url,
            state_dir=self.operator_dir,
            extra=dict(extra or {}),
        )
        self.operator = OperatorProcess(self.operator_dir, env, args, detach=self.detach)
        return self.operator

    @property
    def tenants(self) -> Tenants:
        return Tenants(
            self._need(self.cluster, "start_cluster"), self._need(self.litellm, "start_litellm")
        )

    # --- finding and stopping -------------------------------------------------------------

    @classmethod
    def attach(cls, state: Path) -> Stack:
        """The parts an earlier run left running in ``state`` (the operator is only stopped,
        not driven: ``stop`` finds it by PID)."""
        stack = cls(state, detach=True)
        stack.cluster = load_cluster(stack.cluster_dir)
        env_file = stack.litellm_dir / "env"
        if external_testbed() is None and stack.litellm_running() and env_file.exists():
            values = parse_env_lines(env_file.read_text())
            if "LITELLM_URL" in values:
                stack.litellm = LiteLLMTestbed(
                    url=values["LITELLM_URL"],
                    master_key=values.get("LITELLM_MASTER_KEY", ""),
                    state_dir=stack.litellm_dir,
                    external=False,
                    values=values,
                )
        if owned_stub_pid(stack.stub_state) is not None:
            stack.stub = ProviderStub(provider_stub.saved_url(stack.stub_state))
        return stack

    def litellm_running(self) -> bool:
        """Whether a process the test bed recorded is alive (its `down` checks them properly)."""
        return any(Path(f"/proc/{pid}").exists() for pid in self._litellm_pids())

    def _litellm_values(self) -> dict[str, str]:
        """The PIDs the test bed recorded (testbed.pids), and what its `up` printed."""
        pids_file = self.litellm_dir / "testbed.pids"
        values = parse_env_lines(pids_file.read_text()) if pids_file.exists() else {}
        return {**values, **(self.litellm.values if self.litellm is not None else {})}

    def _litellm_pids(self) -> list[int]:
        values = self._litellm_values()
        return [int(values[n]) for n in LITELLM_PIDS if values.get(n, "").isdigit()]

    def pids(self) -> dict[str, int]:
        """The root process of every running part (its children belong to it)."""
        found: dict[str, int] = {}
        if (pid := owned_operator_pid(self.operator_dir)) is not None:
            found["operator"] = pid
        if (pid := owned_stub_pid(self.stub_state)) is not None:
            found["provider-stub"] = pid
        if self.litellm is None or not self.litellm.external:
            values = self._litellm_values()
            for name in ("LITELLM_PID", "POSTGRES_PID"):
                if values.get(name, "").isdigit():
                    found[name.removesuffix("_PID").lower()] = int(values[name])
        for name in PROCESSES:
            if (pid := recorded_pid(self.cluster_dir, name)) is not None:
                found[name] = pid
        return found

    def all_pids(self) -> list[int]:
        """Every recorded root, the test bed's helpers included."""
        return sorted({*self.pids().values(), *self._litellm_pids()})

    def stop(self) -> list[str]:
        """Stop, by recorded PID, what runs in the state dir: operator, LiteLLM, stand-ins,
        control plane (clients first). Safe when nothing runs; returns what was stopped. A
        part that fails to stop does not keep the others running: the failures are raised
        together at the end."""
        stopped: list[str] = []
        failed: list[str] = []
        for what, step in (
            ("operator", self._stop_operator),
            ("LiteLLM test bed", self._stop_litellm),
            ("provider stand-ins", self._stop_stub),
            ("control plane", self._stop_cluster),
        ):
            try:
                stopped += step()
            except Exception as exc:
                failed.append(f"{what}: {exc}")
        if failed:
            raise StackError("could not stop " + "; ".join(failed))
        return stopped

    def _stop_operator(self) -> list[str]:
        stopped = []
        proc = self.operator.proc if self.operator is not None else None
        if self.operator is not None and proc is not None and proc.poll() is None:
            self.operator.stop()
            stopped.append(f"operator (pid {proc.pid})")
        if (pid := owned_operator_pid(self.operator_dir)) is not None:
            terminate(pid, group=True)
            stopped.append(f"operator (pid {pid})")
        (self.operator_dir / "operator.pid").unlink(missing_ok=True)
        return stopped

    def _stop_litellm(self) -> list[str]:
        if external_testbed() is not None or not self.litellm_dir.exists():
            return []
        running = self.litellm_running()
        stop_testbed(self.litellm_dir)
        return ["LiteLLM test bed"] if running else []

    def _stop_stub(self) -> list[str]:
        pid = provider_stub.stop_owned(self.stub_state)
        return [f"provider stand-ins (pid {pid})"] if pid is not None else []

    def _stop_cluster(self) -> list[str]:
        if (self.cluster_dir / "state.json").exists() or list(self.cluster_dir.glob("*.pid")):
            stop_cluster(self.cluster_dir)
            return ["kube-apiserver + etcd"]
        return []

    def kept(self) -> list[str]:
        """What a --keep run leaves running, and how to reach and stop it."""
        lines = []
        if self.cluster is not None:
            lines.append(f"export KUBECONFIG={self.cluster.kubeconfig}")
        if self.litellm is not None:
            lines.append(f"LiteLLM: {self.litellm.url}  (master key in {self.litellm_dir}/env)")
        if self.operator is not None:
            lines.append(f"operator log: {self.operator.log_path}")
        if self.stub is not None:
            lines.append(f"provider stand-ins: {self.stub.url} (control API /_control/)")
        lines.append(f"stop everything:  {sys.executable} -m byok_dev.stack down {self.state}")
        return lines

    @staticmethod
    def _need(part: T | None, start: str) -> T:
        if part is None:
            raise RuntimeError(f"this part of the stack is not running: call Stack.{start}()")
        return part


def prepare_cluster(cluster: Cluster, *, test_users: bool) -> None:
    """What every user of the stack may assume: the CRDs established and the operator's
    namespace; with ``test_users``, the tenant namespaces and RBAC of the test users."""
    if test_users:
        bootstrap_tenants(cluster)
    install_crds(cluster, Path(os.environ.get("BYOK_TEST_CRD_DIR") or CRD_DIR))
    cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)


def _up(state: Path) -> None:
    """Start (or find) a detached local control plane, then bring the test users and the
    repository's CRDs up to date, so re-running `make cluster-up` after editing crds/ is the
    dev loop. Always local: BYOK_TEST_KUBECONFIG is for the tests, demo and bench."""
    stack = Stack.attach(state)
    cluster = stack.cluster
    if cluster is None:
        started = time.monotonic()
        cluster = start_cluster(stack.cluster_dir, detach=True)
        elapsed = time.monotonic() - started
        print(f"cluster up at {cluster.server} in {elapsed:.1f}s", file=sys.stderr)
    else:
        print(f"cluster already running at {cluster.server}", file=sys.stderr)
    prepare_cluster(cluster, test_users=True)
    print(f"export KUBECONFIG={cluster.kubeconfig}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m byok_dev.stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("state", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            _up(args.state)
        else:
            stopped = Stack(args.state).stop()
            print("stopped: " + (", ".join(stopped) or "nothing was running"), file=sys.stderr)
    except (ClusterError, KubectlError, StackError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
