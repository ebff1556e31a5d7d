"""Independent NumPy/SciPy log densities of the three MIMIX Stan models.

Written from the model equations (Grantham, Reich, Borer & Gross, arXiv:1703.07747), not from
the Stan code, so the tests can compare the two. Each ``log_density_*`` function takes the
sampler's coordinates (the Stan ``parameters`` block, constrained values) and returns the log
density of the unconstrained coordinates up to an additive constant: the marginalized joint
density plus the log Jacobian of the constraining transforms (log for positive parameters,
logit for probabilities), the quantity Stan's ``log_prob(..., adjust_transform=True)`` returns.

The discrete spike-and-slab indicators omega and the slab coefficients are integrated out here
the slow, obvious way: for every inclusion pattern s the residual column r is N(0, v I + X_s
diag(sigma2_b[s]) X_s') (an N x N covariance), weighted by the pattern's prior probability.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats

Array = NDArray[np.float64]
Params = Mapping[str, Array | float]

# Sampler coordinates of each model in Stan's declaration order: (name, transform).
# "none" = unconstrained, "log" = lower bound 0, "logit" = bounds (0, 1).
_COMMON_HEAD = [
    ("theta_raw", "none"),
    ("mu", "none"),
    ("sigma2_mu", "log"),
    ("sigma2", "log"),
]
_BLOCK_AND_SLAB = [
    ("h", "none"),
    ("sigma2_g", "log"),
    ("sigma2_b", "log"),
    ("pi", "logit"),
]
# theta's sampler coordinates: mimix_nofactor samples theta_raw, theta itself except in the
# non-centred cells (noncentred_cells), where it is theta's standardized deviation from its prior
# mean; the factor models sample theta_free, theta's log-ratios to each sample's reference taxon,
# whose own cell is an unused N(0, 1) auxiliary (the level of theta_i integrated out).
# mimix_gaussian also samples the factor scores and level means scaled by their loading row's sd
# (F_scaled, h_scaled; see factor_scores).
_FACTOR_HEAD = [("theta_free", "none")] + _COMMON_HEAD[1:]
PARAMETERS: dict[str, list[tuple[str, str]]] = {
    "mimix_nofactor": _COMMON_HEAD + _BLOCK_AND_SLAB,
    "mimix": _FACTOR_HEAD
    + [("F", "none")]
    + _BLOCK_AND_SLAB
    + [("z_Lambda", "none"), ("psi", "log"), ("phi", "log"), ("nu", "log")],
    "mimix_gaussian": _FACTOR_HEAD
    + [("F_scaled", "none"), ("h_scaled", "none")]
    + _BLOCK_AND_SLAB[1:]
    + [("z_Lambda", "none"), ("sigma2_lambda", "log")],
}


# mimix_nofactor samples the zero-count cells of taxa seen in fewer than NC_PREVALENCE of the samples
# partially non-centred, theta = prior mean + sigma_k^NC_POWER v (workflow/stan/mimix_nofactor.stan,
# transformed data, holds the same numbers).
NC_PREVALENCE = 0.5
NC_POWER = 0.5


def noncentred_cells(Y: Array, prevalence: float = NC_PREVALENCE) -> NDArray[np.bool_]:
    """The zero-count cells of rare taxa (seen in fewer than ``prevalence`` of the samples), N x K."""
    Y = np.asarray(Y)
    rare = (Y > 0).sum(axis=0) < prevalence * Y.shape[0]
    return (Y == 0) & rare[None, :]


def _noncentred_jacobian(nc: NDArray[np.bool_], sigma2: Array) -> float:
    """log |d theta / d v| of theta = mean + sigma_k^NC_POWER v over the non-centred cells."""
    return 0.5 * NC_POWER * float(np.sum(nc.sum(axis=0) * np.log(np.asarray(sigma2, dtype=float))))


def unconstrain(params: Params, model: str) -> Array:
    """Flatten constrained sampler coordinates into Stan's unconstrained vector (column-major)."""
    pieces = []
    for name, transform in PARAMETERS[model]:
        value = np.asarray(params[name], dtype=float)
        if transform == "log":
            value = np.log(value)
        elif transform == "logit":
            value = special.logit(value)
        pieces.append(value.ravel(order="F"))
    return np.concatenate(pieces)


