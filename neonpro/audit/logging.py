"""A logging filter that redacts PHI-shaped values (SSNs, emails, phone numbers).

Defence in depth: code must not log PHI in the first place; this catches what slips
through, in the message and in its arguments, before any handler formats it. CR and LF in
values are escaped too, so a value cannot forge a log line.
"""

from __future__ import annotations

import logging
import re

PATTERNS = [
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[REDACTED-EMAIL]"),
    (re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)"), "[REDACTED-SSN]"),
    (
        re.compile(r"(?<![\w-])(?:\+?\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}(?![\w-])"),
        "[REDACTED-PHONE]",
    ),
    (re.compile(r"(?<![\w-])\d{9}(?![\w-])"), "[REDACTED-SSN]"),
]


def redact(text: str) -> str:
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text.replace("\r", "\\r").replace("\n", "\\n")


class RedactPHIFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            # Formatters render the traceback after filters run: render it now, redacted.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text).replace("\\n", "\n")
        if record.stack_info:
            record.stack_info = redact(record.stack_info).replace("\\n", "\n")
        return True
