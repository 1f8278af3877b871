"""The aws-kms provider against moto's fake KMS (the real one is across the internet).

Only AWS is faked: the network failures are real sockets on the loopback interface, and
the integration test stores a patient through the app on PostgreSQL.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from keys.exceptions import MasterKeyError, ProviderError
from keys.providers.aws_kms import AwsKmsKeyProvider

REGION = "eu-west-1"
CONTEXT = b"neonpro.datakey.v1|1|field"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Fake credentials, and no other credential source (config files, instance metadata)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def kms(aws_env: None) -> Iterator[Any]:
    """A boto3 KMS client on moto's fake KMS (state lives until the test ends)."""
    with mock_aws():
        yield boto3.client("kms", region_name=REGION)


@pytest.fixture
def new_key(kms: Any) -> Callable[[], str]:
    def make() -> str:
        return str(kms.create_key(Description="test key")["KeyMetadata"]["Arn"])

    return make


def provider_for(kms: Any, key_id: str, *previous: str) -> AwsKmsKeyProvider:
    return AwsKmsKeyProvider(key_id, previous_key_ids=previous, client=kms)


# -- wrapping ----------------------------------------------------------------------------


def test_wrap_unwrap_round_trip(kms: Any, new_key: Callable[[], str]) -> None:
    arn = new_key()
    provider = provider_for(kms, arn)
    secret = os.urandom(32)
    wrapped = provider.wrap_key(secret, context=CONTEXT)
    assert wrapped.key_id == arn == provider.current_key_id
    assert secret not in wrapped.blob
    assert provider.unwrap_key(wrapped.blob, key_id=wrapped.key_id, context=CONTEXT) == secret
    assert provider.unwrap_key(wrapped.blob, key_id=f"aws-kms:{arn}", context=CONTEXT) == secret


def test_unwrap_with_another_context_fails_at_kms(kms: Any, new_key: Callable[[], str]) -> None:
    provider = provider_for(kms, new_key())
    wrapped = provider.wrap_key(os.urandom(32), context=CONTEXT)
    with pytest.raises(ProviderError, match="failed authentication") as info:
        provider.unwrap_key(wrapped.blob, key_id=wrapped.key_id, context=b"neonpro.datakey.v1|2|field")
    assert info.value.permanent
    assert base64.b64encode(wrapped.blob[1:]).decode()[:16] not in str(info.value)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 1]), id="flipped-bit"),
        pytest.param(lambda b: b"\x02" + b[1:], id="unknown-version"),
        pytest.param(lambda b: b[:1], id="truncated"),
    ],
)
def test_tampered_blob_is_refused(kms: Any, new_key: Callable[[], str], tamper: Callable[[bytes], bytes]) -> None:
    provider = provider_for(kms, new_key())
    wrapped = provider.wrap_key(os.urandom(32), context=CONTEXT)
    with pytest.raises(ProviderError) as info:
        provider.unwrap_key(tamper(wrapped.blob), key_id=wrapped.key_id, context=CONTEXT)
    assert info.value.permanent


def test_unwrap_refuses_a_key_id_it_is_not_configured_with(kms: Any, new_key: Callable[[], str]) -> None:
    old, other = new_key(), new_key()
    wrapped = provider_for(kms, old).wrap_key(os.urandom(32), context=CONTEXT)
    with pytest.raises(MasterKeyError, match="not configured") as info:
        provider_for(kms, other).unwrap_key(wrapped.blob, key_id=wrapped.key_id, context=CONTEXT)
    assert old in str(info.value) and other in str(info.value)


def test_holds_only_the_configured_keys_without_calling_kms(new_key: Callable[[], str]) -> None:
    current, old, other = new_key(), new_key(), new_key()
    provider = AwsKmsKeyProvider(current, previous_key_ids=[old], client=object())  # any call would fail
    assert provider.holds(current) and provider.holds(old) and provider.holds(f"aws-kms:{old}")
    assert not provider.holds(other) and not provider.holds("local-0123456789abcdef")


def test_previous_keys_still_unwrap_but_never_wrap(kms: Any, new_key: Callable[[], str]) -> None:
    old, new = new_key(), new_key()
    secret = os.urandom(32)
    wrapped = provider_for(kms, old).wrap_key(secret, context=CONTEXT)
    rotated = provider_for(kms, new, old)
    assert rotated.unwrap_key(wrapped.blob, key_id=old, context=CONTEXT) == secret
    assert rotated.wrap_key(secret, context=CONTEXT).key_id == new


def test_ciphertext_from_another_kms_key_is_refused(kms: Any, new_key: Callable[[], str]) -> None:
    """The stored key id is passed to Decrypt, so KMS refuses a blob made under another key
    (AWS answers IncorrectKeyException, moto AccessDeniedException)."""
    first, second = new_key(), new_key()
    wrapped = provider_for(kms, first).wrap_key(os.urandom(32), context=CONTEXT)
    provider = provider_for(kms, second, first)
    with pytest.raises(ProviderError) as info:
        provider.unwrap_key(wrapped.blob, key_id=second, context=CONTEXT)
    assert info.value.permanent
    assert second in str(info.value)


