"""The dashboard of a system that is starting, in Debian's chromium: it says so, and its empty
chart shows the last hour, not Plotly's default axis."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from streamforge.services import free_port, stop_process, wait_for_port
from tests.support.browser import chromium_page, require_chromium
from tests.support.cli import start_entry_point

pytestmark = [pytest.mark.browser]


def test_a_starting_system_says_so_and_charts_the_last_hour(tmp_path: Path) -> None:
    """Before the jobs have written anything readable (no file yet, then a file a run holds
    without a snapshot yet), the page says it is starting and its empty chart shows now."""
    require_chromium()
    warehouse, port, log = tmp_path / "warehouse.duckdb", free_port(), tmp_path / "dashboard.log"
    process = start_entry_point("dashboard", "--warehouse", str(warehouse), "--port", str(port), log=log)
    try:
        wait_for_port(port, process, log)
        with chromium_page(f"http://127.0.0.1:{port}/") as page:
            assert "warehouse: starting" in page.text_content("#status")
            start, end = page.evaluate("document.getElementById('revenue-chart')._fullLayout.xaxis.range")
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            assert abs((datetime.fromisoformat(end[:19]) - now).total_seconds()) < 120
            assert abs((datetime.fromisoformat(start[:19]) - now).total_seconds() - -3600) < 120
            with duckdb.connect(str(warehouse)):  # a run writing, no snapshot published yet
                page.evaluate("document.body.dataset.loaded = 'false'")
                page.wait_for_selector("body[data-loaded=true]", timeout=30_000)
                assert "warehouse: starting" in page.text_content("#status")
    finally:
        stop_process(process)
