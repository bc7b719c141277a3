"""The dashboard at /ui and the assets of the API docs at /docs, all served from the installed package.

Neither needs the network at run time: the dashboard is plain static files (`web/` in the repository, installed
as `mom/web/`), and Swagger UI's JavaScript and CSS come from the `swagger-ui-bundle-v2` package, not a CDN.
The dashboard talks to the public REST API only, with the user's own token, so it can show nothing that the
user could not fetch with curl.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Quart, Response, redirect, send_from_directory
from quart_schema import hide
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import NotFound as RouteNotFound

blueprint = Blueprint("ui", __name__)

SWAGGER_ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
"""The dashboard runs only its own files and talks only to its own origin."""


def web_dir() -> Path:
    """`mom/web/` in an installed wheel; `web/` at the top of a source checkout (or an editable install)."""
    package = Path(__file__).resolve().parents[2]
    for candidate in (package / "web", package.parent / "web"):
        if (candidate / "index.html").is_file():
            return candidate
    raise FileNotFoundError(f"the dashboard's files are missing (looked in {package / 'web'} and beside it)")


def configure_docs(app: Quart) -> None:
    """Point quart-schema's Swagger UI page at the bundled assets instead of its default CDN."""
    app.config["QUART_SCHEMA_SWAGGER_JS_URL"] = "/docs/static/swagger-ui-bundle.js"
    app.config["QUART_SCHEMA_SWAGGER_CSS_URL"] = "/docs/static/swagger-ui.css"


async def _static(directory: Path, name: str) -> Response:
    response = await send_from_directory(directory, name)
    response.cache_control.no_cache = True  # a new release must not run against stale scripts
    return response


@blueprint.get("/ui")
@hide
async def dashboard_root() -> Response:
    return redirect("/ui/", 308)  # type: ignore[return-value]


@blueprint.get("/ui/")
@hide
async def dashboard() -> Response:
    return await dashboard_file("index.html")


@blueprint.get("/ui/<path:name>")
@hide
async def dashboard_file(name: str) -> Response:
    response = await _static(web_dir(), name)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@blueprint.get("/docs/static/<name>")
@hide
async def docs_asset(name: str) -> Response:
    if name not in SWAGGER_ASSETS:
        raise RouteNotFound()
    return await _static(Path(str(swagger_ui_path)), name)
