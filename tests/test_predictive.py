"""Posterior predictive check statistics on hand-made counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mimix import predictive


def test_sample_statistics_by_hand() -> None:
    counts = np.array([[2, 2, 0, 4], [5, 0, 0, 0]])
    stats = predictive.sample_statistics(counts)
    assert stats["prop_zero"].tolist() == [0.25, 0.75]
    assert stats["prop_le2"].tolist() == [0.75, 0.75]
    assert stats["max_share"].tolist() == [0.5, 1.0]
    assert stats["shannon"][0] == pytest.approx(-(2 * 0.25 * np.log(0.25) + 0.5 * np.log(0.5)))
    assert stats["shannon"][1] == 0.0
    assert stats["simpson"].tolist() == pytest.approx([1 - (0.0625 * 2 + 0.25), 0.0])


def test_group_similarities_by_hand() -> None:
    # Samples a, b in group g1; c alone in g2 (skipped). Shares a = (.5, .5, 0), b = (.25, .25, .5):
    # Bray-Curtis similarity = sum of minima = .25 + .25 = .5; Jaccard = |{1,2}| / |{1,2,3}| = 2/3.
    counts = np.array([[2, 2, 0], [1, 1, 2], [3, 0, 0]])
    groups = pd.Series(["g1", "g1", "g2"])
    stats = predictive.group_statistics(counts, groups)
    assert stats["_labels"].tolist() == ["g1"]
    assert stats["bray_curtis_similarity"].tolist() == pytest.approx([0.5])
    assert stats["jaccard_similarity"].tolist() == pytest.approx([2 / 3])


def test_replicates_follow_softmax_of_the_mean() -> None:
    rng = np.random.default_rng(1)
    theta_mean = np.log(np.array([[[0.7, 0.2, 0.1]]]).repeat(50, axis=0))  # 50 draws, 1 sample
    replicated = predictive.replicate_counts(theta_mean, np.full((50, 3), 1e-12), np.array([10_000]), rng)
    assert replicated.shape == (50, 1, 3)
    assert (replicated.sum(axis=-1) == 10_000).all()
    # Binomial sd of a share at n = 10,000 is <= 0.005; the mean of 50 draws is far tighter than 0.01.
    np.testing.assert_allclose(replicated[:, 0].mean(axis=0) / 10_000, [0.7, 0.2, 0.1], atol=0.01)


def test_theta_means() -> None:
    mu = np.array([[1.0, 2.0]])
    scores = np.array([[[1.0], [2.0]]])  # 1 draw, 2 samples, 1 factor
    loadings = np.array([[[0.5, -1.0]]])
    assert predictive.theta_mean_factor_model(mu, scores, loadings).tolist() == [[[1.5, 1.0], [2.0, 0.0]]]
    beta = np.array([[[1.0], [0.0]]])  # (S, K, P)
    gamma = np.array([[[0.1, 0.2], [0.3, 0.4]]])  # (S, K, R)
    mean = predictive.theta_mean_nofactor_model(mu, beta, np.array([[1.0], [0.0]]), gamma, np.array([[1], [2]]))
    np.testing.assert_allclose(mean, [[[2.1, 2.3], [1.2, 2.4]]])


def test_check_table_and_summary() -> None:
    rng = np.random.default_rng(3)
    counts = pd.DataFrame(rng.multinomial(500, [0.5, 0.3, 0.2], size=6), index=[f"s{i}" for i in range(6)])
    # Replicates from the true generating distribution: observed values fall inside most intervals.
    replicated = rng.multinomial(500, [0.5, 0.3, 0.2], size=(400, 6))
    groups = pd.Series(["a", "a", "a", "b", "b", "b"], index=counts.index)
    checks, summary = predictive.posterior_predictive_checks(counts, groups, replicated)
    assert set(summary["statistic"]) == set(predictive.SAMPLE_STATISTICS) | set(predictive.GROUP_STATISTICS)
    assert summary.loc[summary["statistic"] == "max_share", "units"].item() == 6
    assert summary.loc[summary["statistic"] == "jaccard_similarity", "units"].item() == 2
    assert (summary["fraction_inside"] >= 0.5).all()
    # A replicate distribution far from the data puts every observed max share outside.
    far = rng.multinomial(500, [0.05, 0.05, 0.9], size=(400, 6))
    _, far_summary = predictive.posterior_predictive_checks(counts, groups, far)
    assert far_summary.loc[far_summary["statistic"] == "max_share", "fraction_inside"].item() == 0.0
    assert checks["ppp"].between(0, 1).all()


def test_level_effects_follow_the_nesting() -> None:
    # Levels: site A (factor 1), block A/1 nested in A (factor 2), crossed level c (factor 2, no parent).
    h = np.array([[[1.0, 2.0], [1.5, 2.5], [0.3, 0.4]]])  # (S=1, R=3, K=2)
    mu = np.array([[0.5, 0.5]])
    gamma = predictive.level_effects(h, mu, np.array([1, 2, 2]), np.array([0, 1, 0]))
    assert gamma.shape == (1, 2, 3)
    np.testing.assert_allclose(gamma[0, :, 0], [0.5, 1.5])  # site: h - mu
    np.testing.assert_allclose(gamma[0, :, 1], [0.5, 0.5])  # nested block: h - h[site]
    np.testing.assert_allclose(gamma[0, :, 2], [0.3, 0.4])  # crossed level: h itself
