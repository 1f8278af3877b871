"""ASGI entry point: Django for HTTP (behind admission control, neonpro/security/admission.py),
Channels for WebSockets (WSS only, origin-checked)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neonpro.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from neonpro.realtime.routing import websocket_urlpatterns  # noqa: E402
from neonpro.security.admission import AdmissionControl  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": AdmissionControl(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
