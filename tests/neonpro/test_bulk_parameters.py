"""Bulk paths past PostgreSQL's 65,535 bind parameters (server-side binding is on).

Before neonpro.db.postgresql, each of these failed with "number of parameters must be between
0 and 65535": Django's deletion collector cascades with one ``IN (...)`` over every collected
row, ``bulk_update`` binds two parameters per field and row, and ``pk__in`` one per value.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from neonpro.db.postgresql.base import MAX_PARAMETERS, BoundedServerBindingCursor
from patients.models import CareTeamMembership, Patient

MORE = MAX_PARAMETERS + 465


def _patients(n: int) -> list[Patient]:
    born = dt.date(1970, 1, 1)
    rows = [Patient(full_name="Bulk Canary", date_of_birth=born, mrn=f"BULK-{i:06d}") for i in range(n)]
    return Patient.objects.bulk_create(rows, batch_size=5000)


def test_server_side_binding_is_what_runs(system: Any) -> None:
    assert connection.settings_dict["OPTIONS"]["server_side_binding"] is True
    connection.ensure_connection()
    assert connection.connection.cursor_factory is BoundedServerBindingCursor


def test_pk_in_with_more_values_than_the_protocol_carries(system: Any, patient_factory: Any) -> None:
    patient = patient_factory()
    ids = [uuid.uuid4() for _ in range(MORE)] + [patient.pk]

    found = list(Patient.objects.filter(pk__in=ids))

    assert [p.pk for p in found] == [patient.pk]
    assert found[0].full_name == patient.full_name


def test_bulk_update_and_cascading_delete_past_the_limit(system: Any, user_factory: Any) -> None:
    patients = _patients(MORE)
    clinician = user_factory("clinician")
    # bulk_update binds three parameters per row for one field: CASE WHEN pk = %s THEN %s, IN (%s).
    memberships = CareTeamMembership.objects.bulk_create(
        [CareTeamMembership(patient=p, clinician=clinician) for p in patients[: MAX_PARAMETERS // 3 + 10]],
        batch_size=5000,
    )
    ended = dt.date.today() + dt.timedelta(days=30)
    for membership in memberships:
        membership.ends_on = ended

    with CaptureQueriesContext(connection) as queries:
        updated = CareTeamMembership.objects.bulk_update(memberships, ["ends_on"])

    assert updated == len(memberships)
    assert sum(q["sql"].startswith("UPDATE") for q in queries.captured_queries) >= 2  # batched below the limit
    assert CareTeamMembership.objects.filter(ends_on=ended).count() == len(memberships)

    _, per_model = Patient.objects.filter(mrn__in=[p.mrn for p in patients[:3]]).delete()
    assert per_model["patients.Patient"] == 3  # a searchable __in still works alongside

    _, per_model = Patient.objects.filter(pk__in=[p.pk for p in patients]).delete()

    assert per_model["patients.Patient"] == MORE - 3
    assert per_model["patients.CareTeamMembership"] == len(memberships) - 3
    assert not Patient.objects.filter(pk__in=[p.pk for p in patients]).exists()


def test_without_server_side_binding_the_backend_keeps_djangos_client_cursor() -> None:
    from django.db.backends.postgresql import base as django_base

    from neonpro.db.postgresql.base import DatabaseWrapper

    settings_dict = {
        **connection.settings_dict,
        "OPTIONS": {**connection.settings_dict["OPTIONS"], "server_side_binding": False},
    }
    wrapper = DatabaseWrapper(settings_dict, alias="client-binding")

    assert wrapper.get_connection_params()["cursor_factory"] is django_base.Cursor
    assert wrapper.ops.bulk_batch_size(["a", "b"], list(range(100_000))) == MAX_PARAMETERS // 4
