"""Variance decomposition figures: stacked shares per taxon, and error variance against eta (the paper's scatter)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import read_table  # noqa: E402
from mimix.diagnostics import read_quantities  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.plots import error_variance_figure, save_figure, taxon_labels, variance_shares_figure  # noqa: E402

snakemake = globals()["snakemake"]
model = snakemake.wildcards.model
logger = step_logger(f"plot_variance.{model}", snakemake.log[0])


def main() -> None:
    per_taxon = read_table(snakemake.input.per_taxon, index=False)
    local = read_table(snakemake.input.local, index=False)
    quantities = read_quantities(snakemake.input.quantities)
    # Posterior mean of each taxon's error variance, as the diagnostics rule summarized it.
    sigma2 = quantities[quantities["quantity"] == "sigma2"].set_index("index")["mean"]
    with timed(logger, "drawing the variance shares"):
        figure = variance_shares_figure(per_taxon, taxon_labels(local))
        save_figure(figure, snakemake.output.shares_png, snakemake.output.shares_pdf)
    with timed(logger, "drawing error variance against eta"):
        figure = error_variance_figure(per_taxon, sigma2, local)
        save_figure(figure, snakemake.output.scatter_png, snakemake.output.scatter_pdf)


run_step(logger, main)
