"""Debian's Chromium (never Playwright's downloaded browsers), headless, for the browser tests and
the site benchmark."""
from __future__ import annotations

import os

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
MISSING = f"Debian's Chromium at {CHROMIUM} (apt-get install chromium)"


def available() -> bool:
    return os.path.exists(CHROMIUM)


def launch(playwright):
    """A headless browser from a sync Playwright; launch() gives it a fresh temporary user data dir."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), headless=True)
