"""`kubectl byok`: the admin plugin, against the real API server.

No operator runs here: each test applies TenantLLMConfigs and writes their status itself
(through the status subresource, as the operator does), then reads it back through the
plugin. The tenants' key Secrets hold canary values that must never appear in any output.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from byok_dev.cluster import Cluster
from byok_operator import api
from byok_operator.cli import kubectl_byok
from byok_operator.cli.kubectl_byok import human_duration, status_row
from byok_operator.crypto import Vault, fingerprint

CANARY_OPENAI = "sk-canary-openai-" + "x" * 40
CANARY_ANTHROPIC = "sk-ant-canary-anthropic-" + "y" * 40
ACME_FP = fingerprint(CANARY_OPENAI)
ACME_ANTHROPIC_FP = fingerprint(CANARY_ANTHROPIC)
NOW = datetime(2025, 11, 26, 12, 0, 0, tzinfo=UTC)


def _rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": _rfc3339(datetime.now(UTC) - timedelta(minutes=20)),
        "observedGeneration": 1,
    }


def acme_status() -> dict[str, Any]:
    """BYOK with a failing Anthropic key; times relative to now, so ages read the same whenever it runs."""
    return {
        "observedGeneration": 1,
        "mode": "BYOK",
        "costTracking": "BYOK",
        "spend": "N/A",
        "budget": "N/A",
        "providerNames": "openai,anthropic",
        "providers": [
            {
                "name": "openai",
                "valid": True,
                "keyFingerprint": ACME_FP,
                "modelCount": 2,
                "lastValidated": _rfc3339(datetime.now(UTC) - timedelta(minutes=45)),
                "committedAt": _rfc3339(datetime.now(UTC) - timedelta(days=12)),
            },
            {
                "name": "anthropic",
                "valid": False,
                "keyFingerprint": ACME_ANTHROPIC_FP,
                "modelCount": 0,
                "error": {"reason": "InvalidKey", "message": "Anthropic refused the key (401)."},
            },
        ],
        "virtualKey": {
            "alias": "byok-acme-vk-1",
            "tokenHash": "a1b2c3",
            "secretName": "acme-llm-gateway",
            "issuedAt": _rfc3339(datetime.now(UTC) - timedelta(hours=3, minutes=20)),
        },
        "retiringVirtualKeys": [{"alias": "byok-acme-vk-0", "revokeAfter": "2099-01-01T00:00:00Z"}],
        "conditions": [
            _condition("KeysValid", "False", "InvalidKey", "Anthropic refused the key (401)."),
            _condition(
                "Ready",
                "False",
                "InvalidKey",
                "Anthropic refused the key (401). Agents keep working: still serving the BYOK "
                "virtual key byok-acme-vk-1.",
            ),
        ],
    }


def initech_status() -> dict[str, Any]:
    """Platform and Ready."""
    return {
        "observedGeneration": 1,
        "mode": "Platform",
        "costTracking": "Platform",
        "spend": "$12.34",
        "budget": "$500/30d",
        "providerNames": "platform",
        "virtualKey": {
            "alias": "platform-initech",
            "secretName": "initech-llm-gateway",
            "issuedAt": _rfc3339(datetime.now(UTC) - timedelta(days=3, hours=1)),
        },
        "conditions": [
            _condition("Ready", "True", "Ready", "Platform mode is in effect."),
        ],
    }


def _tenants(namespace: str) -> str:
    """Three tenants: BYOK with a failing key, Platform and Ready, and one with no status."""
    docs = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "acme-llm-keys",
                "namespace": namespace,
                "labels": {api.CREDENTIALS_LABEL: "true"},
            },
            "stringData": {"openai": CANARY_OPENAI, "anthropic": CANARY_ANTHROPIC},
        },
        {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {"name": "acme", "namespace": namespace},
            "spec": {
                "tenantId": "acme-corp",
                "mode": "BYOK",
                "providers": {
                    "openai": {"secretRef": {"name": "acme-llm-keys", "key": "openai"}},
                    "anthropic": {"secretRef": {"name": "acme-llm-keys", "key": "anthropic"}},
                },
                "rotation": {"gracePeriod": "10m"},
            },
        },
        {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {"name": "initech", "namespace": namespace},
            "spec": {"mode": "Platform", "platform": {"budget": {"maxUSD": "500"}}},
        },
        {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {"name": "newcomer", "namespace": namespace},
            "spec": {"mode": "Platform"},
        },
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


def _write_status(cluster: Cluster, namespace: str, name: str, status: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch",
        api.CRD_NAME,
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


@pytest.fixture
def listed_tenants(cluster: Cluster, namespace: str) -> str:
    cluster.kubectl("apply", "-f", "-", input=_tenants(namespace))
    _write_status(cluster, namespace, "acme", acme_status())
    _write_status(cluster, namespace, "initech", initech_status())
    return namespace


def _plugin(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, *args: str
) -> tuple[int, str, str]:
    """Run the plugin in-process against the test cluster; (exit code, stdout, stderr)."""
    code = kubectl_byok.main([*args, "--kubeconfig", str(cluster.kubeconfig)])
    captured = capsys.readouterr()
    for leak in (CANARY_OPENAI, CANARY_ANTHROPIC):
        assert leak not in captured.out + captured.err
    return code, captured.out, captured.err


def _table(text: str) -> list[dict[str, str]]:
    """Parse an aligned table: each column starts where its header starts."""
    header, *lines = [line for line in text.splitlines() if line.strip()]
    titles = [title for title, _ in kubectl_byok.COLUMNS if title in header]
    starts: list[int] = []
    for title in titles:  # in order, so NAME is not found inside NAMESPACE
        starts.append(header.index(title, starts[-1] + 1 if starts else 0))
    ends = [*starts[1:], None]
    return [
        {
            title: line[start:end].strip()
            for title, start, end in zip(titles, starts, ends, strict=True)
        }
        for line in lines
    ]


# --- pure parts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=-3), "0s"),
        (timedelta(seconds=45), "45s"),
        (timedelta(minutes=5, seconds=30), "5m30s"),
        (timedelta(minutes=45), "45m"),
        (timedelta(hours=3, minutes=20), "3h20m"),
        (timedelta(hours=30), "30h"),
        (timedelta(days=3, hours=4), "3d4h"),
        (timedelta(days=90), "90d"),
        (timedelta(days=3 * 365 + 10), "3y10d"),
    ],
)
def test_ages_read_like_kubectl(delta: timedelta, text: str) -> None:
    assert human_duration(delta) == text


def test_row_of_a_tenant_switching_modes() -> None:
    obj = {
        "metadata": {"name": "acme", "namespace": "t", "generation": 3},
        "spec": {"mode": "BYOK", "providers": {"openai": {}}},
        "status": {
            "observedGeneration": 2,
            "mode": "Platform",
            "virtualKey": {"alias": "vk", "issuedAt": _rfc3339(NOW - timedelta(minutes=45))},
            "conditions": [_condition("Ready", "False", "Reconciling", "Switching to BYOK.")],
        },
    }
    row = status_row(obj, NOW)
    assert row.mode == "Platform->BYOK"
    assert row.providers == "openai (not validated)"
    assert row.tenant == "acme"
    assert row.key_age == "45m"
    assert row.message == "(status is for generation 2, spec is at 3) Switching to BYOK."


def test_keygen_prints_only_a_fernet_key_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert kubectl_byok.main(["keygen"]) == 0
    first = capsys.readouterr()
    key = first.out.strip()
    assert first.out == key + "\n"
    Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"probe"))
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert "byok-system/byok-operator-encryption" in first.err
    assert "FIRST" in first.err
    assert "kubectl apply --server-side" in first.err
    assert "deployment/byok-operator" in first.err
    # The hint's check works: the vault's key id is the plugin's fingerprint of the key.
    assert Vault.from_text(key, source="test").primary_id == fingerprint(key)
    assert 'printf %s "$NEW" | kubectl byok fingerprint' in first.err
    assert kubectl_byok.main(["keygen", "--operator-namespace", "ops"]) == 0
    second = capsys.readouterr()
    assert second.out.strip() != key
    assert "kubectl -n ops get secret byok-operator-encryption" in second.err


@pytest.mark.parametrize("trailing_newline", [False, True])
def test_fingerprint_matches_what_the_operator_shows(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, trailing_newline: bool
) -> None:
    data = CANARY_OPENAI + ("\n" if trailing_newline else "")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode())))
    assert kubectl_byok.main(["fingerprint"]) == 0
    out = capsys.readouterr().out
    assert CANARY_OPENAI not in out
    assert out.splitlines()[0] == fingerprint(data)
    if trailing_newline:
        assert f"without it: {ACME_FP}" in out


def test_fingerprint_without_input_explains(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert kubectl_byok.main(["fingerprint"]) == 1
    assert "no key on stdin" in capsys.readouterr().err


# --- against the API server -----------------------------------------------------------------

pytest_cluster = pytest.mark.cluster


@pytest_cluster
def test_status_table_of_a_namespace(
    cluster: Cluster, listed_tenants: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _plugin(capsys, cluster, "status", "-n", listed_tenants)
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["NAME", "TENANT", "MODE"]
    rows = {row["NAME"]: row for row in _table(out)}
    assert set(rows) == {"acme", "initech", "newcomer"}
    acme = rows["acme"]
    assert acme["TENANT"] == "acme-corp"
    assert acme["MODE"] == "BYOK"
    assert acme["PROVIDERS"] == f"openai {ACME_FP}, anthropic {ACME_ANTHROPIC_FP} (InvalidKey)"
    assert (acme["READY"], acme["REASON"]) == ("False", "InvalidKey")
    assert acme["MESSAGE"].startswith("Anthropic refused the key (401). Agents keep working")
    assert (acme["SPEND"], acme["BUDGET"]) == ("N/A", "N/A")
    assert acme["VIRTUAL KEY"] == "byok-acme-vk-1 (+1 retiring)"
    assert acme["KEY AGE"] in {"3h20m", "3h21m"}
    initech = rows["initech"]
    assert (initech["MODE"], initech["PROVIDERS"], initech["READY"]) == (
        "Platform",
        "platform",
        "True",
    )
    assert (initech["SPEND"], initech["BUDGET"]) == ("$12.34", "$500/30d")
    assert (initech["VIRTUAL KEY"], initech["KEY AGE"]) == ("platform-initech", "3d1h")
    newcomer = rows["newcomer"]
    assert (newcomer["MODE"], newcomer["READY"], newcomer["VIRTUAL KEY"]) == (
        "Platform (pending)",
        "Unknown",
        "-",
    )
    assert newcomer["MESSAGE"] == "No status yet: is the operator running?"


@pytest_cluster
def test_status_across_namespaces(
    cluster: Cluster, listed_tenants: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _plugin(capsys, cluster, "status", "-A")
    assert code == 0
    assert out.splitlines()[0].startswith("NAMESPACE")
    mine = [row["NAME"] for row in _table(out) if row["NAMESPACE"] == listed_tenants]
    assert mine == ["acme", "initech", "newcomer"]


@pytest_cluster
def test_status_of_one_tenant_shows_conditions_and_keys(
    cluster: Cluster, listed_tenants: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _plugin(capsys, cluster, "status", "acme", "-n", listed_tenants)
    assert code == 0
    assert [row["NAME"] for row in _table(out.split("\n\n")[0])] == ["acme"]
    assert "  KeysValid=False (InvalidKey, 20m): Anthropic refused the key (401)." in out, out
    assert f"  openai: {ACME_FP}, valid, 2 models, validated 45m ago, live for 12d" in out
    assert f"  anthropic: {ACME_ANTHROPIC_FP}, not valid, 0 models\n" in out
    assert "    InvalidKey: Anthropic refused the key (401)." in out
    assert "Virtual key: byok-acme-vk-1 (hash a1b2c3)" in out
    assert "Secret acme-llm-gateway." in out
    assert "  retiring: byok-acme-vk-0, revoked at 2099-01-01T00:00:00Z" in out


@pytest_cluster
def test_status_needs_no_access_to_secrets(
    cluster: Cluster, listed_tenants: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The viewer reads TenantLLMConfigs and nothing else, and that is enough."""
    if cluster.external:
        pytest.skip("the viewer is a kubeconfig context only on the suite's own API server")
    cannot = cluster.kubectl(
        "auth", "can-i", "get", "secrets", "-n", listed_tenants, context="viewer", check=False
    )
    assert cannot.stdout.strip() == "no"
    code, out, err = _plugin(capsys, cluster, "status", "-n", listed_tenants, "--context", "viewer")
    assert code == 0, err
    assert {row["NAME"] for row in _table(out)} == {"acme", "initech", "newcomer"}
    code, _, err = _plugin(
        capsys, cluster, "rotate-virtual-key", "acme", "-n", listed_tenants, "--context", "viewer"
    )
    assert code == 1
    assert 'User "viewer" cannot get resource "tenantllmconfigs"' in err or "forbidden" in err


