"""sslyze against the live `manage.py serve` listener: Mozilla "modern", read from sslyze's JSON.

sslyze runs from its own virtualenv (``make sslyze``, a dependency of ``make test``) through
``sslyze_scan.py``, once for the module. TLS 1.3 only, exactly the three TLS 1.3 suites, exactly
the three groups, an ECDSA P-256 certificate, and no "modern" failure at all: with the
development certificate as the trust anchor (``--certinfo_ca_file``), its path validates too.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.neonpro.conftest import BASE_DIR, Server

SSLYZE_PYTHON = BASE_DIR / ".venv-sslyze" / "bin" / "python"
SCAN_SCRIPT = Path(__file__).with_name("sslyze_scan.py")
SCAN_TIMEOUT = 120
MODERN_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
MODERN_GROUPS = {"X25519", "secp256r1", "secp384r1"}
OLDER_PROTOCOLS = (
    "ssl_2_0_cipher_suites",
    "ssl_3_0_cipher_suites",
    "tls_1_0_cipher_suites",
    "tls_1_1_cipher_suites",
    "tls_1_2_cipher_suites",
)


@pytest.fixture(scope="module")
def report(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not SSLYZE_PYTHON.exists():
        pytest.fail(f"{SSLYZE_PYTHON} is missing: run `make sslyze` (`make test` builds it)")
    out = tmp_path_factory.mktemp("sslyze") / "scan.json"
    result = subprocess.run(
        # The development certificate is its own trust anchor, as it is for a browser that accepts it.
        [str(SSLYZE_PYTHON), str(SCAN_SCRIPT), f"localhost:{server.port}", str(out), str(server.cert)],
        capture_output=True,
        text=True,
        timeout=SCAN_TIMEOUT,
    )
    assert result.returncode == 0, f"sslyze failed:\n{result.stdout}\n{result.stderr}"
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def _scan_result(report: dict[str, Any], command: str) -> dict[str, Any]:
    (server_result,) = report["scan"]["server_scan_results"]
    attempt = server_result["scan_result"][command]
    assert attempt["status"] == "COMPLETED", attempt
    result: dict[str, Any] = attempt["result"]
    return result


def test_only_tls13_is_accepted(report: dict[str, Any]) -> None:
    for command in OLDER_PROTOCOLS:
        result = _scan_result(report, command)
        assert result["is_tls_version_supported"] is False, command
        assert result["accepted_cipher_suites"] == [], command
    assert _scan_result(report, "tls_1_3_cipher_suites")["is_tls_version_supported"] is True


def test_exactly_the_three_tls13_suites_are_accepted(report: dict[str, Any]) -> None:
    accepted = _scan_result(report, "tls_1_3_cipher_suites")["accepted_cipher_suites"]

    assert {suite["cipher_suite"]["name"] for suite in accepted} == MODERN_SUITES


def test_exactly_the_three_groups_are_accepted(report: dict[str, Any]) -> None:
    curves = _scan_result(report, "elliptic_curves")
    supported = {curve["name"] for curve in curves["supported_curves"]}
    rejected = {curve["name"] for curve in curves["rejected_curves"]}

    assert supported == MODERN_GROUPS
    # What OpenSSL offers when the groups are not pinned was probed, and refused.
    assert {"X448", "secp521r1"} <= rejected


def test_mozilla_modern_reports_nothing(report: dict[str, Any]) -> None:
    # Including certificate path validation, with the development certificate as the trust anchor.
    assert report["mozilla_modern_issues"] == {}, report["mozilla_modern_issues"]


def test_the_served_certificate_is_ecdsa_p256_signed_with_sha256(report: dict[str, Any]) -> None:
    (deployment,) = _scan_result(report, "certificate_info")["certificate_deployments"]
    leaf = deployment["received_certificate_chain"][0]

    assert leaf["public_key"]["algorithm"] == "ECPublicKey"
    assert leaf["public_key"]["ec_curve_name"] == "secp256r1"
    assert leaf["signature_algorithm_oid"]["name"] == "ecdsa-with-SHA256"
