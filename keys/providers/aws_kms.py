"""The ``aws-kms`` key provider: master keys are symmetric AWS KMS keys.

Guarantees: the master key never leaves KMS; a data key is wrapped by KMS ``Encrypt`` under
the configured current key with the caller's context bound as the KMS encryption context
(``{"neonpro": base64(context)}``), which KMS verifies on ``Decrypt`` — a blob moved to
another key row does not unwrap. ``unwrap_key`` only uses keys this provider is configured
with (``NEONPRO_AWS_KMS_KEY_ID`` and ``NEONPRO_AWS_KMS_PREVIOUS_KEY_IDS``) and names that key
to ``Decrypt``, so a blob made under any other KMS key is refused. Key ids are key ARNs
(never aliases, which can be repointed). Every boto/botocore failure becomes a
:class:`ProviderError` whose message names the operation, the key ARN, the AWS error code
and request id, and never a ciphertext, a plaintext or an AWS-supplied message; throttling
and network failures are ``permanent=False``. The boto3 client is built on first use (never
at import) with short time-outs and one retry, so an unreachable KMS fails within seconds.

Settings, read when the provider is built (``from_settings``): NEONPRO_AWS_KMS_KEY_ID (the
current key's ARN), NEONPRO_AWS_KMS_PREVIOUS_KEY_IDS (ARNs that still unwrap),
NEONPRO_AWS_KMS_REGION (default: the current ARN's region) and NEONPRO_AWS_KMS_ENDPOINT_URL
(a VPC or FIPS endpoint). Credentials come from boto3's usual chain (environment, instance
or task role, web identity), never from NeonPro settings.

Limitations: KMS is regional, so every configured key must live in the client's region.
botocore logs request and response bodies (base64 plaintext keys included) at DEBUG: keep
the ``botocore`` logger at INFO or above. CreateKey is retried after a read time-out like
every call, which can leave an unused (harmless, billed) key behind.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from keys.exceptions import MasterKeyError, ProviderError
from keys.providers.base import KeyProvider, MasterKeyInfo, WrappedKey

logger = logging.getLogger(__name__)

ID_PREFIX = "aws-kms:"
CONTEXT_KEY = "neonpro"
MIN_PENDING_DAYS, MAX_PENDING_DAYS = 7, 30  # AWS's limits for ScheduleKeyDeletion
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0
MAX_ATTEMPTS = 2  # the first try and one retry: callers see a transient error within seconds
_WRAP_VERSION = b"\x01"
_ARN = re.compile(r"arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):\d{12}:key/[A-Za-z0-9-]+")
_LABEL = re.compile(r"[\w .:/=+@-]{1,128}")  # what a KMS tag value accepts
_DESCRIPTION = "NeonPro Records master key: {label}"
TAG_PURPOSE, TAG_MASTER_KEY, TAG_LABEL = "neonpro:purpose", "master-key", "neonpro:label"
_HINT = (
    "set NEONPRO_AWS_KMS_KEY_ID to the ARN of a symmetric ENCRYPT_DECRYPT KMS key "
    "(arn:aws:kms:<region>:<account>:key/<key-id>); see docs/kms.md"
)
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "KMSInternalException",
        "DependencyTimeoutException",
        "KeyUnavailableException",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_CREDENTIAL_CODES = frozenset(
    {"UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException", "InvalidSignatureException"}
)


def normalize_key_id(key_id: str, *, source: str = "key id") -> str:
    """Return the key ARN named by ``key_id`` (an ARN, optionally prefixed ``aws-kms:``).

    Raises MasterKeyError for anything else: key ids, aliases and alias ARNs resolve through
    the caller's account and can be repointed, so they cannot name the key that wrapped a blob.
    """
    arn = key_id.strip().removeprefix(ID_PREFIX) if isinstance(key_id, str) else ""
    if not _ARN.fullmatch(arn):
        raise MasterKeyError(f"{source} {key_id!r} is not a KMS key ARN; {_HINT}")
    return arn


def _region_of(arn: str) -> str:
    match = _ARN.fullmatch(arn)
    assert match is not None
    return match["region"]


def _encryption_context(context: bytes) -> dict[str, str]:
    return {CONTEXT_KEY: base64.b64encode(context).decode("ascii")}


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _state(key_state: object) -> str:
    """KMS ``KeyState`` (``PendingDeletion``) as a MasterKeyInfo state (``pending_deletion``)."""
    return _snake(key_state) if isinstance(key_state, str) and key_state else "unknown"


class AwsKmsKeyProvider(KeyProvider):
    name = "aws-kms"

    def __init__(
        self,
        key_id: str,
        *,
        previous_key_ids: Iterable[str] = (),
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self._key_id = normalize_key_id(key_id, source="NEONPRO_AWS_KMS_KEY_ID")
        previous = [normalize_key_id(k, source="NEONPRO_AWS_KMS_PREVIOUS_KEY_IDS entry") for k in previous_key_ids]
        self._previous = tuple(dict.fromkeys(k for k in previous if k != self._key_id))
        self.region = region or _region_of(self._key_id)
        for arn in (self._key_id, *self._previous):
            if _region_of(arn) != self.region:
                # KMS is regional: a client for one region cannot use another region's key.
                raise MasterKeyError(f"KMS key {arn} is not in the configured region {self.region}")
        self.endpoint_url = endpoint_url or None
        self._timeouts = (connect_timeout, read_timeout, max_attempts)
        self._client = client
        self._client_lock = threading.Lock()

    @classmethod
    def from_settings(cls) -> AwsKmsKeyProvider:
        key_id = getattr(settings, "NEONPRO_AWS_KMS_KEY_ID", None)
        if not key_id:
            raise MasterKeyError(f"NEONPRO_AWS_KMS_KEY_ID is not set; {_HINT}")
        previous = getattr(settings, "NEONPRO_AWS_KMS_PREVIOUS_KEY_IDS", None) or ()
        if isinstance(previous, str):
            previous = [part for part in previous.split(",") if part.strip()]
        return cls(
            key_id,
            previous_key_ids=previous,
            region=getattr(settings, "NEONPRO_AWS_KMS_REGION", None) or None,
            endpoint_url=getattr(settings, "NEONPRO_AWS_KMS_ENDPOINT_URL", None) or None,
        )

    @property
    def current_key_id(self) -> str:
        return self._key_id

    @property
    def configured_key_ids(self) -> tuple[str, ...]:
        """The current key ARN, then the previous ones (the only keys unwrap will use)."""
        return (self._key_id, *self._previous)

    # -- the contract ------------------------------------------------------------------
    def holds(self, key_id: str) -> bool:
        return isinstance(key_id, str) and key_id.removeprefix(ID_PREFIX) in self.configured_key_ids

    def create_key(self, *, label: str) -> str:
        if not isinstance(label, str) or not _LABEL.fullmatch(label):
            raise ProviderError(
                f"key label {label!r} must be 1-128 letters, digits, spaces or _ . : / = + - @", permanent=True
            )
        response = self._call(
            "CreateKey",
            None,
            Description=_DESCRIPTION.format(label=label),
            KeyUsage="ENCRYPT_DECRYPT",
            KeySpec="SYMMETRIC_DEFAULT",
            Tags=[
                {"TagKey": TAG_PURPOSE, "TagValue": TAG_MASTER_KEY},
                {"TagKey": TAG_LABEL, "TagValue": label},
            ],
        )
        return normalize_key_id(str(response.get("KeyMetadata", {}).get("Arn", "")), source="CreateKey returned")

    def wrap_key(self, plaintext_key: bytes, *, context: bytes) -> WrappedKey:
        response = self._call(
            "Encrypt",
            self._key_id,
            KeyId=self._key_id,
            Plaintext=plaintext_key,
            EncryptionContext=_encryption_context(context),
            EncryptionAlgorithm="SYMMETRIC_DEFAULT",
        )
        blob = response.get("CiphertextBlob")
        if response.get("KeyId") != self._key_id or not isinstance(blob, bytes) or not blob:
            raise ProviderError(f"KMS Encrypt under {self._key_id} returned an unexpected response", permanent=True)
        return WrappedKey(key_id=self._key_id, blob=_WRAP_VERSION + blob)

    def unwrap_key(self, blob: bytes, *, key_id: str, context: bytes) -> bytes:
        if not self.holds(key_id):
            raise MasterKeyError(
                f"wrapped by master key {key_id}, which this aws-kms provider is not configured to use "
                f"(current {self._key_id}; add older keys to NEONPRO_AWS_KMS_PREVIOUS_KEY_IDS)"
            )
        if len(blob) < 2 or blob[:1] != _WRAP_VERSION:
            raise ProviderError("wrapped key blob is malformed", permanent=True)
        arn = key_id.removeprefix(ID_PREFIX)
        response = self._call(
            "Decrypt",
            arn,
            KeyId=arn,
            CiphertextBlob=bytes(blob[1:]),
            EncryptionContext=_encryption_context(context),
            EncryptionAlgorithm="SYMMETRIC_DEFAULT",
        )
        plaintext = response.get("Plaintext")
        if response.get("KeyId") != arn or not isinstance(plaintext, bytes):
            raise ProviderError(f"KMS Decrypt under {arn} returned an unexpected response", permanent=True)
        return plaintext

    def list_keys(self) -> list[MasterKeyInfo]:
        """The configured keys (current first) with their KMS state; deleted ones are left out.

        Only configured keys are listed: they are the only ones this provider ``holds``
        (the rest of the account's keys belong to other applications).
        """
        infos = []
        for arn in self.configured_key_ids:
            try:
                meta = self._describe(arn)
            except MasterKeyError:
                if arn == self._key_id:
                    raise
                logger.warning("previous KMS key %s no longer exists; remove it from the settings", arn)
                continue
            created = meta.get("CreationDate")
            infos.append(
                MasterKeyInfo(
                    key_id=arn,
                    provider=self.name,
                    created_at=created.astimezone(dt.UTC) if isinstance(created, dt.datetime) else None,
                    state=_state(meta.get("KeyState")),
                    current=arn == self._key_id,
                )
            )
        return infos

    def schedule_key_deletion(self, key_id: str, *, pending_days: int) -> dt.datetime:
        """Schedule deletion of a retired NeonPro master key after ``pending_days`` (7-30, AWS's limits).

        Raises ProviderError (permanent) for a key this provider still holds (current or
        previous: it may wrap data keys, so rotate away from it and remove it from the settings
        first), and for a key without the ``neonpro:purpose=master-key`` tag, so a typo cannot
        take another application's key out of service. MasterKeyError when the id is not a KMS
        key ARN of this region, or the key does not exist.
        """
        if isinstance(pending_days, bool) or not isinstance(pending_days, int):
            raise ProviderError(f"pending_days must be a whole number of days, not {pending_days!r}", permanent=True)
        if not MIN_PENDING_DAYS <= pending_days <= MAX_PENDING_DAYS:
            raise ProviderError(
                f"pending_days must be between {MIN_PENDING_DAYS} and {MAX_PENDING_DAYS} (AWS KMS limits), "
                f"got {pending_days}",
                permanent=True,
            )
        arn = normalize_key_id(key_id)
        if self.holds(arn):
            raise ProviderError(
                f"master key {arn} is still held (NEONPRO_AWS_KMS_KEY_ID or NEONPRO_AWS_KMS_PREVIOUS_KEY_IDS) and "
                "may wrap data keys; rotate away from it, remove it from the settings and run `keys verify` first",
                permanent=True,
            )
        if _region_of(arn) != self.region:
            raise MasterKeyError(f"KMS key {arn} is not in the configured region {self.region}")
        if self._tags(arn).get(TAG_PURPOSE) != TAG_MASTER_KEY:
            raise ProviderError(
                f"KMS key {arn} is not tagged {TAG_PURPOSE}={TAG_MASTER_KEY}, so it is not a NeonPro master key; "
                "refusing to schedule its deletion (tag it, or use AWS's own tooling)",
                permanent=True,
            )
        # The bare key id: AWS accepts it for keys of the caller's account (the only ones it lets
        # you delete), and moto's ScheduleKeyDeletion does not resolve ARNs.
        response = self._call("ScheduleKeyDeletion", arn, KeyId=arn.rsplit("/", 1)[1], PendingWindowInDays=pending_days)
        when = response.get("DeletionDate")
        if not isinstance(when, dt.datetime):
            raise ProviderError(f"KMS ScheduleKeyDeletion of {arn} returned no deletion date", permanent=True)
        return when.astimezone(dt.UTC)

    def health(self) -> None:
        """Raise unless the current key exists, is Enabled, and is a symmetric ENCRYPT_DECRYPT key."""
        meta = self._describe(self._key_id)
        # A missing field means the AWS default (moto leaves them out when CreateKey did not name them).
        if (meta.get("KeyUsage", "ENCRYPT_DECRYPT"), meta.get("KeySpec", "SYMMETRIC_DEFAULT")) != (
            "ENCRYPT_DECRYPT",
            "SYMMETRIC_DEFAULT",
        ):
            raise MasterKeyError(f"KMS key {self._key_id} is not a symmetric ENCRYPT_DECRYPT key; {_HINT}")
        if meta.get("KeyState") != "Enabled":
            raise ProviderError(
                f"KMS key {self._key_id} is {meta.get('KeyState') or 'in an unknown state'}, not Enabled: "
                "enable it or configure another key",
                permanent=True,
            )

    # -- plumbing ----------------------------------------------------------------------
    def _describe(self, arn: str) -> dict[str, Any]:
        meta = self._call("DescribeKey", arn, KeyId=arn).get("KeyMetadata")
        if not isinstance(meta, dict):
            raise ProviderError(f"KMS DescribeKey of {arn} returned no key metadata", permanent=True)
        return meta

    def _tags(self, arn: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        params: dict[str, Any] = {"KeyId": arn}
        while True:
            response = self._call("ListResourceTags", arn, **params)
            tags.update({str(t.get("TagKey")): str(t.get("TagValue")) for t in response.get("Tags") or ()})
            if not response.get("Truncated") or not response.get("NextMarker"):
                return tags
            params["Marker"] = response["NextMarker"]

    def _get_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        connect_timeout, read_timeout, max_attempts = self._timeouts
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            user_agent_extra="neonpro-records",
        )
        # A session per provider: boto3's default session is not safe to share across threads.
        return boto3.session.Session().client(
            "kms", region_name=self.region, endpoint_url=self.endpoint_url, config=config
        )

    def _call(self, operation: str, arn: str | None, **params: Any) -> dict[str, Any]:
        """Call KMS ``operation``; translate every boto/botocore failure into ProviderError."""
        try:
            response = getattr(self._get_client(), _snake(operation))(**params)
        except Exception as exc:
            error = _translate(exc, operation=operation, arn=arn)
            if error is None:
                raise
            raise error from None
        if not isinstance(response, dict):
            raise ProviderError(f"KMS {operation} returned an unexpected response", permanent=True)
        return response


def _translate(exc: Exception, *, operation: str, arn: str | None) -> ProviderError | None:
    """The ProviderError for a boto failure (None for anything else, which is a bug to surface).

    Messages are built here from fixed text, error codes and ids: botocore's own text can
    quote request parameters (a plaintext key) and AWS's can change without notice.
    """
    from botocore import exceptions as boto

    target = f"KMS {operation}" + (f" on {arn}" if arn else "")
    if isinstance(exc, boto.ClientError):
        return _client_error(exc, target=target, operation=operation)
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return ProviderError(f"{target}: no usable AWS credentials ({type(exc).__name__})", permanent=True)
    if isinstance(exc, boto.ParamValidationError):
        return ProviderError(f"{target}: botocore rejected the request parameters", permanent=True)
    if isinstance(exc, boto.SSLError):
        return ProviderError(f"{target}: TLS verification of the KMS endpoint failed", permanent=True)
    if isinstance(exc, boto.ConnectionError | boto.HTTPClientError):
        # The text is botocore's "Could not connect to the endpoint URL: ..." or "Read timeout on ...".
        return ProviderError(f"{target}: KMS unreachable ({type(exc).__name__}: {exc})", permanent=False)
    if isinstance(exc, boto.BotoCoreError):
        return ProviderError(f"{target} failed ({type(exc).__name__})", permanent=False)
    return None


def _client_error(exc: Any, *, target: str, operation: str) -> ProviderError:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code") or "Unknown")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    request_id = response.get("ResponseMetadata", {}).get("RequestId")
    suffix = f" [{code}" + (f", request id {request_id}]" if request_id else "]")
    if code == "AccessDeniedException":
        return ProviderError(
            f"{target}: access denied; the IAM principal needs kms:{operation} on the key, allowed by both "
            f"its IAM policy and the key policy (or the blob was made under another key){suffix}",
            permanent=True,
        )
    if code == "NotFoundException":
        return MasterKeyError(f"{target}: the KMS key does not exist (deleted, or wrong account/region){suffix}")
    if code == "IncorrectKeyException":
        return MasterKeyError(f"{target}: the wrapped key was made under a different KMS key{suffix}")
    if code == "InvalidCiphertextException":
        return ProviderError(
            f"{target}: wrapped key failed authentication (altered, or moved from another key row){suffix}",
            permanent=True,
        )
    if code in ("DisabledException", "KMSInvalidStateException"):
        return ProviderError(f"{target}: the KMS key is disabled or pending deletion{suffix}", permanent=True)
    if code in _CREDENTIAL_CODES:
        return ProviderError(f"{target}: AWS rejected the credentials{suffix}", permanent=True)
    transient = code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
    kind = "temporarily unavailable" if transient else "failed"
    return ProviderError(f"{target} {kind}{suffix}", permanent=not transient)
