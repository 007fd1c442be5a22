#!/usr/bin/env python3
"""CPU per sweep for the part that grows with the tenants: checking every remembered tenant
against one gateway listing (drift, strays) and reading platform spend from it.

Builds N settled tenants (half BYOK with an OpenAI credential, half Platform) and the gateway
listing that matches them, then times ``Maintenance._check_tenants`` and ``_refresh_spend``
on them: nothing has drifted and no spend moved, so no call leaves the process. The listing
itself (HTTP and JSON) is not in this figure; `make bench --settle` measures the whole sweep.

    .venv/bin/python hack/sweep_cpu.py [--tenants 1000 10000] [--rounds 5]

Per-tenant cost should stay flat as N grows. Compare two checkouts by running this copy with
PYTHONPATH pointing at each one's ``operator/`` (back to back, same session).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from cpu_figures import process_cpu, spread

from byok_operator.api import ConditionType, Provider
from byok_operator.core.gateway import byok_team_id, credential_name, platform_team_id
from byok_operator.gateway import CredentialInfo, KeyInfo, TeamInfo
from byok_operator.maintenance import GatewaySnapshot, Maintenance
from byok_operator.settings import Settings

SPEND = 1.25
ENV = {"LITELLM_URL": "http://127.0.0.1:4000", "LITELLM_MASTER_KEY": "sk-bench-master"}


def _tenant(i: int) -> tuple[dict[str, Any], KeyInfo, TeamInfo, CredentialInfo | None]:
    uid, byok = str(uuid.UUID(int=i)), i % 2 == 0
    token = f"{i:064x}"
    status: dict[str, Any] = {
        "mode": "BYOK" if byok else "Platform",
        "virtualKey": {"tokenHash": token},
        "gatewayRevision": 1,
        "providers": [{"name": "openai", "committedAt": "2026-12-01T12:00:00Z"}] if byok else [],
        "spend": "$1.25",
        "conditions": [{"type": ConditionType.BUDGET_AVAILABLE.value, "status": "True"}],
    }
    body = {
        "metadata": {"namespace": f"ns-{i % 50}", "name": f"t-{i:05d}", "uid": uid},
        "spec": {"mode": status["mode"]},
        "status": status,
    }
    team_id = byok_team_id(uid) if byok else platform_team_id(uid)
    marks = {"instance": "bench", "tlc_uid": uid}
    key = KeyInfo(token=token, team_id=team_id, metadata=marks)
    team = TeamInfo(team_id=team_id, spend=SPEND, info=marks)
    credential = (
        CredentialInfo(name=credential_name(uid, Provider.OPENAI), info=marks) if byok else None
    )
    return body, key, team, credential


def _maintenance(tenants: int) -> tuple[Maintenance, GatewaySnapshot]:
    known: dict[str, dict[str, Any]] = {}
    keys, teams, credentials = [], [], []
    for i in range(tenants):
        body, key, team, credential = _tenant(i)
        known[body["metadata"]["uid"]] = body
        keys.append(key)
        teams.append(team)
        credentials += [credential] if credential else []
    locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
    reconciler = SimpleNamespace(
        deps=SimpleNamespace(settings=Settings.from_env(ENV), kube=None, gateway=None),
        lock=locks.__getitem__,
        finished={},
        spend={},
    )
    maintenance = Maintenance(reconciler, lambda: known)  # type: ignore[arg-type]
    return maintenance, GatewaySnapshot(keys=keys, teams=teams, credentials=credentials)


async def _round(tenants: int) -> float:
    maintenance, snapshot = _maintenance(tenants)
    cpu = process_cpu()
    drifted, strays = await maintenance._check_tenants(snapshot, time.monotonic(), {})
    updates = await maintenance._refresh_spend(snapshot)
    spent = process_cpu() - cpu
    if drifted or strays or updates:
        raise SystemExit("the synthetic tenants should be settled: the figure would be wrong")
    return spent * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("sweep check + spend, CPU-ms per sweep, median (min-max), and CPU-us per tenant:")
    for tenants in args.tenants:
        ms = [asyncio.run(_round(tenants)) for _ in range(args.rounds)]
        per_tenant = [m * 1000 / tenants for m in ms]
        print(f"  {tenants:6d} tenants: {spread(ms, 1)} ms; {spread(per_tenant, 1)} us/tenant")


if __name__ == "__main__":
    main()
