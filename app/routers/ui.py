"""The browser page at / and Swagger UI at /docs, both served from our own files (no CDN), with
a Content-Security-Policy that allows nothing else: no other origin's scripts, styles or frames,
and no framing of these pages by others."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(include_in_schema=False)

PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def security_headers(policy: str) -> dict[str, str]:
    return {"Content-Security-Policy": policy, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=security_headers(PAGE_POLICY))


@lru_cache(maxsize=1)
def swagger_page() -> tuple[bytes, str]:
    """Swagger UI's page, a link back to ours, and a policy that admits its one inline script by
    hash (Swagger UI also sets inline styles on its elements, so styles may be inline)."""
    response = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Image classifier API",
        swagger_js_url="/static/swagger/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger/swagger-ui.css",
        swagger_favicon_url="/static/favicon.svg",
    )
    page = bytes(response.body).decode()
    page = page.replace("<body>", '<body>\n    <p class="back"><a href="/">&larr; Back to the classifier page</a></p>', 1)
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts)
    policy = (f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
              "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
    return page.encode(), policy


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    page, policy = swagger_page()
    return HTMLResponse(page, headers=security_headers(policy))
