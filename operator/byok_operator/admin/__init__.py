"""The admin panel's actions on TenantLLMConfigs and their key Secrets, shared by both front
ends: `kubectl byok` (cli/kubectl_byok.py) and the BYOK HTTP API (webapi.py)."""
