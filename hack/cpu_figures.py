"""What the hack/*_cpu.py micro-benchmarks share: this process's CPU clock, and their figures
printed as median (min-max) with the ratio to a baseline measured in the same run."""

from __future__ import annotations

import resource
import statistics


def process_cpu() -> float:
    """CPU-seconds this process has used, user and system (a socket write's kernel work too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def spread(values: list[float], digits: int = 2) -> str:
    """``median (min-max)``."""
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def print_ratios(title: str, figures: dict[str, list[float]], *, baseline: str) -> None:
    """One line per contender: its spread, and its median over the baseline's median."""
    reference = statistics.median(figures[baseline])
    width = max(len(name) for name in figures)
    print(f"{title}, median (min-max):")
    for name, values in figures.items():
        ratio = statistics.median(values) / reference
        print(f"  {name:{width}s} {spread(values, 3)}  {ratio:5.2f}x {baseline}")
