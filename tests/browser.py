"""Real-browser helpers: Debian's headless Chromium driven by selenium through /usr/bin/chromedriver.

The README's test command installs both (scripts/install-browser); these tests are never skipped. The flags
are the ones this machine needs (no sandbox as root, no background networking, which a closed network
refuses noisily). Selenium Manager is kept offline: the driver and the browser are given by path.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def new_driver(width: int = 1400, height: int = 1000):
    """A fresh headless Chromium with console and network logs enabled."""
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium / chromedriver missing: run scripts/install-browser (the README's test command does)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-extensions", "--disable-default-apps", "--hide-scrollbars",
                 f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser() -> Iterator[object]:
    """One headless Chromium per test (closed afterwards, whatever happens)."""
    driver = new_driver()
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[str]:
    """Console messages of level SEVERE since the last call (the log is drained by reading it)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for since the last call (from the DevTools performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def foreign_requests(urls: list[str], origin: str | None) -> list[str]:
    """URLs that left ``origin`` (scheme://host:port); ``data:`` URIs are inline and never foreign.
    With ``origin=None`` every non-``data:`` URL counts (a self-contained file must fetch nothing)."""
    out = []
    for url in urls:
        if url.startswith(("data:", "blob:", "about:")):
            continue
        parts = urlsplit(url)
        if origin is None or f"{parts.scheme}://{parts.netloc}" != origin:
            out.append(url)
    return out


def screenshot_is_not_blank(png: Path, min_colours: int = 16) -> bool:
    """A real page has text, lines and pictures: many distinct colours, not one background colour."""
    from PIL import Image

    with Image.open(png) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    return colours is None or len(colours) >= min_colours
