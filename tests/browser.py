"""Headless Chromium for the report tests, driven by Selenium (tests/test_report.py).

No browser or driver is downloaded: Debian's ``chromium`` and ``chromium-driver`` found on PATH
are used (``.ci/run`` installs them), and Selenium Manager is never consulted because both paths
are given. Used as ``with Browser() as b: result = b.load(page)``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--disable-dev-shm-usage")
TIMEOUT_S = 60.0
IMAGES_JS = """return Promise.all(Array.from(document.images).map(function(i){
  return i.decode().then(function(){return {ok:true,w:i.naturalWidth,h:i.naturalHeight,
  alt:i.alt};}, function(e){return {ok:false,alt:i.alt,error:String(e)};});}))"""


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def find_chromedriver() -> str | None:
    return shutil.which("chromedriver")


def require_browser() -> None:
    """Skip the calling test when no browser can be driven here, or fail it when one is
    required (``VAE_ANOMALY_REQUIRE_BROWSER=1``: CI, where chromium is installed)."""
    import os

    import pytest

    if (reason := unavailable()) is not None:
        if os.environ.get("VAE_ANOMALY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"a browser is required (VAE_ANOMALY_REQUIRE_BROWSER=1): {reason}")
        pytest.skip(reason)


def unavailable() -> str | None:
    """Why no browser can be driven here (None when one can)."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[dev]')"
    if find_chromium() is None:
        return "no chromium on PATH (CI installs Debian's chromium)"
    if find_chromedriver() is None:
        return "no chromedriver on PATH (CI installs Debian's chromium-driver)"
    return None


@dataclass
class PageResult:
    """What loading a page produced."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    screenshot_png: bytes = b""


class Browser:
    """One headless Chromium with one window, quit on leaving the ``with`` block."""

    def __init__(self, width: int = 1280, height: int = 1600) -> None:
        from selenium import webdriver

        reason = unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        options = webdriver.ChromeOptions()
        options.binary_location = str(find_chromium())
        for flag in (*FLAGS, f"--window-size={width},{height}"):
            options.add_argument(flag)
        # console messages and DevTools network events, read back with get_log
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        service = webdriver.ChromeService(executable_path=str(find_chromedriver()))
        self.driver = webdriver.Chrome(options=options, service=service)
        try:
            self.driver.set_page_load_timeout(TIMEOUT_S)
            self.driver.set_script_timeout(TIMEOUT_S)
            # the viewport exactly width x height, whatever the window decorations
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                        {"width": width, "height": height,
                                         "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.driver.quit()
            raise

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.driver.quit()

    def evaluate(self, expression: str) -> Any:
        """Evaluate a JavaScript expression in the page (promises awaited); return its value."""
        return self.driver.execute_script(f"return ({expression});")

    def load(self, path: Path) -> PageResult:
        """Open a local file, wait for the load event, decode every image, take a screenshot."""
        for kind in ("browser", "performance"):  # reading a log empties it
            self.driver.get_log(kind)
        self.driver.get(path.resolve().as_uri())
        result = PageResult(images=self.driver.execute_script(IMAGES_JS))
        result.screenshot_png = self.driver.get_screenshot_as_png()
        self.evaluate("0")  # let events queued meanwhile reach the logs
        # uncaught exceptions, console.error/assert and failed loads are all SEVERE here
        result.console_errors = [e["message"][:300] for e in self.driver.get_log("browser")
                                 if e["level"] == "SEVERE"]
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                result.requests.append(message["params"]["request"]["url"])
        return result
