"""Shared test fixtures: the loopback feed server and SMTP server plugins, and paths to shared data."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.feedserver", "tests.smtpserver"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared_dir() -> Path:
    """``../shared`` beside the checkout; tests that need it skip cleanly when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED
