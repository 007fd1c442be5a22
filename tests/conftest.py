"""Shared pytest setup: the real parts (API server, LiteLLM test bed, provider stand-ins,
the operator process) are started with the development stack (`dev/byok_dev`); their
pytest fixtures live in fixtures/ and are loaded here as plugins."""

from __future__ import annotations

import pytest

from byok_dev.operator import PLATFORM_KEY
from byok_dev.provider_stub import ProviderStub

pytest_plugins = ["fixtures.cluster", "fixtures.litellm", "fixtures.e2e"]


@pytest.fixture(scope="session")
def litellm_env(provider_stub: ProviderStub) -> dict[str, str]:
    """LiteLLM's platform model goes to the provider stand-in, with the platform's key."""
    return {
        "PLATFORM_OPENAI_API_BASE": provider_stub.openai_base_url,
        "PLATFORM_OPENAI_API_KEY": PLATFORM_KEY,
    }


# The folders are the tiers; these markers follow from the folder, so `-m e2e` and
# `pytest tests/e2e` select the same tests. tests/cluster is selected by its folder: its
# `cluster` marker means "needs the API server", which the e2e tier needs too.
TIER_MARKERS = ("unit", "contract", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (tier := item.path.parent.name) in TIER_MARKERS:
            item.add_marker(tier)
