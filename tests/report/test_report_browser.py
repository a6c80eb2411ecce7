"""The data card of a small release in a real headless Chromium: it loads with no console error, fetches
nothing (every figure is a data: URI), shows every section with its figures at non-zero size, and is not
blank."""

from __future__ import annotations

from pathlib import Path

from tests.browser import console_errors, foreign_requests, requested_urls, screenshot_is_not_blank
from tests.report.report_html import parse

SECTIONS = ["overview", "cohort", "imaging", "splits", "segmentations", "gallery", "validation"]


def test_release_report_opens_offline_with_every_section(browser, report_release: Path, tmp_path: Path) -> None:
    page = report_release / "report.html"
    card = parse(page.read_text(encoding="utf-8"))
    assert card.sections == SECTIONS
    assert card.images and all(src.startswith(("data:image/svg+xml;base64,", "data:image/png;base64,"))
                               for src in card.images)

    url = page.as_uri()
    browser.get(url)
    assert console_errors(browser) == []
    urls = requested_urls(browser)
    assert foreign_requests([u for u in urls if u != url], None) == []  # the page itself is the only file read
    assert any(u.startswith("data:image/png") for u in urls)  # the gallery pictures were really decoded

    shown = browser.execute_script("""
        return Array.from(document.querySelectorAll('main > section')).map(s => [s.id,
            s.querySelectorAll('img').length, s.querySelectorAll('table').length,
            s.getBoundingClientRect().height]);""")
    assert [s[0] for s in shown] == SECTIONS
    for sid, n_img, n_table, height in shown:
        assert height > 100, sid
        assert n_img + n_table > 0, sid
    assert {sid: n for sid, n, _, _ in shown}["gallery"] >= 4 * 3  # one case per dataset and view, 3 slices each

    sizes = browser.execute_script("""
        return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight,
            i.getBoundingClientRect().width, i.getBoundingClientRect().height]);""")
    assert len(sizes) == len(card.images)
    for complete, nw, nh, w, h in sizes:
        assert complete and nw > 0 and nh > 0 and w > 0 and h > 0

    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    assert screenshot_is_not_blank(shot)
    # printable: the print style sheet hides the navigation and starts each section on a new page
    css = page.read_text(encoding="utf-8")
    assert "@media print" in css and "break-before: page" in css
