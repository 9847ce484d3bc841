"""The page at ``/`` in headless Chromium (Debian's package, driven by Playwright): submit a text,
read the highlighted entities from the DOM."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from uner.bench.server_process import ServerProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# flags for a closed network: without them Chromium keeps dialling Google's hosts
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TEXT = "🙂 Barack Obama visited Paris with Angela Merkel."  # an emoji first: offsets are code points
LABELS = "person, location"


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_page_highlights_the_entities_the_api_returns(uniner_smol_ggufs, tmp_path):
    from playwright.sync_api import sync_playwright

    with ServerProcess(uniner_smol_ggufs["q4_k_m"], "--threads", "2") as server:
        url = server.wait_ready()
        api = httpx.post(f"{url}/v1/extract", json={"text": TEXT, "labels": ["person", "location"]}, timeout=120)
        expected = [(e["text"], e["label"]) for e in api.json()["results"][0]["entities"]]
        assert expected, "the model finds nothing: the page would have nothing to draw"
        requested: list[str] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.on("request", lambda request: requested.append(request.url))
                page.goto(f"{url}/")
                page.fill("#text", TEXT)
                page.fill("#labels", LABELS)
                page.click("#submit")
                page.wait_for_selector("mark.entity", timeout=60_000)
                marks = page.eval_on_selector_all(
                    "mark.entity", "ms => ms.map(m => [m.querySelector('.entity-text').textContent, m.dataset.label])"
                )
                shown_text = page.text_content("#entities")
                status = page.text_content("#status")
                page.wait_for_function("document.getElementById('model').textContent.includes('llamacpp')")
                shot = tmp_path / "page.png"
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
    assert [tuple(mark) for mark in marks] == expected
    assert shown_text.startswith("🙂 Barack Obama") and "entit" in status
    assert all(request.startswith(url) for request in requested), requested  # no CDN: works offline
    assert shot.stat().st_size > 10_000
    if keep := os.environ.get("UNER_KEEP_SCREENSHOT"):  # bench/reports/serve-page/ holds one made so
        shutil.copy(shot, Path(keep) if Path(keep).is_absolute() else ROOT / keep)