def _rotate_annotation(cluster: Cluster, namespace: str, name: str) -> str:
    path = "{.metadata.annotations." + api.ROTATE_VIRTUAL_KEY_ANNOTATION.replace(".", "\\.") + "}"
    return cluster.kubectl(
        "get", api.CRD_NAME, name, "-n", namespace, "-o", f"jsonpath={path}"
    ).stdout


@pytest_cluster
def test_rotate_virtual_key_sets_a_new_value_each_time(
    cluster: Cluster, listed_tenants: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _rotate_annotation(cluster, listed_tenants, "acme") == ""
    seen = []
    for _ in range(3):
        code, out, _ = _plugin(capsys, cluster, "rotate-virtual-key", "acme", "-n", listed_tenants)
        assert code == 0
        value = _rotate_annotation(cluster, listed_tenants, "acme")
        assert f"{api.ROTATE_VIRTUAL_KEY_ANNOTATION}={value}" in out
        seen.append(value)
    assert len(set(seen)) == 3
    for value in seen:
        requested = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert abs(datetime.now(UTC) - requested) < timedelta(minutes=1)
    assert f"writes it into Secret {listed_tenants}/acme-llm-gateway" in out
    assert "revokes the old key byok-acme-vk-1 after spec.rotation.gracePeriod (10m)" in out
    # Nothing but the annotation changed: the spec's generation stays.
    generation = cluster.kubectl(
        "get", api.CRD_NAME, "acme", "-n", listed_tenants, "-o", "jsonpath={.metadata.generation}"
    ).stdout
    assert generation == "1"


@pytest_cluster
def test_rotate_with_no_grace_period_says_the_old_key_goes_at_once(
    cluster: Cluster, listed_tenants: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _plugin(capsys, cluster, "rotate-virtual-key", "initech", "-n", listed_tenants)
    assert code == 0
    assert "revokes the old key platform-initech at once" in out


@pytest_cluster
def test_errors_are_clear(
    cluster: Cluster, listed_tenants: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _plugin(capsys, cluster, "rotate-virtual-key", "nobody", "-n", listed_tenants)
    assert code == 1
    assert f"reading TenantLLMConfig {listed_tenants}/nobody" in err
    assert "not found" in err
    code, out, _ = _plugin(capsys, cluster, "status", "-n", "tenant-nobody-lives-here")
    assert code == 0
    assert out == "No TenantLLMConfigs found in namespace tenant-nobody-lives-here.\n"


@pytest.fixture
def plugin_path() -> str:
    """PATH with the installed `kubectl-byok` console script first."""
    script = Path(sys.executable).parent / "kubectl-byok"
    found = str(script) if script.exists() else shutil.which("kubectl-byok")
    if found is None:
        pytest.skip("kubectl-byok is not installed (pip install -e .)")
    return f"{Path(found).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest_cluster
def test_kubectl_finds_the_plugin(cluster: Cluster, listed_tenants: str, plugin_path: str) -> None:
    env = {**cluster.env(), "PATH": plugin_path}
    result = subprocess.run(
        [str(cluster.kubectl_path), "byok", "status", "acme", "-n", listed_tenants],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "acme-corp" in result.stdout
    assert CANARY_OPENAI not in result.stdout + result.stderr


# --- key sources and the costs table (pure) ---------------------------------------------------


def _sources(stdin: str = "", secrets: dict[str, dict[str, str]] | None = None) -> Any:
    from byok_operator.cli.key_sources import KeySources

    found = secrets or {}
    return KeySources(
        read_secret=lambda name, key: found.get(name, {}).get(key),
        stdin=io.StringIO(stdin),
        environ={"MY_KEY": CANARY_OPENAI},
    )


def test_key_sources_read_files_env_secrets_and_stdin(tmp_path: Path) -> None:
    from byok_operator.cli.key_sources import read_key

    key_file = tmp_path / "key"
    key_file.write_text(CANARY_OPENAI + "\n")
    openai = api.Provider.OPENAI
    assert read_key(openai, f"file:{key_file}", _sources()) == CANARY_OPENAI
    assert read_key(openai, "env:MY_KEY", _sources()) == CANARY_OPENAI
    assert read_key(openai, "-", _sources(CANARY_OPENAI + "\r\n")) == CANARY_OPENAI
    held = {"keys": {"openai": CANARY_OPENAI, "other": CANARY_ANTHROPIC}}
    assert read_key(openai, "secret:keys", _sources(secrets=held)) == CANARY_OPENAI
    assert read_key(openai, "secret:keys/other", _sources(secrets=held)) == CANARY_ANTHROPIC
    # Only one trailing newline goes: the operator judges the rest (and names it precisely).
    key_file.write_text(CANARY_OPENAI + "\n\n")
    assert read_key(openai, f"file:{key_file}", _sources()) == CANARY_OPENAI + "\n"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (CANARY_OPENAI, "not the key itself"),
        ("sk-short", "not the key itself"),
        ("file:", "not the key itself"),
        ("env:UNSET_VARIABLE", "UNSET_VARIABLE is not set"),
        ("file:/no/such/file", "cannot read it"),
        ("secret:missing", "has no data key 'openai'"),
    ],
)
def test_bad_key_sources_say_what_to_do_without_echoing(source: str, message: str) -> None:
    from byok_operator.cli.key_sources import KeySourceError, read_key

    with pytest.raises(KeySourceError, match=message) as caught:
        read_key(api.Provider.OPENAI, source, _sources())
    assert CANARY_OPENAI not in str(caught.value)


def test_only_one_key_comes_from_stdin() -> None:
    from byok_operator.cli.key_sources import KeySourceError, read_keys

    both = {api.Provider.OPENAI: "-", api.Provider.ANTHROPIC: "-"}
    with pytest.raises(KeySourceError, match="only one key can come from stdin"):
        read_keys(both, _sources())


def test_costs_table_and_totals() -> None:
    from byok_operator.admin.costs import cost_row, costs_json, format_costs

    def tlc(name: str, mode: str, spend: str, budget: dict[str, str] | None) -> dict[str, Any]:
        spec: dict[str, Any] = {"mode": mode}
        if budget:
            spec["platform"] = {"budget": budget}
        meta = {"namespace": "ns", "name": name}
        return {"metadata": meta, "spec": spec, "status": {"mode": mode, "spend": spend}}

    rows = [
        cost_row(tlc("own", "BYOK", "N/A", None)),
        cost_row(tlc("paid", "Platform", "$125.50", {"maxUSD": "500", "period": "30d"})),
        cost_row(tlc("free", "Platform", "$4.50", None)),
    ]
    table = format_costs(rows, all_namespaces=False).splitlines()
    assert table[0].split() == ["TENANT", "MODE", "TOTAL", "BUDGET", "USED"]
    assert table[1].split() == ["own", "BYOK", "N/A", "Own", "Keys", "-"]
    assert table[2].split() == ["paid", "Platform", "$125.50", "$500.00/30d", "25.1%"]
    assert table[3].split() == ["free", "Platform", "$4.50", "-", "-"]
    assert table[-1].split() == ["TOTAL", "(Platform)", "$130.00", "$500.00", "26.0%"]
    data = costs_json(rows)
    assert data["total"] == {"total_usd": "130.00", "budget_usd": "500", "share_used": 0.26}
    assert data["tenants"][0]["total_usd"] is None
