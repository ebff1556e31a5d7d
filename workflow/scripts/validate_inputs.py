"""Validation rule: check every input before any expensive step; write a short summary."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import write_json  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.validation import prepare_dataset  # noqa: E402

snakemake = globals()["snakemake"]
logger = step_logger("validate_inputs", snakemake.log[0])


def main() -> None:
    with timed(logger, "reading and checking the inputs"):
        prepared = prepare_dataset(snakemake.params.input, snakemake.params.design, snakemake.params.filtering)
    summary = prepared.summary()
    logger.info(
        "inputs valid: %d of %d samples and %d model columns after filtering; treatment columns %s; blocking %s",
        summary["samples_kept"],
        summary["samples_in"],
        summary["model_columns"],
        summary["treatment_columns"],
        summary["blocking_factors"],
    )
    write_json({"valid": True, **summary}, snakemake.output[0])


run_step(logger, main)