def log_jacobian(params: Params, model: str) -> float:
    """Log |d constrained / d unconstrained| summed over all sampler coordinates."""
    total = 0.0
    for name, transform in PARAMETERS[model]:
        value = np.asarray(params[name], dtype=float)
        if transform == "log":
            total += float(np.sum(np.log(value)))
        elif transform == "logit":
            total += float(np.sum(np.log(value) + np.log1p(-value)))
    return total


def inclusion_patterns(n_cols: int) -> Array:
    """All 2^P zero/one inclusion patterns, one per row (order irrelevant to the callers)."""
    return np.array(list(itertools.product([0.0, 1.0], repeat=n_cols)))


def level_effects(h: Array, root: Array, level_factor: Sequence[int], level_parent: Sequence[int]) -> Array:
    """Paper's level effects from hierarchically centred level means h (R x C).

    A level nested in a parent level is the deviation from the parent's mean; a level of the
    first blocking factor is the deviation from ``root``; any other level is h itself.
    """
    gamma = np.array(h, dtype=float, copy=True)
    for r in range(gamma.shape[0]):
        if level_parent[r] > 0:
            gamma[r] = h[r] - h[level_parent[r] - 1]
        elif level_factor[r] == 1:
            gamma[r] = h[r] - root
    return gamma


def block_sum(gamma: Array, block: Array) -> Array:
    """Sum over blocking factors of each sample's level effects (N x C); block is 1-based."""
    block = np.asarray(block, dtype=int)
    total = np.zeros((block.shape[0], gamma.shape[1]))
    for q in range(block.shape[1]):
        total += gamma[block[:, q] - 1]
    return total


def pattern_log_joint(resid: Array, X: Array, noise_var: Array, sigma2_b: Array, pi: Array) -> tuple[Array, Array]:
    """log p(s) + log N(r_c | 0, v_c I + X_s diag(sigma2_b[s]) X_s') for every column c, pattern s.

    Returns (patterns S x P, log joint C x S).
    """
    pats = inclusion_patterns(X.shape[1])
    n = X.shape[0]
    log_prior = pats @ np.log(pi) + (1 - pats) @ np.log1p(-pi)
    out = np.empty((resid.shape[1], pats.shape[0]))
    for s, pat in enumerate(pats):
        slab_cov = (X * (pat * sigma2_b)) @ X.T
        for c in range(resid.shape[1]):
            cov = noise_var[c] * np.eye(n) + slab_cov
            out[c, s] = log_prior[s] + stats.multivariate_normal.logpdf(resid[:, c], mean=np.zeros(n), cov=cov)
    return pats, out


def collapsed_slab_loglik(resid: Array, X: Array, noise_var: Array, sigma2_b: Array, pi: Array) -> float:
    """Sum over columns of log p(r_c | sigma2_b, pi), omega and slab coefficients integrated out."""
    _, log_joint = pattern_log_joint(resid, X, noise_var, sigma2_b, pi)
    return float(np.sum(special.logsumexp(log_joint, axis=1)))


def inclusion_probabilities_bruteforce(
    resid: Array,
    X: Array,
    noise_var: Array,
    sigma2_b: Array,
    pi: Array,
    term_cols: Array,
) -> dict[str, Array]:
    """Inclusion probabilities by enumerating the joint patterns of ALL columns (2^(P C) cases).

    Returns incl_prob (C x P), global_prob (P: any column c includes j) and term_prob (T: any c
    includes any column of term t), each from the normalized joint over all pattern combinations.
    Only for small C * P.
    """
    pats, log_joint = pattern_log_joint(resid, X, noise_var, sigma2_b, pi)
    n_c, n_s = log_joint.shape
    term_cols = np.asarray(term_cols, dtype=bool)
    combos = list(itertools.product(range(n_s), repeat=n_c))
    log_w = np.array([sum(log_joint[c, s] for c, s in enumerate(combo)) for combo in combos])
    weight = np.exp(log_w - special.logsumexp(log_w))
    incl = np.zeros((n_c, X.shape[1]))
    any_col = np.zeros(X.shape[1])
    any_term = np.zeros(term_cols.shape[0])
    for w, combo in zip(weight, combos, strict=True):
        omega = pats[list(combo)]  # C x P
        incl += w * omega
        any_col += w * (omega.max(axis=0) > 0)
        any_term += w * np.array([omega[:, t].max() > 0 if t.any() else False for t in term_cols])
    return {"incl_prob": incl, "global_prob": any_col, "term_prob": any_term}


