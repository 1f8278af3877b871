"""Search normalisers: every spelling of a value (case, spacing, full-width and compatibility
forms, composed or decomposed accents) maps to one canonical string, normalising twice equals
normalising once, and search finds the patient in any of those spellings."""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable

import pytest
from django.db.migrations.loader import MigrationLoader
from hypothesis import given, settings
from hypothesis import strategies as st

from keys import fields
from keys.normalizers import NORMALIZERS, alnum, digits, email
from patients.models import Patient
from tests.conftest import fuzz_budget

FORMS = ("NFC", "NFD", "NFKC", "NFKD")


def _fullwidth(text: str) -> str:
    """Printable ASCII in its full-width form (U+FF01..U+FF5E), as East Asian keyboards type it."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# -- each normaliser, by example ------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "normal"),
    [
        ("123-45-6789", "123456789"),
        ("123 45 6789", "123456789"),
        (_fullwidth("123-45-6789"), "123456789"),
        ("+1 (555) 0001", "15550001"),
        ("¹²³", "123"),  # superscripts
        ("①②③", "123"),  # circled digits
        ("ssn: 900-55-0001", "900550001"),
        ("", ""),
        # Not compatibility forms, so NFKC keeps them and they are dropped: this is the
        # published meaning of "digits", which stored indexes depend on.
        ("١٢٣", ""),
    ],
)
def test_digits(spelling: str, normal: str) -> None:
    assert digits(spelling) == normal


@pytest.mark.parametrize(
    ("spelling", "normal"),
    [
        ("  Ada@Example.ORG ", "ada@example.org"),
        (_fullwidth("ADA@example.org"), "ada@example.org"),
        ("\u00a0ada@example.org\u3000", "ada@example.org"),  # no-break and ideographic spaces
        ("José@example.org", "josé@example.org"),
        ("Jose\u0301@example.org", "josé@example.org"),  # decomposed accent
        ("STRASSE@example.org", "strasse@example.org"),
        ("straße@example.org", "strasse@example.org"),
        ("\u212aim@example.org", "kim@example.org"),  # KELVIN SIGN
        ("\ufb01le@example.org", "file@example.org"),  # "fi" ligature
        ("ß\u0301@example.org", "sś@example.org"),  # folding un-composes; normalised again
    ],
)
def test_email(spelling: str, normal: str) -> None:
    assert email(spelling) == normal


@pytest.mark.parametrize(
    ("spelling", "normal"),
    [
        ("MRN-000123", "mrn000123"),
        ("mrn 000123", "mrn000123"),
        (_fullwidth("MRN-000123"), "mrn000123"),
        ("\ufb01le-1", "file1"),
        ("\u216b", "xii"),  # ROMAN NUMERAL TWELVE
        ("\u0130d-7", "id7"),  # dotted capital I folds to i + a combining dot, which is dropped
        ("Ünit 5", "nit5"),  # letters outside a-z are dropped, composed or not
        ("U\u0308nit 5", "nit5"),
    ],
)
def test_alnum(spelling: str, normal: str) -> None:
    assert alnum(spelling) == normal


def test_the_published_names_are_the_ones_migrations_use() -> None:
    """Names are stored in migrations: each one there must still resolve, to the same function."""
    assert NORMALIZERS == {"digits": digits, "email": email, "alnum": alnum}
    loader = MigrationLoader(None, ignore_no_migrations=True)
    used = set()
    for migration in loader.disk_migrations.values():
        for operation in migration.operations:
            declared = [f for _, f in getattr(operation, "fields", [])] + [getattr(operation, "field", None)]
            used |= {f.search for f in declared if isinstance(f, fields.EncryptedMixin) and f.search}
    assert used == {"digits", "email", "alnum"}


@pytest.mark.parametrize("name", ["text", "exact", "nfkc", ""])
def test_a_field_refuses_a_normaliser_that_does_not_exist(name: str) -> None:
    with pytest.raises(ValueError, match="not a known normaliser: digits, email, alnum"):
        fields.EncryptedCharField(max_length=10, search=name)


# -- properties of every normaliser ---------------------------------------------------------

NORMALISER_PARAMS = pytest.mark.parametrize("normalize", NORMALIZERS.values(), ids=NORMALIZERS.keys())


@NORMALISER_PARAMS
@settings(max_examples=fuzz_budget(300))
@given(value=st.text(max_size=40))
def test_normalising_twice_equals_normalising_once(normalize: Callable[[str], str], value: str) -> None:
    once = normalize(value)
    assert normalize(once) == once


@NORMALISER_PARAMS
@settings(max_examples=fuzz_budget(200))
@given(value=st.text(max_size=40))
def test_every_unicode_normal_form_of_a_value_normalises_alike(normalize: Callable[[str], str], value: str) -> None:
    expected = normalize(value)
    for form in FORMS:
        assert normalize(unicodedata.normalize(form, value)) == expected, form


@NORMALISER_PARAMS
@settings(max_examples=fuzz_budget(200))
@given(value=st.text(alphabet=string.printable, max_size=40))
def test_full_width_spellings_normalise_like_ascii(normalize: Callable[[str], str], value: str) -> None:
    assert normalize(_fullwidth(value)) == normalize(value)


@settings(max_examples=fuzz_budget(200))
@given(value=st.text(max_size=40))
def test_outputs_stay_in_their_alphabets(value: str) -> None:
    assert set(digits(value)) <= set(string.digits)
    assert set(alnum(value)) <= set(string.digits + string.ascii_lowercase)
    assert email(value) == email(value).strip()


# -- search finds the patient across spellings ----------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("system")
def test_search_finds_the_patient_in_every_spelling(patient_factory) -> None:  # type: ignore[no-untyped-def]
    target = patient_factory(
        mrn="MRN-004711", email="Ada.Strasse@Bücher.example", phone="+1 555 0199", ssn="123-45-6789"
    )
    patient_factory(mrn="MRN-004712", email="ada.strasse@bucher.example", phone="+1 555 0198", ssn="123-45-6780")
    spellings = {
        "mrn": ["MRN-004711", "mrn004711", "mrn 004711", _fullwidth("MRN-004711"), "\uff2d\uff32\uff2e004711"],
        "email": [
            "ada.strasse@bu\u0308cher.example",  # decomposed umlaut
            " ADA.STRASSE@BÜCHER.EXAMPLE ",
            _fullwidth("ADA.STRASSE@B") + "ÜCHER.example",
            "ada.stra\u00dfe@bücher.example",  # sharp s folds to ss
        ],
        "phone": ["+1 555 0199", "15550199", _fullwidth("+1 (555) 0199")],
        "ssn": ["123456789", _fullwidth("123-45-6789"), "123 45 6789"],
    }
    for field, values in spellings.items():
        for value in values:
            assert list(Patient.objects.filter(**{field: value})) == [target], (field, value)
        assert list(Patient.objects.filter(**{f"{field}__in": values})) == [target], field
