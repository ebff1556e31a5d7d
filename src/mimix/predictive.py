"""Posterior predictive checks: replicate count tables and compare summary statistics.

Replication is "mixed": for a posterior draw, each sample's theta is drawn afresh from its
conditional distribution given the draw's mean structure (mu + Lambda' f_i for the factor
models; mu + beta x_i + block effects without factors) and taxon variances sigma2, then
Y_rep_i ~ Multinomial(m_i, softmax(theta_rep_i)) with the observed depth m_i. This checks the
model's description of between-sample variability, not just its fit to the sampled theta.

Statistics per sample: proportion of zeros, proportion of counts <= 2, share of the most
abundant taxon, Shannon and Simpson diversity. Per group of samples with the same treatment
and blocks: mean pairwise Bray-Curtis and Jaccard similarity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SAMPLE_STATISTICS = ("prop_zero", "prop_le2", "max_share", "shannon", "simpson")
GROUP_STATISTICS = ("bray_curtis_similarity", "jaccard_similarity")


def sample_statistics(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample statistics of a (..., N, K) count array; each result has shape (..., N)."""
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=-1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(shares > 0, shares * np.log(shares), 0.0)
    return {
        "prop_zero": (counts == 0).mean(axis=-1),
        "prop_le2": (counts <= 2).mean(axis=-1),
        "max_share": shares.max(axis=-1),
        "shannon": -plogp.sum(axis=-1),
        "simpson": 1.0 - (shares**2).sum(axis=-1),  # Gini-Simpson: probability two reads differ
    }


def _pairwise_mean(values: np.ndarray, members: np.ndarray, kind: str) -> np.ndarray:
    """Mean pairwise similarity among ``members`` (indices along axis -2) of a (..., N, K) array."""
    sub = values[..., members, :]
    i, j = np.triu_indices(len(members), k=1)
    a, b = sub[..., i, :], sub[..., j, :]
    if kind == "bray_curtis_similarity":
        shares_a = a / np.maximum(a.sum(axis=-1, keepdims=True), 1e-300)
        shares_b = b / np.maximum(b.sum(axis=-1, keepdims=True), 1e-300)
        # 1 - Bray-Curtis dissimilarity of relative abundances = sum of shared minima.
        similarity = np.minimum(shares_a, shares_b).sum(axis=-1)
    else:
        present_a, present_b = a > 0, b > 0
        union = (present_a | present_b).sum(axis=-1)
        similarity = np.divide((present_a & present_b).sum(axis=-1), union, out=np.ones(union.shape), where=union > 0)
    return similarity.mean(axis=-1)


def group_statistics(counts: np.ndarray, groups: pd.Series) -> dict[str, np.ndarray]:
    """Mean pairwise similarities per group (groups with one sample are skipped); shape (..., G)."""
    counts = np.asarray(counts, dtype=float)
    labels = [g for g, size in groups.value_counts(sort=False).items() if size >= 2]
    positions = {g: np.flatnonzero(groups.to_numpy() == g) for g in labels}
    return {
        kind: np.stack([_pairwise_mean(counts, positions[g], kind) for g in labels], axis=-1)
        if labels
        else np.zeros(counts.shape[:-2] + (0,))
        for kind in GROUP_STATISTICS
    } | {"_labels": np.array(labels, dtype=object)}


