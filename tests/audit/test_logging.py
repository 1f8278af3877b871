"""RedactPHIFilter: PHI-shaped values in a log message or its arguments are redacted, CR/LF
cannot forge a line, and the filter is on the console handler the settings configure."""

from __future__ import annotations

import io
import logging
import uuid

import pytest
from django.conf import settings

from neonpro.audit.logging import RedactPHIFilter, redact

SHAPES = [
    ("123-45-6789", "[REDACTED-SSN]"),
    ("123456789", "[REDACTED-SSN]"),
    ("jane.doe+tag@mail.example.org", "[REDACTED-EMAIL]"),
    ("(555) 123-4567", "[REDACTED-PHONE]"),
    ("555-123-4567", "[REDACTED-PHONE]"),
    ("555.123.4567", "[REDACTED-PHONE]"),
    ("+1 555 123 4567", "[REDACTED-PHONE]"),
    ("+15551234567", "[REDACTED-PHONE]"),
    ("5551234567", "[REDACTED-PHONE]"),
]
SHAPE_IDS = [
    "ssn",
    "ssn-digits",
    "email",
    "phone-parens",
    "phone-dashes",
    "phone-dots",
    "phone-intl",
    "e164",
    "phone-digits",
]


def _filtered(msg: str, *args: object) -> logging.LogRecord:
    record = logging.LogRecord("neonpro.test", logging.INFO, __file__, 1, msg, args or None, None)
    assert RedactPHIFilter().filter(record) is True  # redacts, never drops
    return record


@pytest.mark.parametrize(("value", "placeholder"), SHAPES, ids=SHAPE_IDS)
def test_phi_in_the_message_is_redacted(value: str, placeholder: str) -> None:
    record = _filtered(f"lookup for {value} done")
    assert record.getMessage() == f"lookup for {placeholder} done"


@pytest.mark.parametrize(("value", "placeholder"), SHAPES, ids=SHAPE_IDS)
def test_phi_in_the_arguments_is_redacted(value: str, placeholder: str) -> None:
    record = _filtered("lookup for %s by %s done", value, "dr.care")
    assert record.getMessage() == f"lookup for {placeholder} by dr.care done"
    assert record.args == ()  # a later handler cannot re-format the raw arguments


def test_phi_in_mapping_arguments_is_redacted() -> None:
    record = _filtered("patient %(ssn)s / %(email)s", {"ssn": "123-45-6789", "email": "a@b.example"})
    assert record.getMessage() == "patient [REDACTED-SSN] / [REDACTED-EMAIL]"


@pytest.mark.parametrize(
    "text", ["a\r\n2024-01-01 INFO forged: admin logged in", "a\nb", "a\rb"], ids=["crlf", "lf", "cr"]
)
def test_cr_and_lf_are_escaped_in_message_and_arguments(text: str) -> None:
    for record in (_filtered(text), _filtered("user %s", text)):
        message = record.getMessage()
        assert "\r" not in message and "\n" not in message
        assert message.endswith(text.replace("\r", "\\r").replace("\n", "\\n"))


def test_identifiers_and_times_are_left_alone() -> None:
    text = f"request {uuid.UUID('12345678-1234-4234-8234-123456789012')} at 2024-01-02T03:04:05Z took 1234 ms, event 42"
    assert redact(text) == text


def test_a_broken_format_string_still_logs_redacted() -> None:
    record = _filtered("ssn 123-45-6789 %s %s", "only one")
    assert record.getMessage() == "ssn [REDACTED-SSN] %s %s"


def test_phi_in_an_exception_traceback_is_redacted() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactPHIFilter())
    logger = logging.getLogger("neonpro.test.exc")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError("no patient with ssn 123-45-6789")
        except ValueError:
            logger.exception("lookup failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert "lookup failed" in stream.getvalue()
    assert "123-45-6789" not in stream.getvalue()


def test_the_filter_is_configured_on_the_console_handler() -> None:
    assert settings.LOGGING["filters"]["redact_phi"]["()"] == "neonpro.audit.logging.RedactPHIFilter"
    assert "redact_phi" in settings.LOGGING["handlers"]["console"]["filters"]
    assert "console" in settings.LOGGING["root"]["handlers"]


def test_the_live_console_handler_redacts() -> None:
    (handler,) = [h for h in logging.getLogger().handlers if any(isinstance(f, RedactPHIFilter) for f in h.filters)]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        logging.getLogger("neonpro.test.live").warning("search %s from %s\nforged", "123-45-6789", "a@b.example")
    finally:
        handler.setStream(previous)
    output = stream.getvalue()
    assert "search [REDACTED-SSN] from [REDACTED-EMAIL]\\nforged" in output
    assert "123-45-6789" not in output and "a@b.example" not in output
    assert output.count("\n") == 1
