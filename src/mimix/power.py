"""Power analysis for planning an experiment: simulate new experiments of chosen sizes, test them.

The data-generating parameters come from a pilot: either a fitted model of the configured dataset
(posterior means of the taxon means mu_k, the taxon error variances sigma2_k and the blocking
variances, which is what the pilot tells us about the community and its noise) or the simulator's
settings (the paper's design). A new experiment has one binary treatment crossed with blocks:
``samples_per_cell`` samples per treatment level in each of ``blocks`` blocks, every sample
sequenced to ``depth`` reads. A fraction of the taxa responds with log-fold change +/- ``effect``.

    theta_i = mu + beta x_i + u_block(i) + e_i,  u ~ N(0, block_var I),  e_ik ~ N(0, sigma2_k),
    Y_i ~ Multinomial(depth, softmax(theta_i)).

Each replicate is fitted and tested like a real study; the power is the fraction of replicates in
which the global test detects the treatment, with a Wilson interval for the Monte Carlo error.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mimix.simstudy import interval_calls, text_seed
from mimix.simulate import SimulatedData, SimulationSettings

POWER_COLUMNS = [
    "size",
    "replicate",
    "samples_per_cell",
    "blocks",
    "depth",
    "effect",
    "n_samples",
    "seed",
    "global_prob",
    "detected",
    "n_responding",
    "true_found",
    "false_found",
    "max_rhat",
    "seconds",
]


@dataclass(frozen=True)
class ExperimentSize:
    """One planned experiment."""

    samples_per_cell: int
    blocks: int
    depth: int
    effect: float

    @property
    def name(self) -> str:
        return f"n{self.samples_per_cell}-b{self.blocks}-d{self.depth}-e{self.effect:g}"

    @classmethod
    def from_name(cls, name: str) -> ExperimentSize:
        per_cell, blocks, depth, effect = name.split("-")
        return cls(int(per_cell[1:]), int(blocks[1:]), int(depth[1:]), float(effect[1:]))

    @property
    def n_samples(self) -> int:
        return 2 * self.samples_per_cell * self.blocks


def experiment_sizes(grid: Mapping[str, Sequence]) -> list[ExperimentSize]:
    """Every combination of the planned sizes and effect sizes."""
    return [
        ExperimentSize(int(n), int(b), int(d), float(e))
        for n, b, d, e in itertools.product(grid["samples_per_cell"], grid["blocks"], grid["depth"], grid["effect"])
    ]


@dataclass(frozen=True)
class PilotParameters:
    """What the pilot says about the community: per-taxon means and error variances, block variance."""

    taxa: tuple[str, ...]
    mu: np.ndarray
    sigma2: np.ndarray
    block_var: float
    source: str

    @classmethod
    def from_simulator(cls, settings: SimulationSettings) -> PilotParameters:
        k = settings.n_taxa
        return cls(
            taxa=tuple(f"taxon{i + 1:03d}" for i in range(k)),
            mu=np.linspace(settings.mu_start, settings.mu_end, k),
            sigma2=np.full(k, settings.error_var),
            block_var=float(settings.block_var),
            source="simulator",
        )

    @classmethod
    def from_posterior(cls, posterior, source: str) -> PilotParameters:
        """Posterior means of a fitted model (an ArviZ posterior with mu, sigma2 and sigma2_g)."""
        mu = posterior["mu"].mean(("chain", "draw"))
        sigma2 = posterior["sigma2"].mean(("chain", "draw")).to_numpy()
        # Several blocking factors (e.g. site and block) add up to the variance between blocks.
        block_var = float(posterior["sigma2_g"].mean(("chain", "draw")).sum()) if "sigma2_g" in posterior else 0.0
        return cls(tuple(str(t) for t in mu["taxon"].values), mu.to_numpy(), sigma2, block_var, source)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"taxon": list(self.taxa), "mu": self.mu, "sigma2": self.sigma2})


def replicate_seed(base_seed: int, size: str, replicate: int) -> int:
    return text_seed(f"power:{base_seed}:{size}:{replicate}")


def simulate_experiment(
    pilot: PilotParameters, size: ExperimentSize, responding_fraction: float, seed: int
) -> SimulatedData:
    """One new experiment from the pilot's parameters (see the module docstring for the model)."""
    rng = np.random.default_rng(seed)
    k = len(pilot.taxa)
    per_block = 2 * size.samples_per_cell
    block = np.repeat(np.arange(size.blocks), per_block)
    treated = np.tile(np.arange(per_block) % 2, size.blocks).astype(float)
    beta = np.zeros(k)
    responders = rng.choice(k, size=int(round(responding_fraction * k)), replace=False)
    beta[responders] = size.effect * rng.choice([-1.0, 1.0], size=responders.size)
    block_effects = rng.normal(0.0, np.sqrt(pilot.block_var), (size.blocks, k))
    errors = rng.normal(0.0, np.sqrt(pilot.sigma2), (size.n_samples, k))
    theta = pilot.mu + treated[:, None] * beta + block_effects[block] + errors
    probabilities = np.exp(theta - theta.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    counts = np.vstack([rng.multinomial(size.depth, p) for p in probabilities])

    settings = SimulationSettings(n_samples=size.n_samples, n_taxa=k, n_blocks=size.blocks, seed=seed)
    samples = pd.Index([f"sample{i + 1:03d}" for i in range(size.n_samples)], name="sample_id")
    taxa = pd.Index(list(pilot.taxa), name="taxon_id")
    metadata = pd.DataFrame(
        {
            "treatment": np.where(treated == 1, settings.levels[1], settings.levels[0]),
            "block": [str(b + 1) for b in block],
        },
        index=samples,
    )
    return SimulatedData(
        counts=pd.DataFrame(counts, index=samples, columns=taxa),
        metadata=metadata,
        beta=pd.DataFrame({f"treatment[{settings.levels[1]}]": beta}, index=taxa),
        taxonomy=pd.Series(list(pilot.taxa), index=taxa, name="lineage"),
        settings=settings,
        extra={"theta": theta},
    )


def replicate_result(
    beta_draws: np.ndarray, true_beta: np.ndarray, global_prob: float, threshold: float, interval_level: float
) -> dict[str, float | int | bool]:
    """Detection, true and false discoveries (interval excluding 0) of one fitted experiment."""
    declared = interval_calls(beta_draws, interval_level)[2]
    responding = true_beta != 0
    return {
        "global_prob": float(global_prob),
        "detected": bool(global_prob > threshold),
        "n_responding": int(responding.sum()),
        "true_found": int((declared & responding).sum()),
        "false_found": int((declared & ~responding).sum()),
    }


def wilson_interval(successes: np.ndarray, trials: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (stays inside [0, 1] with few replicates)."""
    successes, trials = np.asarray(successes, float), np.asarray(trials, float)
    p = successes / trials
    centre = (p + z**2 / (2 * trials)) / (1 + z**2 / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / (1 + z**2 / trials)
    # centre - half is 0 in exact arithmetic when there are no successes; rounding gives -3e-17.
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def power_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per planned size: power with its Wilson 95% interval, mean true and false discoveries (+/- 1.96 SE)."""
    keys = ["samples_per_cell", "blocks", "depth", "effect"]
    out = (
        rows.groupby(keys, sort=True)
        .agg(
            n_samples=("n_samples", "first"),
            replicates=("detected", "size"),
            detections=("detected", "sum"),
            n_responding=("n_responding", "mean"),
            true_found=("true_found", "mean"),
            true_found_sd=("true_found", "std"),
            false_found=("false_found", "mean"),
            false_found_sd=("false_found", "std"),
            max_rhat=("max_rhat", "max"),
        )
        .reset_index()
    )
    out["power"] = out["detections"] / out["replicates"]
    out["power_lower"], out["power_upper"] = wilson_interval(out["detections"], out["replicates"])
    for column in ("true_found", "false_found"):
        se = out.pop(f"{column}_sd").fillna(0) / np.sqrt(out["replicates"])
        out[f"{column}_lower"] = (out[column] - 1.96 * se).clip(lower=0)
        out[f"{column}_upper"] = out[column] + 1.96 * se
    return out[
        [
            *keys,
            "n_samples",
            "replicates",
            "power",
            "power_lower",
            "power_upper",
            "n_responding",
            "true_found",
            "true_found_lower",
            "true_found_upper",
            "false_found",
            "false_found_lower",
            "false_found_upper",
            "max_rhat",
        ]
    ]
