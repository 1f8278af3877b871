"""The exception-reporter filter of NeonPro (``DEFAULT_EXCEPTION_REPORTER_FILTER``).

Django masks settings whose *name* matches API, AUTH, TOKEN, KEY, SECRET, PASS, SIGNATURE or
HTTP_COOKIE; an HSM ``..._PIN`` escapes that, so PIN is added. Values wrapped in
:class:`keys.secret.Secret` are masked whatever their name. Local variables of key-holding
functions are masked by ``@sensitive_variables`` on those functions, with DEBUG on too.
"""

from __future__ import annotations

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter

from keys.secret import Secret


class NeonProExceptionReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile("API|AUTH|TOKEN|KEY|SECRET|PASS|PIN|SIGNATURE|HTTP_COOKIE|CREDENTIAL", flags=re.I)

    def is_active(self, request: Any) -> bool:
        """Always: Django turns the filter off when DEBUG is on, and would then show the locals
        of ``@sensitive_variables`` functions (unwrapped data keys) on the error page."""
        return True

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        if isinstance(value, Secret):
            return self.cleansed_substitute
        return super().cleanse_setting(key, value)