def _multinomial_loglik(Y: Array, theta: Array) -> float:
    log_p = theta - special.logsumexp(theta, axis=1, keepdims=True)
    return float(np.sum(Y * log_p) + np.sum(special.gammaln(Y.sum(1) + 1)) - np.sum(special.gammaln(Y + 1)))


def _invgamma11(x: Array | float) -> float:
    return float(np.sum(stats.invgamma.logpdf(x, a=1.0, scale=1.0)))


def _common_terms(p: Params, data: Mapping) -> float:
    """Priors on mu, sigma2_mu, sigma2, sigma2_g, sigma2_b and the multinomial likelihood."""
    mu = np.asarray(p["mu"])
    lp = _invgamma11(p["sigma2_mu"])
    lp += float(np.sum(stats.norm.logpdf(mu, 0.0, np.sqrt(p["sigma2_mu"]))))
    lp += _invgamma11(p["sigma2"]) + _invgamma11(p["sigma2_g"]) + _invgamma11(p["sigma2_b"])
    lp += _multinomial_loglik(np.asarray(data["Y"], dtype=float), np.asarray(p["theta"]))
    return lp


def _level_prior(gamma: Array, sigma2_g: Array, level_factor: Sequence[int]) -> float:
    sd = np.sqrt(np.asarray(sigma2_g)[np.asarray(level_factor) - 1])
    return float(np.sum(stats.norm.logpdf(gamma, 0.0, sd[:, None])))


def nofactor_theta(p: Params, data: Mapping, nc: NDArray[np.bool_] | None = None) -> tuple[Array, Array, Array]:
    """mimix_nofactor's theta, its prior mean without beta (mu + block effects) and the level
    effects gamma, from the sampler coordinates: theta = theta_raw, except theta = prior mean +
    sigma^NC_POWER theta_raw in the non-centred cells ``nc`` (default: noncentred_cells of data's Y)."""
    mu, sigma2 = np.asarray(p["mu"]), np.asarray(p["sigma2"], dtype=float)
    gamma = level_effects(np.asarray(p["h"]), mu, data["level_factor"], data["level_parent"])
    prior_mean = mu + block_sum(gamma, data["block"])
    raw = np.asarray(p["theta_raw"])
    scale = sigma2 ** (0.5 * NC_POWER)
    nc = noncentred_cells(data["Y"]) if nc is None else nc
    return np.where(nc, prior_mean + scale * raw, raw), prior_mean, gamma


def log_density_nofactor(p: Params, data: Mapping) -> float:
    """Log density of mimix_nofactor in its sampler coordinates (incl. Jacobians; see nofactor_theta)."""
    X = np.asarray(data["X"], dtype=float)
    sigma2 = np.asarray(p["sigma2"], dtype=float)
    nc = noncentred_cells(data["Y"])
    theta, prior_mean, gamma = nofactor_theta(p, data, nc)
    p = {**p, "theta": theta}
    lp = _common_terms(p, data) + _noncentred_jacobian(nc, sigma2)
    lp += _level_prior(gamma, p["sigma2_g"], data["level_factor"])
    lp += float(np.sum(stats.beta.logpdf(p["pi"], 1.0, data["K"])))
    lp += collapsed_slab_loglik(theta - prior_mean, X, sigma2, np.asarray(p["sigma2_b"]), np.asarray(p["pi"]))
    return lp + log_jacobian(p, "mimix_nofactor")


