"""Convergence diagnostics of one model's chains: per monitored quantity, per chain, and a verdict.

Only quantities that mean the same thing in every chain are monitored (:data:`IDENTIFIED`).
The loadings ``Lambda``, the indicators ``omega``, the factor scores and the per-factor rows of
``incl_prob`` are identified only up to rotations, sign flips and relabelling of the factors, so
two chains that found the same posterior can still disagree on them; R-hat would flag them for
no reason. Everything derived from ``Lambda' Lambda`` (``beta``, ``lambda_diag``, ``eta``) and the
variances are invariant to those symmetries, and are monitored.

Per element (scalar) of each quantity: rank-normalized split R-hat, bulk and tail ESS and the
Monte Carlo standard error of the mean (Vehtari et al. 2021, as ArviZ computes them). Per chain:
divergent transitions, transitions that hit the maximum tree depth, E-BFMI, mean step size and
mean number of leapfrog steps. The verdict fails when any element has R-hat above ``rhat_max`` or
bulk ESS below ``ess_bulk_per_chain_min`` times the number of chains, when there are more than
``max_divergences`` divergences in total, or when a chain's E-BFMI is below ``ebfmi_min``.
Hitting the maximum tree depth costs efficiency, not validity: it is reported, never failed.

An element that is the same number in every draw of every chain (e.g. a ``global_prob`` of
exactly 1.0) has no variance, so R-hat and ESS are undefined (NaN); it is converged by any
reasonable definition and counts as OK, with a note in ``problem``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from mimix.errors import InputError

# Monitored quantities, in the order the tables list them (absent ones are skipped).
IDENTIFIED = ("beta", "global_prob", "term_prob", "sigma2", "sigma2_mu", "sigma2_g", "sigma2_b", "lambda_diag", "eta")
SAMPLE_DIMS = ("chain", "draw")
QUANTITY_COLUMNS = ["quantity", "index", "mean", "sd", "rhat", "ess_bulk", "ess_tail", "mcse_mean", "ok", "problem"]
CHAIN_COLUMNS = [
    "chain", "draws", "divergences", "treedepth_hits", "max_treedepth", "ebfmi", "mean_step_size", "mean_n_steps",
    "mean_acceptance_rate",
]  # fmt: skip
# Per-chain run settings copied from the chain files' attributes into the chain table.
CHAIN_ATTRIBUTES = (
    "engine", "adapt_delta", "max_treedepth", "warmup", "sampling_seconds", "warmup_seconds_stan",
    "sampling_seconds_stan", "seconds_per_gradient",
)  # fmt: skip
# Above this R-hat the chains disagree about where the posterior is, not just how well they mixed.
RHAT_DISAGREE = 1.1


@dataclass(frozen=True)
class Thresholds:
    """Pass/fail limits of the verdict (config ``inference.diagnostics``)."""

    rhat_max: float = 1.01
    ess_bulk_per_chain_min: float = 100.0
    max_divergences: int = 0
    ebfmi_min: float = 0.3

    @classmethod
    def from_config(cls, section: Mapping | None) -> Thresholds:
        """Thresholds from a config section; keys it does not know (e.g. ``strict``) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (section or {}).items() if k in known})


@dataclass
class Diagnostics:
    """The three diagnostics tables of one model."""

    quantities: pd.DataFrame  # one row per scalar element, QUANTITY_COLUMNS
    chains: pd.DataFrame  # one row per chain, CHAIN_COLUMNS (+ run settings)
    verdict: pd.DataFrame  # one row, indexed by model


def read_chains(paths: Sequence[str | Path]) -> list[az.InferenceData]:
    """Load chain files (ArviZ netCDF) fully into memory, in the given order."""
    chains = []
    for path in paths:
        idata = az.from_netcdf(str(path))
        for group in ("posterior", "sample_stats"):
            if group in idata.groups():
                getattr(idata, group).load()
        chains.append(idata)
    return chains


def combine_chains(chains: Sequence[az.InferenceData]) -> az.InferenceData:
    """Concatenate single- or multi-chain InferenceData along ``chain``.

    The ``chain`` coordinate becomes the chains' ``chain`` attribute (the chain number of the
    fit rule) when every part has one and they are distinct, else 0..n-1, so tables name chains
    the way the chain files do.
    """
    if not chains:
        raise InputError("no chains to combine: the model has no chain files")
    draws = {int(c.posterior.sizes["draw"]) for c in chains}
    if len(draws) > 1:
        raise InputError(
            f"chains have different numbers of draws {sorted(draws)}: refit them with the same sampling.draws"
        )
    combined = az.concat(*chains, dim="chain") if len(chains) > 1 else chains[0].copy()
    ids = chain_ids(chains)
    for group in combined.groups():
        dataset = getattr(combined, group)
        if "chain" in dataset.dims and dataset.sizes["chain"] == len(ids):
            setattr(combined, group, dataset.assign_coords(chain=ids))
    return combined


