"""The project's own provider errors. Adapters map every SDK exception to one of these, at the edge."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from providers.types import Usage


class ErrorKind(StrEnum):
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    BAD_REQUEST = "bad_request"
    CONTEXT_TOO_LONG = "context_too_long"
    CONTENT_FILTERED = "content_filtered"
    INSUFFICIENT_QUOTA = "insufficient_quota"
    NOT_FOUND = "not_found"
    INVALID_RESPONSE = "invalid_response"


RETRYABLE = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.OVERLOADED,
        ErrorKind.SERVER_ERROR,
        ErrorKind.TIMEOUT,
        ErrorKind.CONNECTION,
        ErrorKind.INVALID_RESPONSE,
    }
)


class ProviderError(Exception):
    """A classified provider failure. `retryable` says whether another attempt (here or elsewhere) may succeed."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        request_id: str = "",
    ):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id
        self.usage: Usage | None = None  # what the provider reported before a stream broke (Anthropic's message_start)

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    @property
    def credential_rejected(self) -> bool:
        """401/403: the credential itself is bad and should be disabled."""
        return self.kind in (ErrorKind.AUTHENTICATION, ErrorKind.PERMISSION)

    def __repr__(self) -> str:
        return f"ProviderError({self.kind.value}, status={self.status}, retry_after={self.retry_after}, {self.message!r})"


class NoPriceError(LookupError):
    """No price is in force for a model at a time. Never billed as zero."""