def _factor_layer(p: Params, data: Mapping) -> tuple[float, Array]:
    """Prior terms of the factor layer; returns (log density, F residual after blocking)."""
    L = int(data["L"])
    X = np.asarray(data["X"], dtype=float)
    g = level_effects(np.asarray(p["h"]), np.zeros(L), data["level_factor"], data["level_parent"])
    lp = _level_prior(g, p["sigma2_g"], data["level_factor"])
    lp += float(np.sum(stats.beta.logpdf(p["pi"], 1.0, L)))
    resid = np.asarray(p["F"]) - block_sum(g, data["block"])
    lp += collapsed_slab_loglik(resid, X, np.ones(L), np.asarray(p["sigma2_b"]), np.asarray(p["pi"]))
    return lp, resid


def factor_scores(p: Params) -> tuple[Array, Array]:
    """Factor scores F (N x L) and level means h (R x L) from a factor model's sampler coordinates.

    mimix samples them as they are; mimix_gaussian samples F_scaled = F diag(sd) and h_scaled =
    h diag(sd), sd = sqrt(sigma2_lambda).
    """
    if "F_scaled" in p:
        sd = np.sqrt(np.asarray(p["sigma2_lambda"], dtype=float))
        return np.asarray(p["F_scaled"]) / sd, np.asarray(p["h_scaled"]) / sd
    return np.asarray(p["F"]), np.asarray(p["h"])


def _log_scaling_jacobian(p: Params, n_rows: int) -> float:
    """log |d(F, h) / d(F_scaled, h_scaled)| = -(N + R) sum_l log sd_l (mimix_gaussian), else 0."""
    if "F_scaled" not in p:
        return 0.0
    return -0.5 * n_rows * float(np.sum(np.log(np.asarray(p["sigma2_lambda"], dtype=float))))


def reference_taxa(Y: Array) -> NDArray[np.int_]:
    """Each sample's reference taxon for theta_free: its most abundant (the first one on ties)."""
    return np.argmax(np.asarray(Y), axis=1)


def theta_from_free(theta_free: Array, ref: NDArray[np.int_]) -> Array:
    """theta up to each sample's level: 0 at the reference taxon, theta_free elsewhere."""
    theta = np.array(theta_free, dtype=float, copy=True)
    theta[np.arange(len(ref)), ref] = 0.0
    return theta


def theta_free_from(theta: Array, ref: NDArray[np.int_]) -> Array:
    """theta_free of a full theta: log-ratios to each sample's reference taxon (0 in its own cell,
    where the Stan models keep an unused auxiliary)."""
    theta = np.asarray(theta, dtype=float)
    return theta - theta[np.arange(len(ref)), ref][:, None]


def _theta_given_factors(p: Params, F: Array, Lambda: Array, ref: NDArray[np.int_]) -> float:
    """log p(theta_free | mu, F, Lambda, sigma2): theta_i ~ N(mu + Lambda' f_i, diag(sigma2)), so
    the log-ratios to the reference taxon are N(mean contrasts, diag(sigma2_others) + sigma2_ref 1 1');
    each reference cell of theta_free is an unused auxiliary ~ N(0, 1)."""
    mean = np.asarray(p["mu"]) + F @ Lambda
    s2 = np.asarray(p["sigma2"], dtype=float)
    total = 0.0
    for t, m, r in zip(np.asarray(p["theta_free"]), mean, ref, strict=True):
        others = np.delete(np.arange(len(m)), r)
        cov = np.diag(s2[others]) + s2[r]
        total += stats.multivariate_normal.logpdf(t[others], m[others] - m[r], cov)
        total += stats.norm.logpdf(t[r])
    return float(total)


def _factor_model_terms(p: Params, data: Mapping, Lambda: Array) -> float:
    """Terms shared by the factor models: common priors and likelihood at theta (level 0 at the
    reference), the factor layer at the unscaled F and h with the Jacobian of the scaling, and
    theta_free given the factors."""
    ref = reference_taxa(np.asarray(data["Y"]))
    F, h = factor_scores(p)
    p = {**p, "theta": theta_from_free(p["theta_free"], ref), "F": F, "h": h}
    lp = _common_terms(p, data)
    lp += _log_scaling_jacobian(p, int(data["N"]) + int(data["R"]))
    lp += _factor_layer(p, data)[0]
    return lp + _theta_given_factors(p, F, Lambda, ref)


