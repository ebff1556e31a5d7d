"""Simulation study: one replicate of one setting, fitted by one model (or PERMANOVA); one row of metrics."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

import pandas as pd  # noqa: E402

from mimix.datastage import write_tsv  # noqa: E402
from mimix.engines import ChainSettings, select_engine  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.simstudy import (  # noqa: E402
    METRIC_COLUMNS,
    StudySetting,
    fit_replicate,
    model_input,
    model_metrics,
    permanova_metrics,
    replicate_seed,
    simulation_settings,
)
from mimix.simulate import simulate  # noqa: E402

snakemake = globals()["snakemake"]
setting = StudySetting.from_name(snakemake.wildcards.setting)
replicate, method = int(snakemake.wildcards.replicate), snakemake.wildcards.method
logger = step_logger(f"simulation.{setting.name}.{replicate}.{method}", snakemake.log[0])


def main() -> None:
    study, sampling = snakemake.params.simulation, snakemake.params.sampling
    seed = replicate_seed(study["seed"], setting.name, replicate)
    start = time.perf_counter()
    with timed(logger, f"simulating {setting.name}, replicate {replicate} (seed {seed})"):
        data = simulate(simulation_settings(setting, seed, study["data"]))
        analysed = model_input(data)
    column = analysed.X.columns[0]
    if method == "permanova":
        with timed(logger, f"PERMANOVA with {study['permutations']} permutations within blocks"):
            metrics = permanova_metrics(analysed, study["permutations"], seed, study["alpha"])
    else:
        engine = select_engine(sampling["engine"])
        # refresh comes from the config, not a param: changing it reruns nothing.
        settings = ChainSettings.from_config(sampling, snakemake.config["sampling"]["refresh"])
        with timed(logger, f"fitting {method}: {sampling['chains']} chain(s) with {engine}"):
            idata = fit_replicate(
                method,
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
        metrics = model_metrics(idata, data.beta[column], column, study["threshold"], study["interval_level"])
    row = {
        "setting": setting.name,
        "replicate": replicate,
        "method": method,
        "dense": setting.dense,
        "error_var": setting.error_var,
        "block_var": setting.block_var,
        "form": setting.form,
        "seed": seed,
        **metrics,
        "seconds": round(time.perf_counter() - start, 1),
    }
    logger.info("%s", ", ".join(f"{k} {v}" for k, v in row.items()))
    write_tsv(pd.DataFrame([row]).reindex(columns=METRIC_COLUMNS).set_index("setting"), snakemake.output[0])


run_step(logger, main)