def chain_ids(chains: Sequence[az.InferenceData]) -> list[int]:
    """Chain numbers from the parts' ``chain`` attributes, or 0..n-1 when missing or repeated."""
    ids: list[int] = []
    for part in chains:
        attr = part.posterior.attrs.get("chain")
        n = int(part.posterior.sizes["chain"])
        if attr is None or n != 1:
            return list(range(sum(int(c.posterior.sizes["chain"]) for c in chains)))
        ids.append(int(attr))
    return ids if len(set(ids)) == len(ids) else list(range(len(ids)))


def chain_attributes(chains: Sequence[az.InferenceData]) -> pd.DataFrame:
    """Run settings of each chain (:data:`CHAIN_ATTRIBUTES` found in its attributes), indexed by chain."""
    rows = []
    for part in chains:
        attrs = part.sample_stats.attrs if "sample_stats" in part.groups() else part.posterior.attrs
        rows.append({key: attrs[key] for key in CHAIN_ATTRIBUTES if key in attrs})
    return pd.DataFrame(rows, index=pd.Index(chain_ids(chains), name="chain"))


def monitored_variables(posterior: xr.Dataset) -> list[str]:
    """The identified quantities present in ``posterior``, in :data:`IDENTIFIED` order."""
    return [name for name in IDENTIFIED if name in posterior.data_vars]


def element_labels(da: xr.DataArray) -> list[str]:
    """One label per scalar element: coordinate values of the non-sample dims joined by ``|``.

    ``beta[taxon003, nutrient[treated]]`` becomes ``taxon003|nutrient[treated]``; a scalar
    quantity has the empty label.
    """
    dims = [d for d in da.dims if d not in SAMPLE_DIMS]
    if not dims:
        return [""]
    grids = np.meshgrid(*[da[d].values for d in dims], indexing="ij")
    return ["|".join(str(v) for v in values) for values in zip(*(g.ravel() for g in grids), strict=True)]


def quantity_diagnostics(posterior: xr.Dataset, thresholds: Thresholds | None = None) -> pd.DataFrame:
    """R-hat, ESS and MCSE per scalar element of every monitored quantity (:data:`QUANTITY_COLUMNS`)."""
    thresholds = thresholds or Thresholds()
    names = monitored_variables(posterior)
    if not names:
        raise InputError(f"the posterior has none of the monitored quantities {', '.join(IDENTIFIED)}")
    n_chains = int(posterior.sizes["chain"])
    ess_min = thresholds.ess_bulk_per_chain_min * n_chains
    data = posterior[names]
    # Constant elements make ArviZ divide 0 by 0; their NaNs are handled below, the warning is noise.
    with np.errstate(divide="ignore", invalid="ignore"):
        stats = {
            "rhat": az.rhat(data, method="rank"),
            "ess_bulk": az.ess(data, method="bulk"),
            "ess_tail": az.ess(data, method="tail"),
            "mcse_mean": az.mcse(data, method="mean"),
        }
    frames = []
    for name in names:
        draws = data[name]
        other_dims = [d for d in draws.dims if d not in SAMPLE_DIMS]
        flat = draws.transpose(*SAMPLE_DIMS, *other_dims).values.reshape(n_chains * draws.sizes["draw"], -1)
        frame = pd.DataFrame({"quantity": name, "index": element_labels(draws)})
        with np.errstate(invalid="ignore"):
            frame["mean"] = flat.mean(axis=0)
            frame["sd"] = flat.std(axis=0, ddof=1) if flat.shape[0] > 1 else np.nan
        for key, values in stats.items():
            frame[key] = values[name].transpose(*other_dims).values.ravel()
        finite = np.isfinite(flat).all(axis=0)
        constant = finite & (np.ptp(flat, axis=0) == 0)
        frame.loc[constant, ["rhat", "ess_bulk", "ess_tail"]] = np.nan
        frame["ok"], frame["problem"] = _judge(frame, finite, constant, thresholds.rhat_max, ess_min)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[QUANTITY_COLUMNS]


