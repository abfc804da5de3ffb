"""Shared pytest settings. Area-specific fixtures live in test/helpers_*.py."""

import os
from pathlib import Path

import pytest

# Keep BLAS/torch from oversubscribing the two CI cores when tests run in parallel.
os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SPLITS = SHARED / "datasets" / "splits"


@pytest.fixture(scope="session")
def splits_dir() -> Path:
    """The real annotation and split files shipped beside the project."""
    if not SPLITS.is_dir():
        pytest.skip(f"shared split files not found at {SPLITS}")
    return SPLITS
