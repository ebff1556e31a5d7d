"""Variance decomposition rule: each taxon's variance shares (blocking, latent factors, error) and eta."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import write_tsv  # noqa: E402
from mimix.diagnostics import combine_chains, read_chains  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.variance import decompose  # noqa: E402

snakemake = globals()["snakemake"]
model = snakemake.wildcards.model
logger = step_logger(f"variance.{model}", snakemake.log[0])


def main() -> None:
    with timed(logger, f"reading {len(snakemake.input.chains)} chain(s) of {model}"):
        posterior = combine_chains(read_chains(snakemake.input.chains)).posterior
    with timed(logger, "computing the variance shares per draw"):
        per_taxon, summary = decompose(posterior, snakemake.params.interval_level)
    for row in summary.itertuples(index=False):
        logger.info(
            "%s: mean share %.3f across %d taxa; %.0f%% of taxa above one half",
            row.source,
            row.mean_share,
            row.taxa,
            100 * row.fraction_taxa_over_half,
        )
    write_tsv(per_taxon.set_index("taxon"), snakemake.output.per_taxon)
    write_tsv(summary.set_index("source"), snakemake.output.summary)


run_step(logger, main)
