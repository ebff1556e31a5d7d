"""The MIMIX paper's simulation study (Section 4): settings, one replicate's metrics, aggregation.

Settings cross dense in {0, 0.1, 0.2}, error variance in {1, 4, 9}, block variance in {1, 4} and
form in {grouped, random}; dense 0 (no responding taxa) exists in the grouped form only, because
without effects the two forms are the same data-generating process: 30 settings. Each replicate
simulates one dataset (:mod:`mimix.simulate`, seeded from the base seed, the setting and the
replicate number), fits a model (or runs PERMANOVA) and reduces the result to one row of metrics:

* global test: the posterior probability that the treatment changes the composition, rejected when
  above the threshold (0.9, the paper's); PERMANOVA rejects when p < 0.05;
* local tests: a taxon is declared responding when its 95% interval excludes 0 (the paper's rule);
  true positive rate over the truly responding taxa, true negative rate over the others;
* estimation: mean squared error of the posterior mean of beta over all taxa (x100, as the paper's
  Table 1) and the fraction of taxa whose true effect lies in its 95% interval (coverage).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

import arviz as az
import numpy as np
import pandas as pd

from mimix.datastage import ModelInput
from mimix.design import build_blocks, build_design
from mimix.diagnostics import combine_chains
from mimix.engines import ChainSettings
from mimix.errors import InputError
from mimix.fitting import fit_chain
from mimix.permanova import permanova, permanova_design
from mimix.simulate import SimulatedData, SimulationSettings

PAPER_GRID: dict[str, tuple] = {
    "dense": (0.0, 0.1, 0.2),
    "error_var": (1.0, 4.0, 9.0),
    "block_var": (1.0, 4.0),
    "form": ("grouped", "random"),
}
METHOD_ORDER = ("mimix", "mimix_gaussian", "mimix_nofactor", "permanova")
METRIC_COLUMNS = [
    "setting",
    "replicate",
    "method",
    "dense",
    "error_var",
    "block_var",
    "form",
    "seed",
    "global_stat",
    "rejected",
    "mse_x100",
    "coverage",
    "tpr",
    "tnr",
    "n_responding",
    "n_declared",
    "max_rhat",
    "divergences",
    "seconds",
]


@dataclass(frozen=True)
class StudySetting:
    """One cell of the design."""

    dense: float
    error_var: float
    block_var: float
    form: str

    @property
    def name(self) -> str:
        return f"dense{self.dense:g}-error{self.error_var:g}-block{self.block_var:g}-{self.form}"

    @classmethod
    def from_name(cls, name: str) -> StudySetting:
        dense, error, block, form = name.split("-")
        return cls(float(dense[5:]), float(error[5:]), float(block[5:]), form)


def study_settings(grid: Mapping[str, Sequence] = PAPER_GRID) -> list[StudySetting]:
    """The crossed settings; dense 0 only in the first form (both forms are the same null)."""
    forms = list(grid["form"])
    out = []
    for dense, error, block, form in itertools.product(grid["dense"], grid["error_var"], grid["block_var"], forms):
        if float(dense) == 0 and form != forms[0]:
            continue
        out.append(StudySetting(float(dense), float(error), float(block), str(form)))
    return out


def text_seed(text: str) -> int:
    """A seed determined by a text (the same on every machine and in every job order)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def replicate_seed(base_seed: int, setting: str, replicate: int) -> int:
    """A seed that depends on the base seed, the setting and the replicate only (not on job order)."""
    return text_seed(f"{base_seed}:{setting}:{replicate}")


def simulator_options(options: Mapping | None) -> dict:
    """``simulation.data`` checked against the simulator's settings and given their types.

    Values from the command line arrive as text, so each is converted to its default's type.
    """
    known = {f.name: f.default for f in fields(SimulationSettings)}
    crossed = {"dense", "error_var", "block_var", "form", "seed"}
    out = {}
    for key, value in dict(options or {}).items():
        if key not in known or key in crossed:
            allowed = ", ".join(sorted(set(known) - crossed))
            raise InputError(f"simulation.data.{key}: not a simulator option here; use one of {allowed}")
        default = known[key]
        try:
            if isinstance(default, tuple):
                out[key] = tuple(value)
            elif isinstance(default, (bool, int, float, str)):
                out[key] = type(default)(value)
            else:
                out[key] = value
        except (TypeError, ValueError):
            raise InputError(f"simulation.data.{key}: {value!r} is not a {type(default).__name__}") from None
    return out


