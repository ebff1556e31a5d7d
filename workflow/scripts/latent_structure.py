"""Latent structure rule (factor models): taxon correlation, subcommunities and their stability, factor usage."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed


from mimix.datastage import read_table, write_tsv  # noqa: E402
from mimix.diagnostics import combine_chains, read_chains  # noqa: E402
from mimix.latent import latent_structure  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402

snakemake = globals()["snakemake"]
model = snakemake.wildcards.model
logger = step_logger(f"latent.{model}", snakemake.log[0])


def main() -> None:
    settings = snakemake.params.settings
    with timed(logger, f"reading {len(snakemake.input.chains)} chain(s) of {model}"):
        posterior = combine_chains(read_chains(snakemake.input.chains)).posterior
    taxa = read_table(snakemake.input.taxa)
    with timed(logger, "clustering taxa and scoring cluster stability"):
        result = latent_structure(
            posterior,
            cut_height=settings["cut_height"],
            n_clusters=settings.get("n_clusters"),
            stability_draws=settings["stability_draws"],
            factor_share_threshold=settings["factor_share_threshold"],
            interval_level=settings["interval_level"],
            taxa=taxa,
        )
    sizes = result.clusters.groupby("cluster")["cluster_size"].first()
    logger.info("%d subcommunities; sizes %s", len(sizes), sizes.tolist())
    effective = result.factors.iloc[0]
    logger.info(
        "effective number of factors: %.2f (%g%% interval %g-%g)",
        effective["mean"],
        100 * settings["interval_level"],
        effective["lower"],
        effective["upper"],
    )
    write_tsv(result.clusters.set_index("taxon"), snakemake.output.clusters)
    write_tsv(result.correlation, snakemake.output.correlation)
    write_tsv(result.factors.set_index("quantity"), snakemake.output.factors)


run_step(logger, main)
