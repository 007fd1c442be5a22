"""Shared pytest setup: the real parts (API server, LiteLLM test bed, provider stand-ins,
the operator process) live in harness/ and are loaded here as plugins."""

from __future__ import annotations

import pytest

from harness.operator import PLATFORM_KEY
from stubs.provider_stub import ProviderStub

pytest_plugins = ["harness.fixtures", "harness.litellm_fixtures", "harness.e2e"]


@pytest.fixture(scope="session")
def litellm_env(provider_stub: ProviderStub) -> dict[str, str]:
    """LiteLLM's platform model goes to the provider stand-in, with the platform's key."""
    return {
        "PLATFORM_OPENAI_API_BASE": provider_stub.openai_base_url,
        "PLATFORM_OPENAI_API_KEY": PLATFORM_KEY,
    }
