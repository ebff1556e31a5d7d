"""Benchmark: fit MIMIX variants on a named case and print one row per model and engine.

    python bench/run.py CASE [--models mimix mimix_nofactor] [--chains 4] [--parallel 2]
                             [--warmup 1000] [--draws 1000] [--factors 5] [--engine auto]

Cases: demo (the embedded data), sim100 (the paper's simulation design, N=40, K=100, seed 1),
nutnet100 (NutNet, 100 most prevalent OTUs + other), nutnet408 (OTUs in >= 10% of samples + other),
nutnet-full (every OTU with reads; use short runs and --extrapolate). NutNet is read from
../shared/data/nutnet/ (never copied). Each run appends a JSON record to bench/results.jsonl.

Chains run as separate processes, ``--parallel`` at a time (2 on this 2-core machine), like
Snakemake's one-job-per-chain. Run by hand, never in the test suite.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import logging
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

NUTNET = ROOT.parent / "shared" / "data" / "nutnet"
RESULTS_FILE = ROOT / "bench" / "results.jsonl"
NUTNET_INPUT = {
    "format": "mimix",
    "mimix_dir": str(NUTNET),
    "mimix_x_names": ["fence", "nutrient", "fence_x_nutrient"],
    "mimix_z_names": ["site", "block"],
}
CASES: dict[str, dict] = {
    "demo": {"config": "config/config.yaml"},
    "sim100": {"simulate": {"seed": 1}, "filtering": {"min_prevalence": 0.0}},
    "nutnet100": {"input": NUTNET_INPUT, "filtering": {"min_prevalence": 0.0, "max_taxa": 100}},
    "nutnet408": {"input": NUTNET_INPUT, "filtering": {"min_prevalence": 0.1}},
    "nutnet-full": {"input": NUTNET_INPUT, "filtering": {"min_prevalence": 0.0}},
}


def prepare_case(case: str, workdir: Path):
    """Write the case's data-stage tables under workdir and read them back as ModelInput."""
    import yaml

    from mimix.datastage import read_data_stage, write_data_stage
    from mimix.simulate import SimulationSettings, simulate, write_dataset
    from mimix.validation import prepare_dataset

    spec = CASES[case]
    design: dict = {"formula": None, "blocking": None}
    filtering = {"min_depth": 1000, **spec.get("filtering", {})}
    if "config" in spec:
        config = yaml.safe_load((ROOT / spec["config"]).read_text())
        input_cfg = {
            k: (str(ROOT / v) if k in ("counts", "metadata", "taxonomy") else v) for k, v in config["input"].items()
        }
        design, filtering = config["design"], {**filtering, **config.get("filtering", {})}
    elif "simulate" in spec:
        paths = write_dataset(simulate(SimulationSettings(**spec["simulate"])), workdir / "input")
        input_cfg = {"format": "table", "counts": str(paths["counts"]), "metadata": str(paths["metadata"])}
        design = {"formula": "treatment", "blocking": ["block"]}
    else:
        input_cfg = spec["input"]
    prepared = prepare_dataset(input_cfg, design, filtering)
    tables = {
        k: workdir / "data" / f"{k}.{'json' if k == 'summary' else 'tsv'}"
        for k in ("counts", "design", "terms", "blocks", "taxa", "samples", "summary")
    }
    write_data_stage(prepared, tables)
    return read_data_stage(tables, design.get("nested_blocking", True))


def _chain_job(args: dict) -> dict:
    """One chain in its own process: fit, write the netCDF, report timings and peak memory."""
    sys.path.insert(0, str(ROOT / "src"))
    from mimix.datastage import read_data_stage
    from mimix.engines import ChainSettings
    from mimix.fitting import fit_chain

    logging.basicConfig(level=logging.WARNING)
    logger = logging.getLogger(f"bench.{args['model']}.{args['chain']}")
    model_input = read_data_stage(args["tables"])
    settings = ChainSettings(
        seed=0,
        chain_id=args["chain"],
        warmup=args["warmup"],
        draws=args["draws"],
        thin=args["thin"],
        adapt_delta=args["adapt_delta"],
        max_treedepth=args["max_treedepth"],
        refresh=10**6,
    )
    start = time.perf_counter()
    idata = fit_chain(
        args["model"], model_input, args["engine"], args["factors"], settings, args["seed"], args["inits"], 1, logger
    )
    wall = time.perf_counter() - start
    out = Path(args["out"])
    idata.to_netcdf(str(out), engine="h5netcdf")
    # The engine's Stan worker process has ended by now, so its peak counts among the children's.
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return chain_figures(idata.posterior.attrs, out, args["chain"], wall, (self_kb + child_kb) / 1024)


