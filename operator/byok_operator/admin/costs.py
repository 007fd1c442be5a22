"""`kubectl byok costs`: the costs dashboard across tenants, from status alone.

Platform tenants show the spend the operator last read from the gateway (`status.spend`) and
their budget (`spec.platform.budget`); BYOK tenants show "N/A" and "Own Keys": their spend is
on their own provider accounts. The total line adds up Platform spend and budgets (budgets of
different periods are added as they are; the column says each one's period).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from byok_operator import api

NOT_APPLICABLE = "N/A"
OWN_KEYS = "Own Keys"
EMPTY = "-"


@dataclass(frozen=True)
class CostRow:
    namespace: str
    name: str
    tenant: str
    mode: str
    total_usd: Decimal | None  # None: BYOK, or not read yet
    budget_usd: Decimal | None
    period: str | None

    @property
    def share(self) -> Decimal | None:
        if self.total_usd is None or not self.budget_usd:
            return None
        return self.total_usd / self.budget_usd

    def cells(self) -> list[str]:
        if self.mode == api.Mode.BYOK.value:
            return [self.tenant, self.mode, NOT_APPLICABLE, OWN_KEYS, EMPTY]
        budget = f"${self.budget_usd:.2f}/{self.period}" if self.budget_usd is not None else EMPTY
        return [self.tenant, self.mode, _usd(self.total_usd), budget, _percent(self.share)]

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for money in ("total_usd", "budget_usd"):
            data[money] = str(data[money]) if data[money] is not None else None
        data["share_used"] = float(self.share) if self.share is not None else None
        return data


def cost_row(obj: Mapping[str, Any]) -> CostRow:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = obj.get("status") or {}
    mode = str(status.get("mode") or spec.get("mode") or api.Mode.PLATFORM.value)
    budget = (spec.get("platform") or {}).get("budget") or {}
    platform = mode == api.Mode.PLATFORM.value
    return CostRow(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        tenant=str(spec.get("tenantId") or meta.get("name") or ""),
        mode=mode,
        total_usd=parse_usd(status.get("spend")) if platform else None,
        budget_usd=parse_usd(budget.get("maxUSD")) if platform else None,
        period=str(budget.get("period") or "30d") if platform and budget else None,
    )


def parse_usd(value: object) -> Decimal | None:
    """ "$234.56", "234.56" or 500 as a Decimal; None for "N/A", empty or unreadable."""
    text = str(value or "").strip().removeprefix("$").split("/")[0]
    try:
        return Decimal(text) if text else None
    except InvalidOperation:
        return None


def format_costs(rows: Sequence[CostRow], *, all_namespaces: bool) -> str:
    headers = ["TENANT", "MODE", "TOTAL", "BUDGET", "USED"]
    cells = [([r.namespace] if all_namespaces else []) + r.cells() for r in rows]
    if all_namespaces:
        headers = ["NAMESPACE", *headers]
    total = totals(rows)
    summary = ["TOTAL (Platform)", "", _usd(total["total_usd"]), _usd(total["budget_usd"])]
    summary.append(_percent(total["share"]))
    if all_namespaces:
        summary = ["", *summary]
    table = [headers, *cells, summary]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]
    lines.insert(-1, "-" * len(lines[0]))
    return "\n".join(lines) + "\n"


def totals(rows: Sequence[CostRow]) -> dict[str, Decimal | None]:
    spent = [r.total_usd for r in rows if r.total_usd is not None]
    budgets = [r.budget_usd for r in rows if r.budget_usd is not None]
    total = sum(spent, Decimal(0))
    budget = sum(budgets, Decimal(0))
    return {
        "total_usd": total,
        "budget_usd": budget if budgets else None,
        "share": (total / budget) if budget else None,
    }


def costs_json(rows: Sequence[CostRow]) -> dict[str, Any]:
    total = totals(rows)
    return {
        "tenants": [r.as_json() for r in rows],
        "total": {
            "total_usd": str(total["total_usd"]),
            "budget_usd": str(total["budget_usd"]) if total["budget_usd"] is not None else None,
            "share_used": float(total["share"]) if total["share"] is not None else None,
        },
    }


def _usd(value: Decimal | None) -> str:
    return f"${value:.2f}" if value is not None else EMPTY


def _percent(share: Decimal | None) -> str:
    return f"{share * 100:.1f}%" if share is not None else EMPTY
