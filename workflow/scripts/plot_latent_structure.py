"""Clustered taxon correlation heatmap with the subcommunities outlined and responding taxa marked."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import read_table  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.plots import latent_structure_figure, save_figure  # noqa: E402

snakemake = globals()["snakemake"]
model = snakemake.wildcards.model
logger = step_logger(f"plot_latent_structure.{model}", snakemake.log[0])


def main() -> None:
    correlation = read_table(snakemake.input.correlation)
    correlation.columns = correlation.columns.astype(str)
    clusters = read_table(snakemake.input.clusters, index=False)
    local = read_table(snakemake.input.local, index=False)
    with timed(logger, f"drawing the correlation of {len(correlation)} taxa"):
        figure = latent_structure_figure(correlation, clusters, local)
        save_figure(figure, snakemake.output.png, snakemake.output.pdf)


run_step(logger, main)
