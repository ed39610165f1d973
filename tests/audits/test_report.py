"""The report for people: self-contained HTML with the verdict first, and a model card."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from cadence.audits import model_card, render_html
from tests.audits._doc import audit_document


@pytest.fixture(scope="module")
def doc():
    return audit_document()


@pytest.mark.unit
def test_html_needs_nothing_outside_itself(doc):
    html = render_html(doc)
    # No address outside the file: every image is inline data, there is no script or link.
    sources = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in html and "<link" not in html and "http" not in html.split("</style>")[1]


@pytest.mark.unit
def test_html_puts_the_verdict_first_and_says_what_is_not_audited(doc):
    html = render_html(doc)
    body = html.split("<body>")[1]
    assert body.index('id="verdict"') < body.index("<h2>")
    assert f"Verdict: {doc['verdict']}" in html
    for said in (
        "not yet audited: the merge service has made no offers yet",
        "not yet audited: routing has not been replayed (`cadence route evaluate`)",
        "no offers were sent yet",
        "too small to compare",
        "only as the post-processor&#39;s group input",
        "What an audit cannot show",
        "column &#39;age_band&#39; of the users table is empty",
    ):
        assert said in html, said


@pytest.mark.unit
def test_a_report_without_groups_renders_and_says_why():
    doc = audit_document(users_table=False)
    html, card = render_html(doc), model_card(doc)
    assert "Verdict: WARN" in html
    assert html.count("Not audited: the data has no users table.") == 3  # gender, age, tier
    assert "Not audited: gender, age_band missing." in html
    assert "| gender | not audited: the data has no users table | | | WARN |" in card


@pytest.mark.unit
def test_a_grouping_of_one_group_renders():
    doc = audit_document(n=3000)
    doc["settings"] = {**doc["settings"], "min_group_shoppers": 10_000}
    from cadence.audits import AuditSettings, Scored, audit, groupings

    rng = np.random.default_rng(0)
    ids = pd.Series([f"u{i}" for i in range(500)])
    users = pd.DataFrame({"user_id": ids, "gender": ["female"] * 500})
    p = rng.random(500)
    one = audit(
        Scored(ids, (rng.random(500) < p).astype(int), p),
        groupings(users, ids, sensitive=["gender"], proxies=[], intersections=[]),
        threshold=0.3,
        settings=AuditSettings(resamples=20),
    )
    html = render_html({**doc, **one})
    assert "1 group(s) of at least 200 shoppers: no gap can be measured" in html


@pytest.mark.unit
def test_html_escapes_what_the_data_holds(doc):
    hostile = {**doc, "model": {**doc["model"], "uri": "<script>alert(1)</script>"}}
    html = render_html(hostile)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


@pytest.mark.unit
def test_model_card_follows_mitchell_et_al(doc):
    card = model_card(doc)
    headings = re.findall(r"^## (.+)$", card, flags=re.M)
    assert headings == [
        "Model details",
        "Intended use",
        "Out-of-scope uses",
        "Factors",
        "Metrics",
        "Evaluation data",
        "Training data",
        "Quantitative analyses (fairness)",
        "Ethical considerations",
        "Caveats and recommendations",
    ]
    assert f"Fairness audit: **{doc['verdict']}**" in card
    assert "| age_band | demographic parity ratio |" in card


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "no Chromium on this machine: `make test` installs Debian's chromium package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.mark.e2e
def test_report_opens_offline_in_a_real_browser(doc, tmp_path):
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "audit.html"
    page_file.write_text(render_html(doc), encoding="utf-8")
    errors, requests = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=_chromium(), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            context = browser.new_context(offline=True)
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load")
            verdict = page.locator("#verdict")
            assert verdict.is_visible()
            assert verdict.inner_text() == f"Verdict: {doc['verdict']}"
            # Every chart decoded: an image that failed to load has no natural width.
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
            assert widths and min(widths) > 0
        finally:
            browser.close()
    assert errors == []
    assert all(u.startswith(("file://", "data:")) for u in requests), requests
