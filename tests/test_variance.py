"""Variance decomposition on hand-made draws with shares worked out by hand; the rule's script."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_diagnostics import make_chain, run_script, write_chains

from mimix import variance
from mimix.diagnostics import combine_chains
from mimix.errors import InputError


def posterior(n_draws: int = 4, factor: bool = True, seed: int | None = None, **fixed: np.ndarray):
    """Two chains; variances fixed (broadcast over draws) or random positive when ``seed`` is given."""
    rng = np.random.default_rng(seed)
    shapes = {"sigma2": (n_draws, 3), "sigma2_g": (n_draws, 2), "lambda_diag": (n_draws, 3)}
    names = ["sigma2", "sigma2_g"] + (["lambda_diag"] if factor else [])
    chains = []
    for c in range(2):
        draws = {
            name: np.broadcast_to(fixed[name], shapes[name]).copy()
            if name in fixed
            else rng.gamma(2, size=shapes[name])
            for name in names
        }
        chains.append(make_chain(draws, chain=c + 1))
    return combine_chains(chains).posterior


def test_factor_model_shares_by_hand() -> None:
    # lambda_diag 2, sigma2_g (site 0.5, block 1), sigma2 1: total 2 (1.5 + 1) + 1 = 6.
    post = posterior(sigma2=np.ones(3), sigma2_g=np.array([0.5, 1.0]), lambda_diag=np.full(3, 2.0))
    shares = variance.variance_shares(post)
    first = shares.isel(chain=0, draw=0).sel(taxon="t1")
    expected = {
        "blocking:site": 1 / 6,
        "blocking:block": 2 / 6,
        "latent": 2 / 6,
        "error": 1 / 6,
        "blocking_total": 3 / 6,
        "eta": 5 / 6,  # paper: lambda (1 + sum sigma2_g) / total = 2 * 2.5 / 6
    }
    assert {s: float(first.sel(source=s)) for s in expected} == pytest.approx(expected)
    assert shares["kind"].values.tolist() == ["share"] * 4 + ["combined"] * 2


def test_no_factor_shares_by_hand() -> None:
    # sigma2_g (1, 3), sigma2 4: total 8; no latent part and no eta.
    post = posterior(factor=False, sigma2=np.full(3, 4.0), sigma2_g=np.array([1.0, 3.0]))
    per_taxon, summary = variance.decompose(post)
    t1 = per_taxon[per_taxon["taxon"] == "t1"].set_index("source")["mean"]
    assert t1.to_dict() == pytest.approx(
        {"blocking:site": 1 / 8, "blocking:block": 3 / 8, "error": 1 / 2, "blocking_total": 1 / 2}
    )
    assert "eta" not in set(summary["source"]) and "latent" not in set(summary["source"])


def test_shares_sum_to_one_in_every_draw() -> None:
    shares = variance.variance_shares(posterior(n_draws=200, seed=6))
    partition = shares.where(shares["kind"] == "share", drop=True).sum("source")
    np.testing.assert_allclose(partition.values, 1.0, rtol=1e-12)  # exact up to rounding
    blocking = shares.sel(source=["blocking:site", "blocking:block"]).sum("source")
    np.testing.assert_allclose(shares.sel(source="blocking_total").values, blocking.values, rtol=1e-12)
    eta = blocking + shares.sel(source="latent")
    np.testing.assert_allclose(shares.sel(source="eta").values, eta.values, rtol=1e-12)


def test_interval_and_mean_of_known_draws() -> None:
    # No-factor model with sigma2 = d and sigma2_g = (1 - d, 0): the error share is d / 1 = d,
    # drawn as 0.01, 0.02, ..., 1.00 over the two chains.
    d = np.arange(1, 101) / 100
    chains = []
    for c in range(2):
        part = d[50 * c : 50 * (c + 1)]
        g = np.column_stack([1 - part, np.zeros(50)])
        chains.append(make_chain({"sigma2": np.repeat(part[:, None], 3, axis=1), "sigma2_g": g}, chain=c + 1))
    per_taxon = variance.summarize_shares(variance.variance_shares(combine_chains(chains).posterior), 0.9)
    error = per_taxon[(per_taxon["taxon"] == "t1") & (per_taxon["source"] == "error")].iloc[0]
    assert error["mean"] == pytest.approx(0.505)
    # numpy's linear quantile of 0.01..1.00 at 0.05: 0.01 + 0.05 * 99 * 0.01 = 0.0595; at 0.95: 0.9505.
    assert (error["lower"], error["upper"]) == pytest.approx((0.0595, 0.9505))


def test_dataset_summary_fraction_over_half() -> None:
    per_taxon = pd.DataFrame(
        {
            "taxon": ["t1", "t2", "t3", "t4"] * 2,
            "source": ["blocking_total"] * 4 + ["eta"] * 4,
            "kind": ["combined"] * 8,
            "mean": [0.6, 0.4, 0.7, 0.5, 0.9, 0.2, 0.3, 0.1],
            "lower": 0.0,
            "upper": 1.0,
        }
    )
    summary = variance.dataset_summary(per_taxon).set_index("source")
    # Strictly above one half: 0.6 and 0.7 of 4 (0.5 is not more than half); for eta only 0.9.
    assert summary.loc["blocking_total", "fraction_taxa_over_half"] == 0.5
    assert summary.loc["eta", "fraction_taxa_over_half"] == 0.25
    assert summary.loc["blocking_total", "mean_share"] == pytest.approx(0.55)
    assert summary.loc["eta", ["min_share", "max_share"]].tolist() == [0.1, 0.9]


def test_missing_variances_are_reported() -> None:
    post = posterior(seed=1).drop_vars("sigma2_g")
    with pytest.raises(InputError, match="sigma2_g"):
        variance.variance_shares(post)


def test_script_writes_both_tables(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    chains = [
        make_chain(
            {"sigma2": rng.gamma(2, size=(100, 3)), "sigma2_g": rng.gamma(2, size=(100, 2)),
             "lambda_diag": rng.gamma(2, size=(100, 3))},
            chain=c,
        )
        for c in (1, 2)
    ]  # fmt: skip
    outputs = {"per_taxon": str(tmp_path / "per_taxon.tsv"), "summary": str(tmp_path / "summary.tsv")}
    run_script(
        "variance_decomposition", {"chains": write_chains(chains, tmp_path / "chains")}, outputs,
        {"interval_level": 0.95}, tmp_path,
    )  # fmt: skip
    per_taxon = pd.read_csv(outputs["per_taxon"], sep="\t")
    assert list(per_taxon.columns) == variance.PER_TAXON_COLUMNS
    assert len(per_taxon) == 3 * 6
    summary = pd.read_csv(outputs["summary"], sep="\t")
    assert list(summary.columns) == variance.SUMMARY_COLUMNS
    assert (per_taxon["lower"] <= per_taxon["mean"]).all() and (per_taxon["mean"] <= per_taxon["upper"]).all()
