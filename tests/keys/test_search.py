"""Searchable fields: ORM equality lookups through the blind index, without decrypting rows."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import FieldError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keys import crypto
from keys.keyring import keyring
from keys.models import DataKey
from keys.services import create_data_key
from patients.models import Patient
from tests.keys.sample_models import EncryptedSample

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("system")]


def test_filter_by_ssn_in_any_spelling(patient_factory) -> None:  # type: ignore[no-untyped-def]
    target = patient_factory(ssn="123-45-6789")
    patient_factory(ssn="123-45-6780")
    for spelling in ("123-45-6789", "123456789", "123 45 6789", "１２３-４５-６７８９"):
        assert list(Patient.objects.filter(ssn=spelling)) == [target], spelling


def test_get_by_mrn_and_email_in(patient_factory) -> None:  # type: ignore[no-untyped-def]
    a = patient_factory(mrn="MRN-000777", email="Ada@Example.org")
    b = patient_factory(email="bob@example.org")
    patient_factory(email="carol@example.org")
    assert Patient.objects.get(mrn="mrn000777") == a
    assert set(Patient.objects.filter(email__in=["ADA@example.org ", "bob@EXAMPLE.org", "nobody@x.org"])) == {a, b}
    assert list(Patient.objects.filter(email__in=[])) == []
    assert Patient.objects.filter(phone="+1 (555) 0001").count() <= 1


def test_lookup_does_not_decrypt_rows_and_sends_no_plaintext(patient_factory) -> None:  # type: ignore[no-untyped-def]
    patient_factory(ssn="321-54-9876")
    with CaptureQueriesContext(connection) as queries:
        found = list(Patient.objects.filter(ssn="321-54-9876"))
    assert len(found) == 1
    assert all(type(found[0].__dict__[name]) is bytes for name in ("full_name", "ssn", "address"))
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "321-54-9876" not in sql and "321549876" not in sql


def test_lookup_uses_the_search_token_index(patient_factory) -> None:  # type: ignore[no-untyped-def]
    for _ in range(30):
        patient_factory()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        qs = Patient.objects.filter(ssn="900-55-0003")
        plan = qs.explain()
    # An index scan or a bitmap scan of the probe index: either way the probe index, no table scan.
    assert re.search(r"(Index Scan using|Bitmap Index Scan on) patients_patient_ssn_probe", plan), plan
    assert "Seq Scan on patients_patient" not in plan, plan


def test_isnull_and_none_work(patient_factory) -> None:  # type: ignore[no-untyped-def]
    without, with_ssn = patient_factory(ssn=None), patient_factory()
    nulls = set(Patient.objects.filter(ssn=None))
    assert without in nulls and with_ssn not in nulls
    assert without not in Patient.objects.filter(ssn__isnull=False)
    assert without in Patient.objects.exclude(ssn="900-55-0001")


def test_equal_plaintexts_index_differently_per_field_and_purpose(patient_factory) -> None:  # type: ignore[no-untyped-def]
    sample = EncryptedSample.objects.create(email="same@example.org", code="same@example.org")
    with connection.cursor() as cursor:
        cursor.execute("SELECT email, code FROM keys_tests_encryptedsample WHERE id = %s", [sample.pk])
        email, code = (bytes(v) for v in cursor.fetchone())
    assert email[:20] != code[:20]
    assert EncryptedSample.objects.get(email="same@example.org") == sample
    assert EncryptedSample.objects.get(code="same@example.org") == sample
    index_token = crypto.blind_index("x", context=b"a")
    assert index_token != crypto.blind_index("x", context=b"b")


def test_lookups_keep_working_across_index_key_versions(patient_factory) -> None:  # type: ignore[no-untyped-def]
    old = patient_factory(ssn="111-22-3333")
    old_key = DataKey.objects.get(purpose="index", status="active")
    DataKey.objects.filter(pk=old_key.pk).update(status=DataKey.Status.DECRYPT_ONLY)
    new_key = create_data_key("index")
    keyring.clear()
    new = patient_factory(ssn="444-55-6666")
    with connection.cursor() as cursor:
        cursor.execute("SELECT ssn FROM patients_patient WHERE id IN (%s, %s)", [old.pk, new.pk])
        prefixes = {int.from_bytes(bytes(row[0])[:4], "big") for row in cursor.fetchall()}
    assert prefixes == {old_key.pk, new_key.pk}
    assert Patient.objects.get(ssn="111223333") == old
    assert Patient.objects.get(ssn="444556666") == new
    assert set(Patient.objects.filter(ssn__in=["111-22-3333", "444-55-6666"])) == {old, new}


def test_unsupported_lookups_and_expressions_are_refused(patient_factory) -> None:  # type: ignore[no-untyped-def]
    from django.db.models import F

    with pytest.raises(FieldError, match="exact, in and isnull"):
        Patient.objects.filter(ssn__startswith="123").exists()
    with pytest.raises(FieldError, match="literal values"):
        Patient.objects.filter(ssn=F("phone")).exists()
    with pytest.raises(FieldError, match="literal values"):
        Patient.objects.filter(email__in=Patient.objects.filter(active=True).values("pk")).exists()
