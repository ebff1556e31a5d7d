"""Fit rule: one chain of one model; writes the chain's compact draws as netCDF (atomically)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

from mimix.datastage import atomic_write, read_data_stage  # noqa: E402
from mimix.engines import ChainSettings, select_engine  # noqa: E402
from mimix.fitting import fit_chain  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402

snakemake = globals()["snakemake"]
model, chain = snakemake.wildcards.model, int(snakemake.wildcards.chain)
logger = step_logger(f"fit.{model}.chain{chain}", snakemake.log[0])


def main() -> None:
    sampling = snakemake.params.sampling
    model_input = read_data_stage(dict(snakemake.input.items()), snakemake.params.nested_blocking)
    engine = select_engine(sampling["engine"])
    logger.info("engine: %s (requested %s)", engine, sampling["engine"])
    # refresh comes from the config, not a param: changing it reruns nothing.
    settings = ChainSettings.from_config(sampling, snakemake.config["sampling"]["refresh"], chain_id=chain)
    with timed(logger, f"sampling {model} chain {chain}"):
        idata = fit_chain(
            model,
            model_input,
            engine,
            snakemake.params.factors,
            settings,
            sampling["seed"],
            sampling["inits"],
            sampling["max_attempts"],
            logger,
        )
    stats = idata.sample_stats
    if settings.method == "nuts":
        logger.info(
            "chain %d: %d draws, %d divergent, %d at max tree depth, mean leapfrog steps %.1f, %.2f ms per gradient"
            " (Stan's clock: warmup %.0f s, sampling %.0f s)",
            chain,
            stats.sizes["draw"],
            int(stats["diverging"].sum()),
            int((stats["tree_depth"] >= settings.max_treedepth).sum()),
            float(stats["n_steps"].mean()),
            1000 * float(idata.posterior.attrs["seconds_per_gradient"]),
            float(idata.posterior.attrs.get("warmup_seconds_stan", float("nan"))),
            float(idata.posterior.attrs.get("sampling_seconds_stan", float("nan"))),
        )
    else:
        logger.info(
            "chain %d: %d APPROXIMATE draws (%s), Pareto k %.2f",
            chain,
            stats.sizes["draw"],
            settings.method,
            float(idata.posterior.attrs.get("pareto_khat", float("nan"))),
        )
    atomic_write(snakemake.output[0], lambda tmp: idata.to_netcdf(str(tmp), engine="h5netcdf"))


run_step(logger, main)
