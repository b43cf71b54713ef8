"""The API's one error shape: ``{"error": {"code", "message", "details"}}``."""

from typing import Any

from django.http import JsonResponse
from ninja import Schema

CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    429: "rate_limited",
}


def body(status: int, message: str, details: Any = None, code: str | None = None) -> dict:
    return {
        "error": {
            "code": code or CODES.get(status, "error"),
            "message": message,
            "details": details if details is not None else {},
        }
    }


def response(status: int, message: str, details: Any = None, code: str | None = None):
    answer = JsonResponse(body(status, message, details, code), status=status)
    if status == 401:
        answer["WWW-Authenticate"] = 'Bearer realm="ledgerflow"'
    return answer


class ApiError(Exception):
    """An answer in the error shape with details (config/api.py turns it
    into the response)."""

    def __init__(self, status: int, message: str, details: Any = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.details, self.code = status, message, details, code


class ErrorOut(Schema):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(Schema):
    error: ErrorOut


def envelop(status: int, answer: dict, details: Any = None) -> dict:
    """A typed refusal (a stale save, say) in the error shape too: its own
    fields stay beside ``error`` for the editor that reads them."""
    return {**answer, **body(status, str(answer.get("detail", "")), details)}
