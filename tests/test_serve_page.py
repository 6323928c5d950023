"""The page at / in a real headless browser (Debian chromium + chromium-driver, driven by selenium)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from serve_fixtures import DIM, live_server, served_model, tiny_index, tiny_model  # noqa: F401

from mrl.serve import ServeConfig, create_app

KEY = "page-key"


def test_page_shows_prefix_results_side_by_side(served_model: Any, tiny_index: Path, tmp_path: Path, live_server: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    report = tmp_path / "eval.json"  # a per-dim report, as `mrl eval-text` writes it
    report.write_text(json.dumps({"schema": "mrl.eval/1", "runs": [
        {"method": "MRL fine-tuned", "per_dim": {"8": {"ndcg@10": 0.31}, "16": {"ndcg@10": 0.42}, "32": {"ndcg@10": 0.47}}},
        {"method": "Base (truncated)", "per_dim": {"8": {"ndcg@10": 0.12}, "16": {"ndcg@10": 0.25}, "32": {"ndcg@10": 0.46}}}]}))
    app = create_app(ServeConfig(model="tiny-mrl", index=tiny_index, api_key=KEY, report=report, page_dims=(8, 16)), model=served_model)
    with live_server(app) as srv:
        browser.get(srv.url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(ec.visibility_of_element_located((By.ID, "key-box")))  # /v1/info answered 401: the page asks for the key
        browser.find_element(By.ID, "apikey").send_keys(KEY + "\t")
        box = browser.find_element(By.ID, "query")
        box.send_keys("a red boat near the sea")
        browser.find_element(By.ID, "go").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .col")) == 4)
        cols = browser.find_elements(By.CSS_SELECTOR, "#results .col")
        titles = [c.find_element(By.TAG_NAME, "h3").text for c in cols]
        assert titles == ["8 dims", "16 dims", f"full ({DIM} dims)", "funnel answer"]
        for c in cols:
            assert len(c.find_elements(By.CSS_SELECTOR, "ol.hits li")) == 10
        full = cols[2]
        assert "overlap with full: 10/10" in full.text
        assert "a red boat near the sea" in full.find_element(By.CSS_SELECTOR, "ol.hits li").text  # the passage itself ranks first
        assert "ms search" in cols[3].text and "->" in cols[3].text
        assert "tuned recall@10 " in cols[3].text and "measured at k=" not in cols[3].text  # tuned at k=10, asked k=10
        k_box = browser.find_element(By.ID, "k")
        k_box.clear()
        k_box.send_keys("3")
        browser.find_element(By.ID, "go").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .col ol.hits li")) == 4 * 3)
        funnel_col = browser.find_elements(By.CSS_SELECTOR, "#results .col")[3]
        assert "tuned recall@10 " in funnel_col.text and "measured at k=10, not at this k=3" in funnel_col.text  # the recall shown says at which k
        assert browser.find_element(By.ID, "quality-box").is_displayed()
        assert len(browser.find_elements(By.CSS_SELECTOR, "#quality svg polyline")) == 2
        assert not browser.find_element(By.ID, "error").is_displayed()
        shot = tmp_path / "page.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("MRL_KEEP_SCREENSHOT"):
            shutil.copy(shot, os.environ["MRL_KEEP_SCREENSHOT"])
