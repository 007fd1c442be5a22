"""byok-operator: per-tenant LLM keys (bring your own, or the platform's) behind a LiteLLM gateway."""

__version__ = "0.1.0"
