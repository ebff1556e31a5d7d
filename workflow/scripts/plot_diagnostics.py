"""Convergence figure: R-hat and ESS histograms, sampler warnings per chain, energy and rank plots."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import read_table  # noqa: E402
from mimix.diagnostics import combine_chains, read_chains, read_quantities  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.plots import diagnostics_figure, save_figure  # noqa: E402

snakemake = globals()["snakemake"]
model = snakemake.wildcards.model
logger = step_logger(f"plot_diagnostics.{model}", snakemake.log[0])


def main() -> None:
    quantities = read_quantities(snakemake.input.quantities)
    chains = read_table(snakemake.input.chain_table, index=False)
    with timed(logger, f"reading {len(snakemake.input.chains)} chain(s) of {model}"):
        idata = combine_chains(read_chains(snakemake.input.chains))
    with timed(logger, "drawing the diagnostics"):
        figure = diagnostics_figure(quantities, chains, idata, snakemake.params.thresholds)
        save_figure(figure, snakemake.output.png, snakemake.output.pdf)


run_step(logger, main)
