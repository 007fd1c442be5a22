"""The I/O shell around the pure core: one reconcile pass per tenant over small collaborators."""

from byok_operator.tenant.reconciler import STATE_KEY, Deps, Outcome, Reconciler

__all__ = ["STATE_KEY", "Deps", "Outcome", "Reconciler"]
