"""Figure of the data stage: read depth before/after filtering, prevalence vs abundance."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import read_table  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.plots import data_stage_figure, save_figure  # noqa: E402

snakemake = globals()["snakemake"]
logger = step_logger("plot_data_stage", snakemake.log[0])


def main() -> None:
    samples = read_table(snakemake.input.samples)
    taxa = read_table(snakemake.input.taxa)
    with timed(logger, "drawing the data stage figure"):
        figure = data_stage_figure(samples, taxa, snakemake.params.filtering)
        save_figure(figure, snakemake.output.png, snakemake.output.pdf)


run_step(logger, main)
