"""The group pinning of `neonpro.security.tls`, each case in a fresh interpreter.

OpenSSL reads ``OPENSSL_CONF`` once per process, so every case runs a new Python with the
configuration under test. The negative controls show that OpenSSL's defaults accept more
groups than Mozilla "modern" allows, that OpenSSL silently drops a Groups line it cannot
parse, and that the check `serve` runs refuses both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from certificates.devcert import ensure_dev_certificate
from neonpro.security.tls import OPENSSL_CONFIG, PINNED_GROUPS
from tests.neonpro.conftest import BASE_DIR

_PROBE = """
import json, sys
from pathlib import Path
from neonpro.security.tls import TLSConfigurationError, accepted_groups, check_pinned_groups, server_context
context = server_context(Path(sys.argv[1]), Path(sys.argv[2]))
try:
    check_pinned_groups(context)
    refused = None
except TLSConfigurationError as exc:
    refused = str(exc)
print(json.dumps({"accepted": sorted(accepted_groups(context)), "refused": refused}))
"""


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ensure_dev_certificate(tmp_path_factory.mktemp("tls-groups"))


def _python(*args: str, openssl_conf: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    if openssl_conf is not None:
        env["OPENSSL_CONF"] = openssl_conf
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=BASE_DIR, capture_output=True, text=True, timeout=60, check=False
    )


def _probe(cert_pair: tuple[Path, Path], openssl_conf: str) -> dict[str, Any]:
    result = _python("-c", _PROBE, *map(str, cert_pair), openssl_conf=openssl_conf)
    assert result.returncode == 0, result.stderr
    probe: dict[str, Any] = json.loads(result.stdout)
    return probe


def test_the_shipped_config_pins_exactly_the_modern_groups(cert_pair: tuple[Path, Path]) -> None:
    probe = _probe(cert_pair, str(OPENSSL_CONFIG))

    assert probe == {"accepted": sorted(PINNED_GROUPS), "refused": None}


def test_openssl_defaults_accept_more_groups_and_the_check_refuses_them(cert_pair: tuple[Path, Path]) -> None:
    # An empty configuration: OpenSSL's built-in defaults, whatever the machine's openssl.cnf says.
    probe = _probe(cert_pair, os.devnull)

    accepted = set(probe["accepted"])
    assert {"X448", "secp521r1"} <= accepted
    assert set(PINNED_GROUPS) <= accepted
    assert isinstance(probe["refused"], str)
    assert "X448" in probe["refused"]
    assert "secp521r1" in probe["refused"]


def test_a_groups_line_openssl_cannot_parse_is_dropped_silently_and_refused(
    cert_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    shipped = OPENSSL_CONFIG.read_text()
    assert "\nGroups = X25519:P-256:P-384\n" in shipped
    misspelt = tmp_path / "misspelt.cnf"
    misspelt.write_text(shipped.replace("\nGroups = X25519:P-256:P-384\n", "\nGroups = X25519:P-256:P-348\n"))

    probe = _probe(cert_pair, str(misspelt))

    assert {"X448", "secp521r1"} <= set(probe["accepted"])
    assert isinstance(probe["refused"], str)


def test_pinning_refuses_to_re_execute_a_process_that_is_not_serve() -> None:
    # sys.argv is ["-c"] here: re-executing would restart this caller, not a listener.
    code = "from neonpro.security.tls import ensure_pinned_openssl_config as e; e('serve'); print('returned')"

    result = _python("-c", code, openssl_conf=None)

    assert result.returncode != 0
    assert "TLSConfigurationError" in result.stderr
    assert "must run as its own process" in result.stderr
    assert "returned" not in result.stdout


def test_pinning_returns_at_once_when_openssl_conf_is_already_the_shipped_file() -> None:
    code = "from neonpro.security.tls import ensure_pinned_openssl_config as e; e('serve'); print('returned')"

    result = _python("-c", code, openssl_conf=str(OPENSSL_CONFIG))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "returned"
