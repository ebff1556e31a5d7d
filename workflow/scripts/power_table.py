"""Power analysis: all replicates and the power table per planned experiment size."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed


from mimix.datastage import read_rows, write_tsv  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.power import power_table  # noqa: E402

snakemake = globals()["snakemake"]
logger = step_logger("power_table", snakemake.log[0])


def main() -> None:
    with timed(logger, f"reading {len(snakemake.input)} simulated experiments"):
        rows = read_rows(snakemake.input)
    table = power_table(rows)
    for row in table.itertuples(index=False):
        logger.info(
            "%d samples (%d per cell, %d blocks, %d reads, effect %g): power %.2f [%.2f, %.2f], "
            "%.1f of %.1f responding taxa found, %.1f false",
            row.n_samples, row.samples_per_cell, row.blocks, row.depth, row.effect, row.power,
            row.power_lower, row.power_upper, row.true_found, row.n_responding, row.false_found,
        )  # fmt: skip
    write_tsv(rows.set_index("size"), snakemake.output.replicates)
    write_tsv(table.set_index("samples_per_cell"), snakemake.output.table)


run_step(logger, main)
