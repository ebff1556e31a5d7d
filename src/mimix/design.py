"""Treatment design (formula -> X) and blocking factors (-> level indices).

Dummy coding (documented in config/README.md): every categorical variable uses
treatment (reference) coding; its reference level is ``design.reference_levels[column]``
or else the first level in sorted order. The intercept is dropped: MIMIX's taxon means
``mu`` play its role, so X holds only treatment contrasts. Column names are readable:
``nutrient[yes]``, ``nutrient[yes]:fence[out]``, ``ph``.

Blocking factors are metadata columns listed outermost first (``[site, block]``). With
``nested: true`` each level is labelled by its path (``A/1``), so block "1" of site A and
block "1" of site B are distinct levels, as they are in the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mimix.errors import InputError, truncated_list

# The exact marginalization of the spike-and-slab indicators sums over 2^P patterns per
# factor row; beyond 6 columns (64 patterns) the per-gradient cost grows too fast.
MAX_TREATMENT_COLUMNS = 6


@dataclass
class Design:
    """Treatment design matrix and the formula terms its columns belong to."""

    X: pd.DataFrame  # samples x columns, float
    terms: dict[str, list[str]]  # term name -> its columns, in formula order


@dataclass
class Blocks:
    """Blocking factor levels per sample, with global level indices for Stan."""

    labels: pd.DataFrame  # samples x factors, level labels (distinct across nesting)
    levels: list[tuple[str, str]]  # (factor, label) for level index 1..R
    parent: list[int]  # 1-based index of the containing level of the previous factor, or 0

    def index_matrix(self) -> np.ndarray:
        """N x Q matrix of 1-based level indices (levels counted across all factors)."""
        lookup = {level: i + 1 for i, level in enumerate(self.levels)}
        return np.array(
            [
                [lookup[(factor, label)] for factor, label in zip(self.labels.columns, row, strict=True)]
                for row in self.labels.itertuples(index=False)
            ],
            dtype=int,
        ).reshape(len(self.labels), len(self.labels.columns))

    def level_factor(self) -> list[int]:
        """1-based blocking factor of each level."""
        factors = list(self.labels.columns)
        return [factors.index(factor) + 1 for factor, _ in self.levels]


def formula_variables(formula: str) -> list[str]:
    """Metadata columns named in a formula (identifiers that are not functions or keywords)."""
    names = re.findall(r"[A-Za-z_.][A-Za-z0-9_.]*", formula)
    functions = set(re.findall(r"([A-Za-z_.][A-Za-z0-9_.]*)\s*\(", formula))
    # Only call syntax marks a function: a metadata column may well be named 'treatment' or 'scale'.
    reserved = {"np"}
    seen: list[str] = []
    for name in names:
        if name in functions or name in reserved or name.startswith("np.") or name in seen:
            continue
        seen.append(name)
    return seen


def is_numeric_column(values: pd.Series) -> bool:
    """True when every non-missing value parses as a number."""
    present = values.dropna()
    return len(present) > 0 and pd.to_numeric(present, errors="coerce").notna().all()


def typed_metadata(
    metadata: pd.DataFrame,
    columns: list[str],
    column_types: dict[str, str],
    categorical: list[str],
    reference_levels: dict[str, str],
) -> pd.DataFrame:
    """The named metadata columns as numbers (continuous) or ordered categoricals.

    A column is categorical when declared so (``design.categorical`` or a ``#q2:types``
    row) or when any value is not a number. Levels are sorted (numerically when they all
    are numbers) with the configured reference level moved first.
    """
    typed = pd.DataFrame(index=metadata.index)
    for col in columns:
        values = metadata[col]
        declared = column_types.get(col)
        if col in categorical or declared == "categorical" or (declared != "numeric" and not is_numeric_column(values)):
            labels = values.astype(object).where(values.notna(), None)
            levels = sorted({str(v) for v in labels if v is not None}, key=_level_sort_key)
            reference = reference_levels.get(col)
            if reference is not None:
                levels.remove(str(reference))
                levels.insert(0, str(reference))
            typed[col] = pd.Categorical([None if v is None else str(v) for v in labels], categories=levels)
        else:
            typed[col] = pd.to_numeric(values, errors="coerce").astype(float)
    return typed


def _level_sort_key(level: str) -> tuple[int, float | str]:
    try:
        return (0, float(level))
    except ValueError:
        return (1, level)


def _readable(name: str) -> str:
    """``nutrient[T.yes]`` -> ``nutrient[yes]``."""
    return name.replace("[T.", "[")


def build_design(
    metadata: pd.DataFrame,
    formula: str,
    column_types: dict[str, str] | None = None,
    categorical: list[str] | None = None,
    reference_levels: dict[str, str] | None = None,
) -> Design:
    """Build X (no intercept, treatment coding) from a formula over metadata columns.

    Raises :class:`InputError` for unknown columns, missing values, single-level
    treatments, unknown reference levels and rank-deficient designs.
    """
    import formulaic  # imported here: slow import, and only this step needs it

    column_types = column_types or {}
    categorical = list(categorical or [])
    reference_levels = {k: str(v) for k, v in (reference_levels or {}).items()}
    variables = formula_variables(formula)
    problems = []
    unknown = [v for v in variables if v not in metadata.columns]
    if unknown:
        problems.append(
            f"design.formula: {truncated_list(unknown)} not a metadata column; "
            f"available columns: {truncated_list(metadata.columns, 12)}"
        )
    for col, level in reference_levels.items():
        if col in metadata.columns and level not in set(metadata[col].dropna().astype(str)):
            problems.append(
                f"design.reference_levels: {level!r} is not a level of {col!r} "
                f"(levels: {truncated_list(sorted(set(metadata[col].dropna().astype(str))))}); fix the config"
            )
    if problems:
        raise InputError(problems)
    for col in variables:
        missing = metadata.index[metadata[col].isna()]
        if len(missing):
            problems.append(
                f"metadata column {col!r}: missing value for sample(s) {truncated_list(missing)}; "
                "fill them in or remove those samples"
            )
    typed = typed_metadata(metadata, variables, column_types, categorical, reference_levels)
    for col in variables:
        observed = typed[col].dropna().unique()
        if len(observed) < 2:
            problems.append(
                f"metadata column {col!r}: treatment has a single level ({truncated_list(observed)}) "
                "among the analysed samples; remove it from design.formula"
            )
    if problems:
        raise InputError(problems)
    try:
        matrix = formulaic.model_matrix(formula, typed, na_action="raise")
    except Exception as err:  # formulaic's errors explain the formula problem well
        raise InputError(f"design.formula {formula!r} cannot be evaluated: {err}") from err
    terms: dict[str, list[str]] = {}
    for term, columns in matrix.model_spec.term_slices.items():
        names = [_readable(c) for c in matrix.columns[columns]]
        if str(term) != "1":
            terms[str(term)] = names
    X = pd.DataFrame(
        np.asarray(matrix, dtype=float), index=metadata.index, columns=[_readable(c) for c in matrix.columns]
    )
    X = X.drop(columns=["Intercept"], errors="ignore")
    if X.shape[1] == 0:
        raise InputError(f"design.formula {formula!r} gives no treatment columns; name at least one metadata column")
    check_rank(X)
    if X.shape[1] > MAX_TREATMENT_COLUMNS:
        raise InputError(
            f"design.formula {formula!r} gives {X.shape[1]} columns ({truncated_list(X.columns, 8)}) but MIMIX "
            f"marginalizes 2^P inclusion patterns and allows at most {MAX_TREATMENT_COLUMNS}; "
            "drop terms or interactions"
        )
    return Design(X=X, terms=terms)


def check_rank(X: pd.DataFrame) -> None:
    """Refuse a design whose columns (with an intercept) are linearly dependent."""
    with_intercept = np.column_stack([np.ones(len(X)), X.to_numpy()])
    rank = np.linalg.matrix_rank(with_intercept)
    if rank < with_intercept.shape[1]:
        # Name the first column that adds nothing to the ones before it.
        for j in range(1, with_intercept.shape[1]):
            if np.linalg.matrix_rank(with_intercept[:, : j + 1]) <= j:
                aliased = X.columns[j - 1]
                break
        raise InputError(
            f"design: rank-deficient design matrix ({rank} independent of {with_intercept.shape[1]} columns incl. "
            f"intercept); column {aliased!r} is a combination of earlier ones (a constant, a duplicate, or a "
            "treatment cell with no samples); simplify the formula"
        )


def build_blocks(metadata: pd.DataFrame, factors: list[str], nested: bool = True) -> Blocks:
    """Level labels per sample for each blocking factor, distinct across nesting."""
    problems = []
    for col in factors:
        if col not in metadata.columns:
            problems.append(
                f"design.blocking: {col!r} is not a metadata column; available: {truncated_list(metadata.columns, 12)}"
            )
        else:
            missing = metadata.index[metadata[col].isna()]
            if len(missing):
                problems.append(
                    f"metadata column {col!r}: blocking factor has missing values for sample(s) "
                    f"{truncated_list(missing)}; fill them in or remove those samples"
                )
    if problems:
        raise InputError(problems)
    labels = pd.DataFrame(index=metadata.index)
    for q, col in enumerate(factors):
        raw = metadata[col].astype(str)
        labels[col] = labels[factors[q - 1]] + "/" + raw if (nested and q > 0) else raw
    return blocks_from_labels(labels, nested)


def blocks_from_labels(labels: pd.DataFrame, nested: bool = True) -> Blocks:
    """Index the levels of a samples x factors label table (levels sorted within each factor)."""
    factors = list(labels.columns)
    levels: list[tuple[str, str]] = []
    parent: list[int] = []
    for q, col in enumerate(factors):
        for label in sorted(labels[col].unique(), key=_level_sort_key):
            levels.append((col, label))
            if nested and q > 0:
                outer = labels.loc[labels[col] == label, factors[q - 1]].iloc[0]
                parent.append(levels.index((factors[q - 1], outer)) + 1)
            else:
                parent.append(0)
    return Blocks(labels=labels, levels=levels, parent=parent)