def chain_figures(attrs, path: Path, chain: int, wall_seconds: float, peak_rss_mb: float) -> dict:
    """One chain job's figures for the record, from its netCDF's attributes and file."""
    return {
        "chain": chain,
        "wall_seconds": wall_seconds,
        "compile_seconds": float(attrs.get("compile_seconds", np.nan)),
        "seconds_per_gradient": float(attrs.get("seconds_per_gradient", np.nan)),
        "warmup_seconds_stan": float(attrs.get("warmup_seconds_stan", np.nan)),
        "sampling_seconds_stan": float(attrs.get("sampling_seconds_stan", np.nan)),
        "thin": int(attrs.get("thin", 1)),
        "peak_rss_mb": peak_rss_mb,
        "bytes": path.stat().st_size,
        "engine": str(attrs.get("engine")),
        "stan_version": str(attrs.get("stan_version")),
        "attrs": attrs,
    }


def numpy_gradient_floor(n: int, k: int, n_factors: int, repeats: int = 20) -> float:
    """Seconds NumPy needs for the dense products and softmax of one log-density evaluation.

    theta_mean = mu + F Lambda (N x L x K), the multinomial-logit likelihood (log-sum-exp per
    sample) and the normal density of theta; a gradient costs at least this forward pass.
    """
    rng = np.random.default_rng(0)
    y = rng.poisson(5, size=(n, k)).astype(float)
    theta = rng.normal(size=(n, k))
    scores, loadings, mu = (
        rng.normal(size=(n, max(n_factors, 1))),
        rng.normal(size=(max(n_factors, 1), k)),
        rng.normal(size=k),
    )
    sigma = np.ones(k)
    start = time.perf_counter()
    for _ in range(repeats):
        mean = mu + scores @ loadings
        top = theta.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(theta - top).sum(axis=1))
        loglik = (y * theta).sum() - (y.sum(axis=1) * lse).sum()
        logprior = -0.5 * (((theta - mean) / sigma) ** 2).sum()
        _ = loglik + logprior
    return (time.perf_counter() - start) / repeats


def summarize(case: str, model: str, chain_files: list[Path], jobs: list[dict], args, wall: float) -> dict:
    import arviz as az
    import xarray as xr

    idatas = [az.from_netcdf(str(f)) for f in chain_files]
    posterior = xr.concat([i.posterior for i in idatas], dim="chain")
    stats = xr.concat([i.sample_stats for i in idatas], dim="chain")
    record: dict = {"case": case, "model": model}
    for group in ("beta", "global_prob"):
        sub = posterior[[group]]
        ess_bulk = az.ess(sub, method="bulk")[group].to_numpy().ravel()
        ess_tail = az.ess(sub, method="tail")[group].to_numpy().ravel()
        rhat = az.rhat(sub)[group].to_numpy().ravel()
        varying = posterior[group].std(dim=("chain", "draw")).to_numpy().ravel() > 0
        record[f"min_ess_bulk_{group}"] = float(np.nanmin(ess_bulk[varying])) if varying.any() else np.nan
        record[f"min_ess_tail_{group}"] = float(np.nanmin(ess_tail[varying])) if varying.any() else np.nan
        record[f"max_rhat_{group}"] = float(np.nanmax(rhat[varying])) if varying.any() else np.nan
        record[f"ess_per_second_{group}"] = record[f"min_ess_bulk_{group}"] / wall
    max_depth = args.max_treedepth
    # Approximate runs (pathfinder) have no sampler statistics: those fields are NaN.
    has_nuts = "n_steps" in stats
    n_iterations = int(stats["n_steps"].size) if has_nuts else 0
    hits = int((stats["tree_depth"] >= max_depth).sum()) if has_nuts else np.nan
    record.update(
        {
            "engine": jobs[0]["engine"],
            "stan_version": jobs[0]["stan_version"],
            "chains": len(chain_files),
            "warmup": args.warmup,
            "draws": args.draws,
            "thin": jobs[0]["thin"],
            "wall_seconds": wall,
            "compile_seconds": max(j["compile_seconds"] for j in jobs),
            # sampling phase (Stan's clock) over its leapfrog steps; before 2026-11-25 session 7 the whole
            # run's seconds over the kept draws' steps (~2x too high when warmup = draws)
            "seconds_per_gradient": float(np.median([j["seconds_per_gradient"] for j in jobs])),
            "warmup_seconds_stan": float(np.median([j["warmup_seconds_stan"] for j in jobs])),
            "sampling_seconds_stan": float(np.median([j["sampling_seconds_stan"] for j in jobs])),
            "mean_leapfrog_per_iteration": float(stats["n_steps"].mean()) if has_nuts else np.nan,
            "max_treedepth_hits": hits,
            "max_treedepth_fraction": hits / n_iterations if has_nuts else np.nan,
            "divergences": int(stats["diverging"].sum()) if has_nuts else np.nan,
            "peak_rss_mb_per_chain": max(j["peak_rss_mb"] for j in jobs),
            "bytes_per_draw": float(np.mean([j["bytes"] for j in jobs])) / posterior.sizes["draw"],  # kept draws
        }
    )
    return record


