"""Posterior predictive checks: observed statistics against their predictive intervals, sorted by observed value."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import read_table  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.plots import ppc_figure, save_figure  # noqa: E402

snakemake = globals()["snakemake"]
model = snakemake.wildcards.model
logger = step_logger(f"plot_ppc.{model}", snakemake.log[0])


def main() -> None:
    checks = read_table(snakemake.input.checks, index=False)
    with timed(logger, f"drawing {checks['statistic'].nunique()} check statistics"):
        figure = ppc_figure(checks, snakemake.params.interval_level)
        save_figure(figure, snakemake.output.png, snakemake.output.pdf)


run_step(logger, main)
