"""Where `kubectl byok` reads provider keys from: never from a command-line argument.

A key on the command line lands in shell history and in `ps` for every user of the machine,
so `--openai SOURCE` names where the key is, not the key:

    file:PATH        the file's content (one trailing newline is dropped: editors add one)
    env:VAR          the environment variable's value, as is
    secret:NAME/KEY  data key KEY of Secret NAME in the tenant's namespace (KEY defaults to
                     the provider's name: openai, anthropic)
    -                stdin (one trailing newline dropped); on a terminal, a prompt that does
                     not echo
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from byok_operator.api import Provider

SOURCE_HELP = "file:PATH, env:VAR, secret:NAME[/KEY] or - (stdin; a prompt on a terminal)"


class KeySourceError(Exception):
    """A key source that cannot be read; the message says why and what to type instead."""


@dataclass(frozen=True)
class KeySources:
    """What a key source needs from outside: a Secret reader, stdin and the environment."""

    read_secret: Callable[[str, str], str | None]  # (secret name, data key) -> value
    stdin: TextIO
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


def read_keys(sources: Mapping[Provider, str], io: KeySources) -> dict[Provider, str]:
    if sum(1 for s in sources.values() if s == "-") > 1:
        raise KeySourceError(
            "only one key can come from stdin (-); use file: or env: for the other"
        )
    return {provider: read_key(provider, source, io) for provider, source in sources.items()}


def read_key(provider: Provider, source: str, io: KeySources) -> str:
    flag = f"--{provider.value}"
    kind, _, where = source.partition(":")
    if source == "-":
        return _from_stdin(provider, io.stdin)
    if kind == "file" and where:
        return _from_file(flag, Path(where))
    if kind == "env" and where:
        if where not in io.environ:
            raise KeySourceError(f"{flag} env:{where}: the variable {where} is not set")
        return io.environ[where]
    if kind == "secret" and where:
        name, _, data_key = where.partition("/")
        value = io.read_secret(name, data_key or provider.value)
        if value is None:
            raise KeySourceError(
                f"{flag} {source}: Secret {name} has no data key {data_key or provider.value!r}"
            )
        return value
    # Say nothing of the value: it may be a key pasted by mistake.
    raise KeySourceError(
        f"{flag} takes where the key is, not the key itself ({SOURCE_HELP}). A key typed on "
        "the command line lands in shell history and in `ps`; if you just did that, rotate "
        "it at the provider."
    )


def _from_file(flag: str, path: Path) -> str:
    try:
        text = path.read_text()
    except OSError as exc:
        raise KeySourceError(f"{flag} file:{path}: cannot read it ({exc.strerror})") from None
    return _one_line(text)


def _from_stdin(provider: Provider, stdin: TextIO) -> str:
    if stdin.isatty():
        return getpass.getpass(f"{provider.value} key (not echoed): ")
    return _one_line(stdin.read())


def _one_line(text: str) -> str:
    """Drop the one newline a file or `echo` ends with; anything else is the operator's to judge
    (it names leading spaces, inner newlines and the like precisely)."""
    return text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
