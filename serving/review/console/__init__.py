"""The reviewer console: static files calling the JSON API (see index.html), mounted by http/.
Imports only Starlette."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def create_console() -> Starlette:
    """A static app; mounting it does no work beyond pointing at the folder."""
    return StaticFiles(directory=STATIC, html=True, check_dir=False)  # type: ignore[return-value]
