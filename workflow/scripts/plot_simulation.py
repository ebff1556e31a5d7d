"""Simulation study: the paper's Figure 2 (rejection rate vs dense %, facets block x error variance)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import read_table  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.plots import save_figure, simulation_figure  # noqa: E402

snakemake = globals()["snakemake"]
logger = step_logger("plot_simulation", snakemake.log[0])


def main() -> None:
    rejection = read_table(snakemake.input.rejection, index=False)
    with timed(logger, "drawing the rejection rates"):
        figure = simulation_figure(rejection, snakemake.params.threshold, snakemake.params.alpha)
        save_figure(figure, snakemake.output.png, snakemake.output.pdf)


run_step(logger, main)
