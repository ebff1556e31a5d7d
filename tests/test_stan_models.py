"""The three MIMIX Stan programs against the independent NumPy densities in mimix.density.

Builds each model once per module on tiny nested data (N=12, K=5, L=2, P=2, Q=2). The first
build of each program takes 1.5-6 minutes (httpstan caches the compiled model under
~/.cache/httpstan, so later sessions reuse it in seconds).
"""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mimix import density
from mimix.engines import build_pystan_model
from mimix.models import program_code

pytestmark = pytest.mark.slow

STAN_DIR = Path(__file__).resolve().parents[1] / "workflow" / "stan"
MODELS = ("mimix", "mimix_gaussian", "mimix_nofactor")


def _tiny_data(P: int = 2, seed: int = 7) -> dict:
    """12 samples in 2 sites x 2 blocks per site (levels 1-2 sites, 3-6 blocks), K = 5 taxa."""
    rng = np.random.default_rng(seed)
    N, K, L = 12, 5, 2
    site = np.repeat([1, 2], 6)
    blk = np.repeat([3, 4, 5, 6], 3)
    X = rng.integers(0, 2, size=(N, P)).astype(float)
    Y = rng.poisson(20, size=(N, K))
    # taxa 4 and 5 rare (seen in 3 and 5 of 12 samples): their zero cells are sampled non-centred
    Y[3:, 3] = 0
    Y[[0, 2, 5, 7, 8, 10, 11], 4] = 0
    # term 3 spans both columns, to exercise multi-column terms
    term_cols = [[1, 0], [0, 1], [1, 1]] if P == 2 else np.eye(P, dtype=int).tolist()
    return {
        "N": N,
        "K": K,
        "P": P,
        "L": L,
        "Q": 2,
        "R": 6,
        "Y": Y.tolist(),
        "X": X.tolist(),
        "block": np.column_stack([site, blk]).tolist(),
        "level_factor": [1, 1, 2, 2, 2, 2],
        "level_parent": [0, 0, 1, 1, 2, 2],
        "T": len(term_cols),
        "term_cols": term_cols,
        "A": 50,
        "a_grid": (np.arange(1, 51) / 100).tolist(),
    }


