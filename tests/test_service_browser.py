"""The serve page in a real browser: Debian's Chromium, driven by Playwright (no browser
download). `.ci/run` installs Chromium; elsewhere the test skips, saying why."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from fcnxs.apps.service import create_app
from fcnxs.inference.segmenter import Segmenter
from helpers import serving

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without the background-networking flags Chromium keeps knocking on a closed network.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_an_image_dropped_on_the_page_shows_its_overlay_and_legend(fcn8s_model, tmp_path):
    from playwright.sync_api import sync_playwright

    y, x = np.mgrid[0:120, 0:160]
    rgb = np.stack([x * 255 // 160, y * 255 // 120, (x * y) % 256], -1).astype(np.uint8)
    photo = tmp_path / "street.png"
    Image.fromarray(rgb).save(photo)
    app = create_app(Segmenter(fcn8s_model))
    with serving(app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.goto(url)
            page.wait_for_function("document.getElementById('model').textContent.includes('FCN8S')")
            page.set_input_files("#file", str(photo))
            page.wait_for_selector("#overlay[src^='data:image/jpeg']", timeout=120_000)
            overlay = page.locator("#overlay")
            assert overlay.is_visible()
            size = overlay.evaluate("img => [img.naturalWidth, img.naturalHeight, img.complete]")
            assert size[1:] == [120, True] and size[0] >= 160  # a small image: legend beside
            box = overlay.bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 70
            legend = page.locator("#legend li")
            assert legend.count() >= 1
            names = fcn8s_model.config.class_names
            assert all(
                legend.nth(i).inner_text().split("\n")[0].strip() in names
                for i in range(legend.count())
            )
            assert "street.png: 160×120" in page.locator("#status").inner_text()
            assert page.locator("#error").is_hidden()
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
