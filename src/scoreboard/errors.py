"""One error hierarchy, mapped to RFC 9457 problem details in one place.

Every failure a client can cause has a stable machine-readable ``code``. Handlers for
Litestar's own exceptions (404, 405, 413, validation) map them onto the same shape, and
anything unexpected becomes a bare 500 without a stack trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("scoreboard.errors")


class ScoreboardError(Exception):
    """Base of every error the service reports to a client."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.detail)


class InvalidToken(ScoreboardError):
    status, code, title = 401, "invalid_token", "Invalid or missing bearer token"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class InsufficientScope(ScoreboardError):
    status, code, title = 403, "insufficient_scope", "The token lacks a required scope"

    def __init__(self, scope: str, *alternatives: str) -> None:
        named = " or ".join(f"'{s}'" for s in (scope, *alternatives))
        extra: dict[str, Any] = {"requiredScope": scope}
        if alternatives:
            extra["acceptedScopes"] = [scope, *alternatives]
        super().__init__(
            f"this operation needs the {named} scope",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope" scope="{scope}"'},
            extra=extra,
        )


class InvalidAction(ScoreboardError):
    status, code, title = 422, "invalid_action", "The action ticket is not valid"


class UnknownActionType(ScoreboardError):
    status, code, title = 422, "unknown_action_type", "No such action type"


class ActionNotOwned(ScoreboardError):
    status, code, title = 403, "action_not_owned", "The action ticket belongs to another user"


class ActionExpired(ScoreboardError):
    status, code, title = 422, "action_expired", "The action ticket has expired"


class ActionNotReady(ScoreboardError):
    status, code, title = 422, "action_not_ready", "The action cannot be completed yet"


class ActionAlreadyUsed(ScoreboardError):
    status, code, title = 409, "action_already_used", "The action ticket was already used"


class TimestampOutOfWindow(ScoreboardError):
    status, code, title = 422, "timestamp_out_of_window", "The timestamp is outside the window"


class BatchTooLarge(ScoreboardError):
    status, code, title = 413, "batch_too_large", "Too many updates in one batch"


class ScoreWouldBeNegative(ScoreboardError):
    status, code, title = 422, "score_would_be_negative", "A score cannot go below zero"


class ValidationFailed(ScoreboardError):
    status, code, title = 400, "validation_error", "The request is not valid"


class UnsupportedMediaType(ScoreboardError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class NotFound(ScoreboardError):
    status, code, title = 404, "not_found", "Not found"


class BoardNotFound(ScoreboardError):
    status, code, title = 404, "board_not_found", "No such board"


class PeriodNotFound(ScoreboardError):
    status, code, title = 404, "period_not_found", "No such period on this board"


class BoardConflict(ScoreboardError):
    status, code, title = 409, "board_conflict", "The board cannot be changed that way"


class InvalidBoard(ScoreboardError):
    status, code, title = 422, "invalid_board", "The board definition is not valid"


class NoActiveBoard(ScoreboardError):
    status, code, title = 422, "board_retired", "No active board takes this action"


class InvalidValue(ScoreboardError):
    status, code, title = 422, "invalid_value", "The value does not fit this action type"


class ServiceUnavailable(ScoreboardError):
    status, code, title = 503, "service_unavailable", "The service is temporarily unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 2) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


_LITESTAR_CODES: dict[int, tuple[str, str]] = {
    400: ("validation_error", "The request is not valid"),
    401: ("invalid_token", "Invalid or missing bearer token"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "The request body is too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    429: ("rate_limited", "Too many requests"),
}


class Problem(msgspec.Struct):
    """RFC 9457 problem details, as every error is sent (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str


_DESCRIPTIONS = {
    400: "validation_error: the body or a parameter is not valid",
    401: "invalid_token: no valid bearer token",
    403: "insufficient_scope, action_not_owned or user_suspended",
    404: "not_found, board_not_found or period_not_found",
    409: "action_already_used (the ticket was already completed) or board_conflict",
    413: "payload_too_large, or batch_too_large (more updates in a batch than allowed)",
    415: "unsupported_media_type: send application/json",
    422: "invalid_action, unknown_action_type, action_expired, action_not_ready, "
    "timestamp_out_of_window, score_would_be_negative, invalid_value, invalid_board or "
    "board_retired",
    429: "rate_limited or velocity_exceeded: retry after Retry-After seconds",
    503: "service_unavailable: retry after Retry-After seconds",
}


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem responses a route can give."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=_DESCRIPTIONS[status],
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for status in statuses
    }


def problem_response(
    request: Request[Any, Any, Any],
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response[bytes]:
    body: dict[str, Any] = {
        "type": f"urn:scoreboard:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.url.path,
    }
    body.update(extra or {})
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=dict(headers or {}),
    )


def _scoreboard_error(request: Request[Any, Any, Any], exc: ScoreboardError) -> Response[bytes]:
    return problem_response(
        request,
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        headers=exc.headers,
        extra=exc.extra,
    )


def _validation_errors(exc: ValidationException) -> list[dict[str, Any]]:
    """Keep the field-level messages Litestar collects, but never echo the client's values."""
    errors: list[dict[str, Any]] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            errors.append({k: v for k, v in item.items() if k in ("key", "message", "source")})
    return errors


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    code, title = _LITESTAR_CODES.get(status, ("http_error", "Request failed"))
    extra: dict[str, Any] = {}
    detail = exc.detail if exc.detail and exc.detail != title else title
    if isinstance(exc, ValidationException):
        extra["errors"] = _validation_errors(exc)
        # Litestar's detail repeats the URL with its query string: whatever was sent there
        # (a token, say) would come back. The path alone says where it failed.
        detail = f"Validation failed for {request.method} {request.url.path}"
    if status >= 500:
        log.error("http_exception", status=status, path=request.url.path, exc_info=exc)
        code, title, detail = "internal_error", "Internal server error", "Internal server error"
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"}
    return problem_response(
        request, status=status, code=code, title=title, detail=detail, headers=headers, extra=extra
    )


UNSTORABLE_TEXT = ("CharacterNotInRepertoireError", "UntranslatableCharacterError")


def _unstorable_text(exc: BaseException) -> bool:
    """PostgreSQL refused a string it cannot store (a NUL character): the client's input."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in UNSTORABLE_TEXT:
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if _unstorable_text(exc):  # nothing was written: the transaction rolled back
        return problem_response(
            request,
            status=400,
            code="validation_error",
            title="The request is not valid",
            detail="text fields may not contain NUL characters",
        )
    log.exception("unhandled_error", path=request.url.path, error=type(exc).__name__)
    return problem_response(
        request,
        status=500,
        code="internal_error",
        title="Internal server error",
        detail="The server could not complete the request; it has been logged.",
    )


exception_handlers: ExceptionHandlersMap = {
    ScoreboardError: _scoreboard_error,
    HTTPException: _http_exception,
    Exception: _unexpected,
}

__all__ = ["PROBLEM_JSON", "ScoreboardError", "exception_handlers"]
