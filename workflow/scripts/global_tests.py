"""Global tests rule: posterior probability and Bayes factor of any effect, per treatment column and term."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed


from mimix.datastage import read_terms, write_tsv  # noqa: E402
from mimix.diagnostics import combine_chains, read_chains, read_passed, read_quantities  # noqa: E402
from mimix.inference import global_tests, mark_global_reliable  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402

snakemake = globals()["snakemake"]
model = snakemake.wildcards.model
logger = step_logger(f"global_tests.{model}", snakemake.log[0])


def main() -> None:
    with timed(logger, f"reading {len(snakemake.input.chains)} chain(s) of {model}"):
        posterior = combine_chains(read_chains(snakemake.input.chains)).posterior
    terms = read_terms(snakemake.input.terms)
    quantities = read_quantities(snakemake.input.quantities)
    passed = read_passed(snakemake.input.verdict)
    table = global_tests(posterior, terms, threshold=snakemake.params.threshold)
    table = mark_global_reliable(table, quantities, passed)
    for row in table.itertuples(index=False):
        logger.info(
            "%s %s: P(effect) = %.3f (MCSE %.3f), prior %.3f, Bayes factor %.3g -> %s%s",
            row.test,
            row.name,
            row.posterior_prob,
            row.mcse,
            row.prior_prob,
            row.bayes_factor,
            row.decision,
            "" if row.reliable else " (NOT reliable: see the diagnostics)",
        )
    write_tsv(table.set_index("test"), snakemake.output[0])


run_step(logger, main)
