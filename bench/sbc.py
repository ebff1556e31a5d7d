"""Simulation-based calibration (Talts et al. 2018) of the three MIMIX Stan models.

    python bench/sbc.py [--models mimix_nofactor mimix_gaussian mimix] [--replicates 200]
                        [--warmup 200] [--draws 198] [--thin 2] [--max-minutes 0] [--summary-only]

For each replicate: draw every parameter from the prior exactly as the paper (and each .stan
header) writes the model, independently of the Stan code; simulate counts at a fixed read depth;
fit one NUTS chain (PyStan, in this process; the model is compiled once and every later
``stan.build`` is a cache hit); record the rank of the true value among the thinned posterior
draws for mu, sigma2 and beta (each row also records ``true_nc_cells``, the zero cells of rare taxa
that mimix_nofactor samples non-centred, so the replicates that test that map can be counted).
Ties (beta is exactly 0 under the spike) are broken uniformly at random, which keeps the ranks
uniform for discrete and mixed quantities. If model code, marginalization and sampler are right,
ranks are uniform on 0..n (n = thinned draws): checked by a chi-square test on 10 bins, per
element (Bonferroni over the elements of a quantity) and pooled over elements, and shown as rank
histograms (PNG).

The global probability (``global_prob``, P(any inclusion indicator of the treatment column is on
| data)) is checked two ways: (1) the true event I = any(omega) is ranked among the posterior draws
of any(omega) (omega is drawn from its exact conditional in generated quantities), with random
tie-breaking, chi-square as above; (2) calibration of the Rao-Blackwellized probability itself:
p = mean of global_prob over draws, z = sum(I - p) / sqrt(sum p (1 - p)), and a reliability plot.

Tiny configuration (the issue's): N = 20, K = 8, L = 2, P = 1, one blocking factor with 4 levels,
read depth 1000 per sample. One replicate per row of <out>/<model>_ranks.csv (``--out``, default
bench/sbc), appended as it finishes (a rerun resumes: seeds already in the file are skipped); the
summary (summary.md) and rank histograms go to the same folder. Run by hand, never in CI:

    nice -n 5 python bench/sbc.py --replicates 200 --warmup 200 --draws 198 --thin 2
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from mimix.density import noncentred_cells  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "sbc"
N, K, L, P, LEVELS, DEPTH = 20, 8, 2, 1, 4, 1000
A_GRID = np.round(np.arange(1, 51) / 100, 2)
QUANTITIES = ("mu", "sigma2", "beta")
BINS = 10
MAX_TREEDEPTH = 10
ADAPT_DELTA = 0.9


def inv_gamma_11(rng: np.random.Generator, size=None) -> np.ndarray:
    """InvGamma(shape 1, scale 1) = 1 / Gamma(shape 1, rate 1)."""
    return 1.0 / rng.gamma(1.0, 1.0, size=size)


def design() -> tuple[np.ndarray, np.ndarray]:
    """X (N x 1): samples 2 and 4 of each block of 5 treated; block index (N x 1), 1-based."""
    block = np.repeat(np.arange(LEVELS), N // LEVELS)
    treated = np.tile(np.arange(N // LEVELS) % 2, LEVELS).astype(float)
    return treated[:, None], (block + 1)[:, None]


def draw_prior(model: str, rng: np.random.Generator) -> dict:
    """Parameters and counts from the prior predictive distribution of one model."""
    X, block = design()
    sigma2_mu = inv_gamma_11(rng)
    mu = rng.normal(0, np.sqrt(sigma2_mu), K)
    sigma2 = inv_gamma_11(rng, K)
    sigma2_g = inv_gamma_11(rng, 1)  # Q = 1 blocking factor
    sigma2_b = inv_gamma_11(rng, P)
    extra: dict = {"sigma2_mu": sigma2_mu, "sigma2_g": sigma2_g[0], "sigma2_b": sigma2_b[0]}
    if model == "mimix_nofactor":
        pi = rng.beta(1, K, P)  # pi_j ~ Beta(1, K)
        omega = rng.random((K, P)) < pi  # omega_kj ~ Bernoulli(pi_j)
        beta = omega * rng.normal(0, np.sqrt(sigma2_b), (K, P))  # beta_tilde_kj ~ N(0, sigma2_b[j])
        gamma = rng.normal(0, np.sqrt(sigma2_g[0]), (LEVELS, K))  # gamma_kr ~ N(0, sigma2_g)
        mean = mu + X @ beta.T + gamma[block[:, 0] - 1]
    else:
        if model == "mimix":
            a = rng.choice(A_GRID, L)  # a_l uniform on the grid
            nu = rng.gamma(1.0, 1.0)  # nu ~ Gamma(1, rate 1)
            phi = rng.gamma(a[:, None], 1.0 / nu, (L, K))  # phi_lk ~ Gamma(a_l, rate nu)
            psi = rng.exponential(2.0, (L, K))  # psi_lk ~ Exponential(rate 1/2), mean 2
            Lambda = rng.normal(0, np.sqrt(psi) * phi)  # Lambda_lk ~ N(0, psi_lk phi_lk^2)
            extra |= {"nu": nu, "a1": a[0], "a2": a[1]}
        elif model == "mimix_gaussian":
            sigma2_lambda = inv_gamma_11(rng, L)  # sigma2_lambda_l ~ InvGamma(1, 1)
            Lambda = rng.normal(0, np.sqrt(sigma2_lambda)[:, None], (L, K))
        else:
            raise ValueError(model)
        pi = rng.beta(1, L, P)  # pi_j ~ Beta(1, L)
        omega = rng.random((L, P)) < pi  # omega_lj ~ Bernoulli(pi_j)
        b = omega * rng.normal(0, np.sqrt(sigma2_b), (L, P))
        g = rng.normal(0, np.sqrt(sigma2_g[0]), (LEVELS, L))  # g_lr ~ N(0, sigma2_g)
        F = X @ b.T + g[block[:, 0] - 1] + rng.normal(size=(N, L))  # f_i ~ N(b x_i + g, I)
        mean = mu + F @ Lambda
        beta = Lambda.T @ b  # K x P
    theta = mean + rng.normal(0, np.sqrt(sigma2), (N, K))  # sigma2 broadcast over taxa (columns)
    prob = np.exp(theta - theta.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    Y = np.vstack([rng.multinomial(DEPTH, row) for row in prob])
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
    truth = {"mu": mu, "sigma2": sigma2, "beta": beta[:, 0]}
    extra |= {"pi": pi[0], "n_on": int(omega.sum()), "zero_share": float((Y == 0).mean())}
    # cells mimix_nofactor samples non-centred (zeros of rare taxa): the replicates with some test that map
    extra["nc_cells"] = int(noncentred_cells(Y).sum())
    return {"data": data, "truth": truth, "any_on": bool(omega.any(axis=0)[0]), "extra": extra}


def rank_of(truth: np.ndarray, draws: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of each truth among its draws (draws: n x elements), ties broken uniformly at random."""
    below = (draws < truth[None, :]).sum(axis=0)
    ties = (draws == truth[None, :]).sum(axis=0)
    return below + rng.integers(0, ties + 1)


