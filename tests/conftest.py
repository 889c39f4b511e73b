"""Fixtures shared by the whole suite: paths to the repository, its examples and the shared data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "pages"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def example_pages() -> list[Path]:
    """The bundled example page images (each has an ALTO file beside it)."""
    return sorted(EXAMPLES.glob("*.jpg"))


@pytest.fixture(scope="session")
def example_page(example_pages: list[Path]) -> Path:
    """One real register page image (riant-4, a validation page never trained on)."""
    return example_pages[0]
