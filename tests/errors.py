"""Reading the API's error body in tests: ``{"error": {"code", "message", "fields"}}``."""

from __future__ import annotations

from typing import Any


def error_of(response: Any) -> dict[str, Any]:
    """The ``error`` object of an API error response (fails the test if there is none)."""
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"no error body: {body!r}"
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "fields"}, f"unexpected error keys: {sorted(error)}"
    return error


def error_message(response: Any) -> str:
    return str(error_of(response)["message"])


def error_code(response: Any) -> str:
    return str(error_of(response)["code"])


def error_fields(response: Any) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = error_of(response)["fields"]
    return fields
