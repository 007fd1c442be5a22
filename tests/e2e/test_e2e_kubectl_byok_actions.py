"""`kubectl byok` test-keys, enable, rotate, revert and costs (issue 10.1), end to end: the
plugin in this process against the real API server, the operator and LiteLLM running, keys
checked by the provider stand-in (OPENAI_BASE_URL / ANTHROPIC_BASE_URL point the SDKs there,
as they would point at a proxy in a real shop). Every output is searched for the keys."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest

from byok_dev.provider_stub import ProviderStub
from byok_dev.tenants import Tenants, canary, leaks
from byok_operator import api
from byok_operator.admin.actions import Waiting, run_revert
from byok_operator.admin.errors import Invalid
from byok_operator.cli import kubectl_byok
from byok_operator.crypto import fingerprint

pytestmark = [pytest.mark.cluster, pytest.mark.gateway]

MODEL = "gpt-4o-mini"


@pytest.fixture
def plugin(
    tenants: Tenants,
    namespace: str,
    provider_stub: ProviderStub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    """Run `kubectl byok ARGS...` in this namespace: (exit code, stdout, stderr)."""
    monkeypatch.setenv("OPENAI_BASE_URL", provider_stub.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", provider_stub.anthropic_base_url)

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        base = ["--kubeconfig", str(tenants.cluster.kubeconfig), "-n", namespace]
        code = kubectl_byok.main([*base, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _no_key_in(keys: list[str], *texts: str) -> None:
    found = leaks(keys, {f"output {n}": text for n, text in enumerate(texts)})
    assert not found, f"a key in the output: {found}"


def test_test_keys_reports_each_key_and_saves_nothing(
    plugin: Any, tenants: Tenants, namespace: str, provider_stub: ProviderStub, tmp_path: Path
) -> None:
    good, bad = canary("openai"), canary("anthropic")
    provider_stub.set_behaviour(bad, "401")
    key_file = tmp_path / "openai"
    key_file.write_text(good + "\n")  # the newline an editor adds is dropped
    before = tenants.cluster.kubectl("get", "secrets", "-n", namespace, "-o", "name").stdout

    code, out, err = plugin(
        "test-keys", "--openai", f"file:{key_file}", "--anthropic", "-", stdin=bad + "\n"
    )
    assert code == 1, (out, err)
    assert "✅ OpenAI: Valid (" in out, out
    assert "models available)" in out, out
    assert "(and " in out, out  # the first models, then how many more
    assert "❌ Anthropic: Invalid API key" in out, out
    assert fingerprint(bad) in out, out  # the advice names the key by fingerprint
    _no_key_in([good, bad], out, err)

    code, out, err = plugin("test-keys", "--openai", "env:NO_SUCH_VARIABLE_HERE")
    assert code == 1, (out, err)
    assert "NO_SUCH_VARIABLE_HERE is not set" in err, (out, err)

    code, out, err = plugin("test-keys", "--openai", f"file:{key_file}", "-o", "json")
    assert code == 0, err
    report = json.loads(out)["openai"]
    assert report["valid"] is True
    assert MODEL in report["models"]
    assert report["error"] is None
    after = tenants.cluster.kubectl("get", "secrets", "-n", namespace, "-o", "name").stdout
    assert after == before, "test-keys saved something"


def test_a_key_on_the_command_line_is_refused_without_echoing_it(plugin: Any) -> None:
    key = canary("openai")
    code, out, err = plugin("test-keys", "--openai", key)
    assert code == 1
    assert "not the key itself" in err, err
    assert "shell history" in err, err
    _no_key_in([key], out, err)


def test_enable_rotate_revert(
    plugin: Any, tenants: Tenants, namespace: str, provider_stub: ProviderStub, tmp_path: Path
) -> None:
    first, second = canary("openai"), canary("openai")
    (tmp_path / "first").write_text(first)

    code, out, err = plugin("enable", "acme", "--openai", f"file:{tmp_path / 'first'}")
    assert code == 0, (out, err)
    assert "✅ OpenAI: Valid" in out, out
    assert "Ready=True" in out, out
    assert "Using own keys 🔑" in out, out
    obj = tenants.get(namespace, "acme") or {}
    assert obj["spec"]["mode"] == "BYOK"
    assert obj["spec"]["tenantId"] == "acme"
    secret = json.loads(
        tenants.cluster.kubectl(
            "get", "secret", "acme-llm-keys", "-n", namespace, "-o", "json"
        ).stdout
    )
    assert secret["metadata"]["labels"][api.CREDENTIALS_LABEL] == "true"
    assert secret["metadata"]["labels"][api.MANAGED_BY_LABEL] == "kubectl-byok"
    assert "kubectl.kubernetes.io/last-applied-configuration" not in json.dumps(secret["metadata"])
    virtual = tenants.virtual_key(namespace, "acme")
    assert virtual
    assert tenants.chat(virtual, MODEL).status_code == 200
    assert provider_stub.requests(key=first), "the agent's call did not carry the tenant's key"

    code, out, err = plugin("rotate", "acme", "--openai", "-", stdin=second)
    assert code == 0, (out, err)
    status = (tenants.get(namespace, "acme") or {})["status"]
    served = {p["name"]: p["keyFingerprint"] for p in status["providers"]}
    assert served["openai"] == fingerprint(second), served
    stored = json.loads(
        tenants.cluster.kubectl(
            "get", "secret", "acme-llm-keys", "-n", namespace, "-o", "json"
        ).stdout
    )
    assert base64.b64decode(stored["data"]["openai"]).decode() == second

    code, out, err = plugin("status", "acme")
    assert code == 0, out
    assert "Recent audit events:" in out, out
    assert "BYOK_ENABLED" in out, out
    assert "BYOK_KEYS_ROTATED" in out, out

    code, out, err = plugin("revert", "acme")  # stdin is no terminal: --yes is needed
    assert code == 1, err
    assert "--yes" in err, err
    assert (tenants.get(namespace, "acme") or {})["spec"]["mode"] == "BYOK"

    code, out, err = plugin("revert", "acme", "--yes")
    assert code == 0, (out, err)
    assert "delete the tenant's provider credentials" in out, out
    assert "Deleted Secret" in out, out
    obj = tenants.get(namespace, "acme") or {}
    assert obj["status"]["mode"] == "Platform"
    assert "providers" not in obj["spec"]
    gone = tenants.cluster.kubectl("get", "secret", "acme-llm-keys", "-n", namespace, check=False)
    assert gone.returncode != 0

    code, out, err = plugin("rotate", "acme", "--openai", "-", stdin=canary("openai"))
    assert code == 1, err
    assert "BYOK is not enabled" in err, err
    _no_key_in([first, second, virtual], out, err)


def test_enable_with_a_bad_key_changes_nothing(
    plugin: Any, tenants: Tenants, namespace: str, provider_stub: ProviderStub
) -> None:
    bad = canary("openai")
    provider_stub.set_behaviour(bad, "401")
    code, out, err = plugin("enable", "acme", "--openai", "-", stdin=bad)
    assert code == 1, (out, err)
    assert "nothing was changed" in err, (out, err)
    assert "❌ OpenAI: Invalid API key" in out, out
    assert tenants.get(namespace, "acme") is None
    missing = tenants.cluster.kubectl(
        "get", "secret", "acme-llm-keys", "-n", namespace, check=False
    )
    assert missing.returncode != 0
    code, _, err = plugin("enable", "acme")
    assert code == 1, err
    assert "at least one key" in err, err


def test_enable_with_an_allow_list(
    plugin: Any, tenants: Tenants, namespace: str, provider_stub: ProviderStub
) -> None:
    """``--models`` sets the provider's allow-list after testing it against the key; a model
    the key cannot use changes nothing; a malformed option says how to write it. (Its own
    tenant id: tenant ids are unique across the cluster and other tests enable ``acme``.)"""
    key = canary("openai")
    code, out, err = plugin(
        "enable", "allowlist", "--openai", "-", "--models", f"openai={MODEL}", stdin=key
    )
    assert code == 0, (out, err)
    obj = tenants.get(namespace, "allowlist") or {}
    assert obj["spec"]["providers"]["openai"]["models"] == [MODEL]
    assert "Ready=True" in out, out

    code, out, err = plugin(
        "enable", "allowlist", "--openai", "-", "--models", "openai=no-such-model", stdin=key
    )
    assert code == 1, (out, err)
    assert "nothing was changed" in err, (out, err)
    assert "no-such-model" in out, out
    assert (tenants.get(namespace, "allowlist") or {})["spec"]["providers"]["openai"]["models"] == [
        MODEL
    ]

    code, out, err = plugin("enable", "allowlist", "--openai", "-", "--models", "gpt-4o", stdin=key)
    assert code == 1, (out, err)
    assert "PROVIDER=MODEL" in err, err
    code, out, err = plugin(
        "enable", "allowlist", "--openai", "-", "--models", "anthropic=claude-x", stdin=key
    )
    assert code == 1, (out, err)
    assert "needs the anthropic key" in err, err
    _no_key_in([key], out, err)


def test_revert_needs_the_exact_confirmation(plugin: Any, tenants: Tenants, namespace: str) -> None:
    tenants.put_secret(namespace, "keys", {"openai": canary("openai")})
    spec = {
        "mode": "BYOK",
        "providers": {"openai": {"secretRef": {"name": "keys", "key": "openai"}}},
    }
    tenants.apply(namespace, "acme", spec)
    tenants.wait_condition(namespace, "acme")
    target = kubectl_byok.Target(str(tenants.cluster.kubeconfig), None, namespace, False)
    out = io.StringIO()
    with pytest.raises(Invalid, match="did not match; nothing was changed"):
        run_revert(
            kubectl_byok.connect(target),
            "acme",
            out,
            confirm=lambda: "yes",
            keep_secrets=False,
            waiting=Waiting(timeout=5),
        )
    assert "I understand this action will clear my BYOK configuration" in out.getvalue()
    assert (tenants.get(namespace, "acme") or {})["spec"]["mode"] == "BYOK"


def test_costs_dashboard(plugin: Any, tenants: Tenants, namespace: str) -> None:
    tenants.put_secret(namespace, "keys", {"openai": canary("openai")})
    byok = {
        "mode": "BYOK",
        "providers": {"openai": {"secretRef": {"name": "keys", "key": "openai"}}},
    }
    platform = {"mode": "Platform", "platform": {"budget": {"maxUSD": "500", "period": "30d"}}}
    tenants.apply(namespace, "own", byok)
    tenants.apply(namespace, "paid", platform)
    tenants.wait_condition(namespace, "own")
    tenants.wait_condition(namespace, "paid")

    code, out, err = plugin("costs")
    assert code == 0, err
    lines = out.splitlines()
    own = next(line for line in lines if line.startswith("own"))
    paid = next(line for line in lines if line.startswith("paid"))
    assert "N/A" in own, own
    assert "Own Keys" in own, own
    assert "$0.00" in paid, paid
    assert "$500.00/30d" in paid, paid
    assert "0.0%" in paid, paid
    assert lines[-1].startswith("TOTAL (Platform)"), out
    assert "$500.00" in lines[-1], out

    code, out, _ = plugin("costs", "-o", "json")
    data = json.loads(out)
    rows = {r["name"]: r for r in data["tenants"]}
    assert rows["own"]["total_usd"] is None
    assert rows["own"]["mode"] == "BYOK"
    assert rows["paid"]["budget_usd"] == "500"
    assert rows["paid"]["share_used"] == 0.0
    assert data["total"]["budget_usd"] == "500"