def workflow_chain_jobs(run_dir: Path, model: str) -> tuple[list[Path], list[dict]]:
    """Chain files of a finished workflow run and per-chain job figures from their attributes.

    Peak RSS comes from Snakemake's per-job benchmark file (logs/{dataset}/{model}/chainN.benchmark.tsv,
    column max_rss in MB) when the run wrote one; otherwise it is recorded as NaN.
    """
    import arviz as az
    import pandas as pd

    chain_files = sorted((run_dir / model / "chains").glob("*.nc"), key=lambda f: int(f.stem))
    if not chain_files:
        raise SystemExit(f"{run_dir / model / 'chains'}: no chain files; run the workflow first")
    logs = ROOT / "logs" / run_dir.name / model
    jobs = []
    for path in chain_files:
        attrs = az.from_netcdf(str(path)).posterior.attrs
        benchmark = logs / f"chain{path.stem}.benchmark.tsv"
        rss = float(pd.read_csv(benchmark, sep="\t")["max_rss"].iloc[0]) if benchmark.exists() else np.nan
        jobs.append(chain_figures(attrs, path, int(path.stem), float(attrs["sampling_seconds"]), rss))
    return chain_files, jobs


def record_workflow_run(args: argparse.Namespace, commit: str) -> None:
    """Record a finished workflow run (``--from-run results/DATASET``) instead of fitting again.

    Wall time is that of the chains as the workflow ran them: chains run ``--parallel`` at a time,
    so wall = sum over rounds of the slowest chain's sampling seconds (compile excluded, as above).
    """
    run_dir = Path(args.from_run)
    from mimix.datastage import read_data_stage

    tables = {
        key: run_dir / "data" / f"{key}.{'json' if key == 'summary' else 'tsv'}"
        for key in ("counts", "design", "terms", "blocks", "taxa", "samples", "summary")
    }
    model_input = read_data_stage(tables)
    n, k = model_input.counts.shape
    for model in args.models:
        chain_files, jobs = workflow_chain_jobs(run_dir, model)
        first = jobs[0]["attrs"]
        args.warmup, args.draws = int(first["warmup"]), int(first["draws"])
        args.max_treedepth = int(first["max_treedepth"])
        seconds = [j["wall_seconds"] for j in jobs]
        wall = sum(max(seconds[i : i + args.parallel]) for i in range(0, len(seconds), args.parallel))
        record = summarize(args.case, model, chain_files, jobs, args, wall)
        factors = int(first["n_factors"])
        record.update(
            {
                "N": n,
                "K": k,
                "P": int(model_input.X.shape[1]),
                "factors": factors,
                "numpy_floor_seconds_per_gradient": numpy_gradient_floor(n, k, max(factors, 1)),
                "adapt_delta": float(first["adapt_delta"]),
                "inits": str(first["inits"]),
                "method": str(first.get("method", "nuts")),
                "commit": commit,
                "cores": os.cpu_count(),
                "machine": platform.machine(),
                "parallel": args.parallel,
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "source": f"workflow run {run_dir.name} (snakemake, one job per chain)",
                "workflow_wall_seconds": getattr(args, "workflow_wall_seconds", None),
                "note": args.note,
            }
        )
        print_row(args, record)
        if not args.no_record:
            with RESULTS_FILE.open("a") as handle:
                handle.write(json.dumps(record, default=float) + "\n")


def cold_compile_seconds(model: str, data: dict) -> float:
    """Seconds PyStan needs to build ``model`` from nothing: a unique comment appended to the program
    gives it a new cache key, so httpstan compiles it as on a fresh machine (the build is deleted after)."""
    import httpstan.cache
    import httpstan.models

    from mimix.engines import build_pystan_model, optimized_program
    from mimix.models import program_code

    code = program_code(model) + f"\n// cold-compile benchmark {time.time_ns()}\n"
    _, seconds = build_pystan_model(code, data, 1, logging.getLogger("bench.cold"))
    with contextlib.suppress(Exception):
        httpstan.cache.delete_model_directory(httpstan.models.calculate_model_name(optimized_program(code)))
    return seconds


