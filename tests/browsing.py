"""The real browser of the page tests: Debian's chromium, headless, driven by playwright (one per test session, from
the ``browser`` fixture in conftest.py), and a page opened in it with everything it logged and requested."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

CHROMIUM = Path(os.environ.get("CORPUSMAP_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}


class Opened:
    """A page open in the browser, with everything it logged and requested."""

    def __init__(self, browser, html: Path, fragment: str = "", viewport: dict = VIEWPORT):
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.console, self.errors, self.requests, self.blocked = [], [], [], []
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

        def block(route):
            self.blocked.append(route.request.url)
            route.abort()

        self.context.route(lambda url: not url.startswith(("file:", "data:")), block)
        self.page.goto(html.as_uri() + fragment)
        self.page.wait_for_function("window.corpusmap && (window.corpusmap.ready || window.corpusmap.error)",
                                    timeout=60_000)

    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)

    def canvas_pixels(self) -> np.ndarray:
        from PIL import Image

        box = self.page.locator("#cm-canvas").bounding_box()
        png = self.page.screenshot(clip=box)
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)

    def isolated_points(self, radius: float = 14.0, count: int = 3) -> list[int]:
        """Points with no other point within radius pixels, on the canvas and not under a panel."""
        from scipy.spatial import cKDTree

        xy = np.asarray(self.js("window.corpusmap.screenPositions()")).reshape(-1, 2)
        dist, _ = cKDTree(xy).query(xy, k=2)
        order = np.argsort(-dist[:, 1])
        out = []
        for i in order[:400]:
            if dist[i, 1] < radius:
                break
            hit = self.js("([x, y]) => { const e = document.elementFromPoint(x, y); return e && e.id; }",
                          xy[i].tolist())
            if hit == "cm-canvas":
                out.append(int(i))
                if len(out) == count:
                    break
        assert out, "no isolated point on the canvas"
        return out

    def hover(self, i: int) -> tuple[float, float]:
        """Move the mouse onto point i and wait for its tooltip (title loaded); returns the position."""
        x, y = self.js("i => window.corpusmap.screenPosition(i)", i)
        self.page.mouse.move(x, y)
        self.page.wait_for_function(
            "i => { const t = document.getElementById('cm-tooltip'); return !t.hidden && t.dataset.row === String(i)"
            " && t.querySelector('.cm-tooltip-title').textContent !== '…'; }", arg=i, timeout=10_000)
        return x, y

    def click(self, i: int) -> tuple[float, float]:
        """Click point i as a mouse does: onto it first (its tooltip shown), then the click. (Playwright's click
        alone jumps from wherever the mouse was and presses at once: on a busy machine the camera took the jump
        for a drag and panned instead of picking.)"""
        x, y = self.hover(i)
        self.page.mouse.click(x, y)
        return x, y

    def close(self):
        self.context.close()
