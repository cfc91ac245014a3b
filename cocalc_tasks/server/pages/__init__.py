"""The local server's pages: the server, its projects and their jobs, for a browser."""

from cocalc_tasks.server.pages.routes import STATIC_PATH, page_routes, static_files
from cocalc_tasks.server.pages.views import PageSources

__all__ = ["STATIC_PATH", "PageSources", "page_routes", "static_files"]