def _judge(
    frame: pd.DataFrame, finite: np.ndarray, constant: np.ndarray, rhat_max: float, ess_min: float
) -> tuple[np.ndarray, list[str]]:
    """``ok`` flag and ``problem`` text of each element."""
    ok, problems = [], []
    for rhat, ess, is_finite, is_constant in zip(frame["rhat"], frame["ess_bulk"], finite, constant, strict=True):
        if not is_finite:
            ok.append(False)
            problems.append("non-finite draws (NaN or inf)")
        elif is_constant:
            ok.append(True)
            problems.append("constant in every draw: R-hat and ESS undefined, treated as converged")
        else:
            parts = []
            # NaN R-hat/ESS of a non-constant element (e.g. too few draws) fails: nothing shows convergence.
            if not rhat <= rhat_max:
                parts.append(f"rhat {rhat:.3f} > {rhat_max:g}")
            if not ess >= ess_min:
                parts.append(f"ess_bulk {ess:.0f} < {ess_min:g}")
            ok.append(not parts)
            problems.append("; ".join(parts))
    return np.array(ok, dtype=bool), problems


def chain_diagnostics(sample_stats: xr.Dataset, max_treedepth: int | Sequence[int] | None = None) -> pd.DataFrame:
    """Sampler behaviour per chain (:data:`CHAIN_COLUMNS`), indexed by position.

    ``max_treedepth`` (one value, or one per chain) defaults to the ``max_treedepth`` attribute
    of ``sample_stats``; without either, tree-depth hits are NaN.
    """
    n_chains = int(sample_stats.sizes["chain"])
    if max_treedepth is None:
        max_treedepth = sample_stats.attrs.get("max_treedepth", np.nan)
    depth_limit = np.broadcast_to(np.asarray(max_treedepth, dtype=float), (n_chains,))

    def per_chain(name: str, reduce: str) -> np.ndarray:
        if name not in sample_stats:
            return np.full(n_chains, np.nan)
        values = sample_stats[name].transpose("chain", "draw").values.astype(float)
        return getattr(values, reduce)(axis=1)

    hits = pd.array([pd.NA] * n_chains, dtype="Int64")
    if "tree_depth" in sample_stats:
        depth = sample_stats["tree_depth"].transpose("chain", "draw").values
        counted = (depth >= depth_limit[:, None]).sum(axis=1)
        hits = pd.array(
            [int(c) if np.isfinite(lim) else pd.NA for c, lim in zip(counted, depth_limit, strict=True)],
            dtype="Int64",
        )
    if "energy" in sample_stats:
        ebfmi = np.asarray(az.bfmi(sample_stats["energy"].transpose("chain", "draw").values), dtype=float)
    else:
        ebfmi = np.full(n_chains, np.nan)
    table = pd.DataFrame(
        {
            "chain": sample_stats["chain"].values,
            "draws": int(sample_stats.sizes["draw"]),
            "divergences": per_chain("diverging", "sum").astype(int) if "diverging" in sample_stats else 0,
            "treedepth_hits": hits,
            "max_treedepth": pd.array([int(v) if np.isfinite(v) else pd.NA for v in depth_limit], dtype="Int64"),
            "ebfmi": ebfmi,
            "mean_step_size": per_chain("step_size", "mean"),
            "mean_n_steps": per_chain("n_steps", "mean"),
            "mean_acceptance_rate": per_chain("acceptance_rate", "mean"),
        }
    )
    return table[CHAIN_COLUMNS]


