"""Compile rule: build one model once (cached by the engine) before its chains start."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import read_data_stage, write_json  # noqa: E402
from mimix.engines import compile_model, select_engine  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.models import stan_data  # noqa: E402

snakemake = globals()["snakemake"]
model = snakemake.wildcards.model
logger = step_logger(f"compile.{model}", snakemake.log[0])


def main() -> None:
    engine = select_engine(snakemake.params.engine)
    model_input = read_data_stage(dict(snakemake.input.items()), snakemake.params.nested_blocking)
    with timed(logger, f"compiling {model} with {engine} (instant when cached)"):
        record = compile_model(engine, model, stan_data(model_input, snakemake.params.factors), logger)
    logger.info("%s: %s, Stan %s, program %s", model, engine, record["stan_version"], record["program_hash"])
    write_json(record, snakemake.output[0])


run_step(logger, main)
