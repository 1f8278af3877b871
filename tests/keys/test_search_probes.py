"""Search probes: the compact index of a searchable field, used under row-level security.

Each searchable field has a generated ``<field>_probe`` column (4 bytes of its blind-index
token's MAC) with a B-tree on it. Lookups compare the probe and the whole token, with only
leak-proof operators, so PostgreSQL uses the index for the application role under RLS, and a
probe shared by two tokens never returns the wrong row.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.core import checks
from django.core.management import call_command
from django.db import connection, models
from django.db.models import Value
from django.test.utils import isolate_apps

from keys import fields
from neonpro.security.context import Identity, acting_as
from patients.models import CareTeamMembership, Patient
from tests.keys.sample_models import EncryptedSample

pytestmark = pytest.mark.django_db


def _plan(queryset: models.QuerySet[Any]) -> str:
    with connection.cursor() as cursor:
        # Tiny test tables make a sequential scan cheapest; forbidding it shows whether the
        # index is usable at all (a qual RLS may not push down leaves a seq scan regardless).
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SELECT current_user, current_setting('row_security')")
        assert cursor.fetchone() == ("neonpro_app", "on")
        return queryset.explain()


def _raw(pk: uuid.UUID, *columns: str) -> list[bytes | None]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)} FROM patients_patient WHERE id = %s", [pk])
        return [None if v is None else bytes(v) for v in cursor.fetchone()]


@pytest.mark.usefixtures("system")
@pytest.mark.parametrize("field", ["ssn", "mrn", "email", "phone"])
def test_lookups_use_the_probe_index_as_the_app_role_under_rls(patient_factory: Any, field: str) -> None:
    patient = patient_factory()
    value = getattr(patient, field)
    for queryset in (
        Patient.objects.filter(**{field: value}),
        Patient.objects.filter(**{f"{field}__in": [value, "something else"]}),
    ):
        plan = _plan(queryset)
        assert re.search(rf"(Index Scan using|Bitmap Index Scan on) patients_patient_{field}_probe_", plan), plan
        assert "Seq Scan on patients_patient" not in plan, plan
        assert list(queryset) == [patient]


def test_a_clinicians_lookup_uses_the_probe_index_too(patient_factory: Any, user_factory: Any, system: Any) -> None:
    clinician = user_factory("clinician")
    mine, other = patient_factory(ssn="123-45-0001"), patient_factory(ssn="123-45-0002")
    CareTeamMembership._base_manager.create(patient=mine, clinician=clinician)
    with acting_as(Identity(user_id=clinician.pk, role="clinician")):
        plan = _plan(Patient._plain.filter(ssn="123-45-0001"))
        assert re.search(r"(Index Scan using|Bitmap Index Scan on) patients_patient_ssn_probe_", plan), plan
        assert "Seq Scan on patients_patient" not in plan, plan
        assert list(Patient._plain.filter(ssn__in=["123450001", "123450002"])) == [mine]
    assert other.pk != mine.pk


@pytest.mark.usefixtures("system")
def test_a_shared_probe_never_returns_another_tokens_row(patient_factory: Any) -> None:
    target, decoy = patient_factory(ssn="111-22-3333"), patient_factory(ssn="444-55-6666")
    (stored,) = _raw(target.pk, "ssn")
    assert stored is not None
    # Same key id and probe (bytes 0..7), another MAC after them: what a probe collision is.
    forged = stored[:10] + bytes([stored[10] ^ 0xFF]) + stored[11:]
    with connection.cursor() as cursor:
        cursor.execute("UPDATE patients_patient SET ssn = %s WHERE id = %s", [forged, decoy.pk])
    assert _raw(decoy.pk, "ssn_probe") == _raw(target.pk, "ssn_probe") == [stored[4:8]]
    assert list(Patient.objects.filter(ssn="111-22-3333")) == [target]
    assert list(Patient.objects.filter(ssn__in=["111-22-3333", "999-99-9999"])) == [target]


@pytest.mark.usefixtures("system")
def test_the_probe_follows_every_write(patient_factory: Any) -> None:
    patient = patient_factory(email=None)
    assert _raw(patient.pk, "email", "email_probe") == [None, None]
    patient.email = "new@example.org"
    patient.save()
    email, probe = _raw(patient.pk, "email", "email_probe")
    assert email is not None and probe == email[4:8]
    with connection.cursor() as cursor:  # a raw write cannot set a probe that disagrees
        cursor.execute("UPDATE patients_patient SET email_probe = %s WHERE id = %s", [b"\x00" * 4, patient.pk])
    assert _raw(patient.pk, "email_probe") == [email[4:8]]
    assert Patient.objects.get(email="NEW@example.org") == patient

    sample = EncryptedSample.objects.create(email="a@example.org")  # a real generated column
    with connection.cursor() as cursor:
        cursor.execute("SELECT email, email_probe FROM keys_tests_encryptedsample WHERE id = %s", [sample.pk])
        value, sample_probe = (bytes(v) for v in cursor.fetchone())
    assert sample_probe == value[4:8] == fields.probe_of(value[:20])


def test_the_probe_is_four_bytes_of_the_mac() -> None:
    token = bytes(range(20))
    assert fields.probe_of(token) == bytes([4, 5, 6, 7])
    assert fields.PROBE_SIZE == 4 and fields.PROBE_START == 5


def test_no_whole_ciphertext_index_is_left() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'patients_patient'")
        indexes = dict(cursor.fetchall())
    for field in ("ssn", "mrn", "email", "phone"):
        assert not any(d.endswith(f"({field})") for d in indexes.values()), indexes
        assert any(d.endswith(f"({field}_probe)") for d in indexes.values()), indexes


def test_makemigrations_is_clean() -> None:
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


# -- declaration: the checks ------------------------------------------------------------


class _Row(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"row {self.pk}"


def _errors(model: type[models.Model], name: str) -> set[str]:
    return {e.id for e in model._meta.get_field(name).check() if isinstance(e, checks.Error)}


@isolate_apps("keys")
def test_a_searchable_field_without_its_probe_fails_the_check() -> None:
    class Forgot(_Row):
        ssn = fields.EncryptedCharField(max_length=11, search="digits")

        class Meta:
            app_label = "keys"

    class Declared(_Row):
        ssn = fields.EncryptedCharField(max_length=11, search="digits")
        ssn_probe = fields.search_probe("ssn")

        class Meta:
            app_label = "keys"

    class Unmanaged(_Row):
        ssn = fields.EncryptedCharField(max_length=11, search="digits")

        class Meta:
            app_label = "keys"
            managed = False

    assert "keys.E105" in _errors(Forgot, "ssn")
    errors = Forgot._meta.get_field("ssn").check()
    assert any("ssn_probe = keys.fields.search_probe('ssn')" in (e.hint or "") for e in errors)
    assert _errors(Declared, "ssn") == set()
    assert Declared._meta.get_field("ssn").probe is Declared._meta.get_field("ssn_probe")
    assert _errors(Unmanaged, "ssn") == set()
    assert _errors(Patient, "ssn") == set()


@isolate_apps("keys")
def test_an_index_over_ciphertext_fails_the_check() -> None:
    class Indexed(_Row):
        name = fields.EncryptedCharField(max_length=11, db_index=True)

        class Meta:
            app_label = "keys"

    assert "keys.E106" in _errors(Indexed, "name")


@isolate_apps("keys")
def test_only_a_search_probe_of_a_field_counts_as_its_probe() -> None:
    class Lookalikes(_Row):
        ssn = fields.EncryptedCharField(max_length=11, search="digits")
        other = models.GeneratedField(
            expression=models.functions.Length("id"), output_field=models.IntegerField(), db_persist=True
        )
        constant = models.GeneratedField(
            expression=fields.SearchProbe(Value(b"0123456789")), output_field=models.BinaryField(), db_persist=True
        )

        class Meta:
            app_label = "keys"

    assert Lookalikes._meta.get_field("ssn").probe is None
    assert "keys.E105" in _errors(Lookalikes, "ssn")


@isolate_apps("keys")
def test_without_a_probe_the_lookup_compares_the_token_ranges_alone() -> None:
    class Unmanaged(_Row):
        ssn = fields.EncryptedCharField(max_length=11, search="digits")

        class Meta:
            app_label = "keys"
            managed = False

    sql, params = Unmanaged.objects.filter(ssn__in=["1", "2"]).query.sql_with_params()
    assert "_probe" not in sql and sql.count(">=") == 2 and len(params) == 4
    sql, params = Patient._plain.filter(ssn__in=["1", "2", "1"]).query.sql_with_params()
    assert '"ssn_probe" IN (%s, %s)' in sql and sql.count(">=") == 2


def test_the_last_token_of_all_has_an_open_range(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fields._successor(b"\xff" * 20) is None
    assert fields._successor(b"\x00" * 19 + b"\xff") == b"\x00" * 18 + b"\x01\x00"
    field = Patient._meta.get_field("ssn")
    monkeypatch.setattr(field, "index_candidates", lambda value: [b"\xff" * 20])
    sql, params = Patient._plain.filter(ssn="x").query.sql_with_params()
    assert '"ssn_probe" IN (%s)' in sql and '"ssn" >= %s' in sql and '"ssn" <' not in sql
    assert list(params) == [b"\xff" * 4, b"\xff" * 20]
