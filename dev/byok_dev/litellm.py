"""A real LiteLLM proxy (with Postgres) for tests, from the shared test bed's `up` / `down`.

Set `LITELLM_URL` and `LITELLM_MASTER_KEY` to use an existing proxy instead: nothing is
started or stopped then (`external=True`), and `restart` refuses.

The test bed lives in `../shared/litellm-testbed` (or `$BYOK_SHARED_DIR/litellm-testbed`);
see its README. Every `up` starts from an EMPTY database, so `restart` is how a test makes
"LiteLLM lost everything" happen: it keeps the URL and master key, and nothing else.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
UP_TIMEOUT = 300.0  # `up` runs `install` first: about a minute on a cold cache
DOWN_TIMEOUT = 60.0


# The proxy config tests, the demo and the bench start LiteLLM with (DESIGN §6 settings).
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
  # Otherwise every /team/new adds the master key's user to the team, and that one user row
  # holds every team id: each create rewrites it (10,000 tenants: slower and slower, then 500s).
  disable_auto_add_proxy_admin_to_teams: true
litellm_settings:
  telemetry: false
  # DESIGN §6: a call on a shared BYOK deployment takes the key of the calling key's team.
  enable_model_config_credential_overrides: true
router_settings:
  # One tenant's revoked key (a 401 on a shared deployment) must not cool it down for all.
  disable_cooldowns: true
"""


class LiteLLMTestbedError(RuntimeError):
    """The test bed could not be started or stopped."""


def shared_dir() -> Path:
    """The shared folder beside the repository (`BYOK_SHARED_DIR` overrides)."""
    override = os.environ.get("BYOK_SHARED_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared"


def testbed_dir() -> Path:
    return shared_dir() / "litellm-testbed"


@dataclass
class LiteLLMTestbed:
    """A reachable LiteLLM proxy. `state_dir` is None for an external one."""

    url: str
    master_key: str = field(repr=False)
    state_dir: Path | None
    external: bool
    config: Path | None = None
    launch_env: dict[str, str] = field(default_factory=dict, repr=False)
    values: dict[str, str] = field(default_factory=dict, repr=False)  # what `up` printed

    @property
    def port(self) -> int | None:
        tail = self.url.rsplit(":", 1)[-1].split("/", 1)[0]
        return int(tail) if tail.isdigit() else None

    @property
    def log_path(self) -> Path | None:
        return self.state_dir / "litellm.log" if self.state_dir else None


def external_testbed() -> LiteLLMTestbed | None:
    """The proxy named by `LITELLM_URL` + `LITELLM_MASTER_KEY`, if both are set."""
    url, key = os.environ.get("LITELLM_URL"), os.environ.get("LITELLM_MASTER_KEY")
    if url and key:
        return LiteLLMTestbed(url=url.rstrip("/"), master_key=key, state_dir=None, external=True)
    return None


def parse_env_lines(text: str) -> dict[str, str]:
    """`KEY=VALUE` lines as printed by `up` (only the state dir may be single-quoted)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if not sep or not name.isidentifier() or not name.isupper():
            continue
        if value.startswith("'"):
            value = shlex.split(value)[0]
        values[name] = value
    return values


def start_testbed(
    state_dir: Path,
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    master_key: str | None = None,
) -> LiteLLMTestbed:
    """Start a test bed in `state_dir` (or return the external proxy, if one is configured).

    `env` is added to this process's environment and passed to LiteLLM, so `os.environ/NAME`
    in `config` resolves. `port` and `master_key` default to a free port and a random key.
    """
    external = external_testbed()
    if external is not None:
        return external
    state_dir.mkdir(parents=True, exist_ok=True)
    command = [str(testbed_dir() / "up"), str(state_dir)]
    if config is not None:
        command += ["--config", str(config)]
    if port is not None:
        command += ["--port", str(port)]
    if master_key is not None:
        command += ["--master-key", master_key]
    try:
        result = subprocess.run(
            command,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=UP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stop_testbed(state_dir)
        raise LiteLLMTestbedError(
            f"litellm-testbed up did not finish in {UP_TIMEOUT:.0f}s; "
            f"log: {state_dir / 'litellm.log'}"
        ) from exc
    values = parse_env_lines(result.stdout)
    if result.returncode != 0 or "LITELLM_URL" not in values:
        raise LiteLLMTestbedError(
            f"litellm-testbed up failed (exit {result.returncode}); "
            f"log: {state_dir / 'litellm.log'}\n{result.stderr[-4000:]}"
        )
    return LiteLLMTestbed(
        url=values["LITELLM_URL"],
        master_key=values["LITELLM_MASTER_KEY"],
        state_dir=state_dir,
        external=False,
        config=config,
        launch_env=dict(env or {}),
        values=values,
    )


def stop_testbed(state_dir: Path) -> None:
    """Stop the test bed in `state_dir` (fine if nothing runs). Logs and data stay."""
    result = subprocess.run(
        [str(testbed_dir() / "down"), str(state_dir)],
        capture_output=True,
        text=True,
        timeout=DOWN_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise LiteLLMTestbedError(f"litellm-testbed down failed: {result.stderr[-2000:]}")


def restart(
    testbed: LiteLLMTestbed,
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> LiteLLMTestbed:
    """Stop and start again on the same port with the same master key.

    The database comes back EMPTY (no credentials, deployments or keys; config models
    only): this simulates a gateway that lost its state. `config` and `env` default to
    those of the first start.
    """
    if testbed.external or testbed.state_dir is None:
        raise LiteLLMTestbedError("cannot restart an external LiteLLM (LITELLM_URL is set)")
    stop_testbed(testbed.state_dir)
    return start_testbed(
        testbed.state_dir,
        config if config is not None else testbed.config,
        env if env is not None else testbed.launch_env,
        port=testbed.port,
        master_key=testbed.master_key,
    )
