"""The ward dashboard in a real headless Chromium, over an API that a live runtime is filling.

Debian's chromium (installed by scripts/browser.sh) driven by Playwright. The embedded runtime
runs on a thread, paced (``speed``), with the real alert stage and the API's ``EventHub`` as
``on_batch`` hooks: the page must show the ward ordered by risk, update tiles without a reload,
and acknowledge an alert through the API. Screenshots go to var/artifacts/.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from ward_fixtures import PATIENTS, Ward, WardSource, fill, make_ward, stub_forecasts

from streams.api import EmbeddedView, EventHub, TokenAuth, create_app, start_in_thread
from streams.api.auth import parse_tokens
from streams.api.views import BAND_RANK

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "artifacts"
README_IMAGE = REPO / "docs" / "img" / "ward.png"  # refreshed with VITALTWIN_UPDATE_SCREENSHOTS=1
CLINICIAN = "clinician-token-browser-0001"
CHROMIUM = os.environ.get("VITALTWIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WARMUP_MINUTES = 40
LIVE_MINUTES = 120
SPEED = 90.0  # simulated seconds per wall second: a new minute every ~0.7 s


@pytest.fixture
def live_ward(tmp_path: Path) -> Iterator[tuple[Ward, str]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: run scripts/browser.sh (or set VITALTWIN_CHROMIUM)"
        )
    ward = make_ward(tmp_path)
    fill(ward, WARMUP_MINUTES)
    hub = EventHub(interval_s=0.3)
    auth = TokenAuth(parse_tokens([(CLINICIAN, "clinician", "dr-lee")]))
    view = EmbeddedView(ward.store, ward.alerts, forecasts=stub_forecasts(ward.store))
    server = start_in_thread(create_app(view, auth=auth, alerts=ward.alerts, hub=hub))
    runtime = ward.runtime(
        WardSource(LIVE_MINUTES, first_minute=WARMUP_MINUTES, name="live-ward"),
        speed=SPEED,
        hooks=[hub.publish],
    )
    thread = threading.Thread(target=runtime.run, name="runtime", daemon=True)
    thread.start()
    try:
        yield ward, server.url
    finally:
        runtime.stop()
        thread.join(10)
        server.stop()
        ward.close()


def api_get(url: str, path: str) -> dict:
    r = httpx.get(url + "/api/v1" + path, headers={"Authorization": f"Bearer {CLINICIAN}"})
    r.raise_for_status()
    return r.json()


def tile_ids(page: Page) -> list[str]:
    return page.eval_on_selector_all(".tile", "els => els.map(e => e.dataset.patientId)")


def test_ward_dashboard_live_in_chromium(live_ward: tuple[Ward, str]) -> None:
    ward, url = live_ward
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 660})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            # The token travels in the fragment (never sent to the server) and is then removed.
            page.goto(f"{url}/#token={CLINICIAN}")
            expect(page.locator(".tile")).to_have_count(len(PATIENTS), timeout=10_000)
            assert "token" not in page.url
            expect(page.locator("#live")).to_have_attribute("data-state", "on", timeout=10_000)

            # Ordered by risk, as the API orders them.
            api_order = [p["patient_id"] for p in api_get(url, "/patients")["items"]]
            assert tile_ids(page) == api_order
            bands = page.eval_on_selector_all(
                ".tile", "els => els.map(e => [...e.classList].find(c => c.startsWith('band-')))"
            )
            ranks = [BAND_RANK[b.removeprefix("band-")] for b in bands]
            assert ranks == sorted(ranks, reverse=True)
            assert ranks[0] == BAND_RANK["high"]

            # Tiles move with the stream, without a reload.
            page.evaluate("window.__noReload = true")
            before = page.eval_on_selector_all(".tile", "els => els.map(e => e.dataset.watermark)")
            page.wait_for_function(
                "old => [...document.querySelectorAll('.tile')]"
                ".some(e => !old.includes(e.dataset.watermark))",
                arg=before,
                timeout=15_000,
            )
            assert page.evaluate("window.__noReload") is True  # same document: updated live

            # Acknowledge a firing alert with the tile's button: the API says it is acknowledged.
            button = page.locator(".tile button.ack").first
            expect(button).to_be_visible(timeout=10_000)
            alert_id = button.get_attribute("data-alert-id")
            assert alert_id
            assert api_get(url, f"/alerts/{alert_id}")["status"] == "firing"
            button.click()
            deadline = time.monotonic() + 10
            while api_get(url, f"/alerts/{alert_id}")["status"] != "acknowledged":
                assert time.monotonic() < deadline, "the acknowledgement never reached the API"
                time.sleep(0.1)
            acked = page.locator(f'li.alert[data-alert-id="{alert_id}"]')
            expect(acked).to_have_attribute("data-status", "acknowledged", timeout=10_000)
            assert api_get(url, f"/alerts/{alert_id}")["acknowledged_by"] == "dr-lee"
            audit = ward.alerts.audit_log(alert_id)
            assert [(a["action"], a["by"]) for a in audit][:1] == [("acknowledge", "dr-lee")]

            page.wait_for_timeout(1200)  # let the flash animation settle for the picture
            page.evaluate("document.getElementById('toast').hidden = true")
            page.screenshot(path=str(ARTIFACTS / "ward.png"), full_page=True, animations="disabled")

            # The patient view: charts with forecast bands, drivers, alert history.
            page.locator(".tile").first.click()
            expect(page.locator("#patient")).to_be_visible()
            expect(page.locator("svg.chart")).to_have_count(5, timeout=10_000)
            expect(page.locator("svg.chart path.band80").first).to_be_attached()
            expect(page.locator("#explanation table.drivers")).to_be_visible()
            expect(page.locator("#alert-history tr[data-alert-id]").first).to_be_visible()
            expect(page.locator("svg.chart line.event.lab").first).to_be_attached()
            expect(page.locator("svg.chart line.event.med").first).to_be_attached()
            page.wait_for_timeout(300)
            page.evaluate("document.getElementById('toast').hidden = true")
            page.screenshot(
                path=str(ARTIFACTS / "patient.png"), full_page=True, animations="disabled"
            )
            assert errors == []
        finally:
            browser.close()
    if os.environ.get("VITALTWIN_UPDATE_SCREENSHOTS") == "1":
        # Only on request: a test run must not rewrite a tracked file.
        README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / "ward.png", README_IMAGE)
