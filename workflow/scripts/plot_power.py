"""Power analysis: power and discoveries against the number of samples."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import read_table  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.plots import power_figure, save_figure  # noqa: E402

snakemake = globals()["snakemake"]
logger = step_logger("plot_power", snakemake.log[0])


def main() -> None:
    table = read_table(snakemake.input.table, index=False)
    params = snakemake.params
    with timed(logger, "drawing the power curves"):
        figure = power_figure(table, params.threshold, params.model, params.pilot)
        save_figure(figure, snakemake.output.png, snakemake.output.pdf)


run_step(logger, main)
