"""Latent structure of the factor models: taxa that move together, and how many factors are used.

Correlation. The factors induce the covariance ``Lambda' Lambda`` (K x K) among taxa (times
``1 + sum_q sigma2_g``, a common scale that cancels in a correlation). It is invariant to
rotations and sign flips of the factors, so unlike ``Lambda`` it can be averaged over draws
and chains. Its posterior mean, scaled to a correlation matrix (cov2cor), is the taxon
correlation through the factors.

Subcommunities. Average-linkage hierarchical clustering on the distance ``1 - |correlation|``
(taxa that rise and fall together, or in opposition, are close), cut at a height (default 0.5,
i.e. an average absolute correlation of at least 0.5 within a cluster) or into a fixed number
of clusters. Clusters are numbered 1, 2, ... in dendrogram order.

Stability. The same clustering is repeated on the correlation matrices of single draws
(``stability_draws`` of them, evenly spaced over all chains and draws). The co-assignment
frequency of two taxa is the fraction of those draws in which they share a cluster. A
taxon's stability is its mean co-assignment frequency with the other members of its
consensus cluster; a cluster's stability is the mean over its pairs (1 = always together;
NaN for a singleton, which has no pairs). ``max_co_assignment_outside`` is a taxon's highest
co-assignment frequency with any taxon outside its cluster (high = it could belong elsewhere).
Memory stays ``O(K^2)`` whatever the number of draws.

Factor usage. In each draw, factor ``l``'s share of the total sum of squares of ``Lambda``
is ``sum_k Lambda_lk^2 / sum_lk Lambda_lk^2``; a factor is in use when its share exceeds
``factor_share_threshold`` (default 0.01, i.e. 1%: a factor carrying less than 1% of the
loading mass changes no correlation noticeably). The effective number of factors is the count
in use per draw, summarized by posterior mean and interval. Factor labels can permute between
chains, so per-factor shares are reported by rank (largest share first, per draw).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from scipy.spatial.distance import squareform

from mimix.diagnostics import SAMPLE_DIMS
from mimix.errors import InputError

CLUSTER_COLUMNS = [
    "taxon", "label", "order", "cluster", "cluster_size", "stability", "cluster_stability",
    "max_co_assignment_outside",
]  # fmt: skip
FACTOR_COLUMNS = ["quantity", "rank", "mean", "median", "lower", "upper", "prob_in_use"]


@dataclass
class LatentStructure:
    """Outputs of :func:`latent_structure`."""

    clusters: pd.DataFrame  # one row per taxon, in dendrogram order (CLUSTER_COLUMNS)
    correlation: pd.DataFrame  # taxon x taxon, rows and columns in dendrogram order
    factors: pd.DataFrame  # factor usage (FACTOR_COLUMNS)


def loading_draws(posterior: xr.Dataset) -> xr.DataArray:
    """``Lambda`` as ``(sample, factor, taxon)``, chains and draws stacked into ``sample``."""
    if "Lambda" not in posterior:
        raise InputError("the posterior has no Lambda: latent structure needs a factor model (mimix, mimix_gaussian)")
    lam = posterior["Lambda"].transpose(*SAMPLE_DIMS, "factor", "taxon")
    return lam.stack(sample=SAMPLE_DIMS).transpose("sample", "factor", "taxon")


def mean_loading_covariance(loadings: np.ndarray) -> np.ndarray:
    """Posterior mean of ``Lambda' Lambda`` from ``(S, L, K)`` draws, as one ``(S L) x K`` product."""
    s, n_factors, k = loadings.shape
    flat = loadings.reshape(s * n_factors, k)
    return flat.T @ flat / s


def cov2cor(cov: np.ndarray) -> np.ndarray:
    """Correlation matrix of a covariance matrix; a zero-variance taxon gets correlation 0 (1 with itself)."""
    cov = np.asarray(cov, dtype=float)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    scale = np.outer(sd, sd)
    with np.errstate(divide="ignore", invalid="ignore"):
        cor = np.where(scale > 0, cov / scale, 0.0)
    cor = np.clip(cor, -1.0, 1.0)  # rounding can push |r| a hair above 1
    np.fill_diagonal(cor, 1.0)
    return cor


