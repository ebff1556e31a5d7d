"""Where each taxon's variation comes from: blocking factors, latent factors, taxon-specific error.

Factor models (``mimix``, ``mimix_gaussian``): ``theta_ik = mu_k + (Lambda' f_i)_k + e_ik`` with
``f_i = b x_i + sum_q g_q[level] + z_i``, ``z_i ~ N(0, I_L)``, ``g_q ~ N(0, sigma2_g[q] I_L)``,
``e_ik ~ N(0, sigma2_k)``. Given the treatments,

    Var(theta_ik) = lambda_diag_k (sum_q sigma2_g[q] + 1) + sigma2_k,   lambda_diag = diag(Lambda' Lambda)

and its shares are: blocking factor ``q``, ``lambda_diag_k sigma2_g[q]``; the latent-factor
residual ``z``, ``lambda_diag_k``; the taxon-specific error, ``sigma2_k``. The paper's
``eta_k`` is the share routed through the factors, blocking included:
``lambda_diag_k (1 + sum_q sigma2_g[q]) / Var(theta_ik)``. (The ``eta`` saved by the Stan
programs is ``lambda_diag / (lambda_diag + sigma2)``, without the blocking variance; the
paper's R code computes eta from posterior means: here it is computed per draw, then
summarized.)

No-factor model (``mimix_nofactor``): ``theta_ik = mu_k + beta_k' x_i + sum_q gamma_{k, level_q}
+ e_ik`` with ``gamma ~ N(0, sigma2_g[q])``, so the shares are ``sigma2_g[q] / (sum_q sigma2_g[q]
+ sigma2_k)`` per blocking factor and ``sigma2_k / (...)`` for the error; it has no latent part
and no eta (those sources are absent from its tables).

Sources (``source`` column): ``blocking:<factor>`` per blocking factor, ``latent`` and ``error``
(``kind = "share"``: they partition the variance and sum to 1 in every draw), and the combined
``blocking_total`` (all blocking factors) and ``eta`` (``kind = "combined"``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from mimix.diagnostics import SAMPLE_DIMS
from mimix.errors import InputError

PER_TAXON_COLUMNS = ["taxon", "source", "kind", "mean", "lower", "upper"]
SUMMARY_COLUMNS = ["source", "kind", "taxa", "mean_share", "min_share", "max_share", "fraction_taxa_over_half"]
LATENT, ERROR, BLOCKING_TOTAL, ETA = "latent", "error", "blocking_total", "eta"


def blocking_source(factor: str) -> str:
    return f"blocking:{factor}"


def variance_shares(posterior: xr.Dataset) -> xr.DataArray:
    """Per-draw variance shares, dims ``(chain, draw, taxon, source)``, with a ``kind`` coordinate.

    Needs ``sigma2`` (taxon) and ``sigma2_g`` (blocking_factor); the factor models also
    ``lambda_diag`` (taxon), whose presence selects the factor-model decomposition.
    """
    missing = [name for name in ("sigma2", "sigma2_g") if name not in posterior]
    if missing:
        raise InputError(f"the posterior lacks {', '.join(missing)}: cannot decompose the variance")
    sigma2 = posterior["sigma2"]
    sigma2_g = posterior["sigma2_g"]
    factors = [str(f) for f in sigma2_g["blocking_factor"].values]
    if "lambda_diag" in posterior:
        lam = posterior["lambda_diag"]
        blocks = lam * sigma2_g  # broadcasts to (chain, draw, taxon, blocking_factor)
        parts = {LATENT: lam}
    else:
        blocks = sigma2_g * xr.ones_like(sigma2)
        parts = {}
    total = blocks.sum("blocking_factor") + sum(parts.values(), start=0) + sigma2
    components = {blocking_source(f): blocks.sel(blocking_factor=f, drop=True) / total for f in factors}
    components.update({name: value / total for name, value in parts.items()})
    components[ERROR] = sigma2 / total
    combined = {BLOCKING_TOTAL: blocks.sum("blocking_factor") / total}
    if LATENT in parts:
        combined[ETA] = (blocks.sum("blocking_factor") + parts[LATENT]) / total
    sources = list(components) + list(combined)
    stacked = xr.concat(
        [v.transpose(*SAMPLE_DIMS, "taxon") for v in [*components.values(), *combined.values()]],
        dim=pd.Index(sources, name="source"),
    )
    kinds = ["share"] * len(components) + ["combined"] * len(combined)
    return stacked.transpose(*SAMPLE_DIMS, "taxon", "source").assign_coords(kind=("source", kinds))


def summarize_shares(shares: xr.DataArray, interval_level: float = 0.95) -> pd.DataFrame:
    """Posterior mean and equal-tailed interval of every taxon's shares (:data:`PER_TAXON_COLUMNS`)."""
    if not 0 < interval_level < 1:
        raise InputError(f"interval_level must be in (0, 1), got {interval_level}")
    alpha = (1 - interval_level) / 2
    values = shares.transpose(*SAMPLE_DIMS, "taxon", "source").values
    values = values.reshape(-1, *values.shape[2:])
    lower, upper = np.quantile(values, [alpha, 1 - alpha], axis=0)
    taxa = [str(t) for t in shares["taxon"].values]
    sources = [str(s) for s in shares["source"].values]
    return pd.DataFrame(
        {
            "taxon": np.repeat(taxa, len(sources)),
            "source": np.tile(sources, len(taxa)),
            "kind": np.tile(shares["kind"].values, len(taxa)),
            "mean": values.mean(axis=0).ravel(),
            "lower": lower.ravel(),
            "upper": upper.ravel(),
        }
    )[PER_TAXON_COLUMNS]


def dataset_summary(per_taxon: pd.DataFrame) -> pd.DataFrame:
    """Per source, across taxa: mean/min/max of the posterior mean share and the fraction of taxa above 1/2.

    ``fraction_taxa_over_half`` on ``blocking_total`` is the fraction of taxa with more than half
    of their variance from the blocking factors combined; on ``eta``, through the factors.
    """
    grouped = per_taxon.groupby(["source", "kind"], sort=False)["mean"]
    table = grouped.agg(
        taxa="size",
        mean_share="mean",
        min_share="min",
        max_share="max",
        fraction_taxa_over_half=lambda s: float((s > 0.5).mean()),
    ).reset_index()
    return table[SUMMARY_COLUMNS]


def decompose(posterior: xr.Dataset, interval_level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(per_taxon, summary)`` tables of :func:`summarize_shares` and :func:`dataset_summary`."""
    per_taxon = summarize_shares(variance_shares(posterior), interval_level)
    return per_taxon, dataset_summary(per_taxon)
