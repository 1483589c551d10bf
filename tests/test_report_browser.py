"""Render the HTML report in a real headless browser (Debian's chromium)."""

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium; .ci/run does)"),
]


def test_report_renders_without_errors(demo_dir, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) not installed")
    report = demo_dir / "report.html"
    errors, failed = [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => ({ok: e.complete && e.naturalWidth > 0, w: e.naturalWidth}))"
        )
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        sections = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
        browser.close()
    assert not errors, errors
    assert not failed, failed
    # every <img> the file holds was decoded and displayed (the demo report has the autoencoder's
    # four figures and the outlier sections' two: log p by class, least probable objects)
    html = report.read_text()
    assert len(images) == html.count("<img ") == 6 and all(i["ok"] for i in images), images
    assert sections == [
        "Summary",
        "Training",
        "Example reconstructions",
        "Reduced chi-square",
        "Latent space",
        "Outliers: log p",
        "Least probable objects",
        "Anomaly detection (simulated truth)",
        "Redshift invariance",
    ], sections
    assert shot.stat().st_size > 50_000
