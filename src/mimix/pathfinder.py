"""Single-path Pathfinder (Zhang, Carpenter, Gelman & Vehtari 2022, JMLR 23:306): a fast approximate
posterior from one L-BFGS run, for the approximate mode where the engine offers no such method.

Along the L-BFGS optimization path of the log density, each iterate ``x_t`` with gradient ``g_t``
and the L-BFGS inverse-Hessian estimate ``H_t`` (from the last ``history`` position/gradient
differences, in the compact form of Byrd, Nocedal & Schnabel 1994) defines a normal approximation
``N(x_t + H_t g_t, H_t)``. The one with the highest Monte Carlo ELBO estimate is kept and sampled.
``H_t = a I + B G B'`` is a scalar-times-identity plus rank-2m matrix, so sampling and its log
density cost O(D m^2) in the dimension D, never a D x D matrix.

Pure NumPy/SciPy on a callable ``log_density_gradient(x) -> (log p(x), grad)`` over unconstrained
parameters: any engine that exposes the log density and its gradient can use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize

LogDensityGradient = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass(frozen=True)
class PathfinderSettings:
    history: int = 6  # L-BFGS history size m (Stan's default)
    max_iterations: int = 1000
    elbo_draws: int = 25  # Monte Carlo draws per ELBO estimate along the path
    draws: int = 1000
    relative_tolerance: float = 1e-10  # L-BFGS stops when the objective changes less than this


@dataclass
class LowRankNormal:
    """N(mean, a I + B G B') with B (D x k), G (k x k) symmetric, k <= 2m."""

    mean: np.ndarray
    scale: float
    basis: np.ndarray
    middle: np.ndarray

    def __post_init__(self) -> None:
        # Sigma = a^(1/2) (I + W G W') a^(1/2) with W = B / sqrt(a) = Q R (thin QR): the factor
        # I + Q (R G R') Q' acts on span(Q) only, where its Cholesky factor is chol(I + R G R').
        d = self.mean.size
        if self.basis.shape[1] == 0:
            self.q, self.chol = np.zeros((d, 0)), np.zeros((0, 0))
        else:
            self.q, r = np.linalg.qr(self.basis / np.sqrt(self.scale))
            inner = np.eye(r.shape[0]) + r @ self.middle @ r.T
            self.chol = np.linalg.cholesky(0.5 * (inner + inner.T))
        self.log_det = d * np.log(self.scale) + 2.0 * np.log(np.diag(self.chol)).sum()

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` draws and their log densities."""
        d = self.mean.size
        u = rng.standard_normal((n, d))
        projected = u @ self.q  # n x k
        z = u - projected @ self.q.T + (projected @ self.chol.T) @ self.q.T
        draws = self.mean + np.sqrt(self.scale) * z
        log_q = -0.5 * (d * np.log(2 * np.pi) + self.log_det + (u**2).sum(axis=1))
        return draws, log_q

    def covariance(self) -> np.ndarray:
        """The dense covariance (tests and small problems only)."""
        return self.scale * np.eye(self.mean.size) + self.basis @ self.middle @ self.basis.T


def inverse_hessian(s: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
    """L-BFGS inverse Hessian a I + B G B' from position and gradient-of-(-log p) differences.

    ``s``, ``y`` are (m x D), oldest first; pairs without positive curvature (s'y <= 0) are dropped
    (as L-BFGS does). Returns None when no pair is left. Compact form (Byrd, Nocedal & Schnabel
    1994, eq. 3.1) with H0 = a I, a = s'y / y'y of the newest pair:
    H = a I + [S, aY] [[R^-T (E + a Y'Y) R^-1, -R^-T], [-R^-1, 0]] [S, aY]'.
    """
    keep = np.einsum("ij,ij->i", s, y) > 1e-12 * np.linalg.norm(s, axis=1) * np.linalg.norm(y, axis=1)
    s, y = s[keep], y[keep]
    if len(s) == 0:
        return None
    a = float(s[-1] @ y[-1] / (y[-1] @ y[-1]))
    sy = s @ y.T  # m x m, entry (i, j) = s_i' y_j
    r = np.triu(sy)
    e = np.diag(np.diag(sy))
    r_inv = np.linalg.inv(r)
    m = len(s)
    middle = np.zeros((2 * m, 2 * m))
    middle[:m, :m] = r_inv.T @ (e + a * (y @ y.T)) @ r_inv
    middle[:m, m:] = -r_inv.T
    middle[m:, :m] = -r_inv
    basis = np.hstack([s.T, a * y.T])
    return a, basis, middle


def lbfgs_path(
    log_density_gradient: LogDensityGradient, x0: np.ndarray, settings: PathfinderSettings
) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Iterates and gradients (of log p) along an L-BFGS maximization of log p; number of evaluations."""
    cache: dict[bytes, tuple[float, np.ndarray]] = {}
    evaluations = 0

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal evaluations
        key = x.tobytes()
        if key not in cache:
            evaluations += 1
            lp, grad = log_density_gradient(x)
            cache[key] = (lp, grad)
        lp, grad = cache[key]
        if not np.isfinite(lp):
            return np.inf, np.zeros_like(x)
        return -lp, -np.asarray(grad)

    path = [np.array(x0, dtype=float)]
    objective(path[0])

    def record(intermediate_result) -> None:
        path.append(np.array(intermediate_result.x, dtype=float))

    scipy.optimize.minimize(
        objective,
        path[0],
        jac=True,
        method="L-BFGS-B",
        callback=record,
        options={"maxcor": settings.history, "maxiter": settings.max_iterations, "ftol": settings.relative_tolerance,
                 "gtol": 1e-8},
    )  # fmt: skip
    # Every iterate was evaluated by the line search; the cache holds its gradient.
    gradients = [np.asarray(cache[x.tobytes()][1]) if x.tobytes() in cache else objective(x)[1] * -1 for x in path]
    return path, gradients, evaluations


@dataclass
class PathfinderResult:
    draws: np.ndarray  # n x D, unconstrained
    log_p: np.ndarray
    log_q: np.ndarray
    iteration: int  # the chosen point of the path
    path_length: int
    elbo: np.ndarray  # per iterate (NaN where no approximation was possible)
    evaluations: int  # log-density-and-gradient evaluations


def pathfinder(
    log_density_gradient: LogDensityGradient,
    x0: np.ndarray,
    rng: np.random.Generator,
    settings: PathfinderSettings = PathfinderSettings(),
    log_density: Callable[[np.ndarray], float] | None = None,
) -> PathfinderResult:
    """Run single-path Pathfinder from ``x0`` and return draws of the best normal approximation.

    ``log_density`` (without gradient) is used for the Monte Carlo ELBO and the final draws when the
    engine can compute it more cheaply than the gradient.
    """
    if log_density is None:

        def log_density(x: np.ndarray) -> float:
            return log_density_gradient(x)[0]

    path, gradients, evaluations = lbfgs_path(log_density_gradient, x0, settings)
    xs, gs = np.array(path), np.array(gradients)
    # Differences of positions and of the gradient of -log p (what the optimizer minimizes).
    steps, grad_steps = np.diff(xs, axis=0), -np.diff(gs, axis=0)
    elbo = np.full(len(xs), np.nan)
    best: tuple[float, LowRankNormal, np.ndarray, np.ndarray, int] | None = None
    for t in range(1, len(xs)):
        first = max(0, t - settings.history)
        factors = inverse_hessian(steps[first:t], grad_steps[first:t])
        if factors is None:
            continue
        a, basis, middle = factors
        # Newton step towards the mode of the local quadratic: mean = x + H grad log p.
        mean = xs[t] + a * gs[t] + basis @ (middle @ (basis.T @ gs[t]))
        approximation = LowRankNormal(mean, a, basis, middle)
        draws, log_q = approximation.sample(rng, settings.elbo_draws)
        log_p = np.array([log_density(x) for x in draws])
        evaluations += len(draws)
        finite = np.isfinite(log_p)
        elbo[t] = float(np.mean(np.where(finite, log_p - log_q, -np.inf)))
        if best is None or elbo[t] > best[0]:
            best = (elbo[t], approximation, draws, log_p, t)
    if best is None or not np.isfinite(best[0]):
        raise RuntimeError(
            f"pathfinder: no usable normal approximation along the {len(xs)}-point L-BFGS path "
            "(the log density is not finite near the optimum); try other inits"
        )
    _, approximation, _, _, chosen = best
    draws, log_q = approximation.sample(rng, settings.draws)
    log_p = np.array([log_density(x) for x in draws])
    evaluations += len(draws)
    return PathfinderResult(draws, log_p, log_q, chosen, len(xs), elbo, evaluations)
