"""Debian's chromium driven by Playwright (never a browser download), for the dashboard's tests."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

__all__ = ["CHROMIUM", "chromium_page", "require_chromium"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def require_chromium() -> None:
    """Skip without chromium, saying why; in CI fail (.ci/run installs it)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must install chromium (.ci/run)")
        pytest.skip("no chromium (Debian package chromium): .ci/run installs it")


@contextmanager
def chromium_page(url: str) -> Iterator[Any]:
    """A headless chromium page on ``url``, on a laptop-sized screen, once the dashboard drew."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(url)
            page.wait_for_selector("body[data-loaded=true]", timeout=30_000)
            page.wait_for_function("document.getElementById('revenue-chart').data !== undefined")
            yield page
        finally:
            browser.close()