def ess_min(draws: np.ndarray) -> float:
    """Smallest bulk ESS over the columns of a (n x elements) matrix of thinned draws."""
    import arviz as az

    values = [float(az.ess(draws[None, :, j], method="bulk")) for j in range(draws.shape[1])]
    values = [v for v in values if np.isfinite(v)]
    return min(values) if values else float("nan")


def replicate(model: str, seed: int, warmup: int, draws: int, thin: int, logger: logging.Logger) -> dict:
    from mimix.engines import ChainSettings, EngineError, run_chain

    rng = np.random.default_rng(seed)
    sim = draw_prior(model, rng)
    settings = ChainSettings(
        seed=seed,
        warmup=warmup,
        draws=draws,
        thin=thin,
        adapt_delta=ADAPT_DELTA,
        max_treedepth=MAX_TREEDEPTH,
        refresh=10**6,
    )
    row: dict = {"model": model, "seed": seed, **{f"true_{k}": v for k, v in sim["extra"].items()}}
    start = time.perf_counter()
    try:
        result = run_chain("pystan", model, sim["data"], settings, [*QUANTITIES, "global_prob", "omega"], logger)
    except EngineError as err:
        row |= {"failed": str(err)[:300], "seconds": time.perf_counter() - start}
        return row
    n_draws = result.draws["mu"].shape[0]
    depth = result.stats["tree_depth"]
    row |= {
        "seconds": time.perf_counter() - start,
        "build_seconds": result.timings.get("compile_seconds", np.nan),
        "n_ranks": n_draws,  # ranks take the values 0..n_ranks
        "divergences": int(result.stats["diverging"].sum()),
        "treedepth_hits": int((depth >= MAX_TREEDEPTH).sum()),
        "mean_leapfrog": float(result.stats["n_steps"].mean()),
        "step_size": float(result.stats["step_size"][0]),
    }
    tie_rng = np.random.default_rng([seed, 7])
    for name, truth in sim["truth"].items():
        posterior = result.draws[name].reshape(n_draws, -1)
        if name == "beta":
            posterior = result.draws[name][:, :, 0]
        for i, rank in enumerate(rank_of(np.ravel(truth), posterior, tie_rng)):
            row[f"rank_{name}[{i}]"] = int(rank)
        if name in ("mu", "sigma2"):
            row[f"ess_{name}"] = ess_min(posterior)
    event = result.draws["omega"][:, :, 0].reshape(n_draws, -1).any(axis=1).astype(float)
    row["rank_global"] = int(rank_of(np.array([float(sim["any_on"])]), event[:, None], tie_rng)[0])
    row["global_prob"] = float(result.draws["global_prob"][:, 0].mean())
    row["any_on"] = bool(sim["any_on"])
    return row


