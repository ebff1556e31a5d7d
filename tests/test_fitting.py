"""Seeds, paper inits, and retries of a failing chain (without running Stan)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from mimix import density, fitting
from mimix.datastage import ModelInput
from mimix.design import blocks_from_labels
from mimix.engines import ChainResult, ChainSettings, EngineError


def test_chain_seeds_are_reproducible_and_distinct() -> None:
    seeds = {fitting.chain_seed(1, model, chain) for model in ("mimix", "mimix_nofactor") for chain in (1, 2, 3)}
    assert len(seeds) == 6
    assert fitting.chain_seed(1, "mimix", 2) == fitting.chain_seed(1, "mimix", 2)
    assert fitting.chain_seed(1, "mimix", 2, attempt=2) != fitting.chain_seed(1, "mimix", 2)


def test_paper_inits_from_centred_log_ratios() -> None:
    Y = np.array([[10, 0, 90], [5, 5, 0]])
    inits = fitting.paper_inits({"Y": Y}, np.random.default_rng(0), jitter=0.0)
    np.testing.assert_allclose(inits["theta_raw"].sum(axis=1), 0.0, atol=1e-12)  # centred per sample
    expected = np.log(Y + 0.5) - np.log(Y + 0.5).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(inits["theta_raw"], expected)
    np.testing.assert_allclose(inits["mu"], expected.mean(axis=0))
    assert (inits["sigma2"] > 0).all()


def test_factor_model_inits_are_log_ratios_to_the_reference_taxon() -> None:
    """The factor models sample theta_free = theta_ik - theta_i,ref (most abundant taxon, first on
    ties), N x K with 0 in the reference cell: the same clr inits up to each sample's level."""
    Y = np.array([[10, 0, 90], [5, 5, 0]])
    inits = fitting.paper_inits({"Y": Y}, np.random.default_rng(0), "mimix_gaussian", jitter=0.0)
    assert "theta" not in inits and inits["theta_free"].shape == (2, 3)
    logs = np.log(Y + 0.5)
    np.testing.assert_allclose(inits["theta_free"][0], [logs[0, 0] - logs[0, 2], logs[0, 1] - logs[0, 2], 0.0])
    np.testing.assert_allclose(inits["theta_free"][1], [0.0, logs[1, 1] - logs[1, 0], logs[1, 2] - logs[1, 0]])


def test_noncentred_cells_start_at_their_prior_mean() -> None:
    """In mimix_nofactor, zero cells of a taxon seen in fewer than half the samples are sampled as
    theta's scaled deviation from its prior mean, so they start at 0; every other cell keeps
    its log-ratio init. The factor models sample every cell centred, so all keep theirs."""
    Y = np.array([[10, 0, 90], [5, 5, 0], [8, 4, 0], [3, 2, 0]])  # taxon 3 seen in 1 of 4 samples
    expected_nc = np.zeros_like(Y, dtype=bool)
    expected_nc[1:, 2] = True
    np.testing.assert_array_equal(density.noncentred_cells(Y), expected_nc)
    rng = np.random.default_rng(0)
    nofactor = fitting.paper_inits({"Y": Y}, rng, "mimix_nofactor", jitter=0.0)
    factor = fitting.paper_inits({"Y": Y}, rng, "mimix", jitter=0.0)
    clr = np.log(Y + 0.5) - np.log(Y + 0.5).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(nofactor["theta_raw"], np.where(expected_nc, 0.0, clr))
    log_ratios = density.theta_free_from(clr, density.reference_taxa(Y))
    np.testing.assert_allclose(factor["theta_free"], log_ratios)


def tiny_input() -> ModelInput:
    counts = pd.DataFrame([[5, 3], [2, 7], [4, 4], [6, 1]], index=list("abcd"), columns=["t1", "t2"])
    X = pd.DataFrame({"x[1]": [0.0, 1.0, 0.0, 1.0]}, index=counts.index)
    labels = pd.DataFrame({"block": ["1", "1", "2", "2"]}, index=counts.index)
    taxa = pd.DataFrame({"label": ["t1", "t2"]}, index=counts.columns)
    return ModelInput(counts=counts, X=X, terms={"x": ["x[1]"]}, blocks=blocks_from_labels(labels), taxa=taxa)


def fake_result(data: dict) -> ChainResult:
    n_draws = 3
    draws = {"beta": np.zeros((n_draws, data["K"], data["P"])), "global_prob": np.full((n_draws, data["P"]), 0.5)}
    stats = {"n_steps": np.full(n_draws, 7), "diverging": np.zeros(n_draws), "tree_depth": np.full(n_draws, 3)}
    return ChainResult(draws=draws, stats=stats, engine="fake", stan_version="0", timings={"sampling_seconds": 1.0})


def test_failed_chain_is_retried_with_new_seed_and_inits(monkeypatch) -> None:
    calls = []

    def flaky(engine, model, data, settings, keep, logger):
        calls.append(settings)
        if len(calls) < 3:
            raise EngineError("engine pystan: sampling failed: Initialization failed.")
        return fake_result(data)

    monkeypatch.setattr(fitting, "run_chain", flaky)
    idata = fitting.fit_chain(
        "mimix_nofactor",
        tiny_input(),
        "pystan",
        2,
        ChainSettings(seed=0, chain_id=2),
        7,
        "paper",
        3,
        logging.getLogger("test"),
    )
    assert len(calls) == 3
    assert len({c.seed for c in calls}) == 3  # every attempt has its own seed ...
    assert not np.allclose(calls[0].init["theta_raw"], calls[1].init["theta_raw"])  # ... and its own inits
    assert idata.posterior.attrs["attempt"] == 3 and idata.posterior.attrs["chain"] == 2


def test_chain_fails_clearly_after_max_attempts(monkeypatch) -> None:
    def always_fails(engine, model, data, settings, keep, logger):
        raise EngineError("engine pystan: sampling failed: Rejecting initial value: log density is -inf")

    monkeypatch.setattr(fitting, "run_chain", always_fails)
    with pytest.raises(EngineError) as caught:
        fitting.fit_chain(
            "mimix",
            tiny_input(),
            "pystan",
            2,
            ChainSettings(seed=0, chain_id=4),
            7,
            "stan",
            2,
            logging.getLogger("test"),
        )
    message = str(caught.value)
    assert "model mimix, chain 4: failed 2 time(s)" in message
    assert "Rejecting initial value" in message  # the Stan error is named
    assert "\n" not in message


def test_compile_errors_are_not_retried(monkeypatch) -> None:
    calls = []

    def broken(engine, model, data, settings, keep, logger):
        calls.append(1)
        raise EngineError("engine pystan: compiling the model failed (ValueError): Syntax error")

    monkeypatch.setattr(fitting, "run_chain", broken)
    with pytest.raises(EngineError, match="compiling"):
        fitting.fit_chain(
            "mimix", tiny_input(), "pystan", 2, ChainSettings(seed=0), 7, "stan", 3, logging.getLogger("test")
        )
    assert len(calls) == 1
