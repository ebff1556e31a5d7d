"""Local tests rule: per-taxon treatment effects, lfsr and the Bayesian-FDR discovery set."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed


from mimix.datastage import read_table, write_tsv  # noqa: E402
from mimix.diagnostics import combine_chains, read_chains, read_passed, read_quantities  # noqa: E402
from mimix.inference import local_tests, mark_local_reliable  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402

snakemake = globals()["snakemake"]
model = snakemake.wildcards.model
logger = step_logger(f"local_tests.{model}", snakemake.log[0])


def main() -> None:
    settings = snakemake.params.settings
    with timed(logger, f"reading {len(snakemake.input.chains)} chain(s) of {model}"):
        posterior = combine_chains(read_chains(snakemake.input.chains)).posterior
    taxa = read_table(snakemake.input.taxa)
    quantities = read_quantities(snakemake.input.quantities)
    passed = read_passed(snakemake.input.verdict)
    table = local_tests(posterior["beta"], settings["interval_level"], settings["fdr_level"], taxa)
    table = mark_local_reliable(table, quantities, passed)
    for column, rows in table.groupby("column", sort=False):
        logger.info(
            "%s: %d taxa with a %g%% interval excluding 0, %d discoveries at Bayesian FDR %g",
            column,
            int(rows["interval_excludes_zero"].sum()),
            100 * settings["interval_level"],
            int(rows["fdr_discovery"].sum()),
            settings["fdr_level"],
        )
    if not table["reliable"].all():
        logger.warning("%d of %d effects are not reliable: see the diagnostics", (~table["reliable"]).sum(), len(table))
    write_tsv(table.set_index("taxon"), snakemake.output[0])


run_step(logger, main)
