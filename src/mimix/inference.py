"""Global tests (is there any treatment effect?) and local tests (which taxa respond?).

Global tests. For treatment column ``j`` the null hypothesis is "no taxon responds to ``j``",
i.e. every inclusion indicator of column ``j`` is off. The Stan programs save, per draw, the
Rao-Blackwellized probability ``global_prob[j]`` that at least one indicator is on given the
other parameters (``term_prob[t]`` likewise for all columns of formula term ``t``); averaging
them over draws gives the posterior probability of an effect with less Monte Carlo error than
counting indicator draws. The prior probability of the same event follows from the prior of
the indicators: ``n`` indicators share ``pi_j ~ Beta(1, c)``, so
``P(any on) = 1 - E[(1 - pi_j)^n] = 1 - c / (c + n)``, and for a term spanning ``m`` columns
with independent ``pi_j``, ``1 - (c / (c + n))^m``. The factor models have ``n = c = L``
(indicators per factor row, ``pi_j ~ Beta(1, L)``); the no-factor model has ``n = c = K``
(one indicator per taxon, ``pi_j ~ Beta(1, K)``). Both give a prior probability of 1/2 per
column. The Bayes factor is posterior odds over prior odds (``inf`` when every draw gives
probability 1). The null is rejected when the posterior probability exceeds a threshold
(default 0.9).

Local tests. Per taxon and treatment column, from the draws of ``beta``: posterior mean,
median, sd, an equal-tailed interval, the probabilities of a positive and of a negative
effect (strict inequalities, so draws that are exactly 0, from the spike of the
spike-and-slab, count for neither sign), and the local false sign rate
``lfsr = 1 - max(P(beta > 0), P(beta < 0))`` (Stephens 2017): the posterior probability of
being wrong about the sign when declaring the more likely sign. ``interval_excludes_zero``
is the paper's decision rule. The Bayesian FDR discovery set, per treatment column, sorts
taxa by lfsr and keeps the largest set whose mean lfsr (its expected proportion of false
sign discoveries) is at most the level; ``svalue`` is that running mean (Stephens 2017's
s-value), so a taxon is a discovery iff ``svalue <= level``. Taxa with tied lfsr enter or
leave the set together, so the set never depends on the order of ties.

Effects are on the model's log-ratio scale: ``theta`` is only identified relative to the
other taxa (the multinomial depends on ``softmax(theta)``), so ``fold_change = exp(beta)`` is
the multiplicative change of a taxon's abundance *relative to the other taxa* (to their
geometric mean, when effects average out), not an absolute abundance change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from mimix.diagnostics import SAMPLE_DIMS
from mimix.errors import InputError

GLOBAL_COLUMNS = [
    "test", "name", "columns", "posterior_prob", "mcse", "prior_prob", "posterior_odds", "prior_odds",
    "bayes_factor", "threshold", "decision", "reliable",
]  # fmt: skip
LOCAL_COLUMNS = [
    "taxon", "column", "label", "lineage", "mean", "median", "sd", "lower", "upper", "prob_positive",
    "prob_negative", "lfsr", "svalue", "direction", "interval_excludes_zero", "fdr_discovery", "fold_change",
    "fold_change_lower", "fold_change_upper", "reliable",
]  # fmt: skip


def prior_any_inclusion(n_indicators: int, concentration: float, n_columns: int = 1) -> float:
    """Prior probability that at least one of ``n`` indicators is on, in at least one of ``n_columns``.

    Each column's ``n`` indicators share ``pi ~ Beta(1, concentration)``; columns are independent.
    """
    if n_indicators < 1 or concentration <= 0 or n_columns < 0:
        raise InputError(
            f"prior_any_inclusion needs n_indicators >= 1, concentration > 0 and n_columns >= 0; got "
            f"{n_indicators}, {concentration}, {n_columns}"
        )
    none_on = concentration / (concentration + n_indicators)
    return float(1.0 - none_on**n_columns)


def indicator_prior(posterior: xr.Dataset) -> tuple[int, float]:
    """``(n_indicators, concentration)`` per treatment column of the model that made ``posterior``.

    Factor models (a ``factor`` dimension): ``L`` indicators per column, ``pi ~ Beta(1, L)``;
    the no-factor model: ``K`` indicators (one per taxon), ``pi ~ Beta(1, K)``.
    """
    size = int(posterior.sizes["factor"]) if "factor" in posterior.dims else int(posterior.sizes["taxon"])
    return size, float(size)


def odds(p: np.ndarray | float) -> np.ndarray:
    """``p / (1 - p)``, ``inf`` at 1."""
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(p < 1, p / np.where(p < 1, 1 - p, 1), np.inf)


def global_tests(
    posterior: xr.Dataset,
    terms: Mapping[str, Sequence[str]],
    threshold: float = 0.9,
    n_indicators: int | None = None,
    concentration: float | None = None,
) -> pd.DataFrame:
    """One row per treatment column (``test = "column"``) and per formula term (``test = "term"``).

    ``terms`` maps each formula term to its columns (sets each term's column count).
    ``n_indicators`` and ``concentration`` default to :func:`indicator_prior`. ``reliable`` is
    left True here; :func:`mark_reliable` sets it from the diagnostics.
    """
    default_n, default_c = indicator_prior(posterior)
    n = n_indicators or default_n
    c = concentration or default_c
    rows = []
    for test, variable, dim in (("column", "global_prob", "column"), ("term", "term_prob", "term")):
        if variable not in posterior:
            continue
        draws = posterior[variable]
        with np.errstate(divide="ignore", invalid="ignore"):
            mcse = az.mcse(draws.to_dataset(name=variable), method="mean")[variable]
        for name in draws[dim].values:
            name = str(name)
            if test == "term" and name not in terms:
                raise InputError(f"term {name!r} of term_prob is not in the terms table: rerun the data stage")
            n_columns = len(terms[name]) if test == "term" else 1
            element = draws.sel({dim: name})
            prior = prior_any_inclusion(n, c, n_columns)
            prob = float(element.mean())
            rows.append(
                {
                    "test": test,
                    "name": name,
                    "columns": n_columns,
                    "posterior_prob": prob,
                    # A constant element has no Monte Carlo error (ArviZ may return NaN there).
                    "mcse": 0.0 if float(element.std()) == 0 else float(mcse.sel({dim: name})),
                    "prior_prob": prior,
                }
            )
    table = pd.DataFrame(rows, columns=["test", "name", "columns", "posterior_prob", "mcse", "prior_prob"])
    table["posterior_odds"] = odds(table["posterior_prob"].to_numpy())
    table["prior_odds"] = odds(table["prior_prob"].to_numpy())
    table["bayes_factor"] = table["posterior_odds"] / table["prior_odds"]
    table["threshold"] = threshold
    table["decision"] = np.where(table["posterior_prob"] > threshold, "reject", "retain")
    table["reliable"] = True
    return table[GLOBAL_COLUMNS]


def lfsr(draws: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(P(x > 0), P(x < 0), lfsr)`` along ``axis``; exact zeros count for neither sign."""
    positive = (draws > 0).mean(axis=axis)
    negative = (draws < 0).mean(axis=axis)
    return positive, negative, 1.0 - np.maximum(positive, negative)


def svalues(lfsr_values: np.ndarray) -> np.ndarray:
    """Running mean of the sorted lfsr, mapped back to each element; ties share the value at their group's end.

    The running mean of ascending values never decreases, so ``svalue <= level`` selects the
    largest set (closed under ties) whose mean lfsr is at most ``level``.
    """
    values = np.asarray(lfsr_values, dtype=float)
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    running = np.cumsum(ranked) / np.arange(1, ranked.size + 1)
    # Each tie group takes the running mean at its last member: the value once the whole group is in.
    last_of_group = np.searchsorted(ranked, ranked, side="right") - 1
    out = np.empty_like(values)
    out[order] = running[last_of_group]
    return out


def local_tests(
    beta: xr.DataArray,
    interval_level: float = 0.95,
    fdr_level: float = 0.05,
    taxa: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per-taxon effects of every treatment column from draws of ``beta`` (dims chain, draw, taxon, column).

    ``taxa`` (indexed by taxon id, columns ``label`` and ``lineage``) names the taxa; taxa
    missing from it (e.g. ``other``) are labelled by their id.
    """
    if not 0 < interval_level < 1 or not 0 < fdr_level < 1:
        raise InputError(f"interval_level and fdr_level must be in (0, 1); got {interval_level}, {fdr_level}")
    draws = beta.transpose(*SAMPLE_DIMS, "taxon", "column")
    values = draws.values.reshape(-1, draws.sizes["taxon"], draws.sizes["column"])
    alpha = (1 - interval_level) / 2
    lower, median, upper = np.quantile(values, [alpha, 0.5, 1 - alpha], axis=0)
    positive, negative, false_sign = lfsr(values)
    svalue = np.column_stack([svalues(false_sign[:, j]) for j in range(values.shape[2])])
    taxon_ids = [str(t) for t in draws["taxon"].values]
    columns = [str(c) for c in draws["column"].values]
    mean = values.mean(axis=0)
    table = pd.DataFrame(
        {
            "taxon": np.repeat(taxon_ids, len(columns)),
            "column": np.tile(columns, len(taxon_ids)),
            "mean": mean.ravel(),
            "median": median.ravel(),
            "sd": values.std(axis=0, ddof=1).ravel() if values.shape[0] > 1 else np.nan,
            "lower": lower.ravel(),
            "upper": upper.ravel(),
            "prob_positive": positive.ravel(),
            "prob_negative": negative.ravel(),
            "lfsr": false_sign.ravel(),
            "svalue": svalue.ravel(),
        }
    )
    table["direction"] = np.select(
        [table["prob_positive"] > table["prob_negative"], table["prob_negative"] > table["prob_positive"]],
        ["positive", "negative"],
        "none",
    )
    table["interval_excludes_zero"] = (table["lower"] > 0) | (table["upper"] < 0)
    table["fdr_discovery"] = table["svalue"] <= fdr_level
    table["fold_change"] = np.exp(table["mean"])
    table["fold_change_lower"] = np.exp(table["lower"])
    table["fold_change_upper"] = np.exp(table["upper"])
    names = _taxon_names(taxon_ids, taxa)
    table["label"] = table["taxon"].map(names["label"])
    table["lineage"] = table["taxon"].map(names["lineage"])
    table["reliable"] = True
    return table[LOCAL_COLUMNS]


def _taxon_names(taxon_ids: list[str], taxa: pd.DataFrame | None) -> pd.DataFrame:
    """``label`` and ``lineage`` per taxon id; the id itself and an empty lineage when unknown."""
    names = pd.DataFrame(index=pd.Index(taxon_ids, name="taxon"), columns=["label", "lineage"], dtype=object)
    if taxa is not None:
        known = taxa.copy()
        known.index = known.index.astype(str)
        for column in ("label", "lineage"):
            if column in known:
                names[column] = known[column].reindex(taxon_ids).to_numpy()
    names["label"] = names["label"].where(names["label"].notna(), names.index.to_series())
    names["lineage"] = names["lineage"].fillna("")
    return names


def mark_reliable(
    table: pd.DataFrame,
    quantities: pd.DataFrame,
    passed: bool,
    quantity: str | Mapping[str, str],
    index: Sequence[str],
) -> pd.DataFrame:
    """Copy of ``table`` with ``reliable`` = the model passed its diagnostics and the element is ok.

    ``quantity`` names the diagnostics quantity of every row (or maps each row's ``test`` to
    it); ``index`` gives each row's element label as in the diagnostics ``index`` column.
    Rows whose element is absent from the diagnostics count as not reliable.
    """
    ok = quantities.set_index(["quantity", "index"])["ok"].astype(bool)
    ok.index = ok.index.set_levels([ok.index.levels[0], ok.index.levels[1].astype(str)])
    names = table["test"].map(quantity) if isinstance(quantity, Mapping) else pd.Series(quantity, index=table.index)
    keys = pd.MultiIndex.from_arrays([names.to_numpy(), [str(i) for i in index]])
    element_ok = ok.reindex(keys).fillna(False).to_numpy(dtype=bool)
    out = table.copy()
    out["reliable"] = bool(passed) & element_ok
    return out


def mark_global_reliable(table: pd.DataFrame, quantities: pd.DataFrame, passed: bool) -> pd.DataFrame:
    """:func:`mark_reliable` for :func:`global_tests` rows (``global_prob``/``term_prob`` elements)."""
    return mark_reliable(table, quantities, passed, {"column": "global_prob", "term": "term_prob"}, table["name"])


def mark_local_reliable(table: pd.DataFrame, quantities: pd.DataFrame, passed: bool) -> pd.DataFrame:
    """:func:`mark_reliable` for :func:`local_tests` rows (``beta[taxon|column]`` elements)."""
    return mark_reliable(table, quantities, passed, "beta", table["taxon"] + "|" + table["column"])