def workflow_config(case: str, args: argparse.Namespace, dataset: str) -> dict:
    """The workflow config of a case: the demo's or NutNet's own config with the case's filtering
    and the command line's models and sampling; sim100 writes its simulated input first."""
    import yaml

    base = "config/nutnet.yaml" if case.startswith("nutnet") else "config/config.yaml"
    config = yaml.safe_load((ROOT / base).read_text())
    spec = CASES[case]
    if "simulate" in spec:
        from mimix.simulate import SimulationSettings, simulate, write_dataset

        paths = write_dataset(simulate(SimulationSettings(**spec["simulate"])), ROOT / "results" / f"{dataset}-input")
        config["input"] = {
            "format": "table",
            "counts": str(paths["counts"].relative_to(ROOT)),
            "metadata": str(paths["metadata"].relative_to(ROOT)),
            "taxonomy": str(paths["taxonomy"].relative_to(ROOT)),
        }
        config["design"] = {"formula": "treatment", "blocking": ["block"]}
    if case.startswith("nutnet"):
        config["filtering"] = {"min_depth": 1000, "max_taxa": None, **spec["filtering"]}
    elif "filtering" in spec:
        config["filtering"] = {**config.get("filtering", {}), **spec["filtering"]}
    config["dataset"] = dataset
    config["models"] = args.models
    config.setdefault("model", {})["factors"] = args.factors
    config["sampling"] = {
        **config.get("sampling", {}),
        "chains": args.chains,
        "warmup": args.warmup,
        "draws": args.draws,
        "adapt_delta": args.adapt_delta,
        "max_treedepth": args.max_treedepth,
        "method": args.method,
    }
    return config


