"""Passwords as production has them: Argon2id (older hashes upgraded at sign-in), the real
validators (the suite hashes with MD5 for speed elsewhere), the offline breach list, reset."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import password_validators_help_texts, validate_password
from django.core import mail
from django.core.exceptions import ImproperlyConfigured, ValidationError

from neonpro.accounts import breached
from neonpro.audit.models import AuditEvent
from tests.accounts.signin_helpers import browser_client, me, post_form, sign_in_password

pytestmark = pytest.mark.django_db


def _production() -> Any:
    """neonpro.settings as the module defines it (tests/conftest.py swaps the hasher in django.conf)."""
    import neonpro.settings as module

    return module


def test_the_production_hasher_is_argon2id_first() -> None:
    hashers = _production().PASSWORD_HASHERS
    assert hashers[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    assert "django.contrib.auth.hashers.PBKDF2PasswordHasher" in hashers, "old hashes still verify"


def test_an_old_pbkdf2_hash_becomes_argon2id_at_the_next_sign_in(user_factory: Any, settings: Any) -> None:
    settings.PASSWORD_HASHERS = _production().PASSWORD_HASHERS
    user = user_factory("patient", username="pat")
    user.password = make_password("correct horse battery staple", hasher="pbkdf2_sha256")
    user.save(update_fields=["password"])

    answer = sign_in_password(browser_client(), "pat")

    assert answer.status_code == 302
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$")
    assert user.check_password("correct horse battery staple")


def test_the_production_validators(user_factory: Any, settings: Any) -> None:
    settings.AUTH_PASSWORD_VALIDATORS = _production().AUTH_PASSWORD_VALIDATORS
    user = user_factory("patient", username="margaret.hamilton", email="margaret@example.org")
    refused = {
        "short1!": "password_too_short",
        "123456789012345": "password_entirely_numeric",
        "margaret.hamilton1": "password_too_similar",
        "qwertyuiop123": "password_breached",
        "correct horse battery staple": "password_breached",
    }
    for password, code in refused.items():
        with pytest.raises(ValidationError) as caught:
            validate_password(password, user)
        assert code in [e.code for e in caught.value.error_list], password
    validate_password("teal lantern under nine bridges", user)
    assert "data breaches" in " ".join(password_validators_help_texts())


def _list(tmp_path: Path, passwords: list[str]) -> Path:
    path = tmp_path / "pwned.txt"
    breached.write_list(passwords, path)
    return path


def test_the_breach_list_is_binary_searched(tmp_path: Path) -> None:
    words = [f"word-{n}" for n in range(500)]
    path = _list(tmp_path, words)
    hashes = sorted(breached.sha1_hex(w) for w in words)
    by_hash = {breached.sha1_hex(w): w for w in words}
    for h in (hashes[0], hashes[1], hashes[250], hashes[-2], hashes[-1]):
        assert breached.breach_count(by_hash[h], path=path) == 1
    assert breached.breach_count("not in it", path=path) == 0
    assert breached.breach_count("", path=_list(tmp_path, [])) == 0


def test_the_pwned_passwords_format_with_counts(tmp_path: Path, settings: Any) -> None:
    def line(password: str, count: str) -> str:
        return f"{hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()}:{count}\n"

    rows = sorted([line("alpha beta gamma", "42"), line("delta epsilon", "x"), line("zeta eta theta", "7")])
    path = tmp_path / "pwned-passwords-sha1-ordered-by-hash.txt"
    path.write_text("".join(rows))
    settings.NEONPRO_BREACHED_PASSWORDS_FILE = str(path)

    assert breached.breach_count("alpha beta gamma") == 42
    assert breached.breach_count("delta epsilon") == 1, "an unreadable count still counts"
    assert breached.breach_count("a bundled one: qwertyuiop123") == 0
    with pytest.raises(ValidationError):
        breached.BreachedPasswordValidator().validate("zeta eta theta")


def test_a_missing_list_fails_loudly(settings: Any, tmp_path: Path) -> None:
    settings.NEONPRO_BREACHED_PASSWORDS_FILE = str(tmp_path / "absent.txt")
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        breached.breach_count("anything at all")


def test_the_bundled_list_is_sorted_and_holds_the_common_ones() -> None:
    lines = breached.BUNDLED.read_text().splitlines()
    assert lines == sorted(lines) and all(re.fullmatch(r"[0-9A-F]{40}:1", row) for row in lines)
    assert breached.breach_count("1q2w3e4r5t6y") == 1


def test_the_list_builder(tmp_path: Path, capsys: Any) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("first one\nsecond one\n\n")
    packed = tmp_path / "more.txt.gz"
    with gzip.open(packed, "wt") as fh:
        fh.write("third one\nfirst one\n")
    out = tmp_path / "list.txt"

    assert breached.main([str(out), str(plain), str(packed)]) == 0

    assert "3 hashes written" in capsys.readouterr().out
    assert breached.breach_count("third one", path=out) == 1
    assert breached.main([]) == 2


def test_password_reset_tells_nobody_which_addresses_exist(user_factory: Any, settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    user = user_factory("patient", username="pat", email="pat@example.org")

    known = post_form(browser_client(), "/accounts/password/reset/", {"email": "pat@example.org"})
    unknown = post_form(browser_client(), "/accounts/password/reset/", {"email": "nobody@example.org"})

    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"] == "/accounts/password/reset/done/"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["pat@example.org"]
    link = re.search(r"https://testserver(/accounts/password/reset/\S+/)", mail.outbox[0].body)
    assert link, mail.outbox[0].body

    client = browser_client()
    form = client.get(link[1], secure=True, follow=True)
    set_url = form.redirect_chain[-1][0].removeprefix("https://testserver")
    weak = post_form(client, set_url, {"new_password1": "qwertyuiop123", "new_password2": "qwertyuiop123"})
    assert weak.status_code == 200 and "data breaches" in weak.content.decode()
    done = post_form(
        client, set_url, {"new_password1": "teal lantern nine bridges", "new_password2": "teal lantern nine bridges"}
    )
    assert done.status_code == 302 and done["Location"] == "/accounts/password/reset/complete/"
    assert AuditEvent.objects.filter(action="account.password_set", resource_id=user.pk, details__via="password_reset")
    signed = browser_client()
    assert sign_in_password(signed, "pat", password="teal lantern nine bridges").status_code == 302
    assert me(signed) == 200
    again = browser_client().get(link[1], secure=True, follow=True)
    assert "no longer works" in again.content.decode()
