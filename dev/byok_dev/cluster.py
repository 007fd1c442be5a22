"""A real Kubernetes control plane on loopback for tests and the demo (the envtest pattern).

Starts etcd and kube-apiserver with RBAC on and four static-token users, so tests can
prove what a tenant admin and a viewer may and may not do against the real authorizer.
No scheduler or kubelet: nothing runs pods. If the bin dir also holds
kube-controller-manager, it runs only the garbage collector and the namespace controller,
so ownerReferences and namespace deletion behave as on a real cluster.

Set BYOK_TEST_KUBECONFIG to run the same tests against an existing cluster (kind, CI),
where the users are emulated with impersonation; BYOK_K8S_BIN_DIR to use prebuilt
binaries instead of hack/build-k8s-binaries.sh.

Started through ``byok_dev.stack`` (also ``make cluster-up`` / ``cluster-down``).
"""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from byok_dev.process import LOOPBACK, STOP_TIMEOUT, free_port, owned_pid, spawn, terminate
from byok_dev.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-k8s-binaries.sh"
BINARIES = ("etcd", "kube-apiserver", "kubectl")
CONTROLLER_MANAGER = "kube-controller-manager"  # optional: used when the bin dir has it
PROCESSES = (CONTROLLER_MANAGER, "kube-apiserver", "etcd")  # stop order: clients first
REQUIRED_PROCESSES = ("kube-apiserver", "etcd")

ADMIN = "admin"
PLATFORM_ADMIN = "platform-admin"
PLATFORM_ADMINS_GROUP = "byok:platform-admins"  # the chart's default admissionPolicy group
USERS = (ADMIN, "tenant-a-admin", "tenant-b-admin", "viewer", PLATFORM_ADMIN)
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
# Only what API-level tests observe: owner-reference garbage collection and namespace
# deletion. Nothing that schedules or runs pods.
CONTROLLERS = "garbagecollector,namespace"
TENANTS = {"tenant-a": "tenant-a-admin", "tenant-b": "tenant-b-admin"}
CLUSTER_NAME = "byok-envtest"
FIELD_MANAGER = "byok-test-harness"

SERVICE_CIDR = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"  # first address of SERVICE_CIDR; the serving cert names it

COMPONENT_READY_TIMEOUT = 30.0  # etcd, controller-manager
APISERVER_READY_TIMEOUT = 120.0
START_ATTEMPTS = 3  # free ports are picked then bound by another process: a rare race


class ClusterError(RuntimeError):
    """The control plane could not be built, started or reached."""


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call whose message carries kubectl's stderr, so test failures say why."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr or ''}".rstrip()


