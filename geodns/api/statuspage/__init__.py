"""The status page: plain HTML, CSS and JavaScript files shipped as package data.

Datacenters are tiles coloured by how many of their members answer; each tile
lists its members with state, reason and since; forced states say who forced
them. The script polls /v1/status every two seconds. No build step and no
external assets: what is in this folder is what the browser gets.
"""

from __future__ import annotations

from importlib import resources

# name served under static/ -> content type
ASSETS = {"status.css": "text/css", "status.js": "text/javascript"}


def read(name: str) -> str:
    """One of the page's files, read from the installed package."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
