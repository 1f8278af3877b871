"""A throw-away SoftHSM2 token for the PKCS#11 tests: its own config and token directory in a
temporary directory, never a system token.

libsofthsm2 reads SOFTHSM2_CONF when the library is initialised (C_Initialize) and only sees
tokens that existed then, and python-pkcs11 keeps one loaded library per path for the whole
process. So the token is created once per test session: set SOFTHSM2_CONF, initialise the
token with ``softhsm2-util``, then (re)initialise the library so it reads this config.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
import pytest

from keys.providers import pkcs11 as provider_module
from keys.providers.pkcs11 import DEFAULT_LIB, Pkcs11KeyProvider

KEK_LABEL = "neonpro-kek"


@dataclass(frozen=True)
class SoftHsm:
    lib: str
    token: str
    pin: str
    so_pin: str
    conf: Path

    def provider(self, **overrides: Any) -> Pkcs11KeyProvider:
        options: dict[str, Any] = {"lib_path": self.lib, "token_label": self.token, "pin": self.pin}
        options["key_label"] = KEK_LABEL
        options.update(overrides)
        return Pkcs11KeyProvider(**options)

    @contextlib.contextmanager
    def session(self, *, rw: bool = False) -> Iterator[Any]:
        """A logged-in session of the test's own, holding the provider's lock: PKCS#11 login
        state is per process, so it must not overlap a provider operation."""
        with provider_module._LOCK:
            token = pkcs11.lib(self.lib).get_token(token_label=self.token)
            with token.open(rw=rw, user_pin=self.pin) as session:
                yield session


def new_label(prefix: str = "kek") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def softhsm_token(base: Path) -> Iterator[SoftHsm]:
    """Create a SoftHSM2 token under ``base`` with SOFTHSM2_CONF pointing at it for the block."""
    util = shutil.which("softhsm2-util")
    if util is None or not Path(DEFAULT_LIB).is_file():
        pytest.fail(f"SoftHSM2 is not installed (softhsm2-util, {DEFAULT_LIB}): `make tools` installs it")
    tokens = base / "tokens"
    tokens.mkdir(parents=True)
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    label = f"neonpro-test-{uuid.uuid4().hex[:8]}"
    hsm = SoftHsm(lib=DEFAULT_LIB, token=label, pin="4821-user", so_pin="9164-so", conf=conf)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(conf))
        subprocess.run(
            [util, "--init-token", "--free", "--label", hsm.token, "--pin", hsm.pin, "--so-pin", hsm.so_pin],
            check=True,
            capture_output=True,
        )
        lib = pkcs11.lib(hsm.lib)
        lib.reinitialize()  # re-read SOFTHSM2_CONF and rescan tokens, whoever loaded the library first
        try:
            yield hsm
        finally:
            lib.finalize()  # the next user initialises it again under its own config
