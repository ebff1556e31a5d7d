"""Shared fixtures: the project root on sys.path and tiny inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import tiny_dataset  # noqa: E402


@pytest.fixture
def tiny_input(tmp_path: Path) -> dict[str, str]:
    """Config ``input`` section of a tiny valid dataset written under tmp_path."""
    return tiny_dataset(tmp_path)


@pytest.fixture
def tiny_design() -> dict:
    return {"formula": "nutrient * fence", "blocking": ["site", "block"], "nested_blocking": True}


@pytest.fixture
def lenient_filtering() -> dict:
    """Filtering that keeps every taxon of the tiny dataset (tests of other steps)."""
    return {"min_depth": 100, "min_prevalence": 0.0, "max_sample_drop_fraction": 0.25}