# -- key management ----------------------------------------------------------------------


def test_create_key_makes_a_tagged_symmetric_key_that_is_not_current(kms: Any, new_key: Callable[[], str]) -> None:
    current = new_key()
    provider = provider_for(kms, current)
    arn = provider.create_key(label="rotation 2026-01")
    assert arn.startswith(f"arn:aws:kms:{REGION}:") and arn != current
    assert provider.current_key_id == current
    meta = kms.describe_key(KeyId=arn)["KeyMetadata"]
    assert (meta["KeySpec"], meta["KeyUsage"], meta["KeyState"]) == ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "Enabled")
    assert meta["Description"] == "NeonPro Records master key: rotation 2026-01"
    tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=meta["KeyId"])["Tags"]}
    assert tags == {"neonpro:purpose": "master-key", "neonpro:label": "rotation 2026-01"}


@pytest.mark.parametrize("label", ["", "x" * 129, "semi;colon", "new\nline"])
def test_create_key_refuses_labels_kms_cannot_tag(kms: Any, new_key: Callable[[], str], label: str) -> None:
    with pytest.raises(ProviderError, match="key label"):
        provider_for(kms, new_key()).create_key(label=label)
    assert len(kms.list_keys()["Keys"]) == 1


def test_list_keys_describes_configured_keys_and_marks_the_current_one(kms: Any, new_key: Callable[[], str]) -> None:
    old, current, unrelated = new_key(), new_key(), new_key()
    kms.disable_key(KeyId=old.rsplit("/", 1)[1])
    infos = provider_for(kms, current, old).list_keys()
    assert [(i.key_id, i.current, i.state, i.provider) for i in infos] == [
        (current, True, "enabled", "aws-kms"),
        (old, False, "disabled", "aws-kms"),
    ]
    assert unrelated not in {i.key_id for i in infos}
    assert all(i.created_at is not None and i.created_at.utcoffset() == dt.timedelta(0) for i in infos)


def test_list_keys_leaves_out_a_deleted_previous_key(kms: Any, new_key: Callable[[], str]) -> None:
    current = new_key()
    gone = f"arn:aws:kms:{REGION}:123456789012:key/00000000-0000-0000-0000-000000000000"
    assert [i.key_id for i in provider_for(kms, current, gone).list_keys()] == [current]
    with pytest.raises(MasterKeyError, match="does not exist"):
        provider_for(kms, gone).list_keys()


def test_schedule_key_deletion_of_a_retired_master_key(kms: Any, new_key: Callable[[], str]) -> None:
    provider = provider_for(kms, new_key())
    retired = provider.create_key(label="retired")
    before = dt.datetime.now(dt.UTC)
    when = provider.schedule_key_deletion(f"aws-kms:{retired}", pending_days=7)
    assert when.utcoffset() == dt.timedelta(0)
    assert dt.timedelta(days=7) - dt.timedelta(minutes=5) < when - before < dt.timedelta(days=7, minutes=5)
    assert kms.describe_key(KeyId=retired)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert provider_for(kms, provider.current_key_id, retired).list_keys()[1].state == "pending_deletion"


@pytest.mark.parametrize(
    ("days", "message"),
    [
        (6, "between 7 and 30"),
        (31, "between 7 and 30"),
        (0, "between 7 and 30"),
        (True, "whole number"),
        (7.5, "whole number"),
    ],
)
def test_schedule_key_deletion_validates_the_pending_window(
    kms: Any, new_key: Callable[[], str], days: Any, message: str
) -> None:
    provider = provider_for(kms, new_key())
    retired = provider.create_key(label="retired")
    with pytest.raises(ProviderError, match=message) as info:
        provider.schedule_key_deletion(retired, pending_days=days)
    assert info.value.permanent
    assert kms.describe_key(KeyId=retired)["KeyMetadata"]["KeyState"] == "Enabled"


def test_schedule_key_deletion_refuses_held_and_foreign_keys(kms: Any, new_key: Callable[[], str]) -> None:
    current, previous = new_key(), new_key()
    provider = provider_for(kms, current, previous)
    foreign = new_key()  # another application's key: not tagged as a NeonPro master key
    for held in (current, previous):
        with pytest.raises(ProviderError, match="still held"):
            provider.schedule_key_deletion(held, pending_days=30)
    with pytest.raises(ProviderError, match="not a NeonPro master key"):
        provider.schedule_key_deletion(foreign, pending_days=30)
    with pytest.raises(MasterKeyError, match="not in the configured region"):
        provider.schedule_key_deletion(foreign.replace(REGION, "us-east-1"), pending_days=30)
    with pytest.raises(MasterKeyError, match="not a KMS key ARN"):
        provider.schedule_key_deletion("alias/neonpro", pending_days=30)
    states = {kms.describe_key(KeyId=k)["KeyMetadata"]["KeyState"] for k in (current, previous, foreign)}
    assert states == {"Enabled"}