def loading_centring_scale(n_samples: int) -> float:
    """c of the DL loadings' adaptive centring: 0.25 / sqrt(N), as in mimix.stan's transformed data."""
    return 0.25 / np.sqrt(n_samples)


def dl_loading_gain(p: Params, n_samples: int) -> Array:
    """g(s) = s / sqrt(1 + (s / c)^2) for the loadings' prior sd s = sqrt(psi) phi: Lambda = z g(s)
    is non-centred where s << c and centred (z = Lambda / c) where s >> c."""
    sd = np.sqrt(p["psi"]) * np.asarray(p["phi"])
    return sd / np.sqrt(1.0 + (sd / loading_centring_scale(n_samples)) ** 2)


def dl_loadings(p: Params, n_samples: int) -> Array:
    """Lambda = z .* g(sqrt(psi) .* phi) (adaptively centred Dirichlet-Laplace loadings)."""
    return np.asarray(p["z_Lambda"]) * dl_loading_gain(p, n_samples)


def log_dirichlet_laplace_scales(phi: Array, nu: float, a_grid: Array) -> float:
    """log p(phi | nu), phi_lk ~ Gamma(a_l, rate nu) iid over k, a_l uniform on a_grid."""
    per_a = np.array([stats.gamma.logpdf(phi, a=a, scale=1.0 / nu).sum(axis=1) for a in np.asarray(a_grid)])  # A x L
    return float(np.sum(special.logsumexp(per_a, axis=0) - np.log(len(a_grid))))


def log_density_mimix(p: Params, data: Mapping) -> float:
    """Log density of mimix (Dirichlet-Laplace loadings) in its sampler coordinates.

    The loadings are scored in the paper's centred form, Lambda_lk ~ N(0, psi_lk phi_lk^2), plus
    the log Jacobian log g(s) of z -> Lambda = z g(s), which must equal Stan's N(z | 0, s / g(s)).
    """
    gain = dl_loading_gain(p, int(data["N"]))
    Lambda = np.asarray(p["z_Lambda"]) * gain  # dl_loadings, with the gain kept for the Jacobian
    psi, phi, nu = np.asarray(p["psi"]), np.asarray(p["phi"]), float(p["nu"])
    lp = _factor_model_terms(p, data, Lambda)
    lp += float(stats.gamma.logpdf(nu, a=1.0, scale=1.0))
    lp += log_dirichlet_laplace_scales(phi, nu, np.asarray(data["a_grid"]))
    lp += float(np.sum(stats.expon.logpdf(psi, scale=2.0)))
    scale = np.sqrt(psi) * phi
    lp += float(np.sum(stats.norm.logpdf(Lambda, 0.0, scale) + np.log(gain)))
    return lp + log_jacobian(p, "mimix")


def log_density_mimix_gaussian(p: Params, data: Mapping) -> float:
    """Log density of mimix_gaussian in its sampler coordinates (centred score + Jacobians).

    The sampler's factor scores and level means are F_scaled = F diag(sd) and h_scaled = h diag(sd),
    sd_l = sqrt(sigma2_lambda_l): the model is scored at F = F_scaled / sd, h = h_scaled / sd, plus
    log |d(F, h) / d(F_scaled, h_scaled)| = -(N + R) sum_l log sd_l.
    """
    s2 = np.asarray(p["sigma2_lambda"])
    Lambda = np.sqrt(s2)[:, None] * np.asarray(p["z_Lambda"])
    lp = _factor_model_terms(p, data, Lambda) + _invgamma11(s2)
    scale = np.broadcast_to(np.sqrt(s2)[:, None], Lambda.shape)
    lp += float(np.sum(stats.norm.logpdf(Lambda, 0.0, scale) + np.log(scale)))
    return lp + log_jacobian(p, "mimix_gaussian")


LOG_DENSITY = {
    "mimix": log_density_mimix,
    "mimix_gaussian": log_density_mimix_gaussian,
    "mimix_nofactor": log_density_nofactor,
}
