"""Filtering and rarity trimming rule: write the analysed tables and the filtering report."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import write_data_stage  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.validation import prepare_dataset  # noqa: E402

snakemake = globals()["snakemake"]
logger = step_logger("filter_counts", snakemake.log[0])


def main() -> None:
    with timed(logger, "filtering samples and trimming rare taxa"):
        prepared = prepare_dataset(snakemake.params.input, snakemake.params.design, snakemake.params.filtering)
    samples, taxa = prepared.filtered.samples, prepared.filtered.taxa
    for status, group in samples.groupby("status"):
        logger.info("samples %s: %d", status, len(group))
    for status, group in taxa.groupby("status"):
        logger.info("taxa %s: %d", status, len(group))
    with timed(logger, "writing the data stage tables"):
        write_data_stage(prepared, dict(snakemake.output.items()))


run_step(logger, main)
