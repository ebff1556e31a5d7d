"""PERMANOVA rule: the distance-based baseline on the analysed counts, treatment terms then blocking factors."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed


from mimix.datastage import read_table, write_tsv  # noqa: E402
from mimix.errors import InputError  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.permanova import permanova, permanova_design, tidy_table  # noqa: E402


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