# -- health ------------------------------------------------------------------------------


def test_health_passes_for_an_enabled_key(kms: Any, new_key: Callable[[], str]) -> None:
    provider_for(kms, new_key()).health()


def test_health_fails_for_a_disabled_key(kms: Any, new_key: Callable[[], str]) -> None:
    arn = new_key()
    kms.disable_key(KeyId=arn.rsplit("/", 1)[1])
    with pytest.raises(ProviderError, match="is Disabled, not Enabled") as info:
        provider_for(kms, arn).health()
    assert info.value.permanent


def test_health_fails_for_a_missing_key(kms: Any) -> None:
    arn = f"arn:aws:kms:{REGION}:123456789012:key/00000000-0000-0000-0000-000000000000"
    with pytest.raises(MasterKeyError, match="does not exist"):
        provider_for(kms, arn).health()


def test_health_fails_for_a_signing_key(kms: Any) -> None:
    meta = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]
    with pytest.raises(MasterKeyError, match="not a symmetric ENCRYPT_DECRYPT key"):
        provider_for(kms, meta["Arn"]).health()


# -- error mapping -----------------------------------------------------------------------

ARN = f"arn:aws:kms:{REGION}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_unreachable_kms_is_a_transient_error_and_fails_fast(aws_env: None) -> None:
    """Connection refused on the loopback: the default client config retries once, briefly."""
    provider = AwsKmsKeyProvider(ARN, endpoint_url="http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(ProviderError, match="unreachable") as info:
        provider.wrap_key(os.urandom(32), context=CONTEXT)
    assert not info.value.permanent
    assert time.monotonic() - started < 3


def test_kms_that_never_answers_times_out_as_a_transient_error(aws_env: None) -> None:
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(8)  # the kernel completes the handshake; nobody ever reads or replies
        port = blackhole.getsockname()[1]
        provider = AwsKmsKeyProvider(
            ARN, endpoint_url=f"http://127.0.0.1:{port}", connect_timeout=0.5, read_timeout=0.5, max_attempts=1
        )
        started = time.monotonic()
        with pytest.raises(ProviderError, match="ReadTimeoutError") as info:
            provider.health()
    assert not info.value.permanent
    assert time.monotonic() - started < 3


def test_missing_credentials_are_a_permanent_error(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    provider = AwsKmsKeyProvider(ARN, endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ProviderError, match="no usable AWS credentials") as info:
        provider.health()
    assert info.value.permanent


@pytest.mark.parametrize(
    ("code", "status", "error", "permanent"),
    [
        ("ThrottlingException", 400, ProviderError, False),
        ("KMSInternalException", 500, ProviderError, False),
        ("DependencyTimeoutException", 503, ProviderError, False),
        ("SomethingNewAndBroken", 502, ProviderError, False),
        ("AccessDeniedException", 400, ProviderError, True),
        ("NotFoundException", 400, MasterKeyError, True),
        ("IncorrectKeyException", 400, MasterKeyError, True),
        ("InvalidCiphertextException", 400, ProviderError, True),
        ("KMSInvalidStateException", 400, ProviderError, True),
        ("UnrecognizedClientException", 400, ProviderError, True),
    ],
)
def test_kms_error_codes_map_to_permanent_or_transient(
    aws_env: None, code: str, status: int, error: type[ProviderError], permanent: bool
) -> None:
    """AWS's answers, served by botocore's Stubber (no request leaves the client)."""
    client = boto3.client("kms", region_name=REGION)
    provider = AwsKmsKeyProvider(ARN, client=client)
    blob = b"\x01" + os.urandom(64)
    with Stubber(client) as stub:
        stub.add_client_error(
            "decrypt", service_error_code=code, service_message="CANARY-SECRET", http_status_code=status
        )
        with pytest.raises(ProviderError) as info:
            provider.unwrap_key(blob, key_id=ARN, context=CONTEXT)
    assert type(info.value) is error
    assert info.value.permanent is permanent
    message = str(info.value)
    assert code in message and ARN in message and "Decrypt" in message
    assert "CANARY-SECRET" not in message and blob[1:].hex()[:16] not in message


# -- settings ----------------------------------------------------------------------------


def test_from_settings_reads_settings_at_call_time(settings: Any) -> None:
    other = ARN.replace("1234abcd", "5678abcd")
    settings.NEONPRO_AWS_KMS_KEY_ID = f"aws-kms:{ARN}"
    settings.NEONPRO_AWS_KMS_PREVIOUS_KEY_IDS = [other, ARN]
    settings.NEONPRO_AWS_KMS_REGION = None
    settings.NEONPRO_AWS_KMS_ENDPOINT_URL = "https://kms-fips.eu-west-1.amazonaws.com"
    provider = AwsKmsKeyProvider.from_settings()
    assert provider.current_key_id == ARN
    assert provider.configured_key_ids == (ARN, other)
    assert provider.region == REGION  # from the key's ARN
    assert provider.endpoint_url == "https://kms-fips.eu-west-1.amazonaws.com"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"NEONPRO_AWS_KMS_KEY_ID": ""}, "NEONPRO_AWS_KMS_KEY_ID is not set"),
        ({"NEONPRO_AWS_KMS_KEY_ID": "alias/neonpro"}, "not a KMS key ARN"),
        ({"NEONPRO_AWS_KMS_KEY_ID": "1234abcd-12ab-34cd-56ef-1234567890ab"}, "not a KMS key ARN"),
        ({"NEONPRO_AWS_KMS_KEY_ID": ARN, "NEONPRO_AWS_KMS_PREVIOUS_KEY_IDS": ["alias/old"]}, "not a KMS key ARN"),
        ({"NEONPRO_AWS_KMS_KEY_ID": ARN, "NEONPRO_AWS_KMS_REGION": "us-east-1"}, "not in the configured region"),
    ],
)
def test_from_settings_refuses_bad_configuration(settings: Any, overrides: dict[str, Any], message: str) -> None:
    settings.NEONPRO_AWS_KMS_PREVIOUS_KEY_IDS = []
    settings.NEONPRO_AWS_KMS_REGION = None
    for name, value in overrides.items():
        setattr(settings, name, value)
    with pytest.raises(MasterKeyError, match=message):
        AwsKmsKeyProvider.from_settings()