def replicate_counts(
    theta_mean: np.ndarray, sigma2: np.ndarray, depth: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Y_rep for draws of the mean structure: theta_mean (S, N, K), sigma2 (S, K), depth (N,)."""
    theta = theta_mean + rng.standard_normal(theta_mean.shape) * np.sqrt(sigma2)[:, None, :]
    theta -= theta.max(axis=-1, keepdims=True)
    probabilities = np.exp(theta)
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    n_draws, n_samples, _ = theta.shape
    replicated = np.empty(theta.shape, dtype=np.int64)
    for s in range(n_draws):
        for i in range(n_samples):
            replicated[s, i] = rng.multinomial(int(depth[i]), probabilities[s, i])
    return replicated


def theta_mean_factor_model(mu: np.ndarray, scores: np.ndarray, loadings: np.ndarray) -> np.ndarray:
    """mu + F Lambda for draws: mu (S, K), F (S, N, L), Lambda (S, L, K) -> (S, N, K)."""
    return mu[:, None, :] + np.einsum("snl,slk->snk", scores, loadings)


def theta_mean_nofactor_model(
    mu: np.ndarray, beta: np.ndarray, X: np.ndarray, gamma: np.ndarray, block: np.ndarray
) -> np.ndarray:
    """mu + X beta' + block effects: mu (S, K), beta (S, K, P), X (N, P), gamma (S, K, R), block (N, Q) 1-based."""
    mean = mu[:, None, :] + np.einsum("np,skp->snk", X, beta)
    for q in range(block.shape[1]):
        mean += np.moveaxis(gamma[:, :, block[:, q] - 1], 1, 2)
    return mean


def check_table(observed: np.ndarray, replicated: np.ndarray, names: list[str], level: float = 0.95) -> pd.DataFrame:
    """Observed value, predictive interval and whether it is inside, per unit (sample or group)."""
    alpha = (1 - level) / 2
    lower, upper = np.quantile(replicated, [alpha, 1 - alpha], axis=0)
    at_least, at_most = (replicated >= observed).mean(axis=0), (replicated <= observed).mean(axis=0)
    return pd.DataFrame(
        {
            "observed": observed,
            "predicted_mean": replicated.mean(axis=0),
            "lower": lower,
            "upper": upper,
            "inside": (observed >= lower) & (observed <= upper),
            # Two-sided posterior predictive p-value: how extreme the observed value is.
            "ppp": np.clip(2 * np.minimum(at_least, at_most), 0.0, 1.0),
        },
        index=pd.Index(names, name="unit"),
    )


def posterior_predictive_checks(
    counts: pd.DataFrame, groups: pd.Series, replicated: np.ndarray, level: float = 0.95
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-unit check table for every statistic, and the fraction of observed values inside.

    ``replicated`` is (S, N, K) in the sample and taxon order of ``counts``.
    """
    observed = counts.to_numpy()
    frames = []
    obs_sample, rep_sample = sample_statistics(observed), sample_statistics(replicated)
    for name in SAMPLE_STATISTICS:
        table = check_table(obs_sample[name], rep_sample[name], list(counts.index), level)
        frames.append(table.assign(statistic=name, level="sample"))
    obs_group, rep_group = group_statistics(observed, groups), group_statistics(replicated, groups)
    for name in GROUP_STATISTICS:
        table = check_table(obs_group[name], rep_group[name], [str(g) for g in obs_group["_labels"]], level)
        frames.append(table.assign(statistic=name, level="group"))
    checks = pd.concat(frames).reset_index()[
        ["statistic", "level", "unit", "observed", "predicted_mean", "lower", "upper", "inside", "ppp"]
    ]
    summary = (
        checks.groupby(["statistic", "level"], sort=False)
        .agg(units=("inside", "size"), fraction_inside=("inside", "mean"), median_ppp=("ppp", "median"))
        .reset_index()
    )
    return checks, summary


def level_effects(h: np.ndarray, mu: np.ndarray, level_factor: np.ndarray, level_parent: np.ndarray) -> np.ndarray:
    """Block effects gamma (S, K, R) from the hierarchically centred level means h (S, R, K).

    As in the Stan model: a nested level is centred on its parent, a level of the first factor
    on mu, a level of a crossed factor on zero.
    """
    gamma = h.copy()
    for r, (factor, parent) in enumerate(zip(level_factor, level_parent, strict=True)):
        if parent > 0:
            gamma[:, r] -= h[:, parent - 1]
        elif factor == 1:
            gamma[:, r] -= mu
    return np.moveaxis(gamma, 1, 2)


def theta_means(posterior, model_input, draws: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mean structure (S, N, K) and sigma2 (S, K) for ``draws`` draws spread over all chains."""
    stacked = posterior.stack(sample_draw=("chain", "draw")).transpose("sample_draw", ...)
    total = stacked.sizes["sample_draw"]
    pick = np.sort(rng.choice(total, size=min(draws, total), replace=False))
    sub = stacked.isel(sample_draw=pick)
    mu, sigma2 = sub["mu"].to_numpy(), sub["sigma2"].to_numpy()
    if "F" in sub:
        return theta_mean_factor_model(mu, sub["F"].to_numpy(), sub["Lambda"].to_numpy()), sigma2
    blocks = model_input.blocks
    gamma = level_effects(sub["h"].to_numpy(), mu, np.array(blocks.level_factor()), np.array(blocks.parent))
    mean = theta_mean_nofactor_model(
        mu,
        sub["beta"].to_numpy(),
        model_input.X.loc[model_input.counts.index].to_numpy(),
        gamma,
        blocks.index_matrix(),
    )
    return mean, sigma2


def replicate_groups(model_input) -> pd.Series:
    """Samples with the same treatment columns and the same blocking levels form a group."""
    X = model_input.X.loc[model_input.counts.index]
    keys = X.astype(str).agg("|".join, axis=1)
    labels = model_input.blocks.labels.loc[model_input.counts.index]
    if labels.shape[1]:
        keys = keys + " @ " + labels.astype(str).agg("|".join, axis=1)
    return keys
