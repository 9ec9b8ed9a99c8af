"""The report stage's pages of the tiny trained project, in a browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest


@pytest.mark.browser
def test_pipeline_reports_render_in_headless_chromium(tiny_project: Path) -> None:
    """The report stage's cohort page and a case report of the tiny project, in a browser."""
    from browser import Browser, require_browser

    require_browser()
    reports = tiny_project / "reports"
    index = (reports / "index.html").read_text()
    links = re.findall(r"href='(cases/[^']+\.html)'", index)
    assert links and all((reports / link).is_file() for link in links)
    assert "Healthy test scans: where the map fires" in index
    with Browser() as b:
        for page in (reports / "index.html", reports / links[0]):
            result = b.load(page)
            assert result.console_errors == [], page.name
            assert result.images and all(i["ok"] for i in result.images), page.name
