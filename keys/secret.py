"""A secret setting that never shows itself: ``repr``/``str`` print a mask.

Django's ``diffsettings`` prints every setting with ``repr`` and its DEBUG error page masks
settings only by name, so a secret held in settings (``NEONPRO_PKCS11_PIN``,
``NEONPRO_MASTER_KEY``) is wrapped in :class:`Secret`; code that needs the value calls
:func:`reveal`. Standard library only: ``neonpro/settings.py`` imports it.
"""

from __future__ import annotations

MASK = "<secret>"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = str(value)

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> str:  # never pickled (Celery, caches) with its value
        raise TypeError("a Secret cannot be pickled")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: object) -> Secret:
        return self

    def reveal(self) -> str:
        return self._value


def reveal(value: object) -> str | None:
    """The value of a secret setting, whether wrapped in :class:`Secret` or a plain string."""
    if value is None or value == "":
        return None
    return value.reveal() if isinstance(value, Secret) else str(value)
