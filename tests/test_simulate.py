"""The simulator follows the paper's design: shapes, seeds, dense fraction, effect sizes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mimix.simulate import SimulationSettings, ar1_covariance, simulate, true_effects, write_dataset


def test_paper_defaults_shapes_and_design() -> None:
    data = simulate(SimulationSettings(seed=3))
    assert data.counts.shape == (40, 100)
    assert data.beta.shape == (100, 1)
    depth = data.counts.sum(axis=1)
    assert depth.between(2500, 5000).all()
    # 5 blocks of 8 samples, half of each block treated.
    assert data.metadata["block"].value_counts().tolist() == [8] * 5
    assert (data.metadata.groupby("block")["treatment"].apply(lambda s: (s == "treated").sum()) == 4).all()


def test_seed_reproducible_and_seed_sensitive() -> None:
    a = simulate(SimulationSettings(n_taxa=20, seed=11))
    b = simulate(SimulationSettings(n_taxa=20, seed=11))
    c = simulate(SimulationSettings(n_taxa=20, seed=12))
    pd.testing.assert_frame_equal(a.counts, b.counts)
    assert not a.counts.equals(c.counts)


@pytest.mark.parametrize("dense", [0.0, 0.1, 0.2])
@pytest.mark.parametrize("form", ["grouped", "random"])
def test_dense_fraction_and_effect_bounds(dense: float, form: str) -> None:
    for seed in range(5):
        beta = true_effects(100, dense, form, np.random.default_rng(seed))
        nonzero = np.flatnonzero(beta)
        assert len(nonzero) == round(dense * 100)
        assert np.all((np.abs(beta[nonzero]) > 1) & (np.abs(beta[nonzero]) < 3))
        if form == "grouped" and len(nonzero):
            # Runs of 5 adjacent taxa starting at positions 1, 6, 11, ... (0-based 0, 5, 10, ...).
            starts = nonzero[::5]
            assert np.all(starts % 5 == 0)
            for start in starts:
                assert np.all(beta[start : start + 5] == beta[start])


def test_ar1_covariance() -> None:
    cov = ar1_covariance(4, 0.9, 4.0)
    assert cov[0, 0] == 4.0 and cov[0, 3] == pytest.approx(4.0 * 0.9**3)


def test_sites_null_treatments_and_rare_taxa(tmp_path) -> None:
    data = simulate(
        SimulationSettings(
            n_samples=24,
            n_taxa=10,
            n_blocks=4,
            n_sites=2,
            rare_taxa=3,
            treatments=("nutrient", "fence"),
            dense=0.5,
            seed=5,
        )
    )
    assert data.counts.shape == (24, 13)
    assert (data.beta["fence[treated]"] == 0).all()
    assert sorted(data.metadata["block"].unique()) == ["1", "2"]  # labels repeat across sites
    assert data.metadata.groupby(["site", "block"]).size().tolist() == [6] * 4
    # Rare taxa (mean -7 on the log scale) are much sparser than the others.
    prevalence = (data.counts > 0).mean()
    assert prevalence.iloc[-3:].max() < prevalence.iloc[:10].min()
    paths = write_dataset(data, tmp_path)
    back = pd.read_csv(paths["counts"], sep="\t", index_col=0)
    assert back.to_numpy().tolist() == data.counts.to_numpy().tolist()
