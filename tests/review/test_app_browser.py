"""The rating page in a real headless Chromium: rate three cases with the keyboard, reload, they are kept;
the page asks nothing from outside its origin, logs no console error, and is not blank.

``MAMAMIA_UPDATE_SCREENSHOT=1`` also writes the README's screenshot (docs/img/review.png, < 300 KB)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from etl.review.app import create_app
from etl.review.prepare import prepare_views
from etl.review.server import running_server
from etl.review.store import latest_by_rater
from tests.browser import console_errors, foreign_requests, requested_urls, screenshot_is_not_blank
from tests.conftest import REPO
from tests.review.rating_helpers import review_staged


@pytest.fixture(scope="session")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return review_staged(tmp_path_factory)


def _wait(driver, predicate, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: predicate(d))


def _press(driver, key: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def _patient(driver) -> str | None:  # type: ignore[no-untyped-def]
    """The case on screen (read in one script call: the page may be navigating away meanwhile)."""
    return driver.execute_script("var e = document.getElementById('patient-id'); "
                                 "return document.readyState === 'complete' && e ? e.textContent : null;")


def test_rate_three_cases_with_the_keyboard(browser, staged: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    cache = tmp_path / "cache"
    prepare_views(staged, cache=cache)
    db = tmp_path / "r.sqlite"
    app = create_app(staged, db, "radiologist_1", cache=cache)
    with running_server(app) as url:
        origin = f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"
        browser.get(url + "/")
        assert _patient(browser) == "DUKE_7001"  # opens at the first unrated case
        assert "rated 0 / 5" in browser.find_element(By.ID, "progress").text
        assert "radiologist_1" in browser.find_element(By.CSS_SELECTOR, ".who").text
        images = browser.find_elements(By.CSS_SELECTOR, ".views img")
        assert len(images) == 6
        assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", im)
                   for im in images)
        shot = tmp_path / "review.png"
        browser.save_screenshot(str(shot))
        assert screenshot_is_not_blank(shot)
        if os.environ.get("MAMAMIA_UPDATE_SCREENSHOT"):
            _store_screenshot(shot, REPO / "docs" / "img" / "review.png")

        # 1 = good on DUKE_7001 (with a comment typed first), 2 on the next, 3 on the one after
        browser.find_element(By.ID, "comment").send_keys("clean margin")
        browser.find_element(By.TAG_NAME, "body").click()
        _press(browser, "1")
        _wait(browser, lambda d: _patient(d) == "DUKE_7002")
        _press(browser, "2")
        _wait(browser, lambda d: _patient(d) == "ISPY1_7003")
        _press(browser, "3")
        _wait(browser, lambda d: _patient(d) == "ISPY1_7004")
        assert "rated 3 / 5" in browser.find_element(By.ID, "progress").text

        # n / p move without rating
        _press(browser, "p")
        _wait(browser, lambda d: _patient(d) == "ISPY1_7003")
        browser.refresh()
        assert browser.find_element(By.ID, "my-rating").get_attribute("data-score") == "poor"
        _press(browser, "p")
        _wait(browser, lambda d: _patient(d) == "DUKE_7002")
        assert browser.find_element(By.ID, "my-rating").get_attribute("data-score") == "acceptable"
        _press(browser, "p")
        _wait(browser, lambda d: _patient(d) == "DUKE_7001")
        assert browser.find_element(By.ID, "comment").get_attribute("value") == "clean margin"
        browser.refresh()
        assert browser.find_element(By.ID, "my-rating").get_attribute("data-score") == "good"
        browser.get(url + "/")  # reopening goes to the first case still unrated
        assert _patient(browser) == "ISPY1_7004"
        browser.get(url + "/cases?status=rated")
        rows = browser.find_elements(By.CSS_SELECTOR, "#case-list tbody tr")
        assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == ["DUKE_7001", "DUKE_7002", "ISPY1_7003"]
        time.sleep(0.2)
        urls = requested_urls(browser)
        errors = console_errors(browser)
    assert any(u.endswith("/static/review.js") for u in urls) and any("/views/" in u for u in urls)
    assert foreign_requests(urls, origin) == []
    assert errors == []
    got = {pid: r.score for (pid, _), r in latest_by_rater(db).items()}
    assert got == {"DUKE_7001": "good", "DUKE_7002": "acceptable", "ISPY1_7003": "poor"}


def _store_screenshot(shot: Path, target: Path) -> None:
    """The README's picture: the top of the rating page, palette-quantized to stay well under 300 KB."""
    from PIL import Image

    with Image.open(shot) as im:
        # octree keeps the few saturated colours (the red contour) that a median cut merges into grey
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        target.parent.mkdir(parents=True, exist_ok=True)
        small.save(target, optimize=True)
    assert target.stat().st_size < 300_000
