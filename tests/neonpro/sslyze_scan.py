"""Scan one TLS server with sslyze and check it against Mozilla's "modern" configuration.

Run by sslyze's own interpreter (``.venv-sslyze/bin/python``, built by ``make sslyze``), never
imported by the suite: sslyze pins ``cryptography<47`` and the project pins 50.

    sslyze_scan.py HOST:PORT OUT.json [CA.pem]

CA.pem is the trust anchor for certificate path validation (``--certinfo_ca_file``).

OUT.json holds ``scan``, the document ``sslyze --json_out`` writes, and ``mozilla_modern_issues``,
what ``sslyze --mozilla_config=modern`` reports (criterion -> description; empty when compliant).
The CLI prints that verdict only as text, so this runs the same scan commands and the same
checker through sslyze's API. Exits non-zero when the server cannot be scanned completely.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from sslyze import (
    CertificateInfoExtraArgument,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanResultAsJson,
    ServerScanStatusEnum,
    SslyzeOutputAsJson,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)


def main(target: str, out: Path, ca_file: Path | None) -> int:
    host, _, port = target.rpartition(":")
    started = dt.datetime.now(dt.UTC)
    scanner = Scanner()
    scanner.queue_scans(
        [
            ServerScanRequest(
                server_location=ServerNetworkLocation(hostname=host, port=int(port)),
                scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
                scan_commands_extra_arguments=ScanCommandsExtraArguments(
                    certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca_file) if ca_file else None
                ),
            )
        ]
    )
    (result,) = scanner.get_results()
    if result.scan_status != ServerScanStatusEnum.COMPLETED:
        print(f"scan of {target} did not complete: {result.connectivity_error_trace}", file=sys.stderr)
        return 2
    scan = SslyzeOutputAsJson(
        server_scan_results=[ServerScanResultAsJson.model_validate(result)],
        invalid_server_strings=[],
        date_scans_started=started,
        date_scans_completed=dt.datetime.now(dt.UTC),
    )
    issues: dict[str, str] = {}
    try:  # raises ServerScanResultIncomplete (exit status 1) when a needed scan command failed
        check_server_against_tls_configuration(
            server_scan_result=result,
            tls_config_to_check_against=MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_MODERN),
        )
    except ServerNotCompliantWithTlsConfiguration as exc:
        issues = exc.issues
    document = {"scan": json.loads(scan.model_dump_json()), "mozilla_modern_issues": issues}
    out.write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None))
