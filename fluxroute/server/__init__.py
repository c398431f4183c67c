"""The MCP server: `build_server()` over one router, run over stdio or Streamable HTTP (`fluxroute serve`)."""

from fluxroute.server.app import build_server
from fluxroute.server.http import http_app, serve_http

__all__ = ["build_server", "http_app", "serve_http"]
