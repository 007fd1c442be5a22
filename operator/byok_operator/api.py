"""Names of the API surface, in one place: group, version, labels, annotations, reasons."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

GROUP: Final = "llm.byok.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "TenantLLMConfig"
PLURAL: Final = "tenantllmconfigs"
SHORT_NAME: Final = "tlc"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

FINALIZER: Final = f"{GROUP}/cleanup"
# kopf keeps its progress and diff-base under this annotation prefix (not GROUP: kopf ignores
# its own prefix when diffing, and annotations under GROUP must trigger reconciles).
KOPF_PREFIX: Final = "kopf.byok.io"
MANAGER: Final = "byok-operator"

# Secrets carrying raw provider keys are watched only when they carry this label.
CREDENTIALS_LABEL: Final = f"{GROUP}/credentials"
# Labels on what the operator creates.
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
TENANT_UID_LABEL: Final = f"{GROUP}/tenant-uid"
TENANT_NAME_LABEL: Final = f"{GROUP}/tenant-name"
TENANT_NAMESPACE_LABEL: Final = f"{GROUP}/tenant-namespace"

# Annotations on a TenantLLMConfig.
ROTATE_VIRTUAL_KEY_ANNOTATION: Final = f"{GROUP}/rotate-virtual-key"
# "true" on a resource being deleted: finish without removing its gateway objects (audited).
ABANDON_GATEWAY_CLEANUP_ANNOTATION: Final = f"{GROUP}/abandon-gateway-cleanup"
SECRETS_VERSION_ANNOTATION: Final = f"{GROUP}/secrets-version"
# On vault Secrets: which encryption key wrote them (a hash of it), for the rewrap.
ENCRYPTION_KEY_ID_ANNOTATION: Final = f"{GROUP}/encryption-key-id"

GATEWAY_SECRET_SUFFIX: Final = "-llm-gateway"
GATEWAY_SECRET_URL_KEY: Final = "LITELLM_BASE_URL"
GATEWAY_SECRET_KEY_KEY: Final = "LITELLM_API_KEY"


class Mode(StrEnum):
    BYOK = "BYOK"
    PLATFORM = "Platform"


class Provider(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class ConditionType(StrEnum):
    READY = "Ready"
    KEYS_VALID = "KeysValid"
    GATEWAY_READY = "GatewayReady"
    ROTATION_DUE = "RotationDue"
    BUDGET_AVAILABLE = "BudgetAvailable"


class Reason(StrEnum):
    """Condition reasons (CamelCase, per the Kubernetes API conventions)."""

    SECRET_NOT_FOUND = "SecretNotFound"
    INVALID_FORMAT = "InvalidFormat"
    INVALID_KEY = "InvalidKey"
    VALIDATION_UNAVAILABLE = "ValidationUnavailable"
    MODELS_NOT_AVAILABLE = "ModelsNotAvailable"
    KEYS_VALID = "KeysValid"
    GATEWAY_UNAVAILABLE = "GatewayUnavailable"
    GATEWAY_ERROR = "GatewayError"
    PROVISIONED = "Provisioned"
    RECONCILING = "Reconciling"
    READY = "Ready"
    NOT_APPLICABLE = "NotApplicable"
    KEY_FRESH = "KeyFresh"
    KEY_TOO_OLD = "KeyTooOld"
    DECRYPTION_FAILED = "DecryptionFailed"
    INVALID_SPEC = "InvalidSpec"
    TENANT_ID_CONFLICT = "TenantIdConflict"
    DELETION_WAITS_FOR_GATEWAY = "DeletionWaitsForGateway"
    NO_BUDGET = "NoBudget"
    WITHIN_BUDGET = "WithinBudget"
    BUDGET_NEARLY_SPENT = "BudgetNearlySpent"
    BUDGET_EXHAUSTED = "BudgetExhausted"
    KUBERNETES_ERROR = "KubernetesError"
    VAULT_UNREADABLE = "VaultUnreadable"
    RECONCILE_ERROR = "ReconcileError"


class AuditAction(StrEnum):
    BYOK_ENABLED = "BYOK_ENABLED"
    BYOK_KEYS_ROTATED = "BYOK_KEYS_ROTATED"
    BYOK_DISABLED = "BYOK_DISABLED"
    BYOK_KEY_INVALID = "BYOK_KEY_INVALID"
    BYOK_ROTATION_DUE = "BYOK_ROTATION_DUE"
    PLATFORM_ENABLED = "PLATFORM_ENABLED"
    VIRTUAL_KEY_ISSUED = "VIRTUAL_KEY_ISSUED"
    VIRTUAL_KEY_ROTATED = "VIRTUAL_KEY_ROTATED"
    VIRTUAL_KEY_REVOKED = "VIRTUAL_KEY_REVOKED"
    GATEWAY_REPAIRED = "GATEWAY_REPAIRED"
    BUDGET_WARNING = "BUDGET_WARNING"
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"
    TENANT_DELETED = "TENANT_DELETED"
    GATEWAY_CLEANUP_ABANDONED = "GATEWAY_CLEANUP_ABANDONED"
