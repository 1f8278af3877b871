"""Django's ModelBackend, with the password hashing in the bounded lane (neonpro/accounts/hashing.py).

Same answers as ``ModelBackend`` (and the same care for timing: an unknown username still
costs one hash), so the Django admin's sign-in and the site's form behave as before; only
where and how many hashes run at once changes. Raises :class:`~neonpro.accounts.hashing.SignInBusyError`
when no hashing slot comes free in time (a 503 with ``Retry-After``).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.hashers import make_password, verify_password
from django.http import HttpRequest

from neonpro.accounts.hashing import lane


class BoundedHashingBackend(ModelBackend):
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        user_model = get_user_model()
        if username is None:
            username = kwargs.get(user_model.USERNAME_FIELD)
        if username is None or password is None:
            return None
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            lane().run(make_password, password)  # as long as a real check (Django #20760)
            return None
        correct, must_update = lane().run(verify_password, password, user.password)
        if correct and must_update:  # a hasher or cost that changed: store the password's new hash
            user.password = lane().run(make_password, password)
            user.save(update_fields=["password"])
        if correct and self.user_can_authenticate(user):
            return user
        return None

    async def aauthenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        # Django's own async variant hashes on a thread of its choosing: route it through the lane too.
        return await sync_to_async(self.authenticate)(request, username=username, password=password, **kwargs)