def chi_square_p(ranks: np.ndarray, n_ranks: int, bins: int = BINS) -> float:
    """Chi-square test of uniformity of integer ranks on 0..n_ranks, 10 bins of (near) equal width;
    expected counts follow the number of integers in each bin, so n_ranks + 1 need not be a multiple
    of the number of bins."""
    from scipy import stats

    ranks = np.asarray(ranks, dtype=int)
    which = (ranks * bins) // (n_ranks + 1)
    counts = np.bincount(which, minlength=bins)
    width = np.bincount((np.arange(n_ranks + 1) * bins) // (n_ranks + 1), minlength=bins)
    return float(stats.chisquare(counts, f_exp=len(ranks) * width / width.sum()).pvalue)


def summarize(models: list[str], out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-quantity tests and one PNG per model; returns (tests, per-model run statistics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    rows, runs = [], []
    for model in models:
        path = out / f"{model}_ranks.csv"
        if not path.exists():
            continue
        table = pd.read_csv(path)
        failed = int(table["failed"].notna().sum()) if "failed" in table else 0
        sub = table[table["failed"].isna()] if "failed" in table else table
        n_ranks = int(sub["n_ranks"].iloc[0])
        assert (sub["n_ranks"] == n_ranks).all(), "mixed thinning settings in one ranks file"
        runs.append(
            {
                "model": model,
                "replicates": len(sub),
                "failed": failed,
                "n_ranks": n_ranks,
                "sampling_seconds": float(sub["seconds"].sum()),
                "median_seconds": float(sub["seconds"].median()),
                "max_build_seconds_after_first": float(sub["build_seconds"].iloc[1:].max()) if len(sub) > 1 else np.nan,
                "replicates_with_divergences": int((sub["divergences"] > 0).sum()),
                "divergent_transitions": int(sub["divergences"].sum()),
                "replicates_with_treedepth_hits": int((sub["treedepth_hits"] > 0).sum()),
                "median_min_ess_mu": float(sub["ess_mu"].median()),
                "median_min_ess_sigma2": float(sub["ess_sigma2"].median()),
                "replicates_with_nc_cells": int((sub["true_nc_cells"] > 0).sum()) if "true_nc_cells" in sub else np.nan,
            }
        )
        figure, axes = plt.subplots(1, 4, figsize=(15, 3.3))
        # 99% band of a bin count under uniformity (pooled histogram, binomial per bin)
        for ax, name in zip(axes[:3], QUANTITIES, strict=True):
            columns = [c for c in sub.columns if c.startswith(f"rank_{name}[")]
            pvalues = [chi_square_p(sub[c].to_numpy(), n_ranks) for c in columns]
            pooled = sub[columns].to_numpy().ravel().astype(int)
            rows.append(
                {
                    "model": model,
                    "quantity": name,
                    "replicates": len(sub),
                    "elements": len(columns),
                    "min_p_element": min(pvalues),
                    "bonferroni_p_elements": min(1.0, min(pvalues) * len(columns)),
                    "pooled_p": chi_square_p(pooled, n_ranks),
                }
            )
            which = (pooled * BINS) // (n_ranks + 1)
            counts = np.bincount(which, minlength=BINS)
            expected = len(pooled) / BINS
            lo, hi = stats.binom.ppf([0.005, 0.995], len(pooled), 1 / BINS)
            ax.axhspan(lo, hi, color="#DDDDDD")
            ax.bar(np.arange(BINS), counts, width=0.9, color="#0072B2")
            ax.axhline(expected, color="#D55E00", ls="--", lw=1)
            ax.set_title(f"{name} ({len(columns)} el. pooled), p = {rows[-1]['pooled_p']:.2g}", fontsize=9)
            ax.set_xlabel(f"rank bin (ranks 0..{n_ranks})")
        axes[0].set_ylabel(f"{model}: count")
        p, y = sub["global_prob"].to_numpy(), sub["any_on"].astype(float).to_numpy()
        z = float((y - p).sum() / np.sqrt(max((p * (1 - p)).sum(), 1e-12)))
        rows.append(
            {
                "model": model,
                "quantity": "global_prob",
                "replicates": len(sub),
                "elements": 1,
                "min_p_element": chi_square_p(sub["rank_global"].to_numpy(), n_ranks),
                "bonferroni_p_elements": chi_square_p(sub["rank_global"].to_numpy(), n_ranks),
                "pooled_p": chi_square_p(sub["rank_global"].to_numpy(), n_ranks),
                "mean_prob": float(p.mean()),
                "true_frequency": float(y.mean()),
                "z": z,
                "z_p": float(2 * stats.norm.sf(abs(z))),
            }
        )
        edges = np.linspace(0, 1, 6)
        which = np.clip(np.digitize(p, edges) - 1, 0, 4)
        ax = axes[3]
        ax.plot([0, 1], [0, 1], color="#999999", lw=1)
        for b in range(5):
            mask = which == b
            if mask.any():
                m, f, n = p[mask].mean(), y[mask].mean(), mask.sum()
                half = 1.96 * np.sqrt(max(m * (1 - m), 1e-9) / n)
                ax.fill_between([m - 0.01, m + 0.01], m - half, m + half, color="#DDDDDD")
                ax.scatter(m, f, s=10 + 100 * n / len(p), color="#0072B2", zorder=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("posterior P(any inclusion), binned")
        ax.set_ylabel("frequency of the true event")
        ax.set_title(f"global_prob: z = {z:.2f}, event-rank p = {rows[-1]['pooled_p']:.2g}", fontsize=9)
        figure.suptitle(f"SBC {model}: {len(sub)} replicates, ranks 0..{n_ranks}; grey = 99% band", fontsize=10)
        figure.tight_layout()
        figure.savefig(out / f"{model}_ranks.png", dpi=110)
        plt.close(figure)
    return pd.DataFrame(rows), pd.DataFrame(runs)


def write_summary(tests: pd.DataFrame, runs: pd.DataFrame, command: str, out: Path) -> None:
    n_tests = len(tests)
    alpha = 0.05
    lines = [
        "# Simulation-based calibration of the MIMIX Stan models",
        "",
        f"Configuration: N = {N}, K = {K}, L = {L}, P = {P}, one blocking factor with {LEVELS} levels, "
        f"read depth {DEPTH}; adapt_delta {ADAPT_DELTA}, max tree depth {MAX_TREEDEPTH}; PyStan, one chain per "
        "replicate, one process. Written by bench/sbc.py.",
        "",
        "Command:",
        "",
        f"    {command}",
        "",
        "## Runs",
        "",
        runs.to_markdown(index=False, floatfmt=".3g"),
        "",
        "## Rank uniformity",
        "",
        "Chi-square on 10 bins. `min_p_element`: smallest p over the elements of a quantity (mu: 8 taxa, "
        "sigma2: 8, beta: 8); `bonferroni_p_elements`: that times the number of elements; `pooled_p`: all "
        "elements' ranks in one histogram (elements of one replicate are dependent, so read it as descriptive). "
        "global_prob: rank of the true event any(omega) among the posterior draws of any(omega), and "
        "z = sum(I - p) / sqrt(sum p(1 - p)) for the posterior mean probability p.",
        "",
        tests.to_markdown(index=False, floatfmt=".3g"),
        "",
        f"Verdict at family-wise alpha = {alpha} with Bonferroni over all {n_tests} quantity-level tests "
        f"(threshold {alpha / n_tests:.2g} on `bonferroni_p_elements`, on `z_p` for global_prob as well):",
        "",
    ]
    for _, row in tests.iterrows():
        ps = [row["bonferroni_p_elements"]]
        if row["quantity"] == "global_prob":
            ps.append(row["z_p"])
        verdict = "FAIL" if min(ps) < alpha / n_tests else "pass"
        lines.append(
            f"- {row['model']} {row['quantity']}: {verdict} (p = {min(ps):.3g}, {row['replicates']} replicates)"
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mimix_nofactor", "mimix_gaussian", "mimix"])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--draws", type=int, default=198)
    parser.add_argument("--thin", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--max-minutes", type=float, default=0.0, help="per model; 0 = no limit")
    parser.add_argument("--summary-only", action="store_true", help="only re-read the CSVs and summarize")
    parser.add_argument("--command", default=None, help="command line to record in summary.md")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the rank CSVs, PNGs and summary.md")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("sbc")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False  # the sampler's progress lines are not wanted here
    for model in [] if args.summary_only else args.models:
        path = args.out / f"{model}_ranks.csv"
        done = set(pd.read_csv(path)["seed"]) if path.exists() else set()
        seeds = [args.seed + r for r in range(args.replicates) if args.seed + r not in done]
        start = time.perf_counter()
        print(f"{model}: {len(done)} replicates on file, {len(seeds)} to run", file=sys.stderr, flush=True)
        for count, seed in enumerate(seeds, 1):
            row = replicate(model, seed, args.warmup, args.draws, args.thin, logger)
            frame = pd.DataFrame([row])
            if path.exists():
                old = pd.read_csv(path)
                frame = pd.concat([old, frame], ignore_index=True)
            frame.to_csv(path, index=False)
            elapsed = time.perf_counter() - start
            print(
                f"{model} {count}/{len(seeds)} seed {seed}: {row['seconds']:.1f} s "
                f"(build {row.get('build_seconds', float('nan')):.1f} s), "
                f"div {row.get('divergences', '-')}, treedepth hits {row.get('treedepth_hits', '-')}, "
                f"{'FAILED ' + row['failed'][:80] if 'failed' in row else ''} [{elapsed / 60:.1f} min]",
                file=sys.stderr,
                flush=True,
            )
            if args.max_minutes and elapsed > 60 * args.max_minutes:
                print(f"{model}: time limit reached after {count} replicates", file=sys.stderr, flush=True)
                break
    tests, runs = summarize(args.models, args.out)
    command = args.command or "python " + " ".join(sys.argv)
    write_summary(tests, runs, command, args.out)
    pd.set_option("display.width", 200)
    print(runs.to_string(index=False))
    print(tests.to_string(index=False))


if __name__ == "__main__":
    main()
