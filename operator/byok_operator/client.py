"""Agent helper: an OpenAI client that talks to the tenant's LiteLLM gateway.

Agents mount the Secret ``<tenant>-llm-gateway`` as a volume (default directory
``/var/run/secrets/byok-gateway``, or ``BYOK_GATEWAY_SECRET_DIR``). Kubernetes refreshes
mounted Secret files in place when the operator rotates the virtual key, so the client
reads the key file again whenever it changed, before each request: no restart needed.

    from byok_operator.client import get_llm_client
    llm = get_llm_client()
    reply = await llm.chat.completions.create(model="gpt-4o-mini", messages=[...])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI

from byok_operator.api import GATEWAY_SECRET_KEY_KEY, GATEWAY_SECRET_URL_KEY

DEFAULT_SECRET_DIR = "/var/run/secrets/byok-gateway"


class GatewaySecretError(RuntimeError):
    """The mounted gateway Secret is missing or incomplete."""


class MountedKey:
    """The virtual key from a mounted Secret file, re-read only when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._value = ""

    def current(self) -> str:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            raise GatewaySecretError(
                f"{self.path} does not exist. Mount the Secret <tenant>-llm-gateway at "
                f"{self.path.parent} (or set BYOK_GATEWAY_SECRET_DIR to where it is mounted)."
            ) from None
        stamp = (stat.st_mtime_ns, stat.st_ino)
        if stamp != self._stamp:
            self._value = self.path.read_text().strip()
            self._stamp = stamp
        if not self._value:
            raise GatewaySecretError(
                f"{self.path} is empty: the operator has not issued a key yet."
            )
        return self._value

    async def __call__(self) -> str:
        return self.current()


def get_llm_client(secret_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> AsyncOpenAI:
    """An ``AsyncOpenAI`` pointed at the gateway, authenticated with the tenant's virtual key.

    Extra keyword arguments go to ``AsyncOpenAI`` (timeouts, retries, headers).
    """
    directory = Path(secret_dir or os.environ.get("BYOK_GATEWAY_SECRET_DIR", DEFAULT_SECRET_DIR))
    url_file = directory / GATEWAY_SECRET_URL_KEY
    if not url_file.is_file():
        raise GatewaySecretError(
            f"{url_file} does not exist. Mount the Secret <tenant>-llm-gateway at {directory} "
            "(or set BYOK_GATEWAY_SECRET_DIR to where it is mounted)."
        )
    key = MountedKey(directory / GATEWAY_SECRET_KEY_KEY)
    key.current()  # fail now, not on the first request
    return AsyncOpenAI(api_key=key, base_url=url_file.read_text().strip(), **kwargs)
