"""The API's docs page at ``/schema`` (Swagger UI), served from the package itself.

Litestar's own docs pages load their scripts from a CDN, unpinned; this one loads Swagger UI
from ``/static/docs`` (``swagger-ui-dist``, vendored at ``SWAGGER_UI_VERSION`` by
``make vendor-docs``), under a Content-Security-Policy that allows nothing from elsewhere
(``scoreboard.hardening.DOCS_CSP``). Production serves it only when asked
(``SCOREBOARD_DOCS_PAGES``)."""

from __future__ import annotations

import html
from typing import Any

from litestar import Request
from litestar.openapi.plugins import OpenAPIRenderPlugin

SWAGGER_UI_VERSION = "5.35.0"
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Scoreboard API</title>
<link rel="stylesheet" href="/static/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-schema="{schema}"></div>
<script src="/static/docs/swagger-ui-bundle.js"></script>
<script src="/static/docs/docs.js"></script>
</body>
</html>
"""


class DocsPage(OpenAPIRenderPlugin):
    def __init__(self) -> None:
        super().__init__(path=["/", "/swagger"])

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        schema = html.escape(self.get_openapi_json_route(request), quote=True)
        return PAGE.replace("{schema}", schema).encode()