def verdict(
    quantities: pd.DataFrame,
    chains: pd.DataFrame,
    thresholds: Thresholds | None = None,
    model: str = "model",
    adapt_delta: float | None = None,
) -> pd.DataFrame:
    """One-row pass/fail summary with a message saying what fails and what to change."""
    thresholds = thresholds or Thresholds()
    n_chains = len(chains)
    ess_min = thresholds.ess_bulk_per_chain_min * n_chains
    measured = quantities[quantities["rhat"].notna()]
    rhat_fail = quantities[~quantities["ok"] & ~(quantities["rhat"] <= thresholds.rhat_max)]
    ess_fail = quantities[~quantities["ok"] & ~(quantities["ess_bulk"] >= ess_min)]
    nonfinite = quantities[quantities["problem"].str.startswith("non-finite")]
    rhat_fail = rhat_fail.drop(nonfinite.index)
    ess_fail = ess_fail.drop(nonfinite.index)
    constant = quantities[quantities["problem"].str.startswith("constant")]
    divergences = int(np.nansum(chains["divergences"]))
    hits = int(chains["treedepth_hits"].fillna(0).sum())
    low_ebfmi = chains[chains["ebfmi"] < thresholds.ebfmi_min]
    worst = measured.loc[measured["rhat"].idxmax()] if len(measured) else None
    least = measured.loc[measured["ess_bulk"].idxmin()] if len(measured) else None
    passed = (
        rhat_fail.empty
        and ess_fail.empty
        and nonfinite.empty
        and divergences <= thresholds.max_divergences
        and low_ebfmi.empty
    )
    row = {
        "passed": bool(passed),
        "chains": n_chains,
        "draws": int(chains["draws"].sum()) if n_chains else 0,
        "quantities": len(quantities),
        "failing_rhat": len(rhat_fail),
        "failing_ess_bulk": len(ess_fail),
        "failing_nonfinite": len(nonfinite),
        "constant": len(constant),
        "worst_rhat": float(worst["rhat"]) if worst is not None else np.nan,
        "worst_rhat_at": _element_name(worst) if worst is not None else "",
        "min_ess_bulk": float(least["ess_bulk"]) if least is not None else np.nan,
        "min_ess_bulk_at": _element_name(least) if least is not None else "",
        "divergences": divergences,
        "treedepth_hits": hits,
        "min_ebfmi": float(chains["ebfmi"].min()) if n_chains else np.nan,
        "chains_low_ebfmi": len(low_ebfmi),
    }
    row["message"] = _message(
        row, quantities, thresholds, ess_min, rhat_fail, ess_fail, nonfinite, low_ebfmi, chains, adapt_delta
    )
    return pd.DataFrame([row], index=pd.Index([model], name="model"))


def _element_name(row: pd.Series) -> str:
    return f"{row['quantity']}[{row['index']}]" if row["index"] else str(row["quantity"])


def _by_quantity(failing: pd.DataFrame, quantities: pd.DataFrame) -> str:
    """``beta (3 of 105), sigma2 (1 of 35)``: which quantities fail, and how many of their elements."""
    totals = quantities["quantity"].value_counts()
    counts = failing["quantity"].value_counts(sort=False)
    order = [q for q in IDENTIFIED if q in counts.index] + [q for q in counts.index if q not in IDENTIFIED]
    return ", ".join(f"{q} ({counts[q]} of {totals[q]})" for q in order)


def _message(
    row: dict,
    quantities: pd.DataFrame,
    thresholds: Thresholds,
    ess_min: float,
    rhat_fail: pd.DataFrame,
    ess_fail: pd.DataFrame,
    nonfinite: pd.DataFrame,
    low_ebfmi: pd.DataFrame,
    chains: pd.DataFrame,
    adapt_delta: float | None,
) -> str:
    notes = []
    if row["constant"]:
        notes.append(f"{row['constant']} element(s) constant in every draw (treated as converged)")
    if row["treedepth_hits"]:
        notes.append(
            f"{row['treedepth_hits']} transition(s) hit the maximum tree depth: sampling is slower than it "
            "could be, not wrong; raise sampling.max_treedepth if runs take too long"
        )
    if row["passed"]:
        head = (
            f"passed: all {row['quantities']} monitored elements converged (worst R-hat "
            f"{row['worst_rhat']:.3f} <= {thresholds.rhat_max:g}, min bulk ESS {row['min_ess_bulk']:.0f} >= "
            f"{ess_min:g}), {row['divergences']} divergence(s), min E-BFMI {row['min_ebfmi']:.2f} >= "
            f"{thresholds.ebfmi_min:g}"
        )
        return "; ".join([head, *notes])
    failures, advice = [], []
    if not rhat_fail.empty:
        failures.append(
            f"R-hat > {thresholds.rhat_max:g} in {_by_quantity(rhat_fail, quantities)} "
            f"(worst {row['worst_rhat']:.3f} at {row['worst_rhat_at']})"
        )
    if not ess_fail.empty:
        failures.append(
            f"bulk ESS < {ess_min:g} in {_by_quantity(ess_fail, quantities)} "
            f"(lowest {row['min_ess_bulk']:.0f} at {row['min_ess_bulk_at']})"
        )
    if not nonfinite.empty:
        failures.append(f"non-finite draws in {_by_quantity(nonfinite, quantities)}")
    if row["divergences"] > thresholds.max_divergences:
        where = chains.loc[chains["divergences"] > 0, "chain"].tolist()
        failures.append(
            f"{row['divergences']} divergent transition(s) (allowed {thresholds.max_divergences}) in chain(s) "
            f"{', '.join(str(c) for c in where)}"
        )
    if not low_ebfmi.empty:
        failures.append(
            f"E-BFMI below {thresholds.ebfmi_min:g} in chain(s) "
            + ", ".join(f"{c} ({v:.2f})" for c, v in zip(low_ebfmi["chain"], low_ebfmi["ebfmi"], strict=True))
        )
    if not (rhat_fail.empty and ess_fail.empty):
        if row["worst_rhat"] > RHAT_DISAGREE:
            advice.append(
                f"R-hat above {RHAT_DISAGREE:g} means the chains disagree about the posterior, not just that "
                "they are short: look at trace plots for chains stuck in different modes, try sampling.inits, "
                "and check the model before running longer"
            )
        advice.append("run longer chains (raise sampling.warmup and sampling.draws, or add chains)")
    if row["divergences"] > thresholds.max_divergences:
        now = f" (now {adapt_delta:g})" if adapt_delta is not None else ""
        advice.append(
            f"raise sampling.adapt_delta{now} towards 0.99; divergences that persist mean the posterior "
            "geometry defeats the sampler and the results may be biased: check the model and priors"
        )
    if not low_ebfmi.empty:
        advice.append(
            "low E-BFMI means the sampler explores the energy distribution poorly (often heavy-tailed "
            "variance parameters): raise sampling.warmup, and if it persists check the model's parametrization"
        )
    if not nonfinite.empty:
        advice.append("non-finite draws point to overflow in the model: check the model and the data")
    return "; ".join(["FAILED: " + "; ".join(failures), "to fix: " + "; ".join(advice), *notes])


