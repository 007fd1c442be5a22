"""Plumbing for `hack/demo.py`: the transcript (with key redaction), the demo's own processes
(the provider stand-ins, the operator) tracked by PID, stopping a kept demo, and a check that
every listening socket of the demo's processes is on loopback.

The cluster, LiteLLM and the operator are started with the test harness (`tests/harness`);
this module only adds what a demo needs on top: processes that may outlive the script
(`--keep`) and a way to find and stop them again by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.cluster import die_with_parent_hook
from harness.waiting import wait_for
from stubs.provider_stub import ProviderStub, fingerprint_of

REPO = Path(__file__).resolve().parents[1]
STUB_SCRIPT = REPO / "tests" / "stubs" / "provider_stub.py"
DEMO_STATE = "demo.json"
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


# --- processes the demo owns --------------------------------------------------------------


def record(state_dir: Path, **values: object) -> None:
    """Merge values into STATE/demo.json (PIDs of what the demo started, and how)."""
    path = state_dir / DEMO_STATE
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(values)
    path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")


def recorded(state_dir: Path) -> dict[str, object]:
    path = state_dir / DEMO_STATE
    return dict(json.loads(path.read_text())) if path.exists() else {}


def start_stub(state_dir: Path, *, detach: bool) -> tuple[ProviderStub, subprocess.Popen[bytes]]:
    """The OpenAI/Anthropic stand-ins as a process of their own (LiteLLM calls them too).

    A process rather than a thread so `--keep` can leave them running; the state file holds
    their URLs and key overrides (fingerprints only), and names this state dir, so a later
    `--stop` can tell the PID is ours.
    """
    state_file = state_dir / "provider-stub.json"
    state_file.unlink(missing_ok=True)
    with (state_dir / "provider-stub.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(STUB_SCRIPT), "--port", "0", "--state-file", str(state_file)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detach else die_with_parent_hook(),
        )
    record(state_dir, stub_pid=process.pid)

    def url() -> str | None:
        if process.poll() is not None:
            raise RuntimeError(
                f"provider stub exited with {process.returncode}; "
                f"see {state_dir / 'provider-stub.log'}"
            )
        try:
            saved = json.loads(state_file.read_text())
        except (OSError, ValueError):
            return None
        return str(saved["PROVIDER_STUB_URL"]) if saved.get("pid") == process.pid else None

    return ProviderStub(wait_for(url, timeout=20, what="the provider stand-ins")), process


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _environ(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def owned_stub_pid(state_dir: Path) -> int | None:
    """The recorded stub PID, if that process still runs and its command line names our
    state file (so a recycled PID is never signalled)."""
    pid = recorded(state_dir).get("stub_pid")
    if not isinstance(pid, int) or not _alive(pid):
        return None
    marker = str(state_dir / "provider-stub.json")
    return pid if marker in _cmdline(pid) else None


def owned_operator_pid(state_dir: Path) -> int | None:
    """The recorded operator PID, if it still runs `byok_operator` with our encryption keys
    file (in this state dir) in its environment."""
    pid = recorded(state_dir).get("operator_pid")
    if not isinstance(pid, int) or not _alive(pid):
        return None
    if "byok_operator.cli.main" not in _cmdline(pid):
        return None
    marker = f"BYOK_ENCRYPTION_KEYS_FILE={state_dir / 'operator' / 'encryption-keys'}"
    return pid if marker in _environ(pid) else None


def terminate(pid: int, *, group: bool, timeout: float = 20) -> None:
    """SIGTERM (the process group, for a session leader), then SIGKILL after the deadline."""

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            send(signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.1)


# --- listeners ----------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(roots: Iterable[int]) -> set[int]:
    """The roots and every process below them."""
    tree = _children()
    found: set[int] = set()
    todo = [r for r in roots if r > 0]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(tree.get(pid, []))
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def _decode(address: str, v6: bool) -> str:
    host, port = address.split(":")
    raw = bytes.fromhex(host)
    if not v6:
        text = ".".join(str(b) for b in reversed(raw))
    else:
        words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
        joined = b"".join(words)
        text = ":".join(joined[i : i + 2].hex() for i in range(0, 16, 2))
    return f"{text}:{int(port, 16)}"


def _listening() -> Iterator[tuple[str, str, bool]]:
    """(inode, local address, is loopback) for every listening TCP socket on the machine."""
    for name, v6 in (("tcp", False), ("tcp6", True)):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] != "0A":  # TCP_LISTEN
                    continue
                address = _decode(parts[1], v6)
                host = address.rsplit(":", 1)[0]
                loopback = host.startswith("127.") or host in (
                    "0000:0000:0000:0000:0000:0000:0000:0001",
                    "0000:0000:0000:0000:0000:ffff:7f00:0001",
                )
                yield parts[9], address, loopback


def listeners(pids: Iterable[int]) -> list[tuple[int, str, bool]]:
    """(pid, address, is loopback) of every TCP listener held by these processes."""
    table_ = {inode: (address, loopback) for inode, address, loopback in _listening()}
    found = []
    for pid in sorted(set(pids)):
        for inode in _socket_inodes(pid):
            if inode in table_:
                address, loopback = table_[inode]
                found.append((pid, address, loopback))
    return found
