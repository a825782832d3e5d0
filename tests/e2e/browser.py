"""Debian's Chromium driven by Playwright for the page tests: launched without downloading a
browser, or the browser tests are skipped with the reason; axe-core checks and screenshots.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, ViewportSize
    from playwright.sync_api._generated import LocatorAssertions

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAUNCH_TIMEOUT_MS = 30_000
ACTION_TIMEOUT_MS = 10_000  # every click, fill and wait of a browser test
NAVIGATION_TIMEOUT_MS = 15_000
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 375, "height": 740}
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[test]')"
    if importlib.util.find_spec("axe_playwright_python") is None:
        return "axe-playwright-python is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless; never a browser that Playwright would download."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            timeout=LAUNCH_TIMEOUT_MS,
        )
        try:
            yield browser
        finally:
            browser.close()


def bound(page: Page) -> Page:
    """Every action and navigation of `page` gives up after a bounded time."""
    page.set_default_timeout(ACTION_TIMEOUT_MS)
    page.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    return page


def expect(locator: Locator) -> LocatorAssertions:
    """Playwright's retrying assertions, bounded like every other wait."""
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=ACTION_TIMEOUT_MS)
    return playwright_expect(locator)


def axe_violations(page: Page, *, skip_rules: Sequence[str] = ()) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A and AA violations on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    options: dict[str, Any] = {
        "runOnly": {"type": "tag", "values": list(WCAG_TAGS)},
        "resultTypes": ["violations"],
    }
    if skip_rules:
        options["rules"] = {rule: {"enabled": False} for rule in skip_rules}
    results = Axe().run(page, options=options)
    violations: list[dict[str, Any]] = results.response["violations"]
    return violations


def describe(violations: list[dict[str, Any]]) -> str:
    """axe's findings, one line per element, for an assertion message."""
    lines = []
    for violation in violations:
        for node in violation.get("nodes", []):
            lines.append(f"{violation['id']}: {violation['help']} at {node.get('target')}")
    return "\n".join(lines)


def screenshots(page: Page, name: str) -> list[Path]:
    """Full-page screenshots at desktop width and at 375 px, as test artifacts."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    taken = []
    original = page.viewport_size or DESKTOP
    for label, size in (("desktop", DESKTOP), ("375px", PHONE)):
        page.set_viewport_size(size)
        path = SCREENSHOTS / f"{name}-{label}.png"
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        taken.append(path)
    page.set_viewport_size(original)
    return taken


def overflows(page: Page) -> bool:
    """Whether the page is wider than the viewport (a sideways scroll on a phone)."""
    wider: bool = page.evaluate(
        "() => document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )
    return wider
