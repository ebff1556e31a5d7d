"""Short single-chain NUTS runs of the MIMIX Stan models on NutNet-100, for bench/geometry-log.md.

Throw-away measurement tool, kept so the numbers in the log can be reproduced:

    python bench/explore_geometry.py workflow/stan/mimix_nofactor.stan --warmup 250 --draws 200
    python bench/explore_geometry.py workflow/stan/mimix.stan --kind dl --L 10 --warmup 150 --draws 100

Reads the real data from /work/shared/data/nutnet (never copied into the repository). Prints one
JSON line: seconds, mean leapfrog steps, tree depth, step size, divergences, minimum bulk ESS and
ESS/s for beta, global_prob and other named quantities, and posterior row sums of squares of
Lambda (how many factors are used).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import arviz as az
import numpy as np

from mimix.density import dl_loading_gain, reference_taxa, theta_free_from
from mimix.engines import build_pystan_model
from mimix.models import expand_includes

DATA = Path("/work/shared/data/nutnet")


def nutnet(n_top: int = 100, L: int = 10) -> dict:
    """NutNet-100 in the models' data interface (top OTUs by prevalence + one 'other' column)."""
    Y = np.loadtxt(DATA / "Y.csv", delimiter=",", dtype=np.int64)
    X = np.loadtxt(DATA / "X.csv", delimiter=",")
    Zl = np.loadtxt(DATA / "Z.csv", delimiter=",", dtype=int)
    order = np.lexsort((-Y.sum(0), -(Y > 0).sum(0)))
    top, rest = order[:n_top], order[n_top:]
    Yk = np.column_stack([Y[:, top], Y[:, rest].sum(1)])
    R = int(Zl.max())
    level_factor, level_parent = np.zeros(R, int), np.zeros(R, int)
    for q in range(Zl.shape[1]):
        level_factor[np.unique(Zl[:, q]) - 1] = q + 1
    for r in np.unique(Zl[:, 1]):
        (parent,) = np.unique(Zl[Zl[:, 1] == r, 0])
        level_parent[r - 1] = parent
    N, K = Yk.shape
    P = X.shape[1]
    return {
        "N": N, "K": K, "P": P, "L": L, "Q": Zl.shape[1], "R": R, "Y": Yk.tolist(), "X": X.tolist(),
        "block": Zl.tolist(), "level_factor": level_factor.tolist(), "level_parent": level_parent.tolist(),
        "T": P, "term_cols": np.eye(P, dtype=int).tolist(), "A": 50, "a_grid": (np.arange(1, 51) / 100).tolist(),
    }  # fmt: skip


def inits(data: dict, kind: str) -> dict:
    """theta from log(Y + 0.5); for factor models F, Lambda from its SVD; the rest Stan's default."""
    th = np.log(np.asarray(data["Y"], float) + 0.5)
    th -= th.mean(1, keepdims=True)
    mu = th.mean(0)
    init = {"theta": th.tolist(), "mu": mu.tolist(), "sigma2": np.maximum(th.var(0), 0.1).tolist()}
    if kind == "nofactor":
        init["h"] = np.tile(mu, (data["R"], 1)).tolist()
        # the production program samples theta_raw (theta itself outside the non-centred rare zero cells)
        init["theta_raw"] = init["theta"]
        return init
    # factor models sample theta as log-ratios to each sample's most abundant taxon (theta_free)
    init["theta_free"] = theta_free_from(th, reference_taxa(data["Y"])).tolist()
    del init["theta"]
    L, N = data["L"], data["N"]
    U, s, Vt = np.linalg.svd(th - mu, full_matrices=False)
    F, Lam = U[:, :L] * np.sqrt(N), (s[:L, None] * Vt[:L]) / np.sqrt(N)
    init.update(F=F.tolist(), h=np.zeros((data["R"], L)).tolist(),
                sigma2=np.maximum((th - mu - F @ Lam).var(0), 0.05).tolist())  # fmt: skip
    if kind == "dl":
        phi = np.abs(Lam) + 0.01
        psi = np.ones_like(Lam)
        gain = dl_loading_gain({"psi": psi, "phi": phi}, N)  # Lambda = z_Lambda g(s) (mimix.stan)
        init.update(phi=phi.tolist(), psi=psi.tolist(), z_Lambda=(Lam / gain).tolist(), nu=1.0)
    elif kind == "dl_centred":
        init.update(phi=(np.abs(Lam) + 0.01).tolist(), Lambda_c=Lam.tolist(), nu=1.0)
    elif kind == "gaussian":
        s2 = (Lam**2).mean(1)
        # the model samples F and h scaled by the loading sd (F_scaled, h_scaled)
        init.update(
            sigma2_lambda=s2.tolist(),
            z_Lambda=(Lam / np.sqrt(s2)[:, None]).tolist(),
            F_scaled=(F * np.sqrt(s2)).tolist(),
            h_scaled=np.zeros((data["R"], L)).tolist(),
        )
        del init["F"], init["h"]
    return init


def summarize(fit, seconds: float, names: list[str]) -> dict:
    nl, td = np.asarray(fit["n_leapfrog__"]).ravel(), np.asarray(fit["treedepth__"]).ravel()
    out = {
        "seconds": round(seconds, 1), "leapfrog_mean": float(nl.mean()), "treedepth_mean": float(td.mean()),
        "treedepth_max": int(td.max()), "stepsize": float(np.asarray(fit["stepsize__"]).ravel()[0]),
        "divergences": int(np.asarray(fit["divergent__"]).sum()), "draws": len(nl),
    }  # fmt: skip
    post = az.from_pystan(posterior=fit).posterior
    for name in names:
        if name in post:
            ess = float(np.nanmin(az.ess(post[name], method="bulk").to_array().values))
            out[f"min_ess_{name}"], out[f"ess_per_s_{name}"] = round(ess, 1), round(ess / seconds, 4)
    if "Lambda" in post:
        rows = (np.asarray(fit["Lambda"]) ** 2).sum(1).mean(-1)
        out["lambda_row_sumsq"] = sorted((round(float(x), 3) for x in rows), reverse=True)
        out["sum_sigma2"] = round(float(np.asarray(fit["sigma2"]).sum(0).mean()), 2)
    out["global_prob_mean"] = [round(float(x), 3) for x in np.asarray(fit["global_prob"]).mean(-1)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("program", type=Path)
    ap.add_argument("--kind", choices=["nofactor", "dl", "dl_centred", "gaussian"], default="nofactor")
    ap.add_argument("--L", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=250)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--max-depth", type=int, default=10)
    ap.add_argument("--delta", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    data = nutnet(L=args.L)
    t0 = time.time()
    # built as the workflow builds (includes expanded, stanc --O1)
    model, _ = build_pystan_model(expand_includes(args.program), data, args.seed, logging.getLogger("geometry"))
    build = time.time() - t0
    t0 = time.time()
    fit = model.sample(num_chains=1, num_warmup=args.warmup, num_samples=args.draws, delta=args.delta,
                       max_depth=args.max_depth, init=[inits(data, args.kind)])  # fmt: skip
    out = {"program": str(args.program), "kind": args.kind, "L": args.L, "warmup": args.warmup,
           "build_s": round(build, 1)}  # fmt: skip
    names = ["beta", "global_prob", "sigma2", "sigma2_b", "sigma2_g", "lambda_diag", "nu"]
    out.update(summarize(fit, time.time() - t0, names))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
