"""Debian's chromium, headless, driven through selenium and Debian's chromedriver (the two
come in matching versions), for the live view's tests and its screenshot."""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
# No network of its own, no updates, no sync, no first-run dialogs: only our page.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--window-size=1200,900")


def browser_missing() -> str | None:
    """None when a headless chromium can be driven here, else why not."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "chromium or chromedriver not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install selenium)"
    return None


def headless_chromium(profile: Path):
    """A selenium WebDriver on a fresh profile folder; quit() it when done."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