def run_workflow(args: argparse.Namespace, commit: str) -> None:
    """Run the whole Snakemake workflow of a case from scratch (models already compiled are reused
    from the engine's cache, as on a user's second run) and record its chains plus the total wall time."""
    import shutil

    import yaml

    dataset = f"bench-{args.case}" + ("" if args.method == "nuts" else f"-{args.method}")
    shutil.rmtree(ROOT / "results" / dataset, ignore_errors=True)
    shutil.rmtree(ROOT / "logs" / dataset, ignore_errors=True)
    config_file = Path(tempfile.mkdtemp(prefix="mimix-bench-")) / f"{dataset}.yaml"
    config_file.write_text(yaml.safe_dump(workflow_config(args.case, args, dataset)))
    command = [sys.executable, "-m", "snakemake", "--cores", str(args.parallel), "--configfile", str(config_file)]
    print("# " + " ".join(command), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    workflow_wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"workflow failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(f"# whole workflow: {workflow_wall:.0f} s", flush=True)
    args.from_run = str(ROOT / "results" / dataset)
    args.workflow_wall_seconds = workflow_wall
    print(HEADER)
    record_workflow_run(args, commit)


HEADER = (
    f"{'case':<11} {'model':<15} {'engine':<9} {'ch':>2} {'wu':>5} {'dr':>5} {'wall_s':>8} {'comp_s':>7} "
    f"{'ms/grad':>8} {'floor':>7} {'leapfrog':>8} {'maxdep':>6} {'div':>4} {'essB_b':>7} {'essT_b':>7} "
    f"{'rhat_b':>6} {'essB_g':>7} {'rhat_g':>6} {'ess/s_b':>7} {'rss_MB':>7} {'B/draw':>8}"
)


def print_row(args: argparse.Namespace, record: dict) -> None:
    print(
        f"{args.case:<11} {record['model']:<15} {record['engine']:<9} {record['chains']:>2} "
        f"{record['warmup']:>5} {record['draws']:>5} {record['wall_seconds']:>8.0f} "
        f"{record['compile_seconds']:>7.1f} {1000 * record['seconds_per_gradient']:>8.2f} "
        f"{1000 * record['numpy_floor_seconds_per_gradient']:>7.3f} {record['mean_leapfrog_per_iteration']:>8.1f} "
        f"{record['max_treedepth_hits']:>6} {record['divergences']:>4} {record['min_ess_bulk_beta']:>7.0f} "
        f"{record['min_ess_tail_beta']:>7.0f} {record['max_rhat_beta']:>6.3f} "
        f"{record['min_ess_bulk_global_prob']:>7.0f} {record['max_rhat_global_prob']:>6.3f} "
        f"{record['ess_per_second_beta']:>7.2f} {record['peak_rss_mb_per_chain']:>7.0f} "
        f"{record['bytes_per_draw']:>8.0f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--models", nargs="+", default=["mimix", "mimix_gaussian", "mimix_nofactor"])
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--thin", type=int, default=1, help="keep every n-th draw (Stan writes only those)")
    parser.add_argument("--factors", type=int, default=10)  # the workflow default (config schema)
    parser.add_argument("--adapt-delta", type=float, default=0.9)
    parser.add_argument("--max-treedepth", type=int, default=10)
    parser.add_argument("--inits", default="paper")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--note", default="", help="free text stored with the record (e.g. 'short run, extrapolated')")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to bench/results.jsonl")
    parser.add_argument(
        "--from-run",
        metavar="RESULTS_DIR",
        help="record a finished workflow run (results/DATASET) of this case instead of fitting again",
    )
    parser.add_argument(
        "--workflow",
        action="store_true",
        help="run the whole Snakemake workflow of the case (results/bench-CASE) and record it with its wall time",
    )
    parser.add_argument(
        "--cold-compile",
        action="store_true",
        help="also time a PyStan build from nothing per model (the models are otherwise compiled once and cached)",
    )
    parser.add_argument("--method", default="nuts", choices=["nuts", "pathfinder"], help="with --workflow")
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    if args.workflow:
        run_workflow(args, commit)
        return
    if args.from_run:
        print(HEADER)
        record_workflow_run(args, commit)
        return

    from mimix.engines import select_engine

    engine = select_engine(args.engine)
    workdir = Path(tempfile.mkdtemp(prefix=f"mimix-bench-{args.case}-"))
    model_input = prepare_case(args.case, workdir)
    n, k = model_input.counts.shape
    tables = {
        key: str(workdir / "data" / f"{key}.{'json' if key == 'summary' else 'tsv'}")
        for key in ("counts", "design", "terms", "blocks", "taxa", "samples", "summary")
    }
    floor = numpy_gradient_floor(n, k, args.factors)
    print(f"# case {args.case}: N={n}, K={k}, P={model_input.X.shape[1]}, cores={os.cpu_count()}, commit {commit}")
    print(HEADER)
    for model in args.models:
        out_dir = workdir / model
        out_dir.mkdir()
        jobs_args = [
            {
                "model": model,
                "chain": c,
                "tables": tables,
                "engine": engine,
                "factors": args.factors,
                "warmup": args.warmup,
                "draws": args.draws,
                "thin": args.thin,
                "adapt_delta": args.adapt_delta,
                "max_treedepth": args.max_treedepth,
                "seed": args.seed,
                "inits": args.inits,
                "out": str(out_dir / f"{c}.nc"),
            }
            for c in range(1, args.chains + 1)
        ]
        # Compile once before timing the chains, so parallel chains do not build the same model twice.
        from mimix.engines import ChainSettings, run_chain
        from mimix.models import stan_data

        compile_start = time.perf_counter()
        run_chain(
            engine,
            model,
            stan_data(model_input, args.factors),
            ChainSettings(seed=1, warmup=1, draws=1, refresh=10**6),
            [],
            logging.getLogger("bench"),
        )
        compile_seconds = time.perf_counter() - compile_start
        cold = cold_compile_seconds(model, stan_data(model_input, args.factors)) if args.cold_compile else None
        start = time.perf_counter()
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=args.parallel, mp_context=context) as pool:
            jobs = list(pool.map(_chain_job, jobs_args))
        wall = time.perf_counter() - start
        record = summarize(args.case, model, [Path(j["out"]) for j in jobs_args], jobs, args, wall)
        record.update(
            {
                "N": n,
                "K": k,
                "P": int(model_input.X.shape[1]),
                "factors": args.factors if model != "mimix_nofactor" else 0,
                "compile_seconds": compile_seconds,
                "cold_compile_seconds": cold,
                "numpy_floor_seconds_per_gradient": floor,
                "adapt_delta": args.adapt_delta,
                "max_treedepth": args.max_treedepth,
                "inits": args.inits,
                "commit": commit,
                "cores": os.cpu_count(),
                "machine": platform.machine(),
                "parallel": args.parallel,
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "note": args.note,
            }
        )
        print_row(args, record)
        if not args.no_record:
            with RESULTS_FILE.open("a") as handle:
                handle.write(json.dumps(record, default=float) + "\n")


if __name__ == "__main__":
    main()
