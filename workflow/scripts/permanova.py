"""PERMANOVA rule: the distance-based baseline on the analysed counts, treatment terms then blocking factors."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mimix.datastage import read_table, write_tsv  # noqa: E402
from mimix.errors import InputError  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.permanova import permanova  # noqa: E402

# vegan's column names -> the tidy names of the output table.
COLUMNS = {"Df": "df", "SumOfSqs": "sum_of_squares", "R2": "r2", "F": "F", "Pr(>F)": "p_value"}


def permanova_design(design: pd.DataFrame, terms: pd.DataFrame, blocks: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """Treatment terms in formula order (their columns of X), then each blocking factor, dummy coded.

    Blocking factors use treatment coding without intercept (one 0/1 column per level but the
    first in sorted order); sequential SS make the dropped level irrelevant, and a nested
    factor's columns aliased with its parent's are dropped by the PERMANOVA's QR.
    """
    blocks_per_term: dict[str, list[str]] = {}
    for term, column in terms[["term", "column"]].itertuples(index=False):
        blocks_per_term.setdefault(str(term), []).append(str(column))
    missing = [c for cols in blocks_per_term.values() for c in cols if c not in design.columns]
    if missing:
        raise InputError(f"terms.tsv names columns {missing} that design.tsv lacks: rerun the data stage")
    out = [(term, design[cols].to_numpy(dtype=float)) for term, cols in blocks_per_term.items()]
    for factor in blocks.columns:
        levels = blocks[factor].astype(str)
        dummies = pd.get_dummies(levels, drop_first=True, dtype=float)
        out.append((str(factor), dummies.to_numpy().reshape(len(levels), -1)))
    return out


def tidy_table(table: pd.DataFrame) -> pd.DataFrame:
    """vegan-style PERMANOVA table with the output's column names (term as the index)."""
    return table.rename(columns=COLUMNS)[list(COLUMNS.values())]


def main(snakemake, logger) -> None:
    settings = snakemake.params.settings
    counts = read_table(snakemake.input.counts)
    design = read_table(snakemake.input.design).reindex(counts.index)
    terms = read_table(snakemake.input.terms, index=False, dtype=str)
    blocks = read_table(snakemake.input.blocks, dtype=str).reindex(counts.index)
    strata_name = settings.get("strata")
    strata = None
    if strata_name not in (None, "", "none"):
        if strata_name not in blocks.columns:
            raise InputError(
                f"permanova.strata is {strata_name!r}, not a blocking factor; use one of "
                f"{', '.join(blocks.columns) or '(none defined)'} or none"
            )
        strata = blocks[strata_name].to_numpy()
    terms_design = permanova_design(design, terms, blocks)
    with timed(
        logger,
        f"PERMANOVA ({settings['distance']}, {settings['permutations']} permutations, "
        f"strata {strata_name or 'none'}) on {counts.shape[0]} samples x {counts.shape[1]} taxa",
    ):
        table = permanova(
            counts.to_numpy(),
            terms_design,
            distance=settings["distance"],
            n_perm=settings["permutations"],
            seed=settings["seed"],
            strata=strata,
        )
    for term, row in table.iterrows():
        logger.info("%s: df %d, R2 %.3f, F %.3g, p %.4g", term, row["Df"], row["R2"], row["F"], row["Pr(>F)"])
    write_tsv(tidy_table(table), snakemake.output[0])


if "snakemake" in globals():
    snakemake = globals()["snakemake"]
    logger = step_logger("permanova", snakemake.log[0])
    run_step(logger, lambda: main(snakemake, logger))
