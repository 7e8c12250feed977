"""The HTML around the data: inline styles and the app bundle from the package (nothing is fetched)."""
from __future__ import annotations

import html
from functools import lru_cache
from importlib.resources import files

from corpusmap.view.encoding import script_json

# No network from the page, whatever its data holds: scripts only inline or from files beside it (regl compiles
# its draw calls with new Function, hence unsafe-eval), images only from data: URLs, no fetch/XHR, fonts,
# frames or forms.
CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline' 'unsafe-eval' file:; style-src 'unsafe-inline'; "
       "img-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'")


@lru_cache(maxsize=None)
def asset(name: str) -> str:
    """A built front-end file from corpusmap/view/static (see corpusmap/view/web/README.md)."""
    text = (files("corpusmap.view") / "static" / name).read_text(encoding="utf-8")
    lowered = text.lower()
    if "</script" in lowered or "<!--" in lowered or "</style" in lowered:
        raise RuntimeError(f"static/{name} cannot be inlined in a page (contains an HTML end tag)")
    return text


def page_head(title: str) -> str:
    """Everything up to and including the app bundle; the data scripts (single file) follow it."""
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
        "<meta name=\"generator\" content=\"corpusmap\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{asset('corpusmap-view.css')}</style>\n</head>\n<body>\n"
        "<div id=\"corpusmap\"><noscript>This map needs JavaScript.</noscript></div>\n"
        f"<script>{asset('corpusmap-view.js')}</script>\n"
    )


def page_tail(manifest: dict) -> str:
    """The manifest (read by the app at DOMContentLoaded) and the end of the document."""
    return (f"<script type=\"application/json\" id=\"corpusmap-manifest\">{script_json(manifest)}</script>\n"
            "</body>\n</html>\n")
