"""Provider keys: offline format checks, validation with the official SDKs, the error taxonomy.

Typical use (one `KeyValidator` per operator process, closed at shutdown):

    validator = KeyValidator(timeout=10, cache_ttl=300, max_concurrency=16)
    try:
        validated = await validator.validate(Provider.OPENAI, key, allowed_models=["gpt-4o"])
    except KeyValidationError as err:
        ...  # err.reason is the condition reason, err.message is safe to show, err.retryable
"""

from byok_operator.providers.anthropic import AnthropicModelLister
from byok_operator.providers.errors import VALIDATION_REASONS, KeyValidationError
from byok_operator.providers.formats import (
    ANTHROPIC_PREFIX,
    MAX_KEY_LENGTH,
    MIN_KEY_LENGTH,
    OPENAI_PREFIX,
    check_format,
)
from byok_operator.providers.openai import OpenAIModelLister
from byok_operator.providers.validator import KeyValidator, ModelLister, ValidatedKey, offered

__all__ = [
    "ANTHROPIC_PREFIX",
    "MAX_KEY_LENGTH",
    "MIN_KEY_LENGTH",
    "OPENAI_PREFIX",
    "VALIDATION_REASONS",
    "AnthropicModelLister",
    "KeyValidationError",
    "KeyValidator",
    "ModelLister",
    "OpenAIModelLister",
    "ValidatedKey",
    "check_format",
    "offered",
]
