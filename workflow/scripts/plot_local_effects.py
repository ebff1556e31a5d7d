"""Forest plot of every taxon's effect per treatment column (subcommunity order for the factor models)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import read_table  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.plots import local_effects_figure, save_figure  # noqa: E402

snakemake = globals()["snakemake"]
model = snakemake.wildcards.model
logger = step_logger(f"plot_local_effects.{model}", snakemake.log[0])


def main() -> None:
    local = read_table(snakemake.input.local, index=False)
    clusters = read_table(snakemake.input.clusters, index=False) if "clusters" in snakemake.input.keys() else None
    with timed(logger, f"drawing the effects of {local['taxon'].nunique()} taxa"):
        figure = local_effects_figure(local, clusters, snakemake.params.max_labelled)
        save_figure(figure, snakemake.output.png, snakemake.output.pdf)


run_step(logger, main)