def diagnose(
    chains: Sequence[az.InferenceData],
    thresholds: Thresholds | None = None,
    model: str | None = None,
) -> Diagnostics:
    """All diagnostics of one model from its chains (one InferenceData per chain, or already combined)."""
    thresholds = thresholds or Thresholds()
    combined = combine_chains(chains)
    attrs = chain_attributes(chains) if all(int(c.posterior.sizes["chain"]) == 1 for c in chains) else None
    depth = None
    if attrs is not None and "max_treedepth" in attrs:
        depth = attrs["max_treedepth"].to_numpy(dtype=float)
    quantities = quantity_diagnostics(combined.posterior, thresholds)
    chain_table = chain_diagnostics(combined.sample_stats, depth)
    if attrs is not None:
        extra = attrs.drop(columns=[c for c in attrs.columns if c in chain_table.columns and c != "chain"])
        chain_table = chain_table.merge(extra, left_on="chain", right_index=True, how="left")
    model = model or str(combined.posterior.attrs.get("model", "model"))
    adapt_delta = combined.posterior.attrs.get("adapt_delta")
    summary = verdict(quantities, chain_table, thresholds, model, adapt_delta)
    methods = {str(c.posterior.attrs.get("method", "nuts")) for c in chains}
    if methods != {"nuts"}:
        summary = approximate_verdict(summary, methods, [c.posterior.attrs.get("pareto_khat") for c in chains])
    return Diagnostics(quantities=quantities, chains=chain_table, verdict=summary)


def approximate_verdict(summary: pd.DataFrame, methods: set[str], khats: Sequence) -> pd.DataFrame:
    """Approximate draws never pass: every table built on them is marked not reliable, and the message says why."""
    values = [float(k) for k in khats if k is not None and np.isfinite(float(k))]
    khat = f"; Pareto k up to {max(values):.2f} (above 0.7: a poor approximation)" if values else ""
    out = summary.copy()
    out["passed"] = False
    out["message"] = (
        f"APPROXIMATE ({', '.join(sorted(methods))}): draws from a normal approximation, not MCMC; R-hat and ESS "
        f"only measure agreement between independent paths{khat}. Use for a first look; rerun with "
        "sampling.method: nuts for results to report. " + out["message"].astype(str)
    )
    return out


def read_quantities(path: str | Path) -> pd.DataFrame:
    """A ``quantities.tsv`` written by the diagnostics rule, with ``index`` as text and ``ok`` as bool."""
    # Only empty cells are missing: a taxon id such as "NA" must stay a label.
    table = pd.read_csv(path, sep="\t", dtype={"index": str}, keep_default_na=False, na_values=[""])
    table["index"] = table["index"].fillna("")
    table["ok"] = table["ok"].astype(str) == "True"
    return table


def read_passed(path: str | Path) -> bool:
    """The ``passed`` flag of a ``verdict.tsv`` written by the diagnostics rule."""
    return str(pd.read_csv(path, sep="\t")["passed"].iloc[0]) == "True"
