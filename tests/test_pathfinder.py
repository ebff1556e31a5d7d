"""Pathfinder: the L-BFGS inverse Hessian, the low-rank normal, and recovery of a Gaussian target."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from mimix.pathfinder import LowRankNormal, PathfinderSettings, inverse_hessian, pathfinder


def test_inverse_hessian_satisfies_the_secant_equation() -> None:
    """BFGS updates make H map the newest gradient difference onto the newest step: H y = s."""
    rng = np.random.default_rng(0)
    a_true = rng.standard_normal((6, 6))
    hessian = a_true @ a_true.T + 6 * np.eye(6)  # of -log p, positive definite
    s = rng.standard_normal((4, 6))
    y = s @ hessian  # gradient differences of a quadratic
    scale, basis, middle = inverse_hessian(s, y)
    h = scale * np.eye(6) + basis @ middle @ basis.T
    np.testing.assert_allclose(h @ y[-1], s[-1], rtol=1e-8, atol=1e-10)
    assert np.all(np.linalg.eigvalsh(0.5 * (h + h.T)) > 0)


def test_pairs_without_curvature_are_dropped() -> None:
    s = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([[-1.0, 0.0], [0.0, 2.0]])  # the first pair has s'y < 0
    scale, basis, _ = inverse_hessian(s, y)
    assert basis.shape == (2, 2) and scale == pytest.approx(0.5)
    assert inverse_hessian(s[:1], y[:1]) is None


def test_low_rank_normal_density_and_draws() -> None:
    rng = np.random.default_rng(1)
    basis = rng.standard_normal((5, 2))
    middle = np.array([[0.5, 0.1], [0.1, 0.3]])
    normal = LowRankNormal(np.arange(5.0), 0.7, basis, middle)
    draws, log_q = normal.sample(rng, 20_000)
    reference = scipy.stats.multivariate_normal(np.arange(5.0), normal.covariance())
    np.testing.assert_allclose(log_q[:50], reference.logpdf(draws[:50]), rtol=1e-10)
    # 20,000 draws: the sample covariance is within ~3% of the truth (entries of order 1).
    np.testing.assert_allclose(np.cov(draws.T), normal.covariance(), atol=0.06)


def test_recovers_a_correlated_gaussian() -> None:
    rng = np.random.default_rng(2)
    d = 8
    a = rng.standard_normal((d, d))
    cov = a @ a.T / d + 0.2 * np.eye(d)
    precision = np.linalg.inv(cov)
    mean = rng.normal(0, 3, d)

    def log_density_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        r = x - mean
        return -0.5 * r @ precision @ r, -precision @ r

    result = pathfinder(log_density_gradient, np.zeros(d), rng, PathfinderSettings(history=d, draws=4000))
    # The mean is found (4,000 draws: Monte Carlo sd of a mean <= 0.03 here). The covariance is the
    # L-BFGS estimate, exact only with exact line searches: Pathfinder's known approximation error,
    # so it is checked loosely (relative Frobenius error; a scalar guess would be ~0.6 here).
    np.testing.assert_allclose(result.draws.mean(axis=0), mean, atol=0.1)
    error = np.linalg.norm(np.cov(result.draws.T) - cov) / np.linalg.norm(cov)
    scalar_guess = np.linalg.norm(np.trace(cov) / d * np.eye(d) - cov) / np.linalg.norm(cov)
    assert error < 0.35 < scalar_guess
    # The chosen approximation beats the first ones on the path (the ELBO rises as L-BFGS converges).
    assert result.elbo[result.iteration] == np.nanmax(result.elbo) > result.elbo[1] + 5


def test_a_non_finite_target_fails_clearly() -> None:
    with pytest.raises(RuntimeError, match="no usable normal approximation"):
        pathfinder(lambda x: (-np.inf, np.zeros_like(x)), np.zeros(3), np.random.default_rng(0))
