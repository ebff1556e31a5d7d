"""The three MIMIX variants: their Stan files, the data they take and what is saved per draw.

theta (N x K per draw; ~440,000 numbers for the full NutNet data) is never saved: only the
quantities below are kept from each chain, with named dimensions for ArviZ.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mimix.datastage import ModelInput

STAN_DIR = Path(__file__).resolve().parents[2] / "workflow" / "stan"
MODELS = ("mimix", "mimix_gaussian", "mimix_nofactor")
A_GRID = np.round(np.arange(1, 51) / 100, 2)  # Dirichlet concentration grid 0.01, ..., 0.50


# Saved quantity -> its dimensions (the names of the netCDF/ArviZ dims). The spike-and-slab
# indicators live on factor rows in the factor models and on taxa in the model without factors.
def _saved(indicator_dim: str) -> dict[str, tuple[str, ...]]:
    return {
        "beta": ("taxon", "column"),
        "incl_prob": (indicator_dim, "column"),
        "omega": (indicator_dim, "column"),
        "global_prob": ("column",),
        "term_prob": ("term",),
        "pi": ("column",),
        "mu": ("taxon",),
        "sigma2": ("taxon",),
        "sigma2_mu": (),
        "sigma2_g": ("blocking_factor",),
        "sigma2_b": ("column",),
    }


_FACTOR_MODEL_VARIABLES = _saved("factor") | {
    "lambda_diag": ("taxon",),
    "eta": ("taxon",),
    "Lambda": ("factor", "taxon"),
    # Factor scores (N x L, small): with mu, Lambda and sigma2 they give the predictive checks.
    "F": ("sample", "factor"),
}
SAVED_VARIABLES: dict[str, dict[str, tuple[str, ...]]] = {
    "mimix": _FACTOR_MODEL_VARIABLES,
    "mimix_gaussian": _FACTOR_MODEL_VARIABLES,
    # Hierarchically centred level means (R x K): the block effects for the predictive checks.
    "mimix_nofactor": _saved("taxon") | {"h": ("level", "taxon")},
}


def stan_file(model: str) -> Path:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {MODELS}")
    return STAN_DIR / f"{model}.stan"


def program_code(model: str) -> str:
    """The model's Stan program with ``#include`` lines expanded (PyStan takes one string)."""
    return expand_includes(stan_file(model))


def expand_includes(path: Path, seen: tuple[Path, ...] = ()) -> str:
    """Inline ``#include file`` lines, resolved against the including file's folder and ``include/``."""
    if path in seen:
        raise ValueError(f"{path}: circular #include")
    lines = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#include"):
            name = stripped[len("#include") :].strip().strip("\"<>'")
            candidates = [path.parent / name, STAN_DIR / "include" / name, STAN_DIR / name]
            target = next((c for c in candidates if c.exists()), None)
            if target is None:
                raise FileNotFoundError(f"{path}: #include {name} not found in {[str(c.parent) for c in candidates]}")
            lines.append(expand_includes(target, (*seen, path)))
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def program_hash(model: str) -> str:
    """Hash of the expanded program: compiled models are cached under it."""
    return hashlib.sha256(program_code(model).encode()).hexdigest()[:16]


def stan_data(model_input: ModelInput, n_factors: int) -> dict:
    """The data block shared by all three variants (see workflow/stan/*.stan)."""
    counts = model_input.counts
    blocks = model_input.blocks
    columns = list(model_input.X.columns)
    term_cols = np.array(
        [[1 if c in cols else 0 for c in columns] for cols in model_input.terms.values()], dtype=int
    ).reshape(len(model_input.terms), len(columns))
    n_factors_blocking = blocks.labels.shape[1]
    return {
        "N": int(counts.shape[0]),
        "K": int(counts.shape[1]),
        "P": len(columns),
        "L": int(n_factors),
        "Q": int(n_factors_blocking),
        "R": len(blocks.levels),
        "Y": counts.to_numpy(dtype=int),
        "X": model_input.X.loc[counts.index].to_numpy(dtype=float),
        "block": blocks.index_matrix().reshape(counts.shape[0], n_factors_blocking),
        "level_factor": np.array(blocks.level_factor(), dtype=int),
        "level_parent": np.array(blocks.parent, dtype=int),
        "T": int(term_cols.shape[0]),
        "term_cols": term_cols,
        "A": len(A_GRID),
        "a_grid": A_GRID,
    }


def coordinates(model_input: ModelInput, n_factors: int) -> dict[str, list]:
    """Coordinate values of every dimension used in :data:`SAVED_VARIABLES`."""
    return {
        "taxon": list(model_input.counts.columns),
        "column": list(model_input.X.columns),
        "term": list(model_input.terms),
        "factor": list(range(1, n_factors + 1)),
        "blocking_factor": list(model_input.blocks.labels.columns),
        "sample": list(model_input.counts.index),
        "level": [f"{factor}:{label}" for factor, label in model_input.blocks.levels],
    }
