"""Figures are written as valid, non-empty PNG and PDF files, also for edge cases."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mimix.plots import data_stage_figure, save_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_valid_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5_000  # a blank figure is ~3 kB


@pytest.mark.parametrize("with_dropped", [True, False])
def test_data_stage_figure(tmp_path: Path, with_dropped: bool) -> None:
    samples = pd.DataFrame({
        "reads": [500, 3000, 4000, 5200],
        "reads_in_kept_taxa": [400, 2900, 3800, 5000],
        "status": ["dropped" if with_dropped else "kept", "kept", "kept", "kept"],
        "reason": ["", "", "", ""],
    }, index=["a", "b", "c", "d"])
    taxa = pd.DataFrame({
        "prevalence": [1.0, 0.5, 0.05, 0.0],
        "mean_relative_abundance": [0.6, 0.3, 0.001, 0.0],
        "status": ["kept", "kept", "aggregated", "dropped"],
    }, index=["t1", "t2", "t3", "t4"])
    figure = data_stage_figure(samples, taxa, {"min_depth": 1000, "min_prevalence": 0.1,
                                               "min_mean_relative_abundance": 0.01})
    save_figure(figure, tmp_path / "f.png", tmp_path / "f.pdf")
    assert_valid_png(tmp_path / "f.png")
    assert (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
