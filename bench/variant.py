"""Run chains of a variant Stan program of one MIMIX model on a bench case, for bench/geometry-log.md.

    python bench/variant.py CASE MODEL PROGRAM [--set KEY=VALUE ...] [--chains 1] [--warmup 300]
                            [--draws 300] [--seeds BASE] [--first-chain 1] [--out DIR]

PROGRAM is a .stan file with MODEL's data block (plus any extra data given by ``--set``) and
MODEL's saved quantities; includes are expanded as for the real programs and it is built as the
engines build (stanc --O1, no diagnostic writer). Inits are the paper's (mimix.fitting.paper_inits);
a variant that samples theta through a differently named matrix gets the same values under that
name with ``--theta-name``; with ``--set nc_prevalence=p`` (zero cells of taxa with prevalence below
p non-centred) those cells start at 0 (theta at its prior mean). Chains run one per process, two
at a time, with the engine's streaming reader; each is written as OUT/MODEL/<chain>.nc (ArviZ),
next to the case's data stage in OUT/data, so ``bench/mixing.py OUT --model MODEL`` reads them
like a ``bench/run.py`` run. Prints one JSON line per chain (step size, leapfrog steps,
divergences, seconds). Run by hand.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))


def _chain(job: dict) -> dict:
    sys.path.insert(0, str(ROOT / "src"))
    from mimix.datastage import read_data_stage
    from mimix.density import noncentred_cells
    from mimix.engines import ChainSettings, run_chain_pystan, to_inference_data
    from mimix.fitting import chain_seed, paper_inits
    from mimix.models import SAVED_VARIABLES, coordinates, expand_includes, stan_data

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s chain {job['chain']}: %(message)s")
    logger = logging.getLogger("variant")
    model_input = read_data_stage(job["tables"])
    data = {**stan_data(model_input, job["factors"]), **job["extra"]}
    seed = chain_seed(job["seed"], job["model"], job["chain"])
    init = paper_inits(data, np.random.default_rng(seed), job["model"])
    theta_key = next(key for key in ("theta_free", "theta_raw") if key in init)
    if "nc_prevalence" in job["extra"]:
        # variants whose zero cells of rare taxa are non-centred (theta = mean + sigma u there): u starts at 0
        nc = noncentred_cells(data["Y"], job["extra"]["nc_prevalence"])
        init[theta_key] = np.where(nc, 0.0, init[theta_key])
    if job["theta_name"]:
        init[job["theta_name"]] = init.pop(theta_key)
    settings = ChainSettings(
        seed=seed, chain_id=job["chain"], warmup=job["warmup"], draws=job["draws"], init=init, refresh=50,
        max_treedepth=job["max_treedepth"],
    )  # fmt: skip
    dims = SAVED_VARIABLES[job["model"]]
    start = time.perf_counter()
    result = run_chain_pystan(expand_includes(Path(job["program"])), data, settings, list(dims), logger)
    seconds = time.perf_counter() - start
    idata = to_inference_data(result, dims, coordinates(model_input, job["factors"]), {"program": job["program"]})
    idata.to_netcdf(job["out"], engine="h5netcdf")
    stats = result.stats
    return {
        "program": job["program"], "chain": job["chain"], "seed": seed, "seconds": round(seconds, 1),
        "step_size": float(np.mean(stats["step_size"])), "leapfrog_mean": float(np.mean(stats["n_steps"])),
        "divergences": int(np.sum(stats["diverging"])),
        "ms_per_gradient": 1000 * result.timings.get("sampling_seconds_stan", np.nan) / float(np.sum(stats["n_steps"])),
        **{k: v for k, v in result.timings.items() if "stan" in k},
    }  # fmt: skip


def main() -> None:
    from run import CASES, prepare_case

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("model", choices=["mimix", "mimix_gaussian", "mimix_nofactor"])
    parser.add_argument("program", type=Path)
    parser.add_argument("--set", nargs="*", default=[], help="extra data, KEY=VALUE (a number)")
    parser.add_argument("--theta-name", default="", help="the variant's name for the theta matrix, if renamed")
    parser.add_argument("--chains", type=int, default=1)
    parser.add_argument("--first-chain", type=int, default=1, help="run chains FIRST .. FIRST + CHAINS - 1")
    parser.add_argument("--seeds", type=int, default=20261206, help="base seed (chain seeds derive from it)")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--factors", type=int, default=10)
    parser.add_argument("--max-treedepth", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix=f"mimix-variant-{args.case}-"))
    prepare_case(args.case, out)
    tables = {
        key: str(out / "data" / f"{key}.{'json' if key == 'summary' else 'tsv'}")
        for key in ("counts", "design", "terms", "blocks", "taxa", "samples", "summary")
    }
    (out / args.model).mkdir(parents=True, exist_ok=True)
    # an integer literal stays an int (Stan's int data reject 1.0)
    extra = {
        key: int(value) if value.lstrip("-").isdigit() else float(value)
        for key, value in (item.split("=", 1) for item in args.set)
    }
    jobs = [
        {
            "model": args.model, "program": str(args.program.resolve()), "tables": tables, "factors": args.factors,
            "extra": extra, "theta_name": args.theta_name, "seed": args.seeds, "chain": chain,
            "warmup": args.warmup, "draws": args.draws, "max_treedepth": args.max_treedepth,
            "out": str(out / args.model / f"{chain}.nc"),
        }
        for chain in range(args.first_chain, args.first_chain + args.chains)
    ]  # fmt: skip
    print(f"# {out}", flush=True)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        for record in pool.map(_chain, jobs):
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
