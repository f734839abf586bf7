"""Chromium helpers for the tests (see loadtest/chromium.py)."""

from loadtest.chromium import CHROMIUM, CHROMIUM_ARGS, chromium_available, chromium_page

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "chromium_available", "chromium_page"]
