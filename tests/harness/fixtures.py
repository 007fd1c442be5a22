"""pytest plugin: a real API server for the session (`cluster`) and a fresh `namespace` per test.

BYOK_TEST_KUBECONFIG runs the suite against an existing cluster instead of starting one;
BYOK_TEST_CRD_DIR installs CRDs from another directory than the repository's crds/.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster import (
    REPO_ROOT,
    Cluster,
    bootstrap_tenants,
    delete_namespace,
    external_cluster,
    install_crds,
    start_cluster,
)


def _crd_dir() -> Path:
    return Path(os.environ.get("BYOK_TEST_CRD_DIR") or REPO_ROOT / "crds")


def _prepare(cluster: Cluster) -> None:
    """What every cluster test may assume: tenant namespaces, their RBAC, and our CRDs."""
    bootstrap_tenants(cluster)
    install_crds(cluster, _crd_dir())


_NOTES = pytest.StashKey[list[str]]()


def _report(request: pytest.FixtureRequest, message: str) -> None:
    """Queue a line for the terminal summary: fixture teardown output is captured and lost."""
    request.config.stash.setdefault(_NOTES, []).append(message)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the cluster fixture asked to be told (e.g. where its logs are)."""
    for note in terminalreporter.config.stash.get(_NOTES, []):
        terminalreporter.write_line(note)


def _clean_up(request: pytest.FixtureRequest, state_dir: Path, passed: bool) -> None:
    """Drop the etcd data (large, worthless once stopped); keep the logs and point at them
    when something failed, since the API server log is where a failure's cause shows."""
    shutil.rmtree(state_dir / "etcd", ignore_errors=True)
    if not passed:
        _report(request, f"cluster logs kept: {state_dir}/{{etcd,kube-apiserver}}.log")


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """The session's Kubernetes API server, with tenants bootstrapped and CRDs established."""
    external = os.environ.get("BYOK_TEST_KUBECONFIG")
    if external:
        cluster = external_cluster(Path(external))
        _prepare(cluster)
        yield cluster
        return
    state_dir = tmp_path_factory.mktemp("k8s")
    cluster = start_cluster(state_dir)
    passed = False
    try:
        _prepare(cluster)
        yield cluster
        passed = request.session.testsfailed == 0
    finally:
        cluster.stop()
        _clean_up(request, state_dir, passed)


def _namespace_name(test_name: str) -> str:
    """A unique DNS label that still says which test made it."""
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].rstrip("-")
    return f"t-{stem}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own, deleted (with its contents) afterwards."""
    name = _namespace_name(request.node.name)
    cluster.kubectl("create", "namespace", name)
    yield name
    delete_namespace(cluster, name)