@dataclass
class Cluster:
    """A reachable API server plus the kubectl and kubeconfig to talk to it as each test user.

    For a local cluster the kubeconfig has one context per user in USERS ("admin" is
    current). For an external cluster the kubeconfig is the user's own: "admin" is its
    current context and the others are emulated by impersonation in `kubectl()`.
    """

    kubeconfig: Path
    server: str
    state_dir: Path | None
    kubectl_path: Path
    external: bool
    processes: list[subprocess.Popen[bytes]] = field(
        default_factory=list, repr=False, compare=False
    )
    _admin_client: Any = field(default=None, init=False, repr=False, compare=False)

    def read(self, path: str) -> dict[str, Any] | None:
        """GET an API path (``/api/v1/namespaces/x/secrets/y``) as admin; None if it is not
        there. For the polls tests make several times a second: a kubectl process costs about
        80 CPU-ms a call, taken from the operator and LiteLLM on a 2-core machine; this goes
        through the official client loaded from the same kubeconfig (any auth it holds)."""
        client = self._admin()
        method, url, headers, _, _ = client.param_serialize(
            "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
        )
        response = client.call_api(method, url, header_params=headers, _request_timeout=30)
        response.read()
        if response.status == 404:
            return None
        if response.status >= 300:
            raise ClusterError(f"GET {path} answered {response.status}: {response.data[:300]!r}")
        return dict(json.loads(response.data))

    def _admin(self) -> Any:
        if self._admin_client is None:
            from kubernetes import config as kube_config

            self._admin_client = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(self.kubeconfig)
            )
        return self._admin_client

    def kubectl(
        self,
        *args: str,
        context: str = ADMIN,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the given test user; with check, a failure raises KubectlError."""
        argv = [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig)]
        argv += self._user_args(context) + self._cache_args() + list(args)
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def server_side_apply(
        self,
        objects: Iterable[dict[str, Any]],
        *,
        field_manager: str | None = FIELD_MANAGER,
        timeout: float = 120,
    ) -> None:
        """One server-side apply for many objects (client-side apply would copy a Secret's
        data into the last-applied annotation). ``field_manager=None``: kubectl's own."""
        manager = [f"--field-manager={field_manager}"] if field_manager else []
        items = list(objects)
        body = items[0] if len(items) == 1 else {"apiVersion": "v1", "kind": "List", "items": items}
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            *manager,
            "-f",
            "-",
            input=json.dumps(body),
            timeout=timeout,
        )

    def env(self) -> dict[str, str]:
        """Environment for a child process (the operator, a CLI) that should use this cluster."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        if self.state_dir is not None:
            env["KUBECACHEDIR"] = str(self.state_dir / "kubectl-cache")
        return env

    def stop(self) -> None:
        """Stop a local cluster and reap the processes this interpreter started."""
        if self.state_dir is not None and not self.external:
            stop_cluster(self.state_dir)
        for process in self.processes:
            process.poll()

    @property
    def has_controllers(self) -> bool:
        """Whether ownerReference garbage collection and namespace deletion happen.

        Always on a real cluster; locally only when kube-controller-manager was started.
        """
        if self.external or self.state_dir is None:
            return True
        return _owned_pid(self.state_dir, CONTROLLER_MANAGER) is not None

    def _user_args(self, context: str) -> list[str]:
        if context not in USERS:
            raise ValueError(f"unknown test user {context!r}; expected one of {USERS}")
        if not self.external:
            return ["--context", context]
        if context == ADMIN:
            return []
        groups = ["system:authenticated"] + (
            [PLATFORM_ADMINS_GROUP] if context == PLATFORM_ADMIN else []
        )
        return [f"--as={context}", *(f"--as-group={g}" for g in groups)]

    def _cache_args(self) -> list[str]:
        """Keep a local cluster's discovery cache with its state, not in the user's ~/.kube."""
        if self.state_dir is None:
            return []
        return ["--cache-dir", str(self.state_dir / "kubectl-cache")]


# --- binaries ---------------------------------------------------------------------------


def ensure_binaries() -> Path:
    """Return the directory with etcd, kube-apiserver and kubectl, building them once if needed.

    BYOK_K8S_BIN_DIR skips the build (a developer's own binaries, or a CI cache).
    """
    override = os.environ.get("BYOK_K8S_BIN_DIR")
    if override:
        return _checked_bin_dir(Path(override), "BYOK_K8S_BIN_DIR")
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise ClusterError(f"{BUILD_SCRIPT.name} failed (exit {result.returncode}); see stderr")
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise ClusterError(f"{BUILD_SCRIPT.name} printed no bin directory")
    return _checked_bin_dir(Path(lines[-1]), BUILD_SCRIPT.name)


def _checked_bin_dir(bin_dir: Path, source: str) -> Path:
    missing = [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise ClusterError(f"{source}: {bin_dir} lacks executable {', '.join(missing)}")
    return bin_dir


# --- PKI, tokens, kubeconfig --------------------------------------------------------------


@dataclass(frozen=True)
class _Pki:
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_builder(subject: str, issuer: str, public_key: Any) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
    )


def _ca_cert(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        _cert_builder(f"{CLUSTER_NAME}-ca", f"{CLUSTER_NAME}-ca", key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )


def _serving_cert(
    key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    """The API server's cert: valid for loopback and the in-cluster names a client might use."""
    names: list[x509.GeneralName] = [
        x509.DNSName(name)
        for name in (
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
    ]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in (LOOPBACK, KUBERNETES_SERVICE_IP)]
    return (
        _cert_builder("kube-apiserver", f"{CLUSTER_NAME}-ca", key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write key material readable by the owner only."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def _write_pki(pki_dir: Path) -> _Pki:
    """A throwaway CA, serving cert and service-account signing key for this cluster only."""
    pki_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key, serving_key, sa_key = _new_key(), _new_key(), _new_key()
    pki = _Pki(
        ca_cert=pki_dir / "ca.crt",
        serving_cert=pki_dir / "apiserver.crt",
        serving_key=pki_dir / "apiserver.key",
        sa_key=pki_dir / "sa.key",
        sa_pub=pki_dir / "sa.pub",
    )
    pem = serialization.Encoding.PEM
    pki.ca_cert.write_bytes(_ca_cert(ca_key).public_bytes(pem))
    pki.serving_cert.write_bytes(_serving_cert(serving_key, ca_key).public_bytes(pem))
    _write_private(pki.serving_key, _key_pem(serving_key))
    _write_private(pki.sa_key, _key_pem(sa_key))
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pki.sa_pub.write_bytes(sa_key.public_key().public_bytes(pem, spki))
    return pki


def _write_tokens(path: Path) -> dict[str, str]:
    """Static bearer tokens (token,user,uid,"groups"); only admin and the controller-manager
    are in system:masters, the test users get exactly what bootstrap_tenants grants, and the
    platform admin is in the platform-admins group (DESIGN §7)."""
    users = (*USERS, CONTROLLER_MANAGER_USER)
    tokens = {user: secrets.token_urlsafe(32) for user in users}
    groups = {
        # The suite's cluster admin applies budgets in e2e tests, so it is a platform admin too.
        ADMIN: f"system:masters,{PLATFORM_ADMINS_GROUP}",
        CONTROLLER_MANAGER_USER: "system:masters",
        PLATFORM_ADMIN: PLATFORM_ADMINS_GROUP,
    }
    lines = [f'{tokens[user]},{user},{user},"{groups.get(user, "")}"' for user in users]
    _write_private(path, ("\n".join(lines) + "\n").encode())
    return tokens


def _write_kubeconfig(
    path: Path, server: str, ca_pem: bytes, tokens: dict[str, str], users: tuple[str, ...] = USERS
) -> None:
    """One context per user (the first is current), CA embedded, so it works from anywhere."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": tokens[user]}} for user in users],
        "contexts": [
            {"name": user, "context": {"cluster": CLUSTER_NAME, "user": user}} for user in users
        ],
        "current-context": users[0],
        "preferences": {},
    }
    _write_private(path, yaml.safe_dump(config, sort_keys=False).encode())


# --- processes ----------------------------------------------------------------------------


def _etcd_argv(bin_dir: Path, state_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client = f"http://{LOOPBACK}:{client_port}"
    peer = f"http://{LOOPBACK}:{peer_port}"
    return [
        str(bin_dir / "etcd"),
        "--name=default",
        f"--data-dir={state_dir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync=true",  # throwaway test data: trade durability for speed
        "--log-level=warn",
    ]


def _apiserver_argv(
    bin_dir: Path, state_dir: Path, pki: _Pki, port: int, etcd_port: int
) -> list[str]:
    """Flags for a standalone API server; every listener is on loopback.

    ServiceAccount admission is off because no controller-manager creates the default
    service accounts it would demand; nothing here runs pods anyway.
    """
    return [
        str(bin_dir / "kube-apiserver"),
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={port}",
        f"--etcd-servers=http://{LOOPBACK}:{etcd_port}",
        f"--cert-dir={state_dir / 'pki'}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--service-account-issuer=https://{LOOPBACK}:{port}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--endpoint-reconciler-type=none",  # loopback is no valid Endpoints address
        "--authorization-mode=RBAC",
        f"--token-auth-file={state_dir / 'tokens.csv'}",
        "--disable-admission-plugins=ServiceAccount",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
    ]


def _controller_manager_argv(
    bin_dir: Path, state_dir: Path, kubeconfig: Path, port: int
) -> list[str]:
    return [
        str(bin_dir / CONTROLLER_MANAGER),
        f"--kubeconfig={kubeconfig}",
        f"--controllers={CONTROLLERS}",
        "--leader-elect=false",
        "--use-service-account-credentials=false",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={port}",
        f"--cert-dir={state_dir / 'pki' / CONTROLLER_MANAGER}",
        "--profiling=false",
        "--v=1",
    ]


def _log_tail(state_dir: Path, name: str, lines: int = 40) -> str:
    path = state_dir / f"{name}.log"
    if not path.exists():
        return f"({path} does not exist)"
    tail = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


def _wait_until(
    probe: Callable[[], bool],
    process: subprocess.Popen[bytes],
    name: str,
    state_dir: Path,
    timeout: float,
) -> None:
    """Poll until probe() is true; fail fast if the process exits, and at the deadline."""
    deadline = time.monotonic() + timeout
    while not probe():
        if process.poll() is not None:
            raise ClusterError(
                f"{name} exited with {process.returncode}\n{_log_tail(state_dir, name)}"
            )
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{name} not ready after {timeout:.0f}s\n{_log_tail(state_dir, name)}"
            )
        time.sleep(0.2)


def _http_ok(url: str, context: ssl.SSLContext | None = None, token: str | None = None) -> bool:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return int(response.status) == 200
    except (OSError, http.client.HTTPException):
        return False


# --- lifecycle ----------------------------------------------------------------------------


def start_cluster(
    state_dir: Path, *, detach: bool = False, timeout: float = APISERVER_READY_TIMEOUT
) -> Cluster:
    """Start etcd + kube-apiserver with fresh data, certs and tokens under state_dir.

    With detach the processes outlive this one (`up`); otherwise they die with it, and
    the caller stops them with `Cluster.stop()` or `stop_cluster()`.
    """
    state_dir = state_dir.resolve()
    if _running_pids(state_dir):
        raise ClusterError(f"a cluster is already running in {state_dir}; stop it first")
    bin_dir = ensure_binaries()
    attempts_left = START_ATTEMPTS
    while True:
        try:
            return _start_once(bin_dir, state_dir, detach, timeout)
        except ClusterError as error:
            attempts_left -= 1
            if not attempts_left or "address already in use" not in str(error):
                raise


@dataclass(frozen=True)
class _Launch:
    """What every component's start needs: where things are and how to run them."""

    bin_dir: Path
    state_dir: Path
    detach: bool
    cluster: Cluster


def _start_once(bin_dir: Path, state_dir: Path, detach: bool, timeout: float) -> Cluster:
    _reset_state_dir(state_dir)
    pki = _write_pki(state_dir / "pki")
    tokens = _write_tokens(state_dir / "tokens.csv")
    port = free_port()
    server = f"https://{LOOPBACK}:{port}"
    kubeconfig = state_dir / "kubeconfig"
    _write_kubeconfig(kubeconfig, server, pki.ca_cert.read_bytes(), tokens)
    cluster = Cluster(kubeconfig, server, state_dir, bin_dir / "kubectl", False)
    launch = _Launch(bin_dir, state_dir, detach, cluster)
    try:
        etcd_port = _start_etcd(launch)
        _start_apiserver(launch, pki, port, etcd_port, tokens[ADMIN], timeout)
        if os.access(bin_dir / CONTROLLER_MANAGER, os.X_OK):
            _start_controller_manager(launch, pki, tokens[CONTROLLER_MANAGER_USER])
    except BaseException:
        cluster.stop()
        raise
    _write_state(state_dir, server, cluster.kubectl_path)
    return cluster


def _start(
    launch: _Launch, name: str, argv: list[str], probe: Callable[[], bool], timeout: float
) -> None:
    process = spawn(name, argv, launch.state_dir, detach=launch.detach, cwd=launch.state_dir)
    launch.cluster.processes.append(process)
    _wait_until(probe, process, name, launch.state_dir, timeout)


def _start_etcd(launch: _Launch) -> int:
    client_port, peer_port = free_port(), free_port()
    argv = _etcd_argv(launch.bin_dir, launch.state_dir, client_port, peer_port)
    health = f"http://{LOOPBACK}:{client_port}/health"
    _start(launch, "etcd", argv, lambda: _http_ok(health), COMPONENT_READY_TIMEOUT)
    return client_port


def _start_apiserver(
    launch: _Launch, pki: _Pki, port: int, etcd_port: int, admin_token: str, timeout: float
) -> None:
    """Start the API server and wait for /readyz (which covers etcd and the RBAC bootstrap)."""
    argv = _apiserver_argv(launch.bin_dir, launch.state_dir, pki, port, etcd_port)
    tls = ssl.create_default_context(cafile=str(pki.ca_cert))
    ready = f"{launch.cluster.server}/readyz"
    _start(launch, "kube-apiserver", argv, lambda: _http_ok(ready, tls, admin_token), timeout)


def _start_controller_manager(launch: _Launch, pki: _Pki, token: str) -> None:
    """Start the garbage collector and namespace controller, so ownerReferences and namespace
    deletion behave as on a real cluster."""
    kubeconfig = launch.state_dir / f"{CONTROLLER_MANAGER}.kubeconfig"
    tokens = {CONTROLLER_MANAGER_USER: token}
    ca_pem = pki.ca_cert.read_bytes()
    _write_kubeconfig(kubeconfig, launch.cluster.server, ca_pem, tokens, (CONTROLLER_MANAGER_USER,))
    port = free_port()
    argv = _controller_manager_argv(launch.bin_dir, launch.state_dir, kubeconfig, port)
    tls = ssl.create_default_context()
    tls.check_hostname = False  # its serving cert is self-made in its cert dir; we only
    tls.verify_mode = ssl.CERT_NONE  # ask /healthz, and send no credentials
    healthz = f"https://{LOOPBACK}:{port}/healthz"
    _start(
        launch, CONTROLLER_MANAGER, argv, lambda: _http_ok(healthz, tls), COMPONENT_READY_TIMEOUT
    )


def _reset_state_dir(state_dir: Path) -> None:
    """Fresh etcd data and logs each start: a restart on old data is not a use case here."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.rmtree(state_dir / "etcd", ignore_errors=True)
    for name in PROCESSES:
        (state_dir / f"{name}.log").unlink(missing_ok=True)
    (state_dir / "state.json").unlink(missing_ok=True)


def _write_state(state_dir: Path, server: str, kubectl_path: Path) -> None:
    state = {"server": server, "kubectl": str(kubectl_path)}
    (state_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def load_cluster(state_dir: Path) -> Cluster | None:
    """The cluster a previous `up` left running in state_dir, or None."""
    state_dir = state_dir.resolve()
    state_file = state_dir / "state.json"
    if not state_file.exists() or not set(REQUIRED_PROCESSES) <= _running_pids(state_dir).keys():
        return None
    state = json.loads(state_file.read_text())
    return Cluster(
        kubeconfig=state_dir / "kubeconfig",
        server=state["server"],
        state_dir=state_dir,
        kubectl_path=Path(state["kubectl"]),
        external=False,
    )


def _owned_pid(state_dir: Path, name: str) -> int | None:
    """The recorded PID of a component, if it still runs and its command line names the
    binary and this state dir."""
    return owned_pid(state_dir, name, program=name, arg_under=state_dir)


def _running_pids(state_dir: Path) -> dict[str, int]:
    pids = {name: _owned_pid(state_dir, name) for name in PROCESSES}
    return {name: pid for name, pid in pids.items() if pid is not None}


def stop_cluster(state_dir: Path, timeout: float = STOP_TIMEOUT) -> None:
    """Stop the processes recorded in state_dir: SIGTERM, then SIGKILL after the deadline."""
    state_dir = state_dir.resolve()
    for name, pid in _running_pids(state_dir).items():
        terminate(pid, timeout=timeout)
        (state_dir / f"{name}.pid").unlink(missing_ok=True)
    (state_dir / "state.json").unlink(missing_ok=True)


def external_cluster(kubeconfig: Path) -> Cluster:
    """Use an existing cluster (kind, CI) through its kubeconfig's current context; start nothing.

    That context must be allowed to impersonate: the test users do not exist there.
    """
    kubeconfig = kubeconfig.resolve()
    if not kubeconfig.is_file():
        raise ClusterError(f"BYOK_TEST_KUBECONFIG={kubeconfig} is not a file")
    kubectl_path = _external_kubectl()
    cluster = Cluster(kubeconfig, "", None, kubectl_path, True)
    jsonpath = "{.clusters[0].cluster.server}"
    cluster.server = cluster.kubectl(
        "config", "view", "--minify", "-o", f"jsonpath={jsonpath}"
    ).stdout
    return cluster


def _external_kubectl() -> Path:
    """BYOK_K8S_BIN_DIR's kubectl, else the one on PATH, else the pinned build."""
    override = os.environ.get("BYOK_K8S_BIN_DIR")
    if override:
        return _checked_bin_dir(Path(override), "BYOK_K8S_BIN_DIR") / "kubectl"
    on_path = shutil.which("kubectl")
    return Path(on_path) if on_path else ensure_binaries() / "kubectl"


# --- cluster contents ---------------------------------------------------------------------

_CRUD = ["get", "list", "watch", "create", "update", "patch", "delete"]
_READ = ["get", "list", "watch"]


def _tenant_rbac(namespace: str, user: str) -> list[dict[str, Any]]:
    """A tenant admin manages TenantLLMConfigs and Secrets and reads events in one namespace."""
    rules = [
        {"apiGroups": ["llm.byok.io"], "resources": ["tenantllmconfigs"], "verbs": _CRUD},
        {"apiGroups": ["llm.byok.io"], "resources": ["tenantllmconfigs/status"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": _CRUD},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": _READ},
    ]
    meta = {"name": "byok-tenant-admin", "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": meta["name"],
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    ]


def _cluster_role(
    name: str, rules: list[dict[str, Any]], subject: dict[str, str]
) -> list[dict[str, Any]]:
    """A ClusterRole and its ClusterRoleBinding to one user or group."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", **subject}],
        },
    ]


def _viewer_rbac() -> list[dict[str, Any]]:
    """The viewer reads TenantLLMConfigs cluster-wide and nothing else (no Secrets)."""
    rules = [{"apiGroups": ["llm.byok.io"], "resources": ["tenantllmconfigs"], "verbs": _READ}]
    return _cluster_role("byok-tenantllmconfig-viewer", rules, {"kind": "User", "name": "viewer"})


def _platform_admin_rbac() -> list[dict[str, Any]]:
    """Platform admins (a group) manage TenantLLMConfigs in every namespace; what only they
    may change in one is the admission policy's business, not RBAC's."""
    rules = [
        {"apiGroups": ["llm.byok.io"], "resources": ["tenantllmconfigs"], "verbs": _CRUD},
        {"apiGroups": ["llm.byok.io"], "resources": ["tenantllmconfigs/status"], "verbs": ["get"]},
    ]
    group = {"kind": "Group", "name": PLATFORM_ADMINS_GROUP}
    return _cluster_role("byok-platform-admin", rules, group)


def bootstrap_tenants(cluster: Cluster) -> None:
    """Namespaces tenant-a and tenant-b with their admins' RBAC, the viewer and the platform
    admins; idempotent."""
    objects: list[dict[str, Any]] = []
    for namespace, user in TENANTS.items():
        objects += _tenant_rbac(namespace, user)
    cluster.server_side_apply(objects + _viewer_rbac() + _platform_admin_rbac())


def install_crds(cluster: Cluster, crd_dir: Path, timeout: float = 60) -> None:
    """Apply every CRD in crd_dir and wait until the API server serves each of them."""
    applied = cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={FIELD_MANAGER}",
        "-o",
        "name",
        "-f",
        str(crd_dir),
    )
    names = applied.stdout.split()
    if not names:
        raise ClusterError(f"no CRDs found in {crd_dir}")

    # Polled rather than `kubectl wait`: right after creation a CRD may have no conditions yet,
    # and kubectl wait then fails at once ("accessor error") instead of waiting.
    def established() -> bool:
        result = cluster.kubectl("get", *names, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        found = json.loads(result.stdout)
        items = found.get("items", [found])
        return len(items) == len(names) and all(
            any(
                c.get("type") == "Established" and c.get("status") == "True"
                for c in (item.get("status") or {}).get("conditions") or []
            )
            for item in items
        )

    wait_for(established, timeout=timeout, what=f"CRDs {', '.join(names)} to be Established")


def delete_namespace(cluster: Cluster, name: str, timeout: float = 60) -> None:
    """Delete a namespace and what is in it, without waiting for finalizers.

    Without a namespace controller (a local cluster whose bin dir has no
    kube-controller-manager) a deleted namespace would stay Terminating with its contents
    forever. Then the harness does the controller's job roughly: delete every listable
    namespaced object (owners' finalizers still run if the operator is up), then remove
    the namespace through its finalize subresource.
    """
    emulate = not cluster.has_controllers
    if emulate:
        _delete_contents(cluster, name, timeout)
    cluster.kubectl(
        "delete", "namespace", name, "--wait=false", "--ignore-not-found", timeout=timeout
    )
    if emulate:
        _finalize_namespace(cluster, name, timeout)


def _delete_contents(cluster: Cluster, namespace: str, timeout: float) -> None:
    types = ",".join(_namespaced_types(cluster))
    cluster.kubectl(
        "delete",
        types,
        "--all",
        "-n",
        namespace,
        "--wait=false",
        "--ignore-not-found",
        timeout=timeout,
    )


def _finalize_namespace(cluster: Cluster, namespace: str, timeout: float) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace},
        "spec": {"finalizers": []},
    }
    cluster.kubectl(
        "replace",
        "--raw",
        f"/api/v1/namespaces/{namespace}/finalize",
        "-f",
        "-",
        input=json.dumps(body),
        check=False,
        timeout=timeout,
    )


def _namespaced_types(cluster: Cluster) -> list[str]:
    """Namespaced resource types that can be listed and deleted (all that `--all` can reach)."""
    return cluster.kubectl(
        "api-resources", "--namespaced=true", "--verbs=list,delete", "-o", "name"
    ).stdout.split()
