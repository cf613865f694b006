"""One exception tree for the whole gateway.

Each error carries the HTTP status the client should see and a kind that inbound translators render
in their own API's error format (OpenAI's `{"error": {...}}`, Anthropic's `{"type": "error", ...}`).
Provider adapters map vendor errors to the most specific class at the boundary, so nothing in the
middle ever inspects a vendor's error body.
"""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    status: ClassVar[int] = 500
    # OpenAI-style error type; the Anthropic renderer maps it to its own vocabulary.
    kind: ClassVar[str] = "api_error"
    # Whether a client retrying the same request could succeed (x-should-retry).
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        provider: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.provider = provider
        self.retry_after = retry_after
        if status is not None:
            self.status = status  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.message!r})"


# --- the client's fault -------------------------------------------------------------------


class InvalidRequest(GatewayError):
    status = 400
    kind = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    kind = "authentication_error"


class PermissionDenied(GatewayError):
    status = 403
    kind = "permission_error"


class NotFound(GatewayError):
    status = 404
    kind = "not_found_error"


class ModelNotFound(NotFound):
    code = "model_not_found"


class BodyTooLarge(GatewayError):
    status = 413
    kind = "request_too_large"


class UnprocessableEntity(GatewayError):
    status = 422
    kind = "invalid_request_error"


class RateLimited(GatewayError):
    status = 429
    kind = "rate_limit_error"
    retryable = True


class QuotaExceeded(GatewayError):
    """A budget is spent: retrying cannot help until the budget resets."""

    status = 429
    kind = "insufficient_quota"
    retryable = False


# --- the upstream's or the gateway's fault -----------------------------------------------------


class UpstreamError(GatewayError):
    """The provider failed in a way another deployment might not (5xx, bad body, reset)."""

    status = 502
    kind = "api_error"
    retryable = True


class UpstreamTimeout(UpstreamError):
    status = 504
    kind = "timeout_error"


class UpstreamOverloaded(UpstreamError):
    status = 503
    kind = "overloaded_error"


class Unavailable(GatewayError):
    """No deployment can serve now (all full, all broken, in-house queue full)."""

    status = 503
    kind = "overloaded_error"
    retryable = True


class AllProvidersFailed(GatewayError):
    """Every attempt failed; carries each attempt's error so the client sees all of them."""

    retryable = True

    def __init__(self, errors: list[GatewayError]) -> None:
        last = errors[-1]
        detail = "; ".join(f"{e.provider or '?'}: {e.message}" for e in errors)
        super().__init__(f"all providers failed: {detail}", provider=last.provider, retry_after=last.retry_after)
        self.errors = errors
        self.status = last.status  # type: ignore[misc]
        self.kind = last.kind  # type: ignore[misc]
        self.retryable = last.retryable  # type: ignore[misc]


def client_error_for_status(status: int) -> type[GatewayError]:
    """The class for an upstream 4xx that is the caller's fault and goes straight back."""
    return {
        400: InvalidRequest,
        401: AuthenticationFailed,
        403: PermissionDenied,
        404: NotFound,
        413: BodyTooLarge,
        422: UnprocessableEntity,
    }.get(status, InvalidRequest)
