"""Simulation study: compile one model once (cached by the engine) before its replicate jobs start."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import write_json  # noqa: E402
from mimix.engines import compile_model, select_engine  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.models import stan_data  # noqa: E402
from mimix.simstudy import StudySetting, model_input, simulation_settings  # noqa: E402
from mimix.simulate import simulate  # noqa: E402

snakemake = globals()["snakemake"]
model = snakemake.wildcards.method
logger = step_logger(f"simulation.compile.{model}", snakemake.log[0])


def main() -> None:
    engine = select_engine(snakemake.params.engine)
    # Any replicate's data has the same shapes; the build needs data only to check the program.
    example = simulate(simulation_settings(StudySetting(0.1, 1.0, 1.0, "grouped"), 1, snakemake.params.data))
    with timed(logger, f"compiling {model} with {engine} (instant when cached)"):
        record = compile_model(engine, model, stan_data(model_input(example), snakemake.params.factors), logger)
    write_json(record, snakemake.output[0])


run_step(logger, main)