def simulation_settings(setting: StudySetting, seed: int, base: Mapping | None = None) -> SimulationSettings:
    """Simulator settings of one replicate: the paper's defaults, ``base`` overrides, then the setting."""
    settings = SimulationSettings(**simulator_options(base))
    return replace(
        settings,
        dense=setting.dense,
        error_var=setting.error_var,
        block_var=setting.block_var,
        form=setting.form,
        seed=seed,
    )


def model_input(data: SimulatedData) -> ModelInput:
    """The simulated dataset as the model stage sees it (no filtering: every taxon is analysed)."""
    metadata = data.metadata
    treatments = list(data.settings.treatments)
    reference = {name: data.settings.levels[0] for name in treatments}
    design = build_design(metadata, " + ".join(treatments), reference_levels=reference)
    blocks = build_blocks(metadata, ["block"], nested=True)
    taxa = pd.DataFrame({"label": data.counts.columns, "lineage": data.taxonomy.reindex(data.counts.columns)})
    taxa.index = data.counts.columns
    return ModelInput(counts=data.counts, X=design.X, terms=design.terms, blocks=blocks, taxa=taxa)


def interval_calls(beta_draws: np.ndarray, interval_level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-tailed interval per taxon and the paper's call (the interval excludes 0); draws x taxa."""
    alpha = (1 - interval_level) / 2
    lower, upper = np.quantile(beta_draws, [alpha, 1 - alpha], axis=0)
    return lower, upper, (lower > 0) | (upper < 0)


def column_draws(posterior, true_beta: pd.Series, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Draws x taxa of one treatment column of beta, and the true effects in the same taxon order."""
    beta = posterior["beta"].sel(column=column).transpose("chain", "draw", "taxon")
    truth = true_beta.reindex([str(t) for t in beta["taxon"].values]).to_numpy(dtype=float)
    return beta.values.reshape(-1, beta.sizes["taxon"]), truth


def max_rhat(posterior) -> float:
    """Largest R-hat over beta and the global probabilities (NaN with one chain)."""
    if posterior.sizes["chain"] < 2:
        return np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        rhat = az.rhat(posterior[["beta", "global_prob"]])
    return float(np.nanmax([np.nanmax(rhat[v].values) for v in rhat.data_vars]))


def local_metrics(
    beta_draws: np.ndarray, true_beta: np.ndarray, interval_level: float = 0.95
) -> dict[str, float | int]:
    """MSE (x100), coverage, TPR and TNR of one treatment column; ``beta_draws`` is draws x taxa."""
    lower, upper, declared = interval_calls(beta_draws, interval_level)
    mean = beta_draws.mean(axis=0)
    responding = true_beta != 0
    return {
        "mse_x100": float(100 * np.mean((mean - true_beta) ** 2)),
        "coverage": float(np.mean((lower <= true_beta) & (true_beta <= upper))),
        # No responding taxa (dense 0): the true positive rate is undefined, not 0 or 1.
        "tpr": float(declared[responding].mean()) if responding.any() else np.nan,
        "tnr": float((~declared[~responding]).mean()) if (~responding).any() else np.nan,
        "n_responding": int(responding.sum()),
        "n_declared": int(declared.sum()),
    }


def fit_replicate(
    model: str,
    data: ModelInput,
    engine: str,
    n_factors: int,
    settings: ChainSettings,
    chains: int,
    base_seed: int,
    inits: str,
    max_attempts: int,
    logger: logging.Logger,
) -> az.InferenceData:
    """All chains of one model on one replicate, one after the other (a replicate is one job)."""
    parts = [
        fit_chain(model, data, engine, n_factors, replace(settings, chain_id=c), base_seed, inits, max_attempts, logger)
        for c in range(1, chains + 1)
    ]
    return combine_chains(parts)


def model_metrics(
    idata: az.InferenceData, true_beta: pd.Series, column: str, threshold: float, interval_level: float
) -> dict[str, float | int]:
    """One row of metrics for a fitted model: global test, local tests, estimation, convergence."""
    posterior = idata.posterior
    draws, truth = column_draws(posterior, true_beta, column)
    global_prob = float(posterior["global_prob"].sel(column=column).mean())
    return {
        "global_stat": global_prob,
        "rejected": bool(global_prob > threshold),
        **local_metrics(draws, truth, interval_level),
        "max_rhat": max_rhat(posterior),
        "divergences": int(idata.sample_stats["diverging"].sum()),
    }


def permanova_metrics(data: ModelInput, n_perm: int, seed: int, alpha: float = 0.05) -> dict[str, float | int]:
    """PERMANOVA (Bray-Curtis, permutations within blocks) of the treatment; rejects when p < alpha."""
    terms = pd.DataFrame([(t, c) for t, cols in data.terms.items() for c in cols], columns=["term", "column"])
    labels = data.blocks.labels
    design = permanova_design(data.X, terms, labels.iloc[:, [0]])
    strata = labels.iloc[:, 0].astype(str).to_numpy()
    table = permanova(data.counts.to_numpy(), design, n_perm=n_perm, seed=seed, strata=strata)
    p_value = float(table.loc[next(iter(data.terms)), "Pr(>F)"])  # the treatment term, tested first
    return {"global_stat": p_value, "rejected": bool(p_value < alpha)}


def aggregate(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rejection rates per method and setting, Table 1: mean metrics per model and setting).

    Rejection rates carry a binomial standard error so that a few replicates are not over-read.
    """
    keys = ["dense", "error_var", "block_var", "form", "method"]
    grouped = rows.groupby(keys, sort=True)
    rejection = grouped.agg(replicates=("rejected", "size"), rejection_rate=("rejected", "mean")).reset_index()
    n = rejection["replicates"]
    rate = rejection["rejection_rate"]
    rejection["rejection_se"] = np.sqrt(rate * (1 - rate) / n)
    models = rows[rows["method"] != "permanova"]
    table1 = (
        models.groupby(keys, sort=True)
        .agg(
            replicates=("mse_x100", "size"),
            mse_x100=("mse_x100", "mean"),
            coverage=("coverage", "mean"),
            tpr=("tpr", "mean"),
            tnr=("tnr", "mean"),
            max_rhat=("max_rhat", "max"),
        )
        .reset_index()
    )
    order = {m: i for i, m in enumerate(METHOD_ORDER)}

    def paper_order(table: pd.DataFrame) -> pd.DataFrame:
        return table.sort_values(
            ["form", "dense", "error_var", "block_var", "method"],
            key=lambda s: s.map(order) if s.name == "method" else s,
            ignore_index=True,
        )

    return paper_order(rejection), paper_order(table1)


def table1_markdown(table1: pd.DataFrame) -> str:
    """Table 1 as a Markdown table (numbers rounded as the paper prints them)."""
    shown = _table1_display(table1)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def table1_latex(table1: pd.DataFrame) -> str:
    """Table 1 as a LaTeX tabular (booktabs), ready for a manuscript."""
    shown = _table1_display(table1)
    escape = str.maketrans({"_": r"\_", "%": r"\%", "&": r"\&"})
    lines = [
        r"\begin{tabular}{" + "l" * 4 + "l" + "r" * (shown.shape[1] - 5) + "}",
        r"\toprule",
        " & ".join(c.translate(escape) for c in shown.columns) + r" \\",
        r"\midrule",
        *(" & ".join(str(v).translate(escape) for v in row) + r" \\" for row in shown.itertuples(index=False)),
        r"\bottomrule",
        r"\end{tabular}",
    ]
    return "\n".join(lines) + "\n"


def _table1_display(table1: pd.DataFrame) -> pd.DataFrame:
    shown = table1.copy()
    shown["dense"] = (100 * shown["dense"]).round().astype(int).astype(str) + "%"
    for column in ("error_var", "block_var"):
        shown[column] = shown[column].map(lambda v: f"{v:g}")
    shown["mse_x100"] = shown["mse_x100"].map(lambda v: f"{v:.2f}")
    for column in ("coverage", "tpr", "tnr"):
        shown[column] = shown[column].map(lambda v: "-" if pd.isna(v) else f"{v:.3f}")
    shown["max_rhat"] = shown["max_rhat"].map(lambda v: "-" if pd.isna(v) else f"{v:.2f}")
    return shown.rename(
        columns={
            "error_var": "error var",
            "block_var": "block var",
            "mse_x100": "MSE x100",
            "tpr": "TPR",
            "tnr": "TNR",
            "max_rhat": "max R-hat",
        }
    )
