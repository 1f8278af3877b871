"""The OpenAPI schema (``/api/schema/``) and the interactive docs (``/api/docs/``), public.

Neither carries data: the schema describes operations, and the docs page is Swagger UI
served from our own static files (drf-spectacular-sidecar), nothing from a CDN. The page
runs under the site's strict Content-Security-Policy (``script-src 'self'``, no inline
script or style): its start-up script is a separate same-origin file (drf-spectacular's
split view, ``?script``), and the page's styles are a static file too.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.request import Request
from rest_framework.response import Response


class SchemaView(SpectacularAPIView):
    """The schema as YAML, or JSON with ``?format=json`` or ``Accept: application/vnd.oai.openapi+json``."""


class DocsView(SpectacularSwaggerSplitView):
    template_name = "api/swagger_ui.html"
    title = "NeonPro Records API"

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response: Response = super().get(request, *args, **kwargs)  # type: ignore[no-untyped-call]
        # The start-up script embeds the CSRF token of the session: no other site may load it.
        response["Cross-Origin-Resource-Policy"] = "same-origin"
        return response
