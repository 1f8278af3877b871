"""Encrypted fields on real PostgreSQL: every type round-trips; the ORM either works or says why not."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.core.exceptions import FieldError, ValidationError
from django.db import connection, transaction
from django.db.models import F, Value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keys import fields as keyfields
from keys.keyring import keyring
from tests.keys.sample_models import EncryptedSample

pytestmark = pytest.mark.django_db

VALUES = {
    "text": "Zoë naïve — 診断 🩺\n" * 3,
    "char": "short ✓",
    "day": dt.date(1970, 1, 1),
    "moment": dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
    "number": -(2**70),
    "amount": Decimal("-1234567890.12"),
    "flag": False,
    "data": {"hb": [13.5, 14.1], "units": "g/dL", "flags": {"low": False}, "note": "ünï"},
}


def _raw(pk: uuid.UUID, column: str) -> bytes | None:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT "{column}" FROM "keys_tests_encryptedsample" WHERE id = %s', [pk])
        value = cursor.fetchone()[0]
    return None if value is None else bytes(value)


def test_every_type_round_trips() -> None:
    obj = EncryptedSample.objects.create(**VALUES)
    loaded = EncryptedSample.objects.get(pk=obj.pk)
    for name, value in VALUES.items():
        assert getattr(loaded, name) == value, name
        assert type(getattr(loaded, name)) is type(value), name


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("text", ""),
        ("char", ""),
        ("text", "x" * 1_000_000),
        ("number", 0),
        ("amount", Decimal("0.00")),
        ("flag", True),
        ("data", []),
        ("data", "just a string"),
        ("data", 0),
        ("moment", dt.datetime(1, 1, 1, tzinfo=dt.UTC)),
    ],
)
def test_edge_values_round_trip(name: str, value: object) -> None:
    obj = EncryptedSample.objects.create(**{name: value})
    assert getattr(EncryptedSample.objects.get(pk=obj.pk), name) == value


def test_none_stays_null() -> None:
    obj = EncryptedSample.objects.create()
    for name in VALUES:
        assert _raw(obj.pk, name) is None
        assert getattr(EncryptedSample.objects.get(pk=obj.pk), name) is None
    assert EncryptedSample.objects.filter(text__isnull=True, pk=obj.pk).exists()
    assert not EncryptedSample.objects.filter(text__isnull=False, pk=obj.pk).exists()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    text=st.text(max_size=300),
    number=st.integers(),
    data=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=10,
    ),
)
def test_property_round_trip(text: str, number: int, data: object) -> None:
    obj = EncryptedSample.objects.create(text=text, number=number, data=data)
    loaded = EncryptedSample.objects.get(pk=obj.pk)
    assert (loaded.text, loaded.number, loaded.data) == (text, number, data)


def test_decimal_accepts_floats_and_strings() -> None:
    obj = EncryptedSample.objects.create(amount=1.5)
    assert EncryptedSample.objects.get(pk=obj.pk).amount == Decimal("1.5")
    obj = EncryptedSample.objects.create(amount="12.25")
    assert EncryptedSample.objects.get(pk=obj.pk).amount == Decimal("12.25")


def test_context_pins_the_associated_data_label() -> None:
    field = keyfields.EncryptedCharField(max_length=5, context="legacy.model.field")
    assert field.deconstruct()[3]["context"] == "legacy.model.field"


def test_naive_datetime_is_made_aware_utc() -> None:
    with pytest.warns(RuntimeWarning, match="naive datetime"):
        obj = EncryptedSample.objects.create(moment=dt.datetime(2024, 1, 1, 12, 0))
    assert EncryptedSample.objects.get(pk=obj.pk).moment == dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_database_holds_only_versioned_ciphertext() -> None:
    obj = EncryptedSample.objects.create(**VALUES, email="Canary@Example.org")
    for name in (*VALUES, "email"):
        raw = _raw(obj.pk, name)
        assert raw is not None
        envelope = raw[20:] if name == "email" else raw
        assert envelope[0] == 1, name
    assert b"short" not in _raw(obj.pk, "char")
    assert b"canary" not in _raw(obj.pk, "email").lower()


def test_decryption_is_lazy_per_field() -> None:
    obj = EncryptedSample.objects.create(**VALUES)
    loaded = EncryptedSample.objects.get(pk=obj.pk)
    assert type(loaded.__dict__["text"]) is bytes
    assert loaded.char == VALUES["char"]
    assert loaded.__dict__["char"] == VALUES["char"]
    assert type(loaded.__dict__["text"]) is bytes, "reading one field must not decrypt another"


def test_saving_untouched_fields_keeps_their_ciphertext() -> None:
    obj = EncryptedSample.objects.create(**VALUES)
    before = _raw(obj.pk, "text")
    loaded = EncryptedSample.objects.get(pk=obj.pk)
    loaded.char = "changed"
    loaded.save()
    assert _raw(obj.pk, "text") == before
    assert EncryptedSample.objects.get(pk=obj.pk).char == "changed"


def test_update_fields_and_deferred_loading() -> None:
    obj = EncryptedSample.objects.create(**VALUES)
    partial = EncryptedSample.objects.only("id", "char").get(pk=obj.pk)
    partial.char = "via only()"
    partial.save()
    assert partial.text == VALUES["text"]  # deferred field is fetched and decrypted on access
    fresh = EncryptedSample.objects.get(pk=obj.pk)
    assert (fresh.char, fresh.text) == ("via only()", VALUES["text"])
    fresh.number = 7
    fresh.save(update_fields=["number"])
    assert EncryptedSample.objects.get(pk=obj.pk).number == 7


def test_refresh_from_db_replaces_stale_plaintext() -> None:
    obj = EncryptedSample.objects.create(char="one")
    stale = EncryptedSample.objects.get(pk=obj.pk)
    assert stale.char == "one"
    obj.char = "two"
    obj.save()
    stale.refresh_from_db()
    assert stale.char == "two"


def test_bulk_create_encrypts() -> None:
    objs = EncryptedSample.objects.bulk_create([EncryptedSample(char=f"row {i}", number=i) for i in range(50)])
    loaded = {o.pk: o for o in EncryptedSample.objects.filter(pk__in=[o.pk for o in objs])}
    assert sorted(o.number for o in loaded.values()) == list(range(50))
    assert all(loaded[o.pk].char == f"row {o.number}" for o in objs)


def test_copying_a_row_reencrypts_for_its_new_primary_key() -> None:
    original = EncryptedSample.objects.create(**VALUES)
    copy = EncryptedSample.objects.get(pk=original.pk)
    copy.pk = uuid.uuid4()
    copy._state.adding = True
    copy.save()
    assert EncryptedSample.objects.get(pk=copy.pk).text == VALUES["text"]
    assert _raw(copy.pk, "text") != _raw(original.pk, "text")


def test_max_length_is_checked_on_plaintext() -> None:
    obj = EncryptedSample(char="x" * 21)
    with pytest.raises(ValidationError, match="21 characters; at most 20"), transaction.atomic():
        obj.save()
    with pytest.raises(ValidationError) as info:
        obj.full_clean()
    assert "char" in info.value.message_dict
    assert not EncryptedSample.objects.filter(pk=obj.pk).exists()
    EncryptedSample.objects.create(char="é" * 20)  # characters, not bytes


@pytest.mark.parametrize(
    ("name", "bad"),
    [("day", "2024-02-30"), ("number", "twelve"), ("amount", "1.2.3"), ("data", {1, 2}), ("amount", "NaN")],
)
def test_bad_values_raise_validation_errors_and_write_nothing(name: str, bad: object) -> None:
    obj = EncryptedSample(**{name: bad})
    with pytest.raises(ValidationError), transaction.atomic():
        obj.save()
    assert not EncryptedSample.objects.filter(pk=obj.pk).exists()


def test_bytes_are_not_plaintext() -> None:
    with pytest.raises(TypeError, match="takes a str, not bytes"):
        EncryptedSample(char=b"raw").save()


def test_update_with_plaintext_explains_what_to_do() -> None:
    EncryptedSample.objects.create(char="a")
    with pytest.raises(FieldError, match="call save"):
        EncryptedSample.objects.update(char="b")


@pytest.mark.parametrize("expression", [F("text"), Value("plaintext")])
def test_update_from_expression_is_refused(expression: object) -> None:
    obj = EncryptedSample.objects.create(char="a", text="b")
    with pytest.raises(FieldError, match="bound to its row"), transaction.atomic():
        EncryptedSample.objects.update(char=expression)
    assert EncryptedSample.objects.get(pk=obj.pk).char == "a"


def test_bulk_update_is_refused() -> None:
    obj = EncryptedSample.objects.create(char="a")
    obj.char = "b"
    with pytest.raises(FieldError, match="bulk_update"), transaction.atomic():
        EncryptedSample.objects.bulk_update([obj], ["char"])
    EncryptedSample.objects.bulk_update([obj], ["plain"])  # other fields still work


def test_values_and_values_list_are_refused() -> None:
    EncryptedSample.objects.create(char="a", plain="p")
    with pytest.raises(FieldError, match="values"):
        list(EncryptedSample.objects.values("char"))
    with pytest.raises(FieldError, match="values"):
        list(EncryptedSample.objects.values_list("text", flat=True))
    with pytest.raises(FieldError, match="values"):
        list(EncryptedSample.objects.values())
    assert list(EncryptedSample.objects.values_list("plain", flat=True)) == ["p"]


@pytest.mark.parametrize("lookup", ["char__icontains", "char__startswith", "number__gt", "day__year", "text__exact"])
def test_lookups_other_than_isnull_are_refused(lookup: str) -> None:
    with pytest.raises(FieldError, match="encrypted"):
        EncryptedSample.objects.filter(**{lookup: "1"}).exists()


def test_json_key_transforms_are_refused() -> None:
    with pytest.raises(FieldError, match="encrypted"):
        EncryptedSample.objects.filter(data__hb=1).exists()


def test_field_deconstructs_for_migrations() -> None:
    field = EncryptedSample._meta.get_field("email")
    _, path, args, kwargs = field.deconstruct()
    assert path == "keys.fields.EncryptedCharField"
    assert kwargs["search"] == "email" and "db_index" not in kwargs
    rebuilt = keyfields.EncryptedCharField(*args, **kwargs)
    # search= no longer implies a whole-column index: the model declares search_index() instead.
    assert rebuilt.search == "email" and not rebuilt.db_index and rebuilt.max_length == 254


def test_model_checks_reject_unsafe_options() -> None:
    field = keyfields.EncryptedCharField(max_length=5, unique=True)
    field.set_attributes_from_name("x")
    ids = {e.id for e in keyfields.EncryptedMixin.check(field)}
    assert "keys.E101" in ids


def test_no_key_unwrap_on_the_hot_path(django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    obj = EncryptedSample.objects.create(**VALUES)
    EncryptedSample.objects.get(pk=obj.pk).text  # noqa: B018 - warm the key cache
    with django_assert_num_queries(1):
        loaded = EncryptedSample.objects.get(pk=obj.pk)
        for name in VALUES:
            getattr(loaded, name)
    assert keyring._aeads, "data keys stay cached between uses"


def test_a_value_without_its_row_key_cannot_be_opened() -> None:
    from keys.exceptions import DecryptionError

    sample = EncryptedSample.objects.create(text="bound to its row")
    stored = _raw(sample.pk, "text")
    assert stored is not None
    field = EncryptedSample._meta.get_field("text")

    with pytest.raises(DecryptionError, match="no primary key"):
        field.open_value({}, stored)
    with pytest.raises(DecryptionError, match="not a UUID"):
        field.open_value({"id": "row-7"}, stored)
    assert field.open_value({"id": str(sample.pk)}, stored) == "bound to its row"  # its UUID as a string works
