"""Power analysis: planned sizes, simulated experiments, discoveries, intervals, table, figure, rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from helpers import snakemake

from mimix import power
from mimix.plots import power_figure, save_figure
from mimix.power import ExperimentSize, PilotParameters
from mimix.simstudy import model_input
from mimix.simulate import SimulationSettings


def test_sizes_cross_the_grid_and_names_round_trip() -> None:
    sizes = power.experiment_sizes({"samples_per_cell": [2, 4], "blocks": [3], "depth": [1000, 5000], "effect": [1]})
    assert len(sizes) == 4 and sizes[0] == ExperimentSize(2, 3, 1000, 1.0)
    assert all(ExperimentSize.from_name(s.name) == s for s in sizes)
    assert sizes[-1].n_samples == 2 * 4 * 3


def test_simulated_experiment_is_balanced_and_has_the_planned_effects() -> None:
    pilot = PilotParameters.from_simulator(SimulationSettings(n_taxa=20))
    size = ExperimentSize(samples_per_cell=3, blocks=4, depth=2000, effect=1.5)
    data = power.simulate_experiment(pilot, size, responding_fraction=0.25, seed=3)
    assert data.counts.shape == (24, 20) and (data.counts.sum(axis=1) == 2000).all()
    cells = data.metadata.groupby(["block", "treatment"]).size()
    assert len(cells) == 8 and (cells == 3).all()  # every block holds 3 samples of each level
    beta = data.beta.iloc[:, 0]
    assert (beta != 0).sum() == 5 and set(np.abs(beta[beta != 0])) == {1.5}
    analysed = model_input(data)  # the model stage accepts it
    assert list(analysed.X.columns) == ["treatment[treated]"]
    again = power.simulate_experiment(pilot, size, responding_fraction=0.25, seed=3)
    pd.testing.assert_frame_equal(data.counts, again.counts)


def test_pilot_from_posterior_means() -> None:
    taxa = ["a", "b"]
    posterior = xr.Dataset(
        {
            "mu": (("chain", "draw", "taxon"), np.array([[[1.0, -1.0], [3.0, 1.0]]])),
            "sigma2": (("chain", "draw", "taxon"), np.array([[[0.5, 1.0], [1.5, 3.0]]])),
            "sigma2_g": (("chain", "draw", "blocking_factor"), np.array([[[1.0, 0.2], [3.0, 0.4]]])),
        },
        coords={"taxon": taxa},
    )
    pilot = PilotParameters.from_posterior(posterior, "test")
    assert pilot.taxa == ("a", "b") and pilot.mu.tolist() == [2.0, 0.0] and pilot.sigma2.tolist() == [1.0, 2.0]
    assert pilot.block_var == pytest.approx(2.3)  # site 2.0 + block 0.3: the variance between blocks


def test_replicate_result_counts_true_and_false_discoveries() -> None:
    rng = np.random.default_rng(1)
    draws = np.array([2.0, 0.0, -1.0, 0.0]) + 0.1 * rng.standard_normal((300, 4))
    result = power.replicate_result(draws, np.array([2.0, 0.0, 0.0, -1.0]), 0.95, 0.9, 0.95)
    assert result == {"global_prob": 0.95, "detected": True, "n_responding": 2, "true_found": 1, "false_found": 1}


def test_wilson_interval_matches_the_formula_and_stays_in_range() -> None:
    lower, upper = power.wilson_interval(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert lower[0] == 0.0 and upper[2] == 1.0  # exactly: tables print them (was -2.8e-17)
    assert (lower >= 0).all() and (upper <= 1).all()
    assert lower[1] == pytest.approx(0.2366, abs=1e-4) and upper[1] == pytest.approx(0.7634, abs=1e-4)


def test_power_table_and_figure(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "size": ["n2-b4-d5000-e1"] * 4 + ["n8-b4-d5000-e1"] * 4,
            "samples_per_cell": [2] * 4 + [8] * 4, "blocks": 4, "depth": 5000, "effect": 1.0,
            "n_samples": [16] * 4 + [64] * 4,
            "detected": [False, False, True, False, True, True, True, True],
            "n_responding": 10, "true_found": [1, 2, 3, 2, 8, 9, 10, 9], "false_found": [0, 0, 1, 0, 0, 1, 0, 0],
            "max_rhat": 1.01,
        }
    )  # fmt: skip
    table = power.power_table(rows)
    assert table["power"].tolist() == [0.25, 1.0] and table["replicates"].tolist() == [4, 4]
    assert table["true_found"].tolist() == [2.0, 9.0]
    assert (table["power_lower"] <= table["power"]).all() and (table["power"] <= table["power_upper"]).all()
    half = 1.96 * np.std([1, 2, 3, 2], ddof=1) / 2
    assert table.loc[0, "true_found_upper"] == pytest.approx(2.0 + half)
    png = tmp_path / "power.png"
    save_figure(power_figure(table, 0.9, "mimix_nofactor", "simulator"), png, tmp_path / "power.pdf")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000


@pytest.mark.slow
def test_power_rules_with_a_fitted_pilot(fitted_study: Path) -> None:
    """The pilot is the fitted no-factor model of a small study; a tiny and a larger design."""
    override = (
        "power={pilot: mimix_nofactor, samples_per_cell: [1, 6], blocks: [3], depth: [3000], effect: [2.5], "
        "responding_fraction: 0.5, replicates: 2, model: mimix_nofactor}"
    )
    result = snakemake(fitted_study, extra=("--config", override), targets=["power"])
    assert result.returncode == 0, result.stderr[-4000:]
    out = fitted_study / "results" / "kill" / "power"
    table = pd.read_csv(out / "power.tsv", sep="\t").set_index("samples_per_cell")
    assert table["replicates"].tolist() == [2, 2] and table["n_samples"].tolist() == [6, 36]
    # Strong effects (|log fold change| 2.5) in half of the 8 taxa: 36 samples find more responding
    # taxa than 6 (fixed seeds; 4 true responders per experiment).
    assert table.loc[6, "true_found"] > table.loc[1, "true_found"]
    assert table.loc[6, "power"] == 1.0
    log = (fitted_study / "logs" / "kill" / "power" / "n1-b3-d3000-e2.5" / "1.log").read_text()
    assert "pilot: posterior means of mimix_nofactor (8 taxa" in log
    assert (out / "power.png").read_bytes()[:4] == b"\x89PNG"
