"""pytest plugin: one real LiteLLM proxy per test session (`-p harness.litellm_fixtures`).

Fixtures:
- `litellm_env`: the environment LiteLLM's config reads (session scope; override it to
  point the platform model at a provider stand-in). The default base URL is a port nothing
  listens on: LiteLLM only warns about it at startup.
- `litellm_config`: the config file. By default one platform model, `gpt-4o-mini`, reading
  its base URL and key from `PLATFORM_OPENAI_API_BASE` / `PLATFORM_OPENAI_API_KEY`.
  `BYOK_LITELLM_CONFIG=/path/file.yaml` replaces it.
- `litellm`: the running proxy (a `LiteLLMTestbed`), stopped with `down` at session end.
  `LITELLM_URL` + `LITELLM_MASTER_KEY` select an existing proxy instead.

A failed test that used the proxy gets the path of LiteLLM's log in its report.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from harness.litellm import LiteLLMTestbed, start_testbed, stop_testbed

PLATFORM_MODEL = "gpt-4o-mini"
UNREACHABLE_API_BASE = "http://127.0.0.1:9/v1"  # discard port: nothing listens
PLATFORM_FAKE_KEY = "sk-platform-fake-not-a-real-key"

DEFAULT_CONFIG = f"""\
model_list:
  - model_name: {PLATFORM_MODEL}
    litellm_params:
      model: openai/{PLATFORM_MODEL}
      api_base: os.environ/PLATFORM_OPENAI_API_BASE
      api_key: os.environ/PLATFORM_OPENAI_API_KEY
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
litellm_settings:
  telemetry: false
  # DESIGN §6: a call on a shared BYOK deployment takes the key of the calling key's team.
  enable_model_config_credential_overrides: true
router_settings:
  # One tenant's revoked key (a 401 on a shared deployment) must not cool it down for all.
  disable_cooldowns: true
"""

_LOG_PATH_KEY = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def litellm_env() -> dict[str, str]:
    """Environment for LiteLLM's config; override to use a provider stand-in."""
    return {
        "PLATFORM_OPENAI_API_BASE": UNREACHABLE_API_BASE,
        "PLATFORM_OPENAI_API_KEY": PLATFORM_FAKE_KEY,
    }


@pytest.fixture(scope="session")
def litellm_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LiteLLM config file (`BYOK_LITELLM_CONFIG` overrides the default)."""
    override = os.environ.get("BYOK_LITELLM_CONFIG")
    if override:
        return Path(override)
    path = tmp_path_factory.mktemp("litellm-config") / "litellm.yaml"
    path.write_text(DEFAULT_CONFIG)
    return path


@pytest.fixture(scope="session")
def litellm(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    litellm_config: Path,
    litellm_env: dict[str, str],
) -> Iterator[LiteLLMTestbed]:
    """A running LiteLLM proxy for the session."""
    state_dir = tmp_path_factory.mktemp("litellm-testbed")
    testbed = start_testbed(state_dir, litellm_config, litellm_env)
    if testbed.log_path is not None:
        request.config.stash[_LOG_PATH_KEY] = testbed.log_path
    try:
        yield testbed
    finally:
        if not testbed.external:
            stop_testbed(state_dir)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    log_path = item.config.stash.get(_LOG_PATH_KEY, None)
    if report.failed and log_path is not None and "litellm" in getattr(item, "fixturenames", ()):
        report.sections.append(("litellm test bed", f"LiteLLM log: {log_path}"))
    return report
