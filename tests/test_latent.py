"""Latent structure from hand-made loadings with known blocks and known factor usage; the rule's script."""

from __future__ import annotations

from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
from test_diagnostics import run_script, write_chains

from mimix import latent
from mimix.diagnostics import combine_chains
from mimix.errors import InputError

TAXA = [f"t{k}" for k in range(8)]


def block_loadings(n_draws: int = 100, seed: int = 0, flip: bool = True) -> np.ndarray:
    """``(S, 3, 8)`` loadings: factor 1 loads taxa 0-3, factor 2 taxa 4-7 (taxon 3 negatively), factor 3 nothing.

    Noise sd 0.05 on loadings of size ~1 keeps every within-block |correlation| above 0.99 and
    every between-block one below 0.1 in each draw. With ``flip``, odd draws swap factors 1
    and 2 and change the sign of factor 1, as label switching and sign flips between chains do.
    """
    rng = np.random.default_rng(seed)
    lam = np.zeros((n_draws, 3, 8))
    lam[:, 0, :4] = [1.0, 0.8, 1.2, -1.0]
    lam[:, 1, 4:] = [0.9, 1.1, 1.0, 0.7]
    lam[:, :2] += rng.normal(scale=0.05, size=(n_draws, 2, 8))
    if flip:
        lam[1::2] = lam[1::2][:, [1, 0, 2]]
        lam[1::2, 1] *= -1
    return lam


def loadings_posterior(lam: np.ndarray) -> az.InferenceData:
    """Two chains splitting the draws of ``lam`` in half."""
    half = lam.shape[0] // 2
    chains = []
    for c, part in enumerate((lam[:half], lam[half:])):
        idata = az.from_dict(
            posterior={"Lambda": part[None]},
            coords={"factor": [1, 2, 3], "taxon": TAXA},
            dims={"Lambda": ["factor", "taxon"]},
        )
        idata.posterior.attrs.update(chain=c + 1, model="mimix")
        chains.append(idata)
    return combine_chains(chains)


def test_cov2cor_by_hand() -> None:
    # Covariance 2 between sds 2 and 3: correlation 1/3; a zero-variance taxon gets 0 off the diagonal.
    cor = latent.cov2cor(np.array([[4.0, 2.0, 0.0], [2.0, 9.0, 0.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(cor, [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 1]])


def test_mean_covariance_is_invariant_to_rotation_and_sign() -> None:
    lam = block_loadings(flip=False)
    flipped = block_loadings(flip=True)
    np.testing.assert_allclose(latent.mean_loading_covariance(lam), latent.mean_loading_covariance(flipped))
    by_hand = np.mean([draw.T @ draw for draw in lam], axis=0)
    np.testing.assert_allclose(latent.mean_loading_covariance(lam), by_hand)


def test_two_blocks_are_recovered_with_stability_one() -> None:
    result = latent.latent_structure(loadings_posterior(block_loadings()).posterior, stability_draws=50)
    clusters = result.clusters.set_index("taxon")
    groups = clusters.groupby("cluster").groups
    assert sorted(sorted(members) for members in groups.values()) == [TAXA[:4], TAXA[4:]]
    # Taxon t3 loads negatively: correlation -1 with its block, distance 1 - |r| = 0, same cluster.
    assert clusters.loc["t3", "cluster"] == clusters.loc["t0", "cluster"]
    assert (clusters["stability"] == 1.0).all() and (clusters["cluster_stability"] == 1.0).all()
    assert (clusters["max_co_assignment_outside"] == 0.0).all()
    assert (clusters["cluster_size"] == 4).all()
    # Rows come in dendrogram order, clusters numbered along it, correlation ordered the same way.
    assert result.clusters["order"].tolist() == list(range(1, 9))
    assert result.clusters["cluster"].tolist() == [1] * 4 + [2] * 4
    assert list(result.correlation.index) == result.clusters["taxon"].tolist()
    assert result.correlation.loc["t0", "t3"] < -0.99 and abs(result.correlation.loc["t0", "t5"]) < 0.1


def test_fixed_number_of_clusters() -> None:
    post = loadings_posterior(block_loadings()).posterior
    one = latent.latent_structure(post, n_clusters=1, stability_draws=10)
    assert (one.clusters["cluster"] == 1).all() and (one.clusters["stability"] == 1.0).all()
    two = latent.latent_structure(post, n_clusters=2, stability_draws=10)
    assert two.clusters["cluster"].nunique() == 2


def test_unstable_pairs_score_below_one() -> None:
    # Co-assignment of the draws is averaged: a pair together in 1 of 2 draws scores 0.5.
    co = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 1.0]])
    scores = latent.stability_scores(co, np.array([1, 1, 2]))
    assert scores["stability"].tolist()[:2] == [0.5, 0.5] and np.isnan(scores["stability"][2])
    assert scores["cluster_stability"].tolist()[:2] == [0.5, 0.5]
    assert scores["max_co_assignment_outside"].tolist() == [0.0, 0.2, 0.2]


