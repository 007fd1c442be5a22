"""Offline checks of a key's shape, before any network call.

They catch the usual mistakes when a key is pasted into a Secret: a trailing newline from
`echo` without `-n`, quotes copied along, the OpenAI and Anthropic keys swapped, a file or a
whole `.env` pasted instead of one value. Messages name the key by fingerprint only and never
quote any of its characters.
"""

from __future__ import annotations

from typing import Final

from byok_operator.api import Provider, Reason
from byok_operator.crypto import fingerprint
from byok_operator.providers.errors import KeyValidationError, key_label, provider_name

OPENAI_PREFIX: Final = "sk-"
ANTHROPIC_PREFIX: Final = "sk-ant-"
PREFIXES: Final = {Provider.OPENAI: OPENAI_PREFIX, Provider.ANTHROPIC: ANTHROPIC_PREFIX}

# Real keys are 50-200 characters. Below the minimum it is a placeholder or a truncated paste;
# above the maximum it is a file, a certificate or a whole .env pasted by mistake.
MIN_KEY_LENGTH: Final = 20
MAX_KEY_LENGTH: Final = 1024

_FIX = (
    "Put exactly the key in the Secret, read from a prompt rather than typed on the command "
    'line (which lands in shell history and `ps`), e.g. `read -rs KEY && printf %s "$KEY" | '
    "kubectl create secret generic NAME --from-file={provider}=/dev/stdin`."
)
_QUOTES: Final = frozenset("\"'`")


def check_format(provider: Provider, key: str) -> None:
    """Raise `KeyValidationError(InvalidFormat)` unless `key` looks like a key of `provider`."""
    provider = Provider(provider)
    name = provider_name(provider)
    fix = _FIX.format(provider=provider.value)

    def invalid(problem: str) -> KeyValidationError:
        return KeyValidationError(
            provider, Reason.INVALID_FORMAT, f"{problem} {fix}", fingerprint=fingerprint(key)
        )

    label = key_label(provider, fingerprint(key))
    if not key.strip():
        raise KeyValidationError(
            provider,
            Reason.INVALID_FORMAT,
            f"The {name} key in the Secret is empty{' (only whitespace)' if key else ''}. {fix}",
            fingerprint=fingerprint(key) if key else None,
        )
    if key != key.strip():
        raise invalid(
            f"{label} has leading or trailing whitespace or a newline. This usually comes from "
            "`echo` without `-n`, from a file that ends in a newline, or from copy-paste; "
            "remove it."
        )
    if any(c.isspace() for c in key):
        raise invalid(
            f"{label} contains whitespace or a line break inside it: probably two values, or a "
            "key wrapped across lines, were pasted together."
        )
    if key[0] in _QUOTES or key[-1] in _QUOTES:
        raise invalid(f"{label} is wrapped in quote characters, which are not part of a key.")
    if not key.isascii() or not key.isprintable():
        raise invalid(
            f"{label} contains non-ASCII or control characters; keys are plain ASCII. "
            "Look for smart quotes, zero-width spaces or an editor's byte-order mark."
        )
    if len(key) > MAX_KEY_LENGTH:
        raise invalid(
            f"{label} is {len(key)} characters long, more than any {name} key "
            f"(at most {MAX_KEY_LENGTH} accepted): a file or several values were probably "
            "pasted instead of one key."
        )
    if provider is Provider.OPENAI and key.startswith(ANTHROPIC_PREFIX):
        raise invalid(
            f"{label} looks like an Anthropic key (it starts with `{ANTHROPIC_PREFIX}`), not an "
            "OpenAI key: the two keys are probably swapped. Reference the Anthropic key under "
            "spec.providers.anthropic and the OpenAI key under spec.providers.openai."
        )
    if provider is Provider.ANTHROPIC and not key.startswith(ANTHROPIC_PREFIX):
        if key.startswith(OPENAI_PREFIX):
            raise invalid(
                f"{label} looks like an OpenAI key (it starts with `{OPENAI_PREFIX}` but not "
                f"`{ANTHROPIC_PREFIX}`), not an Anthropic key: the two keys are probably "
                "swapped. Reference the OpenAI key under spec.providers.openai."
            )
        raise invalid(f"{label} does not start with `{ANTHROPIC_PREFIX}` as Anthropic keys do.")
    if not key.startswith(PREFIXES[provider]):
        raise invalid(f"{label} does not start with `{PREFIXES[provider]}` as {name} keys do.")
    if len(key) < MIN_KEY_LENGTH:
        raise invalid(
            f"{label} is only {len(key)} characters long; {name} keys are much longer "
            f"(at least {MIN_KEY_LENGTH} accepted). It is probably a placeholder or truncated."
        )
