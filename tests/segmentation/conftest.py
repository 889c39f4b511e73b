"""Fixtures for the segmentation tests: a drawn ruled register page."""

from __future__ import annotations

import pytest
from drawn_pages import DrawnPage, draw_register


@pytest.fixture(scope="session")
def register_page() -> DrawnPage:
    """A drawn ruled register page (level)."""
    return draw_register()
