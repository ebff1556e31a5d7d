"""Convergence diagnostics on hand-made chains with known behaviour; the diagnostics rule's script.

Also home of the helpers the other inference tests share: :func:`make_chain` builds one chain
shaped like the fit rule's output, :func:`run_script` runs a step script with a stand-in for
Snakemake's ``snakemake`` object.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

import arviz as az
import numpy as np
import pandas as pd
import pytest
import yaml
from jsonschema import Draft202012Validator
from snakemake.iocontainers import Namedlist

from mimix import diagnostics
from mimix.diagnostics import Thresholds, diagnose
from mimix.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
DIMS = {
    "beta": ["taxon", "column"],
    "global_prob": ["column"],
    "term_prob": ["term"],
    "sigma2": ["taxon"],
    "sigma2_g": ["blocking_factor"],
    "lambda_diag": ["taxon"],
    "Lambda": ["factor", "taxon"],
    "omega": ["factor", "column"],
    "incl_prob": ["factor", "column"],
}
COORDS = {
    "taxon": ["t1", "t2", "other"],
    "column": ["a[x]", "b[x]"],
    "term": ["a", "b"],
    "factor": [1, 2],
    "blocking_factor": ["site", "block"],
}


def make_chain(
    posterior: dict[str, np.ndarray],
    chain: int = 1,
    stats: dict[str, np.ndarray] | None = None,
    max_treedepth: int = 10,
    model: str = "mimix",
) -> az.InferenceData:
    """One chain (chain dim of size 1) with the fit rule's attributes; draws given as ``(draw, ...)``."""
    n_draws = next(iter(posterior.values())).shape[0]
    default_stats = {
        "energy": np.random.default_rng(chain).normal(size=n_draws),
        "diverging": np.zeros(n_draws, dtype=bool),
        "tree_depth": np.full(n_draws, 3),
        "step_size": np.full(n_draws, 0.1),
        "n_steps": np.full(n_draws, 7),
        "acceptance_rate": np.full(n_draws, 0.9),
    }
    default_stats.update(stats or {})
    dims = {name: DIMS[name] for name in posterior if name in DIMS}
    coords = {d: COORDS[d] for name in dims for d in dims[name]}
    idata = az.from_dict(
        posterior={k: v[None, ...] for k, v in posterior.items()},
        sample_stats={k: v[None, ...] for k, v in default_stats.items()},
        coords=coords,
        dims=dims,
    )
    attrs = {"model": model, "chain": chain, "engine": "test", "max_treedepth": max_treedepth, "adapt_delta": 0.9}
    for group in ("posterior", "sample_stats"):
        getattr(idata, group).attrs.update(attrs)
    return idata


def iid_chains(n_chains: int = 4, n_draws: int = 1000, seed: int = 0, **extra: np.ndarray) -> list[az.InferenceData]:
    """Independent standard-normal draws of beta (3 x 2) and sigma2 (3): well-mixed chains."""
    rng = np.random.default_rng(seed)
    chains = []
    for c in range(n_chains):
        posterior = {"beta": rng.normal(size=(n_draws, 3, 2)), "sigma2": np.exp(rng.normal(size=(n_draws, 3)))}
        posterior.update({k: v[c] for k, v in extra.items()})
        chains.append(make_chain(posterior, chain=c + 1))
    return chains


def run_script(name: str, inputs: dict, outputs: dict, params: dict, tmp_path: Path, wildcards: dict | None = None):
    """Run ``workflow/scripts/<name>.py`` as Snakemake would, with a stand-in ``snakemake`` object."""

    fake = SimpleNamespace(
        input=Namedlist(fromdict=inputs),
        output=Namedlist(fromdict=outputs),
        params=Namedlist(fromdict=params),
        wildcards=Namedlist(fromdict=wildcards or {"model": "mimix"}),
        log=[str(tmp_path / f"{name}.log")],
    )
    return runpy.run_path(str(ROOT / "workflow" / "scripts" / f"{name}.py"), init_globals={"snakemake": fake})


