"""Chromium for the tests (see loadtest/chromium.py). A browser test module calls
:func:`require_chromium` at its top and takes the ``playwright`` fixture (conftest.py);
conftest.py marks its tests ``browser``."""

from __future__ import annotations

import os

import pytest

from loadtest.chromium import CHROMIUM, CHROMIUM_ARGS, chromium_available, chromium_page

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "chromium_available", "chromium_page", "require_chromium"]


def require_chromium() -> None:
    """Skip the calling module (saying why) without Debian's Chromium; under CI, fail: CI
    installs it and must run the browser tests."""
    if chromium_available():
        return
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the browser tests: {CHROMIUM} is missing")
    pytest.skip(f"needs Debian's chromium at {CHROMIUM}", allow_module_level=True)
