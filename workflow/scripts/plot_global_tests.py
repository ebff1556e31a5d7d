"""Figure of the global tests: posterior probability of an effect per term for every model, beside PERMANOVA."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import read_table  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.plots import global_tests_figure, save_figure  # noqa: E402

snakemake = globals()["snakemake"]
logger = step_logger("plot_global_tests", snakemake.log[0])


def main() -> None:
    paths = snakemake.input.tests
    paths = [paths] if isinstance(paths, str) else list(paths)
    tests = {model: read_table(path, index=False) for model, path in zip(snakemake.params.models, paths, strict=True)}
    permanova = read_table(snakemake.input.permanova, index=False) if "permanova" in snakemake.input.keys() else None
    with timed(logger, f"drawing the global tests of {', '.join(tests)}"):
        save_figure(global_tests_figure(tests, permanova), snakemake.output.png, snakemake.output.pdf)


run_step(logger, main)
