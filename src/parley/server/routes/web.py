"""The pages Parley serves itself (src/parley/web): the Workbench, the demo apps and
the modules they share. They call the public API from the browser like any other
page would, so nothing here touches engines or keys."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB_DIR = Path(__file__).resolve().parents[2] / "web"


class Assets(StaticFiles):
    """Static files that browsers revalidate on each load (cheap, with the ETag), so a
    page never runs against modules cached from an older Parley."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["cache-control"] = "no-cache"
        return response


# Pages are linked from GET / (and `/workbench` redirects to `/workbench/`, so the
# pages' relative module paths resolve).
PAGES = {"workbench": "/workbench/", "haiku": "/apps/haiku/"}


def routes() -> list[BaseRoute]:
    return [
        Mount("/workbench", Assets(directory=WEB_DIR / "workbench", html=True)),
        Mount("/apps/haiku", Assets(directory=WEB_DIR / "haiku", html=True)),
        Mount("/shared", Assets(directory=WEB_DIR / "shared")),
    ]