def write_chains(chains: list[az.InferenceData], folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, chain in enumerate(chains, start=1):
        path = folder / f"{i}.nc"
        chain.to_netcdf(str(path), engine="h5netcdf")
        paths.append(str(path))
    return paths


def test_well_mixed_chains_pass() -> None:
    # 4 x 1000 independent draws: R-hat near 1 (sd ~0.001) and ESS near 4000, far inside the limits.
    result = diagnose(iid_chains())
    assert result.quantities["ok"].all()
    assert len(result.quantities) == 3 * 2 + 3
    verdict = result.verdict.iloc[0]
    assert verdict["passed"]
    assert verdict["message"].startswith("passed")
    assert verdict["worst_rhat"] < 1.01
    assert verdict["min_ess_bulk"] > 400


def test_rhat_flags_chains_with_different_means() -> None:
    # Chain 2's beta[t1, a[x]] is shifted by 3 sd: between-chain variance dwarfs within-chain variance.
    chains = iid_chains(n_chains=2)
    chains[1].posterior["beta"].loc[{"taxon": "t1", "column": "a[x]"}] += 3.0
    result = diagnose(chains, model="mimix")
    row = result.quantities.set_index(["quantity", "index"]).loc[("beta", "t1|a[x]")]
    assert row["rhat"] > 1.5
    assert not row["ok"]
    assert "rhat" in row["problem"]
    verdict = result.verdict.loc["mimix"]
    assert not verdict["passed"]
    assert verdict["failing_rhat"] == 1
    assert verdict["worst_rhat_at"] == "beta[t1|a[x]]"
    assert "beta (1 of 6)" in verdict["message"]
    assert "disagree" in verdict["message"]  # R-hat > 1.1: not just "run longer"
    assert "run longer chains" in verdict["message"]


def test_low_ess_from_autocorrelated_chains() -> None:
    # AR(1) with phi = 0.99: the ESS of 1000 draws is about 1000 (1 - phi) / (1 + phi) ~ 5 per chain.
    rng = np.random.default_rng(1)
    chains = []
    for c in range(2):
        x = np.zeros(1000)
        for t in range(1, 1000):
            x[t] = 0.99 * x[t - 1] + rng.normal()
        chains.append(make_chain({"sigma2_mu": np.exp(x / 10)}, chain=c + 1))
    result = diagnose(chains)
    assert result.quantities.loc[0, "ess_bulk"] < 200
    verdict = result.verdict.iloc[0]
    assert not verdict["passed"] and verdict["failing_ess_bulk"] == 1
    assert "bulk ESS < 200" in verdict["message"]


def test_constant_quantity_is_converged() -> None:
    draws = np.ones((4, 1000, 2))
    draws[:, :, 1] = np.random.default_rng(2).uniform(size=(4, 1000))
    result = diagnose(iid_chains(global_prob=draws))
    rows = result.quantities.set_index(["quantity", "index"])
    constant = rows.loc[("global_prob", "a[x]")]
    assert constant["ok"]
    assert np.isnan(constant["rhat"]) and np.isnan(constant["ess_bulk"])
    assert constant["problem"].startswith("constant in every draw")
    assert rows.loc[("global_prob", "b[x]"), "ok"]
    verdict = result.verdict.iloc[0]
    assert verdict["passed"]
    assert verdict["constant"] == 1
    assert verdict["worst_rhat"] < 1.01  # the NaN of the constant element is not the "worst"


def test_constant_but_different_between_chains_fails() -> None:
    # Each chain constant, at different values: not converged (chains stuck apart).
    draws = np.ones((2, 1000, 2))
    draws[1] = 0.5
    result = diagnose(iid_chains(n_chains=2, global_prob=draws))
    rows = result.quantities.set_index(["quantity", "index"])
    assert not rows.loc[("global_prob", "a[x]"), "ok"]
    assert not result.verdict.iloc[0]["passed"]


def test_unidentified_quantities_are_not_monitored() -> None:
    # Chain 2's loadings are sign-flipped and its factors relabelled: same posterior, different Lambda.
    rng = np.random.default_rng(3)
    lam = rng.normal(size=(1000, 2, 3))
    omega = rng.integers(0, 2, size=(1000, 2, 2)).astype(float)
    chains = iid_chains(
        n_chains=2,
        Lambda=np.stack([lam + 1, -(lam[:, ::-1] + 1)]),
        omega=np.stack([omega, 1 - omega]),
        incl_prob=np.stack([omega * 0.9, 0.9 - omega * 0.9]),
    )
    result = diagnose(chains)
    assert set(result.quantities["quantity"]) == {"beta", "sigma2"}
    assert result.verdict.iloc[0]["passed"]


def test_divergences_fail_unless_allowed() -> None:
    chains = iid_chains(n_chains=2)
    diverging = np.zeros((1, 1000), dtype=bool)
    diverging[0, [3, 50, 700]] = True
    chains[1].sample_stats["diverging"] = (("chain", "draw"), diverging)
    result = diagnose(chains)
    assert result.chains["divergences"].tolist() == [0, 3]
    verdict = result.verdict.iloc[0]
    assert not verdict["passed"] and verdict["divergences"] == 3
    assert "adapt_delta (now 0.9)" in verdict["message"]
    assert diagnose(chains, Thresholds(max_divergences=5)).verdict.iloc[0]["passed"]


def test_ebfmi_by_hand_and_threshold() -> None:
    # Energy 0, 1, ..., n-1: mean squared jump 1, variance n (n + 1) / 12, so E-BFMI = 12 / (n (n + 1)).
    n = 100
    chains = iid_chains(n_chains=2, n_draws=n)
    chains[0].sample_stats["energy"] = (("chain", "draw"), np.arange(n, dtype=float)[None, :])
    result = diagnose(chains, Thresholds(ess_bulk_per_chain_min=10))
    assert result.chains.loc[0, "ebfmi"] == pytest.approx(12 / (n * (n + 1)))
    verdict = result.verdict.iloc[0]
    assert not verdict["passed"] and verdict["chains_low_ebfmi"] == 1
    assert "E-BFMI below 0.3 in chain(s) 1" in verdict["message"]


def test_tree_depth_hits_are_counted_but_do_not_fail() -> None:
    depth = np.full(1000, 3)
    depth[:7] = 5
    chains = iid_chains(n_chains=2)
    chains[0] = make_chain(
        {k: chains[0].posterior[k].values[0] for k in ("beta", "sigma2")},
        chain=1,
        stats={"tree_depth": depth},
        max_treedepth=5,
    )
    chains[1] = make_chain({k: chains[1].posterior[k].values[0] for k in ("beta", "sigma2")}, chain=2, max_treedepth=5)
    result = diagnose(chains)
    assert result.chains["treedepth_hits"].tolist() == [7, 0]
    assert result.chains["max_treedepth"].tolist() == [5, 5]
    verdict = result.verdict.iloc[0]
    assert verdict["passed"] and verdict["treedepth_hits"] == 7
    assert "max_treedepth" in verdict["message"]


def test_chain_table_keeps_chain_numbers_and_settings() -> None:
    rng = np.random.default_rng(4)
    chains = [make_chain({"sigma2_mu": rng.gamma(2, size=500)}, chain=c) for c in (3, 7)]
    result = diagnose(chains)
    assert result.chains["chain"].tolist() == [3, 7]
    assert result.chains["engine"].tolist() == ["test", "test"]
    assert result.chains["mean_n_steps"].tolist() == [7.0, 7.0]
    assert result.quantities["index"].tolist() == [""]  # a scalar quantity has an empty index


def test_element_labels_join_coordinates() -> None:
    chain = iid_chains(n_chains=1, n_draws=10)[0]
    labels = diagnostics.element_labels(chain.posterior["beta"])
    assert labels == ["t1|a[x]", "t1|b[x]", "t2|a[x]", "t2|b[x]", "other|a[x]", "other|b[x]"]


def test_chains_of_different_lengths_are_refused() -> None:
    with pytest.raises(InputError, match="different numbers of draws"):
        diagnostics.combine_chains(iid_chains(n_chains=1, n_draws=10) + iid_chains(n_chains=1, n_draws=20))


def test_thresholds_from_config_ignore_other_keys() -> None:
    assert Thresholds.from_config({"rhat_max": 1.05, "strict": True}) == Thresholds(rhat_max=1.05)
    assert Thresholds.from_config(None) == Thresholds()


def test_schema_fragment_is_valid_and_documents_defaults() -> None:
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    Draft202012Validator.check_schema(schema)
    inference = schema["properties"]["inference"]["properties"]
    assert inference["diagnostics"]["properties"]["rhat_max"]["default"] == 1.01
    assert inference["global_tests"]["properties"]["threshold"]["default"] == 0.9
    for section in [*inference.values(), schema["properties"]["permanova"]]:
        for name, option in section["properties"].items():
            assert "default" in option and option.get("description"), name


def test_script_writes_tables_and_strict_stops(tmp_path: Path) -> None:
    paths = write_chains(iid_chains(n_chains=2, n_draws=200), tmp_path / "chains")
    outputs = {name: str(tmp_path / f"{name}.tsv") for name in ("quantities", "chains", "verdict")}
    # 2 x 200 iid draws: split R-hat varies by ~0.005 around 1 (1.014 happens), so allow 1.05 here.
    settings = {"rhat_max": 1.05, "ess_bulk_per_chain_min": 50, "max_divergences": 0, "ebfmi_min": 0.3}
    run_script("diagnostics", {"chains": paths}, outputs, {"thresholds": {**settings, "strict": True}}, tmp_path)
    quantities = diagnostics.read_quantities(outputs["quantities"])
    assert quantities["ok"].all() and len(quantities) == 9
    assert diagnostics.read_passed(outputs["verdict"])
    assert pd.read_csv(outputs["chains"], sep="\t")["chain"].tolist() == [1, 2]

    # 200 draws per chain cannot reach 10,000 bulk ESS: the verdict fails and strict mode stops.
    for path in outputs.values():
        Path(path).unlink()
    failing = {**settings, "ess_bulk_per_chain_min": 5000, "strict": True}
    with pytest.raises(SystemExit) as stop:
        run_script("diagnostics", {"chains": paths}, outputs, {"thresholds": failing}, tmp_path)
    assert stop.value.code == 1
    assert "strict" in (tmp_path / "diagnostics.log").read_text()
    run_script("diagnostics", {"chains": paths}, outputs, {"thresholds": {**failing, "strict": False}}, tmp_path)
    assert not diagnostics.read_passed(outputs["verdict"])


def test_approximate_fits_never_pass() -> None:
    from mimix.diagnostics import approximate_verdict

    summary = pd.DataFrame({"passed": [True], "message": ["all checks pass"]}, index=["m"])
    out = approximate_verdict(summary, {"pathfinder"}, [0.4, 0.9, None])
    assert not out["passed"].iloc[0]
    assert (
        out["message"].iloc[0].startswith("APPROXIMATE (pathfinder)")
        and "Pareto k up to 0.90" in out["message"].iloc[0]
    )
