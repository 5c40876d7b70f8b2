"""The browser page at `/`: plain HTML, CSS and JavaScript served by voxgate, using only the public APIs."""

from voxgate.dialects.web.routes import Web

__all__ = ["Web"]
