"""Diagnostics rule: convergence of one model's chains; per-quantity, per-chain and verdict tables."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import write_tsv  # noqa: E402
from mimix.diagnostics import Thresholds, diagnose, read_chains  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402

snakemake = globals()["snakemake"]
model = snakemake.wildcards.model
logger = step_logger(f"diagnostics.{model}", snakemake.log[0])


def main() -> None:
    settings = dict(snakemake.params.thresholds)
    thresholds = Thresholds.from_config(settings)
    with timed(logger, f"reading {len(snakemake.input.chains)} chain(s) of {model}"):
        chains = read_chains(snakemake.input.chains)
    with timed(logger, "computing R-hat, ESS and MCSE of the identified quantities"):
        result = diagnose(chains, thresholds, model)
    verdict = result.verdict.iloc[0]
    failing = result.quantities[~result.quantities["ok"]]
    for row in failing.head(20).itertuples(index=False):
        logger.warning("%s[%s]: %s", row.quantity, row.index, row.problem)
    if len(failing) > 20:
        logger.warning("... and %d more failing element(s): see %s", len(failing) - 20, snakemake.output.quantities)
    if not verdict["passed"] and settings.get("strict", False):
        logger.error("%s: %s", model, verdict["message"])
        logger.error("inference.diagnostics.strict is true: stopping (set it to false to continue with a warning)")
        sys.exit(1)
    (logger.info if verdict["passed"] else logger.warning)("%s: %s", model, verdict["message"])
    write_tsv(result.quantities.set_index("quantity"), snakemake.output.quantities)
    write_tsv(result.chains.set_index("chain"), snakemake.output.chains)
    write_tsv(result.verdict, snakemake.output.verdict)


run_step(logger, main)