def cluster_labels(correlation: np.ndarray, cut_height: float = 0.5, n_clusters: int | None = None) -> np.ndarray:
    """Cluster of each taxon (1-based, unordered) from average linkage on ``1 - |correlation|``."""
    k = correlation.shape[0]
    if k < 2:
        return np.ones(k, dtype=int)
    tree = _linkage(correlation)
    if n_clusters is not None:
        return fcluster(tree, t=min(n_clusters, k), criterion="maxclust")
    return fcluster(tree, t=cut_height, criterion="distance")


def _linkage(correlation: np.ndarray) -> np.ndarray:
    distance = np.clip(1.0 - np.abs(correlation), 0.0, None)
    np.fill_diagonal(distance, 0.0)
    distance = (distance + distance.T) / 2  # exact symmetry for squareform
    return linkage(squareform(distance, checks=False), method="average")


def dendrogram_order(correlation: np.ndarray) -> np.ndarray:
    """Leaf order of the average-linkage dendrogram (positions into the taxon axis)."""
    k = correlation.shape[0]
    return np.arange(k) if k < 2 else leaves_list(_linkage(correlation))


def renumber_in_order(labels: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Relabel clusters 1, 2, ... by first appearance along ``order``."""
    mapping: dict[int, int] = {}
    for label in labels[order]:
        mapping.setdefault(int(label), len(mapping) + 1)
    return np.array([mapping[int(label)] for label in labels], dtype=int)


def stability_indices(n_samples: int, max_draws: int) -> np.ndarray:
    """Up to ``max_draws`` positions evenly spaced over ``n_samples`` stacked draws (deterministic)."""
    if max_draws < 1 or n_samples < 1:
        return np.zeros(0, dtype=int)
    return np.unique(np.linspace(0, n_samples - 1, min(max_draws, n_samples)).round().astype(int))


def co_assignment(loadings: np.ndarray, cut_height: float = 0.5, n_clusters: int | None = None) -> np.ndarray:
    """Fraction of draws (``(S, L, K)`` loadings) in which each pair of taxa shares a cluster (K x K)."""
    s, _, k = loadings.shape
    together = np.zeros((k, k))
    for lam in loadings:
        labels = cluster_labels(cov2cor(lam.T @ lam), cut_height, n_clusters)
        together += labels[:, None] == labels[None, :]
    return together / max(s, 1)


def stability_scores(co: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Per taxon: ``stability``, ``cluster_stability``, ``max_co_assignment_outside`` (see module doc)."""
    same = labels[:, None] == labels[None, :]
    partners = same & ~np.eye(labels.size, dtype=bool)
    n_partners = partners.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        taxon = np.where(n_partners > 0, (co * partners).sum(axis=1) / n_partners, np.nan)
    cluster = np.full(labels.size, np.nan)
    for label in np.unique(labels):
        members = labels == label
        if members.sum() > 1:
            block = co[np.ix_(members, members)]
            m = int(members.sum())
            cluster[members] = (block.sum() - np.trace(block)) / (m * (m - 1))
    outside = np.where(~same, co, -np.inf).max(axis=1) if (~same).any() else np.full(labels.size, np.nan)
    outside = np.where(np.isfinite(outside), outside, np.nan)
    return pd.DataFrame({"stability": taxon, "cluster_stability": cluster, "max_co_assignment_outside": outside})


def factor_usage(loadings: np.ndarray, threshold: float = 0.01, interval_level: float = 0.95) -> pd.DataFrame:
    """Effective number of factors and the factor shares by rank (:data:`FACTOR_COLUMNS`).

    Rows: ``quantity = "effective_factors"`` (rank empty), then ``quantity = "share"`` for
    rank 1..L (largest share first in each draw); ``prob_in_use`` is the fraction of draws in
    which that rank's share exceeds ``threshold`` (for effective_factors: in which at least one
    factor is in use).
    """
    if not 0 < interval_level < 1:
        raise InputError(f"interval_level must be in (0, 1), got {interval_level}")
    sums = (loadings**2).sum(axis=2)  # (S, L)
    total = sums.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(total > 0, sums / total, 0.0)
    ranked = -np.sort(-shares, axis=1)
    in_use = ranked > threshold
    effective = in_use.sum(axis=1)
    alpha = (1 - interval_level) / 2

    def row(quantity: str, rank: int | None, values: np.ndarray, used: np.ndarray) -> dict:
        lower, median, upper = np.quantile(values, [alpha, 0.5, 1 - alpha])
        return {
            "quantity": quantity,
            "rank": rank,
            "mean": float(values.mean()),
            "median": float(median),
            "lower": float(lower),
            "upper": float(upper),
            "prob_in_use": float(used.mean()),
        }

    rows = [row("effective_factors", None, effective.astype(float), effective > 0)]
    rows += [row("share", r + 1, ranked[:, r], in_use[:, r]) for r in range(ranked.shape[1])]
    table = pd.DataFrame(rows, columns=FACTOR_COLUMNS)
    table["rank"] = table["rank"].astype("Int64")
    return table


def latent_structure(
    posterior: xr.Dataset,
    cut_height: float = 0.5,
    n_clusters: int | None = None,
    stability_draws: int = 200,
    factor_share_threshold: float = 0.01,
    interval_level: float = 0.95,
    taxa: pd.DataFrame | None = None,
) -> LatentStructure:
    """Correlation, subcommunities with their stability, and factor usage from the draws of ``Lambda``.

    ``taxa`` (indexed by taxon id, with a ``label`` column) names the taxa; unknown ones keep their id.
    """
    if n_clusters is not None and n_clusters < 1:
        raise InputError(f"n_clusters must be >= 1 (or null to cut at cut_height), got {n_clusters}")
    if not 0 <= cut_height <= 1:
        raise InputError(f"cut_height must be in [0, 1] (a distance 1 - |correlation|), got {cut_height}")
    draws = loading_draws(posterior)
    taxon_ids = [str(t) for t in draws["taxon"].values]
    loadings = draws.values
    correlation = cov2cor(mean_loading_covariance(loadings))
    order = dendrogram_order(correlation)
    labels = renumber_in_order(cluster_labels(correlation, cut_height, n_clusters), order)
    picked = loadings[stability_indices(loadings.shape[0], stability_draws)]
    co = co_assignment(picked, cut_height, n_clusters) if picked.shape[0] else np.full(correlation.shape, np.nan)
    scores = stability_scores(co, labels)
    sizes = pd.Series(labels).value_counts()
    names = pd.Series(taxon_ids, index=taxon_ids)
    if taxa is not None and "label" in taxa:
        known = taxa["label"].copy()
        known.index = known.index.astype(str)
        names = known.reindex(taxon_ids).fillna(names)
    clusters = pd.DataFrame(
        {
            "taxon": taxon_ids,
            "label": names.to_numpy(),
            "order": np.argsort(order) + 1,
            "cluster": labels,
            "cluster_size": sizes.reindex(labels).to_numpy(),
            **{column: scores[column].to_numpy() for column in scores},
        }
    )
    clusters = clusters.iloc[order].reset_index(drop=True)[CLUSTER_COLUMNS]
    ordered_ids = [taxon_ids[i] for i in order]
    corr_frame = pd.DataFrame(
        correlation[np.ix_(order, order)],
        index=pd.Index(ordered_ids, name="taxon"),
        columns=ordered_ids,
    )
    factors = factor_usage(loadings, factor_share_threshold, interval_level)
    return LatentStructure(clusters=clusters, correlation=corr_frame, factors=factors)
