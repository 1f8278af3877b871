from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.keys.softhsm import KEK_LABEL, SoftHsm, softhsm_token


@pytest.fixture(scope="session")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """One SoftHSM2 token for the session, in a temporary directory, with a master key."""
    with softhsm_token(tmp_path_factory.mktemp("softhsm")) as token:
        token.provider().create_key(label=KEK_LABEL)
        yield token


@pytest.fixture(scope="session", autouse=True)
def _subject_key_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Subject-epoch key files of the session in a temporary directory, never var/."""
    from django.conf import settings

    settings.NEONPRO_SUBJECT_KEY_DIR = str(tmp_path_factory.mktemp("subject-keys"))
