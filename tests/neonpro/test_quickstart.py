"""The README's API quick start, run as a newcomer would run it, against the real served app.

The README promises that those exact commands work; this keeps the promise checked. Only
the first line (where the reader fills in the address, certificate and password) and the
Python example's literals are replaced with the served app's values.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.served import totp_code

README = Path(__file__).resolve().parents[2] / "README.md"
pytestmark = pytest.mark.django_db  # the served app runs on a clone of the test database


def _block(language: str, after: str) -> str:
    text = README.read_text()
    start = text.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match, f"no ```{language} block after {after!r} in README.md"
    return match.group(1)


def test_the_curl_quick_start_signs_in_lists_and_searches(served_app: Any, tmp_path: Path) -> None:
    script = _block("sh", "<!-- quickstart")
    first, rest = script.split("\n", 1)
    assert first.startswith("BASE=https://localhost:8443 CA=var/tls/dev-cert.pem USERNAME=dr.house PASSWORD=")
    assert first.endswith(" CODE='…'")
    code = totp_code(served_app.totp_secrets["dr.house"], account="dr.house")  # what the app shows
    values = (
        f"BASE={served_app.url} CA={served_app.cert} USERNAME=dr.house PASSWORD='{served_app.credentials['dr.house']}'"
        f" CODE={code}"
    )

    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", values + "\n" + rest],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    listed, found = result.stdout.split("][", 1)
    assert '"mrn":"MRN-000101"' in listed and '"mrn":"MRN-000102"' in listed  # dr.house's care team
    assert '"mrn":"MRN-000103"' not in listed  # dr.grey's patient
    assert '"mrn":"MRN-000101"' in found and found.count('"mrn"') == 1
    assert '"ssn":"***-**-0001"' in found  # masked in lists


def test_the_python_quick_start_does_the_same(served_app: Any, tmp_path: Path) -> None:
    code = _block("python", "The same in Python")
    code = code.replace('"https://localhost:8443"', repr(served_app.url))
    code = code.replace('"var/tls/dev-cert.pem"', repr(str(served_app.cert)))
    code = code.replace('"password": "…"', f'"password": {served_app.credentials["dr.house"]!r}')
    assert '"token": "123456"' in code
    code = code.replace(
        '"token": "123456"', f'"token": {totp_code(served_app.totp_secrets["dr.house"], account="dr.house")!r}'
    )

    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    listed, found = result.stdout.strip().splitlines()
    assert "MRN-000101" in listed and "MRN-000103" not in listed
    assert "MRN-000101" in found and "MRN-000102" not in found
