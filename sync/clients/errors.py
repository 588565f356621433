"""Typed errors the clients raise. Flows decide what each means for a sync record."""

from __future__ import annotations


class ApiError(Exception):
    """Base: an outside API did not do what was asked."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | str | None = None,
        excerpt: str = "",
        retry_after: float | None = None,
        provider: str = "",
        entries: dict[int, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.excerpt = excerpt
        self.retry_after = retry_after
        self.provider = provider
        # A batch request refused for some of its entries: entry index → what was wrong with it (Kommo's
        # problem+json names them by request_id). Empty when the refusal names no entry.
        self.entries = entries or {}

    def __str__(self) -> str:
        return self.message


class TransientError(ApiError):
    """Worth retrying later: 429, 5xx, timeouts, lock contention, temporary errors."""


class BusinessError(ApiError):
    """The API refused the request on its merits; a person (or a mapping fix) must act."""


class AuthError(ApiError):
    """Credentials are wrong, expired or revoked; retrying blindly will not help."""


class NotFoundError(ApiError):
    """The thing asked for does not exist (or is not visible to these credentials)."""


class UnexpectedAnswer(BusinessError):
    """A successful answer zkbridge cannot read as the vendor documents it (a missing number, an unknown status,
    a number that is no number). Not retried blindly: the request may have done its work, so a person looks
    (the flow's own retry first looks for what the request made)."""
