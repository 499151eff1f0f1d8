"""The docs pages under /schema, as an outside review found them (issue 12): on in production,
and loading unpinned scripts from a CDN (Litestar's Redoc, Swagger, Elements and RapiDoc pages
all take the latest release from jsDelivr or unpkg). Now there is one page, Swagger UI served
from the package itself under a strict CSP, off by default in production; the schema itself
stays available. The page in a real browser: tests/web/test_page_browser.py. See SECURITY.md
"The docs pages"."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from scoreboard.app import create_app
from scoreboard.hardening import API_CSP, DOCS_CSP
from scoreboard.web.docs import SWAGGER_UI_VERSION
from tests.helpers import make_settings, problem

pytest_plugins = ["tests.node_tools"]

VENDORED = Path(__file__).resolve().parents[2] / "src/scoreboard/web/static/docs"
CDN_PAGES = ("/schema/redoc", "/schema/elements", "/schema/rapidoc")
Client = Callable[..., AbstractAsyncContextManager[AsyncTestClient[Any]]]


@pytest.fixture
def service(tmp_path: Path) -> Client:
    @asynccontextmanager
    async def started(**overrides: Any) -> AsyncIterator[AsyncTestClient[Any]]:
        settings = make_settings(
            f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", tmp_path, **overrides
        )
        async with AsyncTestClient(app=create_app(settings)) as client:
            yield client

    return started


@pytest.mark.parametrize(
    ("overrides", "pages"),
    [
        ({"env": "production"}, False),
        ({"env": "production", "docs_pages": True}, True),
        ({"env": "dev"}, True),
        ({"env": "dev", "docs_pages": False}, False),
    ],
    ids=["production", "production-opted-in", "dev", "dev-opted-out"],
)
async def test_docs_pages_are_off_in_production_unless_asked_for(
    service: Client, overrides: dict[str, Any], pages: bool
) -> None:
    async with service(**overrides) as client:
        swagger = await client.get("/schema/swagger")
        root = await client.get("/schema")
        if pages:
            assert swagger.status_code == 200
            assert swagger.headers["content-type"].startswith("text/html")
            assert root.text == swagger.text
        else:
            problem(swagger, 404, "not_found")  # a problem document like every refusal
            assert "swagger" not in root.text.lower()
        for path in (*CDN_PAGES, "/schema/nope"):  # Litestar's CDN-loading pages: never
            response = await client.get(path)
            problem(response, 404, "not_found")
            assert "cdn" not in response.text
            assert "unpkg" not in response.text
        # The schema itself stays: generated clients and gateways read it.
        for path in ("/schema/openapi.json", "/schema/openapi.yaml", "/schema/asyncapi.json"):
            assert (await client.get(path)).status_code == 200, path


async def test_the_docs_page_loads_only_this_origins_files_under_a_strict_csp(
    service: Client,
) -> None:
    async with service(env="dev") as client:
        page = await client.get("/schema")
        assert page.headers["content-security-policy"] == DOCS_CSP
        assert "'unsafe-eval'" not in DOCS_CSP
        assert "script-src 'self';" in DOCS_CSP
        references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sorted(references) == [
            "/static/docs/docs.js",
            "/static/docs/swagger-ui-bundle.js",
            "/static/docs/swagger-ui.css",
        ]
        assert "<script>" not in page.text  # no inline script: the CSP would refuse it
        for reference in references:
            served = await client.get(reference)
            assert served.status_code == 200, reference
            assert served.content == (VENDORED / Path(reference).name).read_bytes()
        assert 'data-schema="/schema/openapi.json"' in page.text
        # Swagger UI's default asks validator.swagger.io for a badge: switched off.
        assert "validatorUrl: null" in (VENDORED / "docs.js").read_text()
        # Every other response forbids loading anything at all.
        assert (await client.get("/healthz")).headers["content-security-policy"] == API_CSP


def test_the_vendored_swagger_ui_is_the_published_package(node_modules: Path) -> None:
    """The files under static/docs are byte for byte those of swagger-ui-dist at the pinned
    version, as npm's registry serves them (its tarball is checked against the registry's
    integrity hash), with their licence."""
    published = node_modules / "swagger-ui-dist"
    assert f'"version": "{SWAGGER_UI_VERSION}"' in (published / "package.json").read_text()
    for name in (
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "LICENSE",
        "NOTICE",
        "swagger-ui-bundle.js.LICENSE.txt",
    ):
        assert (VENDORED / name).read_bytes() == (published / name).read_bytes(), name
    ours = {"docs.js"}
    assert {path.name for path in VENDORED.iterdir()} - ours == {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "LICENSE",
        "NOTICE",
        "swagger-ui-bundle.js.LICENSE.txt",
    }
