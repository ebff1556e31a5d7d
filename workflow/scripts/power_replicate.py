"""Power analysis: one simulated experiment of one planned size, fitted and tested; one result row."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

import pandas as pd  # noqa: E402

from mimix.datastage import write_tsv  # noqa: E402
from mimix.diagnostics import combine_chains, read_chains  # noqa: E402
from mimix.engines import ChainSettings, select_engine  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.power import (  # noqa: E402
    POWER_COLUMNS,
    ExperimentSize,
    PilotParameters,
    replicate_result,
    replicate_seed,
    simulate_experiment,
)
from mimix.simstudy import column_draws, fit_replicate, max_rhat, model_input, simulator_options  # noqa: E402
from mimix.simulate import SimulationSettings  # noqa: E402

snakemake = globals()["snakemake"]
size = ExperimentSize.from_name(snakemake.wildcards.size)
replicate = int(snakemake.wildcards.replicate)
logger = step_logger(f"power.{size.name}.{replicate}", snakemake.log[0])


def pilot_parameters(power: dict) -> PilotParameters:
    if power["pilot"] == "simulator":
        return PilotParameters.from_simulator(SimulationSettings(**simulator_options(power["data"])))
    posterior = combine_chains(read_chains(snakemake.input.pilot)).posterior
    return PilotParameters.from_posterior(posterior, source=f"posterior means of {power['pilot']}")


def main() -> None:
    power, sampling = snakemake.params.power, snakemake.params.sampling
    start = time.perf_counter()
    pilot = pilot_parameters(power)
    seed = replicate_seed(power["seed"], size.name, replicate)
    logger.info("pilot: %s (%d taxa, block variance %.3g)", pilot.source, len(pilot.taxa), pilot.block_var)
    data = simulate_experiment(pilot, size, power["responding_fraction"], seed)
    analysed = model_input(data)
    column = analysed.X.columns[0]
    # refresh comes from the config, not a param: changing it reruns nothing.
    settings = ChainSettings.from_config(sampling, snakemake.config["sampling"]["refresh"])
    engine = select_engine(sampling["engine"])
    with timed(logger, f"fitting {power['model']} to {size.n_samples} samples x {len(pilot.taxa)} taxa (seed {seed})"):
        idata = fit_replicate(
            power["model"],
            analysed,
            engine,
            snakemake.params.factors,
            settings,
            sampling["chains"],
            seed,
            sampling["inits"],
            sampling["max_attempts"],
            logger,
        )
    posterior = idata.posterior
    draws, truth = column_draws(posterior, data.beta[column], column)
    global_prob = float(posterior["global_prob"].sel(column=column).mean())
    result = replicate_result(draws, truth, global_prob, power["threshold"], power["interval_level"])
    row = {
        "size": size.name,
        "replicate": replicate,
        "samples_per_cell": size.samples_per_cell,
        "blocks": size.blocks,
        "depth": size.depth,
        "effect": size.effect,
        "n_samples": size.n_samples,
        "seed": seed,
        **result,
        "max_rhat": max_rhat(posterior),
        "seconds": round(time.perf_counter() - start, 1),
    }
    logger.info("%s", ", ".join(f"{k} {v}" for k, v in row.items()))
    write_tsv(pd.DataFrame([row]).reindex(columns=POWER_COLUMNS).set_index("size"), snakemake.output[0])


run_step(logger, main)
