"""The operator as a real local process against the test API server (no pods run here)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from byok_dev.process import owned_pid, spawn, terminate
from byok_dev.waiting import wait_for

OPERATOR_NAMESPACE = "byok-system"
MODULE = "byok_operator.cli.main"
KEYS_FILE = "encryption-keys"
# The platform's own provider key (LiteLLM config), planted as a canary like tenant keys.
PLATFORM_KEY = "sk-platform-canary-" + secrets.token_hex(12)


@dataclass
class OperatorProcess:
    """Starts ``byok-operator run`` with a given environment; stops it by PID.

    Each start logs to ``operator-N.log`` in the state dir and records ``operator.pid``;
    ``owned_operator_pid`` finds a running one again (the demo's ``--stop``)."""

    state_dir: Path
    env: dict[str, str]
    args: tuple[
        str, ...
    ] = ()  # more `byok-operator run` flags, e.g. ("-v", "--log-format", "json")
    proc: subprocess.Popen[bytes] | None = None
    detach: bool = False  # outlive this process (the demo's and bench's --keep)
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.state_dir / f"operator-{self.starts}.log"

    def start(self, *, wait: bool = True) -> None:
        assert self.proc is None or self.proc.poll() is not None, "operator already running"
        self.starts += 1
        self.logs.append(self.log_path)
        self.log_path.unlink(missing_ok=True)
        self.proc = spawn(
            "operator",
            [sys.executable, "-m", MODULE, "run", *self.args],
            self.state_dir,
            detach=self.detach,
            env=self.env,
            log_name=self.log_path.name,
        )
        if wait:
            wait_for(self._started, timeout=60, what="the operator to start", describe=self.tail)

    def _started(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.tail()}")
        return "byok-operator started" in self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        terminate(self.proc.pid, group=True, timeout=timeout)
        self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL, as a crash: no cleanup handlers run."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no operator log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def all_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def audit_lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.all_logs().splitlines():
            start = line.find('{"')
            if "byok_operator.audit" in line and start >= 0:
                found.append(json.loads(line[start:]))
        return found


def operator_env(
    *,
    kubeconfig: Path,
    litellm_url: str,
    master_key: str,
    openai_base_url: str,
    anthropic_base_url: str,
    state_dir: Path,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment the README documents, pointed at the test parts."""
    keys_file = state_dir / KEYS_FILE
    if not keys_file.exists():
        keys_file.write_text(Fernet.generate_key().decode() + "\n")
    env = dict(os.environ)
    env.update(
        KUBECONFIG=str(kubeconfig),
        LITELLM_URL=litellm_url,
        LITELLM_MASTER_KEY=master_key,
        OPENAI_BASE_URL=openai_base_url,
        ANTHROPIC_BASE_URL=anthropic_base_url,
        BYOK_OPERATOR_NAMESPACE=OPERATOR_NAMESPACE,
        BYOK_ENCRYPTION_KEYS_FILE=str(keys_file),
        BYOK_REPAIR_INTERVAL="5",
        BYOK_VALIDATION_CACHE_TTL="2",
        BYOK_UNPLANNED_ROTATION_GRACE="10",
        BYOK_PLATFORM_MODELS="gpt-4o-mini",
        BYOK_NARROWING_CONFIRM_AFTER="5",  # issue 8.6: a shorter model list waits this long
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def owned_operator_pid(state_dir: Path) -> int | None:
    """The operator a stack started in ``state_dir``, if it still runs: its command line runs
    the operator and its environment names this state dir's encryption keys file."""
    marker = f"BYOK_ENCRYPTION_KEYS_FILE={state_dir / KEYS_FILE}"
    return owned_pid(state_dir, "operator", args=("-m", MODULE), env=(marker,))
