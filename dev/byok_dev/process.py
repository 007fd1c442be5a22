"""The one way the development stack starts, finds and stops its processes.

Every part runs in its own session (a terminal's Ctrl-C must not kill it before the stack
stops it), logs to ``STATE/NAME.log`` and records its PID in ``STATE/NAME.pid``. Unless
detached (``--keep``), it also dies with the process that started it, even by ``kill -9``.
A recorded PID is signalled only after ``owned_pid`` proved it is still ours: alive, and its
command line (and for the operator, its environment) holds exactly what the stack started it
with, so a recycled PID is never touched.

Also here: the processes below a set of roots and the TCP listeners they hold, which the
demo and tests use to prove that nothing binds beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def die_with_parent_hook() -> Callable[[], None]:
    """A preexec hook: the child gets SIGTERM when this process dies, even by kill -9, so a
    run that is killed outright leaks no servers."""
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def hook() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return hook


def spawn(
    name: str,
    argv: list[str],
    state_dir: Path,
    *,
    detach: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_name: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own, output in STATE/NAME.log, PID in NAME.pid.

    The die-with-parent signal follows the *thread* that started the child, so only a child
    started from the main thread gets it: one restarted from a worker thread would be killed
    when that thread ends."""
    tied = not detach and threading.current_thread() is threading.main_thread()
    with (state_dir / (log_name or f"{name}.log")).open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=die_with_parent_hook() if tied else None,
        )
    (state_dir / f"{name}.pid").write_text(f"{process.pid}\n")
    return process


def alive(pid: int) -> bool:
    """Whether pid still runs (a zombie counts as gone). Never reaps: the Popen that started
    a child must still read its real exit code."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _proc_strings(pid: int, what: str) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/{what}").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def recorded_pid(state_dir: Path, name: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((state_dir / f"{name}.pid").read_text().strip())
    return None


def owned_pid(
    state_dir: Path,
    name: str,
    *,
    program: str | None = None,
    args: Sequence[str] = (),
    arg_under: Path | None = None,
    env: Sequence[str] = (),
) -> int | None:
    """The PID in STATE/NAME.pid if that process runs and is provably ours, so a recycled
    PID is never signalled: its program (argv[0]'s base name) is ``program``, every one of
    ``args`` is an argument of its command line, one argument names a path under
    ``arg_under``, and every one of ``env`` is an entry of its environment (exact matches)."""
    pid = recorded_pid(state_dir, name)
    if pid is None or not alive(pid):
        return None
    argv = _proc_strings(pid, "cmdline")
    if not argv or (program is not None and Path(argv[0]).name != program):
        return None
    if not set(args) <= set(argv):
        return None
    if arg_under is not None and not any(f"{arg_under}/" in arg for arg in argv[1:]):
        return None
    if env and not set(env) <= set(_proc_strings(pid, "environ")):
        return None
    return pid


def terminate(pid: int, *, group: bool = False, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM (the whole process group, for a session leader), SIGKILL after the deadline;
    gives up 5 s after SIGKILL. Returns whether the process is gone."""

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                try:
                    os.killpg(pid, sig)
                    return
                except ProcessLookupError:
                    pass  # not a group leader after all: signal the process itself
            os.kill(pid, sig)

    send(signal.SIGTERM)
    for sig, wait in ((signal.SIGKILL, timeout), (None, 5.0)):
        deadline = time.monotonic() + wait
        while alive(pid):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        else:
            return True
        if sig is not None:
            send(sig)
    return not alive(pid)


def stop_owned(
    state_dir: Path,
    name: str,
    *,
    group: bool = False,
    timeout: float = STOP_TIMEOUT,
    **proof: Any,
) -> int | None:
    """Stop the recorded process if it is ours (``proof``: ``owned_pid``'s checks); forget
    its PID either way. Returns the PID that was stopped, if any."""
    pid = owned_pid(state_dir, name, **proof)
    if pid is not None:
        terminate(pid, group=group, timeout=timeout)
    (state_dir / f"{name}.pid").unlink(missing_ok=True)
    return pid


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
    by_inode = {inode: (address, loopback) for inode, address, loopback in _listening()}
    found = []
    for pid in sorted(set(pids)):
        for inode in _socket_inodes(pid):
            if inode in by_inode:
                address, loopback = by_inode[inode]
                found.append((pid, address, loopback))
    return found
