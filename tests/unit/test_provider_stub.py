"""The provider stand-in as a separate process, the way the demo and the e2e tests run it."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from byok_dev import provider_stub
from byok_dev.provider_stub import ProviderStub
from byok_operator.crypto import fingerprint

STUB_SCRIPT = Path(provider_stub.__file__)
loopback = httpx.Client(trust_env=False, timeout=10)  # no proxies from the environment


def test_subprocess_serves_both_apis_and_stops_on_sigterm(tmp_path: Path) -> None:
    state_file = tmp_path / "stub.json"
    openai_key = f"sk-proj-sub-{secrets.token_hex(12)}"
    anthropic_key = f"sk-ant-api03-sub-{secrets.token_hex(12)}"

    with ProviderStub.in_subprocess(state_file=state_file) as stub:
        assert stub.process is not None
        state = json.loads(state_file.read_text())
        assert state["pid"] == stub.process.pid
        assert state["OPENAI_BASE_URL"] == stub.openai_base_url
        assert state["ANTHROPIC_BASE_URL"] == stub.anthropic_base_url

        with openai.OpenAI(api_key=openai_key, base_url=stub.openai_base_url) as client:
            assert "gpt-4o-mini" in [m.id for m in client.models.list()]
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
            )
        assert fingerprint(openai_key) in (reply.choices[0].message.content or "")
        assert reply.usage is not None
        assert reply.usage.total_tokens > 0

        with anthropic.Anthropic(api_key=anthropic_key, base_url=stub.anthropic_base_url) as ac:
            message = ac.messages.create(
                model="claude-3-5-sonnet-20241022",
                max_tokens=32,
                messages=[{"role": "user", "content": "hello"}],
            )
        assert fingerprint(anthropic_key) in message.content[0].text  # type: ignore[union-attr]
        assert message.usage.input_tokens > 0

        stub.set_behaviour(openai_key, "401")  # revoke a key that was valid
        with (
            openai.OpenAI(
                api_key=openai_key, base_url=stub.openai_base_url, max_retries=0
            ) as client,
            pytest.raises(openai.AuthenticationError),
        ):
            client.models.list()

        assert stub.keys_seen() == [fingerprint(openai_key), fingerprint(anthropic_key)]
        assert [(r.provider, r.path, r.status) for r in stub.requests()] == [
            ("openai", "/v1/models", 200),
            ("openai", "/v1/chat/completions", 200),
            ("anthropic", "/v1/messages", 200),
            ("openai", "/v1/models", 401),
        ]
        saved = state_file.read_text()

    assert stub.process.returncode == 0
    # The state file names keys by fingerprint only.
    assert fingerprint(openai_key) in saved
    assert openai_key not in saved
    assert anthropic_key not in saved


def test_litellm_style_anthropic_auth_and_restart_keeps_overrides(tmp_path: Path) -> None:
    """LiteLLM sends `x-api-key`; a restarted stub still refuses a key revoked before."""
    state_file = tmp_path / "stub.json"
    revoked = f"sk-ant-api03-rev-{secrets.token_hex(12)}"
    headers = {"x-api-key": revoked, "anthropic-version": "2023-06-01"}
    body = {
        "model": "claude-3-5-sonnet-20241022",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }

    with ProviderStub.in_subprocess(state_file=state_file) as stub:
        url = f"{stub.anthropic_base_url}/v1/messages"
        assert loopback.post(url, headers=headers, json=body).status_code == 200
        no_version = {"x-api-key": revoked}
        assert loopback.post(url, headers=no_version, json=body).status_code == 400
        stub.set_behaviour(revoked, "401")

    with ProviderStub.in_subprocess(state_file=state_file) as restarted:
        url = f"{restarted.anthropic_base_url}/v1/messages"
        answer = loopback.post(url, headers=headers, json=body)
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "authentication_error"
        assert restarted.keys_seen(provider="anthropic") == [fingerprint(revoked)]


def test_command_line_prints_one_line_of_urls_and_exits_zero_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, str(STUB_SCRIPT), "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        line = provider_stub.read_first_line(process, timeout=15)
        names = [item.split("=", 1)[0] for item in line.split()]
        assert names == ["OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "PROVIDER_STUB_URL"]
        urls = dict(item.split("=", 1) for item in line.split())
        assert urls["OPENAI_BASE_URL"].startswith("http://127.0.0.1:")
        assert urls["OPENAI_BASE_URL"].endswith("/v1")
        health = loopback.get(f"{urls['PROVIDER_STUB_URL']}/_control/health")
        assert health.json()["status"] == "ok"
    finally:
        started = time.monotonic()
        exit_code = provider_stub.stop_process(process, timeout=10)
    assert exit_code == 0
    assert time.monotonic() - started < 5
