"""One chain of one model: seeds, initial values, retries, and the compact saved draws."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace

import numpy as np

from mimix.datastage import ModelInput
from mimix.density import noncentred_cells, reference_taxa, theta_free_from
from mimix.engines import ChainSettings, EngineError, run_chain, to_inference_data
from mimix.models import SAVED_VARIABLES, coordinates, stan_data

PSEUDOCOUNT = 0.5  # added to every count before the log-ratio transform of the initial theta


def chain_seed(base_seed: int, model: str, chain: int, attempt: int = 1) -> int:
    """A reproducible seed per (model, chain, attempt), well spread from one base seed."""
    digest = hashlib.sha256(f"{base_seed}:{model}:{chain}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % (2**31 - 1)


def centred_log_ratio(counts: np.ndarray, pseudocount: float = PSEUDOCOUNT) -> np.ndarray:
    """clr of the proportions after adding a pseudocount (zeros have no logarithm)."""
    logs = np.log(counts + pseudocount)
    return logs - logs.mean(axis=1, keepdims=True)


def paper_inits(
    data: dict, rng: np.random.Generator, model: str = "mimix_nofactor", jitter: float = 0.1
) -> dict[str, np.ndarray]:
    """Moment-based initial values as in the original MIMIX code.

    theta from the centred log-ratio of the proportions, mu its column means, sigma2 its column
    variances; each chain gets a small random jitter so chains start apart. The factor models
    sample theta as log-ratios to each sample's reference taxon (``theta_free``), so they get
    those. In the cells mimix_nofactor samples non-centred (zero counts of rare taxa,
    :func:`mimix.density.noncentred_cells`) the coordinate is theta's deviation from its prior
    mean in units of sigma_k^NC_POWER, which starts at 0. Parameters not set here start from
    Stan's default (uniform(-2, 2) on the unconstrained scale).
    """
    Y = np.asarray(data["Y"], dtype=float)
    theta = centred_log_ratio(Y)
    theta = theta + rng.normal(0.0, jitter, size=theta.shape)
    mu = theta.mean(axis=0)
    sigma2 = np.maximum(theta.var(axis=0, ddof=1), 0.05)
    if model == "mimix_nofactor":
        return {"theta_raw": np.where(noncentred_cells(Y), 0.0, theta), "mu": mu, "sigma2": sigma2}
    return {"theta_free": theta_free_from(theta, reference_taxa(Y)), "mu": mu, "sigma2": sigma2}


def fit_chain(
    model: str,
    model_input: ModelInput,
    engine: str,
    n_factors: int,
    settings: ChainSettings,
    base_seed: int,
    inits: str,
    max_attempts: int,
    logger: logging.Logger,
):
    """Run one chain, retrying with new seeds and inits when it fails; return InferenceData."""
    data = stan_data(model_input, n_factors)
    dims = SAVED_VARIABLES[model]
    errors = []
    for attempt in range(1, max_attempts + 1):
        seed = chain_seed(base_seed, model, settings.chain_id, attempt)
        init = paper_inits(data, np.random.default_rng(seed), model) if inits == "paper" else None
        attempt_settings = replace(settings, seed=seed, init=init)
        logger.info(
            "model %s, chain %d, attempt %d/%d: engine %s, seed %d, %d warmup + %d draws (thin %d), "
            "adapt_delta %.3f, max_treedepth %d, inits %s",
            model,
            settings.chain_id,
            attempt,
            max_attempts,
            engine,
            seed,
            settings.warmup,
            settings.draws,
            settings.thin,
            settings.adapt_delta,
            settings.max_treedepth,
            inits,
        )
        try:
            result = run_chain(engine, model, data, attempt_settings, list(dims), logger)
        except EngineError as err:
            if "compil" in str(err):  # a program that does not build will not build on a retry
                raise
            errors.append(str(err))
            logger.warning("chain %d attempt %d failed: %s", settings.chain_id, attempt, err)
            continue
        attrs = {
            "model": model,
            "chain": settings.chain_id,
            "seed": seed,
            "attempt": attempt,
            "warmup": settings.warmup,
            "draws": settings.draws,
            "thin": settings.thin,
            "adapt_delta": settings.adapt_delta,
            "max_treedepth": settings.max_treedepth,
            "inits": inits,
            "method": settings.method,
            "n_factors": n_factors if model != "mimix_nofactor" else 0,
        }
        return to_inference_data(result, dims, coordinates(model_input, n_factors), attrs)
    raise EngineError(
        f"model {model}, chain {settings.chain_id}: failed {max_attempts} time(s) with new inits each time; "
        f"last Stan error: {errors[-1] if errors else 'unknown'}; try sampling.inits: stan, a higher "
        "sampling.max_attempts, or check the data"
    )
