"""The web page: ``/`` to try any served model, ``/ui/monitor`` to watch uncertainty live.

The page is static (framework-free HTML, CSS and JavaScript under ``app/ui/``, shipped in the
package) and calls the same ``/v1`` API and ``/metrics`` as any client, with the key a person
types in. The only data route here is the card hints the API's model description lacks (the
feature names are in that description, ``GET /v1/models/{name}``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, params
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from app.api.deps import RepositoryDep

ASSETS_DIR = Path(__file__).resolve().parent.parent / "ui"
"""Where the page's files live (``app/ui/``)."""

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
_CARD_HINTS = (
    "input",
    "labels",
    "value_range",
    "regression",
    "abstention",
    "conformal",
    "shift",
)
"""Card sections the page reads (each one the card has; never weights or architecture)."""
# The page is small and changes only with the package: let the browser keep it briefly.
_CACHE = "public, max-age=60"


def build_router(data_dependencies: Sequence[params.Depends]) -> APIRouter:
    """The page's routes; `data_dependencies` (the API-key check) guard the card hints only:
    the page itself holds no data and must load before a key is typed."""
    assets = _read_assets(ASSETS_DIR)
    router = APIRouter(tags=["ui"], include_in_schema=False)

    @router.api_route("/", methods=["GET", "HEAD"])
    async def index() -> Response:
        """The try-a-model page."""
        return _asset_response(assets, "index.html")

    @router.get("/ui/monitor")
    async def monitor() -> Response:
        """The live uncertainty histograms page."""
        return _asset_response(assets, "monitor.html")

    @router.get("/ui/{asset}")
    async def asset(asset: str) -> Response:
        """One of the page's own files (a fixed list: no path is ever joined from the URL)."""
        return _asset_response(assets, asset)

    @router.get("/ui/models/{name}/card", dependencies=list(data_dependencies))
    async def card_hints(name: str, repository: RepositoryDep) -> dict[str, Any]:
        """The card sections that shape the page's input form and result view."""
        document = repository.get(name).card.model_dump(mode="json", by_alias=True)
        return {key: document[key] for key in _CARD_HINTS if key in document}

    return router


def _read_assets(folder: Path) -> dict[str, tuple[bytes, str]]:
    """Every servable file of `folder`, read once: name -> (content, media type)."""
    return {
        path.name: (path.read_bytes(), _MEDIA_TYPES[path.suffix])
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix in _MEDIA_TYPES
    }


def _asset_response(assets: dict[str, tuple[bytes, str]], name: str) -> Response:
    found = assets.get(name)
    if found is None:
        raise HTTPException(404, f"no page asset named '{name}'")
    content, media_type = found
    return Response(content, media_type=media_type, headers={"cache-control": _CACHE})
