"""Shared fixtures: the project root on sys.path and tiny inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import make_workdir, snakemake, tiny_dataset  # noqa: E402


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


@pytest.fixture(scope="session")
def fitted_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small study (dataset "kill", no-factor model, 2 chains) run to its test tables without interruption."""
    workdir = make_workdir(tmp_path_factory.mktemp("fitted") / "reference")
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir
