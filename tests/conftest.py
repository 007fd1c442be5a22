"""Shared pytest setup: the real parts (API server, LiteLLM test bed, provider stand-ins) live in harness/."""

pytest_plugins = ["harness.fixtures"]