def _random_point(model: str, data: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random constrained values of the sampler coordinates of ``model``."""
    N, K, L, P, Q, R = (data[k] for k in ("N", "K", "L", "P", "Q", "R"))
    p: dict[str, np.ndarray] = {
        "theta_raw": rng.normal(0, 1, (N, K)),
        "mu": rng.normal(0, 1, K),
        "sigma2_mu": np.exp(rng.normal(0, 0.5)),
        "sigma2": np.exp(rng.normal(0, 0.5, K)),
        "sigma2_g": np.exp(rng.normal(0, 0.5, Q)),
        "sigma2_b": np.exp(rng.normal(0, 0.5, P)),
        "pi": rng.uniform(0.05, 0.95, P),
    }
    if model == "mimix_nofactor":
        p["h"] = rng.normal(0, 1, (R, K))
        return p
    # factor models: log-ratios to each sample's reference taxon, N x K (its own cell an unused
    # N(0, 1) auxiliary, random here like the rest); Gaussian: scaled scores/level means
    p["theta_free"] = p.pop("theta_raw")
    scores = "F_scaled" if model == "mimix_gaussian" else "F"
    p[scores] = rng.normal(0, 1, (N, L))
    p[scores.replace("F", "h")] = rng.normal(0, 1, (R, L))
    p["z_Lambda"] = rng.normal(0, 1, (L, K))
    if model == "mimix":
        p["psi"] = rng.exponential(2.0, (L, K))
        p["phi"] = rng.gamma(0.5, 1.0, (L, K)) + 1e-3
        p["nu"] = np.exp(rng.normal(0, 0.5))
    else:
        p["sigma2_lambda"] = np.exp(rng.normal(0, 0.5, L))
    return p


def _as_init(p: dict[str, np.ndarray]) -> dict:
    return {k: (np.asarray(v).tolist() if np.ndim(v) else float(v)) for k, v in p.items()}


@pytest.fixture(scope="module")
def tiny_data() -> dict:
    return _tiny_data()


@pytest.fixture(scope="module")
def stan_models(tiny_data: dict) -> dict:
    """The three programs built once per module on the tiny data, as the workflow builds them
    (PyStan 3, stanc --O1: the struct-of-arrays code paths are the ones checked here)."""
    pytest.importorskip("stan")
    logger = logging.getLogger("test_stan_models")
    return {name: build_pystan_model(program_code(name), tiny_data, 1, logger)[0] for name in MODELS}


def _data_block(program: str) -> str:
    start = re.search(r"^data \{", program, re.M)
    assert start is not None
    end = program.index("\n}\n", start.start())
    return program[start.start() : end]


def test_data_blocks_identical() -> None:
    """One data dict (mimix.models.stan_data) feeds all three programs, so they declare the same data."""
    blocks = {name: _data_block((STAN_DIR / f"{name}.stan").read_text()) for name in MODELS}
    assert len(set(blocks.values())) == 1, "data blocks differ between the .stan files"


def _stanc(*args: str) -> subprocess.CompletedProcess:
    httpstan = pytest.importorskip("httpstan")
    stanc = Path(httpstan.__file__).parent / "stanc"
    return subprocess.run([str(stanc), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", MODELS)
def test_stanc_accepts_program(name: str) -> None:
    """Type-check the file as CmdStan users compile it (includes from workflow/stan/include) with the
    stanc bundled in httpstan: current syntax, no deprecation warnings."""
    done = _stanc("--warn-pedantic", f"--include-paths={STAN_DIR / 'include'}", "--o", "/dev/null",
                  str(STAN_DIR / f"{name}.stan"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "deprecat" not in done.stderr.lower()


def test_noncentring_threshold_is_the_same_in_stan_and_numpy() -> None:
    """The independent NumPy density and the paper inits use mimix_nofactor's NC_PREVALENCE and NC_POWER, and the
    factor models (which keep theta centred) define no non-centred cells."""
    text = (STAN_DIR / "mimix_nofactor.stan").read_text()
    found = re.search(r"real NC_PREVALENCE = ([0-9.]+);", text)
    assert found is not None and float(found.group(1)) == density.NC_PREVALENCE
    power = re.search(r"real NC_POWER = ([0-9.]+);", text)
    assert power is not None and float(power.group(1)) == density.NC_POWER
    for name in ("mimix", "mimix_gaussian"):
        assert "NC_PREVALENCE" not in program_code(name)


@pytest.mark.parametrize("name", MODELS)
def test_theta_layer_is_struct_of_arrays(name: str, tmp_path: Path) -> None:
    """Under stanc --O1 every N x K matrix (theta and what is computed from it) is one autodiff node
    ("SoA"). A single cell-wise assignment or an unsupported function on theta would turn them into
    N x K separate nodes ("AoS"), which made gradients 2-3 times slower under --O1 (bench/gradient.py)."""
    source = tmp_path / f"{name}.stan"
    source.write_text(program_code(name))
    done = _stanc("--O1", "--debug-mem-patterns", "--o", str(tmp_path / "model.hpp"), str(source))
    assert done.returncode == 0, done.stderr
    patterns = dict(re.findall(r"^(matrix\[N, K\] \w+): (SoA|AoS)$", done.stdout + done.stderr, re.M))
    assert patterns, "stanc printed no N x K matrix"
    assert set(patterns.values()) == {"SoA"}, patterns


@pytest.mark.parametrize("name", MODELS)
def test_log_prob_matches_numpy(name: str, stan_models: dict, tiny_data: dict) -> None:
    """Stan's log density difference between two random points equals the NumPy one.

    Stan's ``~`` statements drop additive constants, so only differences are comparable. Both
    sides are double precision sums of ~10^2-10^3 terms of size up to ~10^3 (multinomial
    log-likelihood), so rounding is ~1e-11; 1e-7 absolute leaves room for the different
    summation orders and the N x N Cholesky in the NumPy version, and is far below any
    modelling error (a missing term or Jacobian moves the difference by >1e-2).
    """
    model = stan_models[name]
    nc = density.noncentred_cells(tiny_data["Y"])  # used by mimix_nofactor only
    assert nc.any() and (~nc).any(), "the tiny data must have both centred and non-centred cells"
    rng = np.random.default_rng(11)
    points = [_random_point(name, tiny_data, rng) for _ in range(2)]
    stan_lp, np_lp = [], []
    for p in points:
        u = density.unconstrain(p, name)
        assert np.allclose(model.unconstrain_pars(_as_init(p)), u, atol=1e-10), "parameter order"
        stan_lp.append(model.log_prob(u.tolist(), adjust_transform=True))
        np_lp.append(density.LOG_DENSITY[name](p, tiny_data))
    assert stan_lp[0] - stan_lp[1] == pytest.approx(np_lp[0] - np_lp[1], abs=1e-7)


@pytest.mark.parametrize("name", MODELS)
def test_inclusion_probabilities_match_bruteforce(name: str, stan_models: dict, tiny_data: dict) -> None:
    """Rao-Blackwellized incl_prob, global_prob, term_prob from generated quantities equal
    the brute-force enumeration of all joint omega patterns (2^(P C) cases) at a fixed point."""
    model = stan_models[name]
    p = _random_point(name, tiny_data, np.random.default_rng(5))
    fit = model.fixed_param(num_chains=1, num_samples=3, init=[_as_init(p)])
    X = np.asarray(tiny_data["X"], dtype=float)
    if name == "mimix_nofactor":
        theta, prior_mean, _ = density.nofactor_theta(p, tiny_data)
        resid, noise = theta - prior_mean, p["sigma2"]
    else:
        L = tiny_data["L"]
        F, h = density.factor_scores(p)
        g = density.level_effects(h, np.zeros(L), tiny_data["level_factor"], tiny_data["level_parent"])
        resid = F - density.block_sum(g, tiny_data["block"])
        noise = np.ones(L)
    ref = density.inclusion_probabilities_bruteforce(
        resid, X, noise, p["sigma2_b"], p["pi"], np.asarray(tiny_data["term_cols"])
    )
    for key in ("incl_prob", "global_prob", "term_prob"):
        got = np.asarray(fit[key])[..., 0]  # same at every draw of fixed_param
        np.testing.assert_allclose(got, ref[key], rtol=1e-6, atol=1e-9, err_msg=key)
    omega = np.asarray(fit["omega"])
    beta = np.asarray(fit["beta"])
    assert set(np.unique(omega)) <= {0, 1}
    if name == "mimix_nofactor":
        # beta_kj is exactly 0 where omega_kj = 0
        assert np.all(beta[omega == 0] == 0)
    else:
        Lambda = np.asarray(fit["Lambda"])[..., 0]
        if name == "mimix":
            expected = density.dl_loadings(p, int(tiny_data["N"]))
        else:
            expected = np.sqrt(p["sigma2_lambda"])[:, None] * p["z_Lambda"]
        assert np.allclose(Lambda, expected)
        lam_diag = (Lambda**2).sum(0)
        np.testing.assert_allclose(np.asarray(fit["eta"])[..., 0], lam_diag / (lam_diag + p["sigma2"]))


def test_design_with_too_many_columns_is_refused(stan_models: dict) -> None:
    """P > P_MAX = 6 is rejected in transformed data with a message naming the limit."""
    pytest.importorskip("stan")
    data = _tiny_data(P=7)
    with pytest.raises(Exception, match="P_MAX"):
        model, _ = build_pystan_model(program_code("mimix_nofactor"), data, 1, logging.getLogger("test"))
        model.fixed_param(num_chains=1, num_samples=1)
