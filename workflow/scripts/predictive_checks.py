"""Posterior predictive checks rule: replicate count tables from posterior draws and compare."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

import numpy as np  # noqa: E402

from mimix.datastage import read_data_stage, write_tsv  # noqa: E402
from mimix.diagnostics import combine_chains, read_chains  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.predictive import posterior_predictive_checks, replicate_counts, replicate_groups, theta_means  # noqa: E402

snakemake = globals()["snakemake"]
logger = step_logger(f"ppc.{snakemake.wildcards.model}", snakemake.log[0])


def main() -> None:
    settings = snakemake.params.settings
    rng = np.random.default_rng(settings["seed"])
    model_input = read_data_stage(dict(snakemake.input.items()), snakemake.params.nested_blocking)
    posterior = combine_chains(read_chains(list(snakemake.input.chains))).posterior
    with timed(logger, f"replicating {settings['draws']} count tables"):
        means, sigma2 = theta_means(posterior, model_input, settings["draws"], rng)
        depth = model_input.counts.sum(axis=1).to_numpy()
        replicated = replicate_counts(means, sigma2, depth, rng)
    with timed(logger, "computing the check statistics"):
        checks, summary = posterior_predictive_checks(
            model_input.counts, replicate_groups(model_input), replicated, settings["interval_level"]
        )
    for row in summary.itertuples():
        logger.info(
            "%s (%s): %.0f%% of %d observed values inside their %.0f%% predictive interval",
            row.statistic,
            row.level,
            100 * row.fraction_inside,
            row.units,
            100 * settings["interval_level"],
        )
    write_tsv(checks.set_index("statistic"), snakemake.output.checks)
    write_tsv(summary.set_index("statistic"), snakemake.output.summary)


run_step(logger, main)
