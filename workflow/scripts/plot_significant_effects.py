"""The responding taxa (interval excludes zero in some treatment column), named, with their effects."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import read_table  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.plots import save_figure, significant_effects_figure, significant_taxa  # noqa: E402

snakemake = globals()["snakemake"]
model = snakemake.wildcards.model
logger = step_logger(f"plot_significant_effects.{model}", snakemake.log[0])


def main() -> None:
    local = read_table(snakemake.input.local, index=False)
    with timed(logger, f"drawing the {len(significant_taxa(local))} responding taxa"):
        figure = significant_effects_figure(local, snakemake.params.max_taxa)
        save_figure(figure, snakemake.output.png, snakemake.output.pdf)


run_step(logger, main)
