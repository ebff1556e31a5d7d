"""Benchmark: Stan's per-gradient time of the MIMIX programs, without a sampler, writers or Python.

    python bench/gradient.py CASE [--models mimix_gaussian] [--rev HEAD~3] [--levels O1 none]
                                  [--factors 10] [--rounds 5] [--reps 30] [--blocks 5]

Each program (the working tree's, and the one at git revision ``--rev`` for a before/after
comparison) is translated by the stanc bundled in httpstan at each of ``--levels`` (O1 = stanc
--O1, the engines' setting; none = no optimization) and compiled with g++ into a small harness
(bench/gradient/harness.cpp) with the flags httpstan uses, against httpstan's Stan headers. The
harness evaluates log density and gradient at a fixed random point ``--reps`` times per block,
``--blocks`` blocks per run; the runs of all programs are interleaved for ``--rounds`` rounds, and
the fastest block is reported (this machine is a shared VM: medians move by 20-40 % from minute
to minute, minima much less). The same point gives the same log density in every build of a
program, which the table shows as a check that two builds of one program (different stanc
levels) compute the same thing.

Binaries are cached under ~/.cache/mimix/gradient (a build takes 2-3 minutes). Records are
appended to bench/gradient.jsonl. Run by hand, never in the test suite.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

HARNESS = ROOT / "bench" / "gradient" / "harness.cpp"
RECORDS = ROOT / "bench" / "gradient.jsonl"
CACHE = Path(os.environ.get("MIMIX_CACHE", Path.home() / ".cache" / "mimix")) / "gradient"


def httpstan_dir() -> Path:
    import httpstan

    return Path(httpstan.__file__).parent


def program_at(model: str, rev: str | None) -> str:
    """The model's program with includes expanded, from the working tree or from git revision rev."""
    from mimix.models import expand_includes, program_code

    if rev is None:
        return program_code(model)
    with tempfile.TemporaryDirectory() as folder:
        listing = subprocess.run(
            ["git", "ls-tree", "-r", "--name-only", rev, "workflow/stan"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        for name in listing:
            target = Path(folder) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(subprocess.run(["git", "show", f"{rev}:{name}"], cwd=ROOT, capture_output=True,
                                              check=True).stdout)  # fmt: skip
        return expand_includes(Path(folder) / "workflow" / "stan" / f"{model}.stan")


def build(program: str, level: str) -> Path:
    """Compile program (stanc at optimization level O1 or none, then g++) into a harness binary;
    cached by content."""
    stan_dir = httpstan_dir()
    key = hashlib.sha256((program + level + HARNESS.read_text() + str(stan_dir)).encode()).hexdigest()[:16]
    binary = CACHE / f"harness-{key}"
    if binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        source, header = Path(folder) / "model.stan", Path(folder) / "model.hpp"
        source.write_text(program)
        stanc = [str(stan_dir / "stanc"), "--name", "model", "--o", str(header), str(source)]
        subprocess.run(stanc if level == "none" else stanc[:1] + [f"--{level}"] + stanc[1:], check=True,
                       capture_output=True)  # fmt: skip
        # httpstan's compiler flags and macros (httpstan/models.py), C++17 for the harness's own code
        subprocess.run(
            ["g++", "-O3", "-std=c++17", "-w", "-DBOOST_DISABLE_ASSERTS", "-DBOOST_PHOENIX_NO_VARIADIC_EXPRESSION",
             "-DSTAN_THREADS", "-D_REENTRANT", "-D_GLIBCXX_USE_CXX11_ABI=0", f"-I{stan_dir / 'include'}",
             "-include", str(header), str(HARNESS), "-o", str(binary) + ".part", f"-L{stan_dir / 'lib'}", "-ltbb",
             f"-Wl,-rpath,{stan_dir / 'lib'}"],
            check=True, capture_output=True,
        )  # fmt: skip
    os.replace(str(binary) + ".part", binary)
    return binary


def case_data(case: str, factors: int, folder: Path) -> tuple[Path, tuple[int, int]]:
    """The case's Stan data as JSON (the data stage of bench/run.py's case, stan_data of mimix.models)."""
    from run import prepare_case

    from mimix.engines import _json_ready
    from mimix.models import stan_data

    model_input = prepare_case(case, folder)
    path = folder / "data.json"
    path.write_text(json.dumps(_json_ready(stan_data(model_input, factors))))
    return path, model_input.counts.shape


def main() -> None:
    from run import CASES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--models", nargs="+", default=["mimix", "mimix_gaussian", "mimix_nofactor"])
    parser.add_argument("--rev", help="also time the programs at this git revision (e.g. HEAD~3)")
    parser.add_argument("--levels", nargs="+", default=["O1"], choices=["O1", "none"], help="stanc optimization")
    parser.add_argument("--factors", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--note", default="")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "workflow/stan"], cwd=ROOT, capture_output=True, text=True)
    here = commit.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    variants = []  # (model, source label, stanc level, program)
    for model in args.models:
        for source, rev in [(here, None)] + ([(args.rev, args.rev)] if args.rev else []):
            program = program_at(model, rev)
            variants += [(model, source, level, program) for level in args.levels]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:  # two builds at a time (2 cores)
        binaries = list(pool.map(lambda v: build(v[3], v[2]), variants))
    print(f"# built {len(binaries)} programs in {time.perf_counter() - start:.0f} s", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        data, (n, k) = case_data(args.case, args.factors, Path(folder))
        runs: list[list[list[float]]] = [[] for _ in variants]
        for _ in range(args.rounds):
            for i, binary in enumerate(binaries):
                out = subprocess.run(
                    [str(binary), str(data), str(args.reps), str(args.blocks), str(args.seed)],
                    capture_output=True, text=True, check=True,
                ).stdout.split()  # fmt: skip
                runs[i].append([float(x) for x in out])
    print(f"# case {args.case}: N={n}, K={k}, L={args.factors}; {args.rounds} rounds x {args.blocks} blocks x "
          f"{args.reps} gradients; ms per gradient: fastest block (median of the runs' medians)")  # fmt: skip
    print(f"{'model':<16} {'program':<22} {'stanc':<6} {'params':>7} {'log density':>16} {'ms/grad':>8} {'median':>8}")
    for (model, source, level, _), results in zip(variants, runs, strict=True):
        params, lp = int(results[0][0]), results[0][1]
        fastest = min(r[3] for r in results)
        median = sorted(r[4] for r in results)[len(results) // 2]
        print(f"{model:<16} {source:<22} {level:<6} {params:>7} {lp:>16.6f} {fastest:>8.3f} {median:>8.3f}")
        if not args.no_record:
            record = {
                "date": time.strftime("%Y-%m-%d %H:%M"), "case": args.case, "N": n, "K": int(k),
                "factors": args.factors if model != "mimix_nofactor" else 0, "model": model, "program": source,
                "stanc_optimization": level, "params": params, "log_density": lp, "ms_per_gradient_fastest": fastest,
                "ms_per_gradient_median": median, "rounds": args.rounds, "blocks": args.blocks, "reps": args.reps,
                "machine": platform.machine(), "cores": os.cpu_count(), "note": args.note,
            }  # fmt: skip
            with RECORDS.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
