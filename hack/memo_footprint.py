#!/usr/bin/env python3
"""What the operator keeps in memory per tenant for its remembered view (``TenantBook``).

Reads TenantLLMConfigs as the API server sends them (``kubectl get tlc -A -o json`` or one
object), decodes each one N times afresh as the watch does, keeps what the ``remember``
handler keeps and drops the event, then reports the bytes still allocated per tenant
(tracemalloc). No cluster needed: the bodies come from a file.

    .venv/bin/python hack/memo_footprint.py BODIES.json [--tenants 2000] [--repeat 5]

Compare two checkouts by running each one's copy against the same file (PYTHONPATH picks the
package). This counts live Python objects only; the process's RSS also holds the allocator's
free space and every import (see README, "Performance").
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tracemalloc
from pathlib import Path
from typing import Any

from byok_operator.tenant.book import slim


def _bodies(path: Path) -> list[str]:
    """Each object of the file as its own JSON text (a List's items, or the one object)."""
    document = json.loads(path.read_text())
    items = document.get("items") if document.get("kind", "").endswith("List") else [document]
    return [json.dumps(item) for item in items or []]


def held_per_tenant(texts: list[str], tenants: int) -> float:
    """Bytes per tenant left allocated after remembering ``tenants`` freshly decoded bodies."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept: list[Any] = []
    for i in range(tenants):
        event = json.loads(texts[i % len(texts)])  # a fresh decode per event, like the watch
        kept.append(slim(event))
        del event
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del kept
    return held / tenants


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bodies", type=Path, help="kubectl get tlc -A -o json > FILE")
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    texts = _bodies(args.bodies)
    if not texts:
        parser.error(f"{args.bodies}: no TenantLLMConfig in it; write one with kubectl -o json")
    runs = [held_per_tenant(texts, args.tenants) for _ in range(args.repeat)]
    raw = statistics.median(len(t) for t in texts)
    print(
        f"{len(texts)} distinct bodies (median {raw:.0f} bytes of JSON), {args.tenants} tenants,"
        f" {args.repeat} runs: held per tenant median {statistics.median(runs) / 1024:.2f} KiB"
        f" (min {min(runs) / 1024:.2f}, max {max(runs) / 1024:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