def test_effective_factors_from_two_nonzero_rows() -> None:
    # Rows 1 and 2 carry sums of squares 4 and 4 (shares 1/2 each), rows 3 and 4 are zero.
    lam = np.zeros((10, 4, 3))
    lam[:, 0] = [2.0, 0.0, 0.0]
    lam[:, 2] = [0.0, 2.0, 0.0]
    table = latent.factor_usage(lam, threshold=0.01)
    effective = table.iloc[0]
    assert effective["quantity"] == "effective_factors"
    assert (effective["mean"], effective["lower"], effective["upper"]) == (2.0, 2.0, 2.0)
    shares = table[table["quantity"] == "share"].set_index("rank")
    assert shares["mean"].tolist() == [0.5, 0.5, 0.0, 0.0]
    assert shares["prob_in_use"].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_factor_share_threshold_decides_use() -> None:
    # Shares 0.98, 0.015, 0.005: two factors above 1%, one above 2%.
    lam = np.zeros((5, 3, 1))
    lam[:, :, 0] = np.sqrt([0.98, 0.015, 0.005])
    assert latent.factor_usage(lam, threshold=0.01).iloc[0]["mean"] == 2.0
    assert latent.factor_usage(lam, threshold=0.02).iloc[0]["mean"] == 1.0


def test_stability_draws_are_spread_and_bounded() -> None:
    assert latent.stability_indices(1000, 5).tolist() == [0, 250, 500, 749, 999]
    assert latent.stability_indices(3, 200).tolist() == [0, 1, 2]
    assert latent.stability_indices(10, 0).size == 0


def test_model_without_loadings_is_refused() -> None:
    post = az.from_dict(posterior={"sigma2": np.ones((1, 5, 2))}).posterior
    with pytest.raises(InputError, match="factor model"):
        latent.latent_structure(post)


def test_script_writes_three_tables(tmp_path: Path) -> None:
    idata = loadings_posterior(block_loadings(n_draws=40))
    chains = [idata.isel(chain=[i]) for i in range(2)]
    taxa = tmp_path / "taxa.tsv"
    taxa.write_text("taxon_id\tlabel\tlineage\nt0\tGenus0 (t0)\tk__A\n")
    outputs = {name: str(tmp_path / f"{name}.tsv") for name in ("clusters", "correlation", "factors")}
    settings = {
        "cut_height": 0.5, "n_clusters": None, "stability_draws": 20, "factor_share_threshold": 0.01,
        "interval_level": 0.95,
    }  # fmt: skip
    inputs = {"chains": write_chains(chains, tmp_path / "chains"), "taxa": str(taxa)}
    run_script("latent_structure", inputs, outputs, {"settings": settings}, tmp_path)
    clusters = pd.read_csv(outputs["clusters"], sep="\t")
    assert list(clusters.columns) == latent.CLUSTER_COLUMNS
    assert clusters.set_index("taxon").loc["t0", "label"] == "Genus0 (t0)"
    correlation = pd.read_csv(outputs["correlation"], sep="\t", index_col=0)
    assert correlation.shape == (8, 8) and list(correlation.index) == list(correlation.columns)
    factors = pd.read_csv(outputs["factors"], sep="\t")
    assert list(factors.columns) == latent.FACTOR_COLUMNS
    assert factors.loc[0, "mean"] == 2.0  # factor 3 is exactly zero
