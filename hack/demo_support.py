"""The demo's transcript (with key redaction) and its tables. Everything the demo starts,
finds and stops is the development stack's (`byok_dev.stack`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from byok_dev.provider_stub import fingerprint_of

WIDTH = 100


# --- transcript ---------------------------------------------------------------------------


@dataclass
class Transcript:
    """Everything the demo prints, kept so the end can prove no key was printed.

    Known secrets (provider keys, virtual keys, the master key) are registered as they
    appear; a line that would contain one is redacted before it is printed, and counted.
    """

    secrets: set[str] = field(default_factory=set, repr=False)
    lines: list[str] = field(default_factory=list, repr=False)
    redactions: list[str] = field(default_factory=list)

    def secret(self, *values: str | None) -> None:
        self.secrets.update(v for v in values if v)

    def say(self, text: str = "", *, indent: int = 0) -> None:
        for line in (text.splitlines() or [""]) if text else [""]:
            clean = self._redact(line)
            out = " " * indent + clean if clean else ""
            self.lines.append(out)
            print(out, flush=True)

    def section(self, title: str) -> None:
        self.say()
        self.say("=" * WIDTH)
        self.say(f"  {title}")
        self.say("=" * WIDTH)

    def sub(self, title: str) -> None:
        self.say()
        self.say(f"--- {title} " + "-" * max(0, WIDTH - 5 - len(title)))

    def _redact(self, line: str) -> str:
        for value in self.secrets:
            if value in line:
                self.redactions.append(fingerprint_of(value))
                line = line.replace(value, f"[REDACTED {fingerprint_of(value)}]")
        return line


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A plain fixed-width table (the last column is not padded)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]

    def fmt(row: Sequence[str]) -> str:
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=False)]
        return "  ".join([*cells, str(row[-1])])

    rule = tuple("-" * len(h) for h in header)
    return "\n".join(fmt(r) for r in [header, rule, *rows])
