"""kopf's diff-base storage in status, built without copying the whole resource.

kopf builds the "essence" it diffs (the spec, labels and annotations) on every watch event of
every tenant, three per new tenant. Its builder deep-copies the entire body, status and
managedFields included, only to delete most of it; after a first pass the status is most of a
TenantLLMConfig, and those copies were among the largest items of the operator's CPU in a
profile of `make bench`. This builder hands kopf's own builder only the parts it keeps, so the
essence is identical (a unit test compares the two) and kopf's rules for annotations, empty
stanzas and ignored fields still apply.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kopf

# Everything the base builder deletes before it picks metadata.labels / .annotations back.
DROPPED = ("apiVersion", "kind", "metadata", "status")


class LeanStatusDiffBaseStorage(kopf.StatusDiffBaseStorage):
    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[Any] | None = None,
    ) -> kopf.BodyEssence:
        if extra_fields:  # a handler tracks a status field: kopf's whole-body path
            return super().build(body=body, extra_fields=extra_fields)
        meta = body.get("metadata") or {}
        kept: dict[str, Any] = {k: v for k, v in body.items() if k not in DROPPED}
        kept["metadata"] = {k: meta[k] for k in ("labels", "annotations") if k in meta}
        return super().build(body=kopf.Body(cast(kopf.RawBody, kept)), extra_fields=None)
