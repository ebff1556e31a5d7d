"""Simulation-based calibration (Talts et al. 2018) of the three MIMIX Stan models.

    python bench/sbc.py [--models mimix mimix_gaussian mimix_nofactor] [--replicates 200]
                        [--warmup 300] [--draws 400] [--thin 4] [--parallel 2]

For each replicate: draw every parameter from the prior exactly as the paper writes the model
(independently of the Stan code), simulate counts, fit one NUTS chain, and record the rank of the
true value among the thinned posterior draws for mu, sigma2 and beta. If the model code, the
marginalization and the sampler are right, the ranks are uniform on 0..draws/thin: checked with a
chi-square test on 10 bins (p-values per quantity, Bonferroni over quantities in the summary)
and rank histograms saved as PNG. The global probability is a probability, not a draw: its
calibration is checked by comparing the mean posterior probability with the frequency of the
true event (any inclusion indicator of the treatment on), z = sum(I - p) / sqrt(sum p (1 - p)).

Tiny configuration (the issue's): N = 20, K = 8, L = 2, P = 1, one blocking factor with 4 levels.
Run by hand (about an hour on 2 cores); writes bench/sbc/.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
OUT = ROOT / "bench" / "sbc"
N, K, L, P, LEVELS, DEPTH = 20, 8, 2, 1, 4, 2000
A_GRID = np.round(np.arange(1, 51) / 100, 2)


def inv_gamma_11(rng: np.random.Generator, size=None) -> np.ndarray:
    return 1.0 / rng.gamma(1.0, 1.0, size=size)


def design() -> tuple[np.ndarray, np.ndarray]:
    """X (N x 1): half of each block treated; block index (N x 1), 1-based."""
    block = np.repeat(np.arange(LEVELS), N // LEVELS)
    treated = np.tile(np.arange(N // LEVELS) % 2, LEVELS).astype(float)
    return treated[:, None], (block + 1)[:, None]


def draw_prior(model: str, rng: np.random.Generator) -> dict:
    """Parameters and counts from the prior predictive distribution of one model."""
    X, block = design()
    sigma2_mu = inv_gamma_11(rng)
    mu = rng.normal(0, np.sqrt(sigma2_mu), K)
    sigma2 = inv_gamma_11(rng, K)
    sigma2_g = inv_gamma_11(rng, 1)
    sigma2_b = inv_gamma_11(rng, P)
    if model == "mimix_nofactor":
        pi = rng.beta(1, K, P)
        omega = rng.random((K, P)) < pi
        beta = omega * rng.normal(0, np.sqrt(sigma2_b), (K, P))
        gamma = rng.normal(0, np.sqrt(sigma2_g[0]), (LEVELS, K))
        mean = mu + X @ beta.T + gamma[block[:, 0] - 1]
        any_on = omega.any(axis=0)
    else:
        if model == "mimix":
            a = rng.choice(A_GRID, L)
            nu = rng.gamma(1.0, 1.0)
            phi = rng.gamma(a[:, None], 1.0 / nu, (L, K))
            psi = rng.exponential(2.0, (L, K))
            Lambda = rng.normal(0, np.sqrt(psi) * phi)
        else:
            sigma2_lambda = inv_gamma_11(rng, L)
            Lambda = rng.normal(0, np.sqrt(sigma2_lambda)[:, None], (L, K))
        pi = rng.beta(1, L, P)
        omega = rng.random((L, P)) < pi
        b = omega * rng.normal(0, np.sqrt(sigma2_b), (L, P))
        g = rng.normal(0, np.sqrt(sigma2_g[0]), (LEVELS, L))
        F = X @ b.T + g[block[:, 0] - 1] + rng.normal(size=(N, L))
        mean = mu + F @ Lambda
        beta = Lambda.T @ b
        any_on = omega.any(axis=0)
    theta = mean + rng.normal(0, np.sqrt(sigma2), (N, K))
    p = np.exp(theta - theta.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    Y = np.vstack([rng.multinomial(DEPTH, row) for row in p])
    data = {
        "N": N,
        "K": K,
        "P": P,
        "L": L,
        "Q": 1,
        "R": LEVELS,
        "Y": Y,
        "X": X,
        "block": block,
        "level_factor": np.ones(LEVELS, dtype=int),
        "level_parent": np.zeros(LEVELS, dtype=int),
        "T": 1,
        "term_cols": np.ones((1, P), dtype=int),
        "A": len(A_GRID),
        "a_grid": A_GRID,
    }
    return {"data": data, "truth": {"mu": mu, "sigma2": sigma2, "beta": beta}, "any_on": any_on}


def replicate(args: tuple[str, int, int, int, int]) -> dict:
    model, seed, warmup, draws, thin = args
    from mimix.engines import ChainSettings, EngineError, run_chain

    rng = np.random.default_rng(seed)
    sim = draw_prior(model, rng)
    settings = ChainSettings(seed=seed, warmup=warmup, draws=draws, thin=thin, refresh=10**6)
    start = time.perf_counter()
    try:
        result = run_chain(
            "pystan", model, sim["data"], settings, ["mu", "sigma2", "beta", "global_prob"], logging.getLogger("sbc")
        )
    except EngineError as err:
        return {"model": model, "seed": seed, "failed": str(err)[:200]}
    row: dict = {
        "model": model,
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "divergences": int(result.stats["diverging"].sum()),
    }
    for name, truth in sim["truth"].items():
        posterior = result.draws[name].reshape(result.draws[name].shape[0], -1)
        ranks = (posterior < np.ravel(truth)[None, :]).sum(axis=0)
        for i, rank in enumerate(ranks):
            row[f"rank_{name}[{i}]"] = int(rank)
    row["global_prob"] = float(result.draws["global_prob"][:, 0].mean())
    row["any_on"] = bool(sim["any_on"][0])
    return row


def chi_square_p(ranks: np.ndarray, n_ranks: int, bins: int = 10) -> float:
    from scipy import stats

    counts, _ = np.histogram(ranks, bins=bins, range=(-0.5, n_ranks + 0.5))
    return float(stats.chisquare(counts).pvalue)


def summarize(table: pd.DataFrame, n_ranks: int) -> pd.DataFrame:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for model, sub in table.groupby("model"):
        sub = sub[sub.get("failed").isna()] if "failed" in sub else sub
        groups = {name: [c for c in sub.columns if c.startswith(f"rank_{name}[")] for name in ("mu", "sigma2", "beta")}
        figure, axes = plt.subplots(1, 4, figsize=(13, 3))
        for ax, (name, columns) in zip(axes, groups.items(), strict=False):
            pvalues = [chi_square_p(sub[c].dropna().to_numpy(), n_ranks) for c in columns]
            pooled = sub[columns].to_numpy().ravel()
            pooled = pooled[~np.isnan(pooled)]
            rows.append(
                {
                    "model": model,
                    "quantity": name,
                    "replicates": len(sub),
                    "elements": len(columns),
                    "min_p": min(pvalues),
                    "bonferroni_p": min(1.0, min(pvalues) * len(columns)),
                    "pooled_p": chi_square_p(pooled, n_ranks),
                }
            )
            ax.hist(pooled, bins=10, range=(-0.5, n_ranks + 0.5), color="#0072B2")
            ax.axhline(len(pooled) / 10, color="#D55E00", ls="--", lw=1)
            ax.set_title(f"{model}: {name} (pooled)")
            ax.set_xlabel("rank of the true value")
        p, y = sub["global_prob"].to_numpy(), sub["any_on"].astype(float).to_numpy()
        z = float((y - p).sum() / np.sqrt(max((p * (1 - p)).sum(), 1e-12)))
        rows.append(
            {
                "model": model,
                "quantity": "global_prob",
                "replicates": len(sub),
                "elements": 1,
                "mean_prob": float(p.mean()),
                "true_frequency": float(y.mean()),
                "z": z,
            }
        )
        bins = np.clip((p * 5).astype(int), 0, 4)
        axes[3].plot([0, 1], [0, 1], color="#999999", lw=1)
        for b in range(5):
            if (bins == b).any():
                axes[3].scatter(p[bins == b].mean(), y[bins == b].mean(), s=10 + 2 * (bins == b).sum(), color="#0072B2")
        axes[3].set_xlabel("posterior P(any inclusion)")
        axes[3].set_ylabel("frequency of the true event")
        axes[3].set_title("global probability calibration")
        figure.tight_layout()
        figure.savefig(OUT / f"{model}_ranks.png", dpi=120)
        plt.close(figure)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mimix_nofactor", "mimix_gaussian", "mimix"])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--thin", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    n_ranks = args.draws // args.thin
    for model in args.models:
        replicate((model, args.seed, 20, 20, 1))  # compile once before the parallel replicates
        jobs = [(model, args.seed + r, args.warmup, args.draws, args.thin) for r in range(args.replicates)]
        start = time.perf_counter()
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.parallel, mp_context=context) as pool:
            rows = list(pool.map(replicate, jobs))
        table = pd.DataFrame(rows)
        table.to_csv(OUT / f"{model}_replicates.csv", index=False)
        print(f"{model}: {len(rows)} replicates in {time.perf_counter() - start:.0f} s", flush=True)
    tables = pd.concat([pd.read_csv(OUT / f"{m}_replicates.csv") for m in args.models])
    summary = summarize(tables, n_ranks)
    summary.to_csv(OUT / "summary.tsv", sep="\t", index=False)
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