# -- the app on top of it ----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("system")
def test_patients_are_stored_under_kms_wrapped_data_keys(
    kms: Any,
    new_key: Callable[[], str],
    settings: Any,
    patient_factory: Callable[..., Any],
    reinstall_identity_keys: Callable[[], None],
) -> None:
    from keys.keyring import keyring
    from keys.models import DataKey
    from keys.providers import get_provider, reset_provider
    from patients.models import Patient

    arn = new_key()
    DataKey.objects.all().delete()  # a fresh installation (other tests commit keys of their own)
    settings.NEONPRO_KEY_PROVIDER = "aws-kms"
    settings.NEONPRO_AWS_KMS_KEY_ID = arn
    settings.NEONPRO_AWS_KMS_PREVIOUS_KEY_IDS = []
    settings.NEONPRO_AWS_KMS_REGION = REGION
    settings.NEONPRO_AWS_KMS_ENDPOINT_URL = None
    reset_provider()
    keyring.clear()
    assert isinstance(get_provider(), AwsKmsKeyProvider)
    reinstall_identity_keys()

    patient = patient_factory(full_name="Kms Canary", ssn="900-55-0042")
    keyring.clear()  # the read below unwraps through KMS again
    loaded = Patient.objects.get(pk=patient.pk)
    assert (loaded.full_name, loaded.ssn) == ("Kms Canary", "900-55-0042")
    datakeys = list(DataKey.objects.all())
    assert datakeys and {(k.provider, k.wrapping_key_id) for k in datakeys} == {("aws-kms", arn)}


@pytest.mark.django_db
@pytest.mark.usefixtures("system")
def test_switching_from_local_to_aws_kms_keeps_old_data_keys_readable(
    kms: Any, new_key: Callable[[], str], settings: Any, patient_factory: Callable[..., Any]
) -> None:
    """During a rotation to aws-kms, data keys the local master key wrapped unwrap through
    the fallback provider, and new data keys are wrapped by KMS."""
    from keys.keyring import keyring
    from keys.models import DataKey
    from keys.providers import reset_provider
    from keys.services import create_data_key
    from patients.models import Patient

    patient = patient_factory(full_name="Local Canary")
    assert {k.provider for k in DataKey.objects.all()} == {"local"}

    settings.NEONPRO_KEY_PROVIDER = "aws-kms"
    settings.NEONPRO_KEY_PROVIDER_FALLBACKS = ["local"]
    settings.NEONPRO_AWS_KMS_KEY_ID = new_key()
    settings.NEONPRO_AWS_KMS_PREVIOUS_KEY_IDS = []
    settings.NEONPRO_AWS_KMS_REGION = REGION
    reset_provider()
    keyring.clear()
    assert Patient.objects.get(pk=patient.pk).full_name == "Local Canary"
    new = create_data_key("field", activate=False)
    assert (new.provider, new.wrapping_key_id) == ("aws-kms", settings.NEONPRO_AWS_KMS_KEY_ID)
