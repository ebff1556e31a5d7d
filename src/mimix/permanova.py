"""Multi-term PERMANOVA, the baseline method MIMIX is compared with.

Equivalent to R ``vegan::adonis2(d ~ t1 + t2 + ..., by = "terms")`` (vegan 2.6):
sequential (type I) sums of squares of the Gower-centred matrix ``G = -1/2 J D^2 J``,
one pseudo-F per term, and a permutation p-value per term where every permutation
shuffles the observations (rows and columns of ``G`` together) once and refits all
terms sequentially, exactly as vegan's ``permutest.cca`` does.

Design terms come as ``(name, block)`` pairs: each block holds that term's model-matrix
columns (factors already dummy-coded, no intercept column; an intercept is always added
here). Columns aliased with earlier ones are dropped the way R's pivoting QR does, and a
term with nothing left gets 0 df (vegan silently drops such a term from its table; we
keep the row so the caller sees it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.spatial.distance import pdist, squareform

from mimix.errors import InputError

DISTANCES = ("braycurtis", "jaccard", "euclidean")

# Same relative tolerance R's qr() (LINPACK dqrdc2) uses to declare a column aliased.
ALIAS_TOL = 1e-7
# vegan counts F_perm >= F_obs - EPS so that ties up to rounding count as "as extreme".
P_EPS = float(np.sqrt(np.finfo(float).eps))
# Permutations evaluated per batched matrix product: bounds memory at n * rank * 8 * 256 bytes.
PERM_CHUNK = 256

Design = Sequence[tuple[str, ArrayLike]]
TABLE_COLUMNS = ["Df", "SumOfSqs", "R2", "F", "Pr(>F)"]


def relative_abundance(counts: ArrayLike) -> np.ndarray:
    """Divide each sample's (row's) counts by its total, as vegan's ``decostand(x, "total")``."""
    x = _as_count_matrix(counts)
    totals = x.sum(axis=1)
    empty = np.flatnonzero(totals == 0)
    if empty.size:
        raise InputError(
            f"samples at rows {empty[:5].tolist()} have zero total count: drop them before "
            "PERMANOVA (relative abundances are undefined)"
        )
    return x / totals[:, None]


def distance_matrix(counts: ArrayLike, distance: str = "braycurtis") -> np.ndarray:
    """Square samples x samples dissimilarity matrix.

    ``braycurtis`` and ``euclidean`` are computed on relative abundances (rows divided by
    their totals) so sequencing depth does not drive the distance; ``jaccard`` is on
    presence/absence (vegan's ``vegdist(x, "jaccard", binary = TRUE)``).
    """
    if distance not in DISTANCES:
        raise InputError(f"unknown distance {distance!r}: use one of {', '.join(DISTANCES)}")
    if distance == "jaccard":
        present = _as_count_matrix(counts) > 0
        empty = np.flatnonzero(~present.any(axis=1))
        if empty.size:
            raise InputError(
                f"samples at rows {empty[:5].tolist()} contain no taxa: drop them before "
                "PERMANOVA (Jaccard is undefined for empty samples)"
            )
        return squareform(pdist(present, metric="jaccard"))
    return squareform(pdist(relative_abundance(counts), metric=distance))


def gower_centre(dist: ArrayLike) -> np.ndarray:
    """Gower-centred matrix ``G = -1/2 J D^2 J`` with ``J = I - 11'/n``; ``tr(G)`` is the total SS."""
    d = np.asarray(dist, dtype=float)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise InputError(f"distance matrix must be square, got shape {d.shape}: pass squareform(d)")
    if not np.allclose(d, d.T, rtol=0, atol=1e-12 * max(1.0, np.abs(d).max(initial=0.0))):
        raise InputError("distance matrix is not symmetric: pass a proper dissimilarity matrix")
    a = -0.5 * d**2
    # Double centring by row/column means is J A J without forming the n x n matrix J.
    row_means = a.mean(axis=1, keepdims=True)
    return a - row_means - row_means.T + a.mean()


def sequential_basis(design: Design, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal basis of the nested designs, and the number of columns each term adds.

    Returns ``(Q, df)``: ``Q`` is ``n x rank`` with orthonormal columns orthogonal to the
    intercept, ordered by term, so that the hat matrix of the first ``k`` terms minus the
    intercept is ``Q_k Q_k'`` with ``Q_k = Q[:, :df[:k].sum()]``. A column whose residual
    after projecting out the intercept and all earlier columns is below ``ALIAS_TOL`` times
    its centred norm is aliased and skipped, as in R's ``qr()``; such columns add no df.
    """
    kept: list[np.ndarray] = []
    df = np.zeros(len(design), dtype=int)
    for k, (name, block) in enumerate(design):
        x = _as_block(name, block, n_samples)
        raw_norms = np.linalg.norm(x, axis=0)
        x = x - x.mean(axis=0)  # centring = projecting out the intercept
        for j in range(x.shape[1]):
            col = x[:, j]
            ref = np.linalg.norm(col)
            # A column constant up to rounding is aliased with the intercept.
            if ref <= ALIAS_TOL * raw_norms[j] or ref == 0.0:
                continue
            resid = col.copy()
            if kept:
                basis = np.column_stack(kept)
                # Two Gram-Schmidt passes keep the basis orthogonal to machine precision.
                for _ in range(2):
                    resid -= basis @ (basis.T @ resid)
            norm = np.linalg.norm(resid)
            if norm < ALIAS_TOL * ref:
                continue
            kept.append(resid / norm)
            df[k] += 1
    q = np.column_stack(kept) if kept else np.zeros((n_samples, 0))
    return q, df


def strata_permutations(
    n_samples: int,
    n_perm: int,
    strata: ArrayLike | None = None,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """``n_perm x n_samples`` index array; row ``p`` maps position ``i`` to sample ``p[i]``.

    Without strata every row is a free shuffle; with strata (one label per sample, like
    ``how(blocks = strata)`` in permute/vegan) samples are shuffled only among samples
    sharing their label, so no sample ever moves to another stratum. The identity may
    occur, as in vegan.
    """
    rng = np.random.default_rng(seed)
    if strata is None:
        return rng.permuted(np.tile(np.arange(n_samples), (n_perm, 1)), axis=1)
    labels = np.asarray(strata)
    if labels.shape != (n_samples,):
        raise InputError(
            f"strata has shape {labels.shape} but there are {n_samples} samples: give one label per sample"
        )
    if pd.isna(labels).any():
        raise InputError("strata contains missing labels: give every sample a stratum")
    perms = np.empty((n_perm, n_samples), dtype=np.intp)
    # Sorted unique labels make the stream of random numbers independent of sample order.
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        shuffled = rng.permuted(np.tile(np.arange(members.size), (n_perm, 1)), axis=1)
        perms[:, members] = members[shuffled]
    return perms


def term_sums_of_squares(gower: np.ndarray, basis: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Sequential SS of each term, ``tr((H_k - H_{k-1}) G)``, as ``sum_j q_j' G q_j`` over its columns."""
    per_column = np.einsum("ij,ij->j", basis, gower @ basis)
    return _sum_by_term(per_column[None, :], df)[0]


def permutation_f(gower: np.ndarray, basis: np.ndarray, df: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Pseudo-F of every term under every permutation: ``n_perm x n_terms`` (NaN for 0-df terms).

    vegan evaluates ``tr(H_k G[p, p])``. Since ``q' G[p, p] q = r' G r`` with ``r = q[p^-1]``,
    permuting the basis rows by the inverse permutation gives the same value while keeping
    ``G`` fixed, which lets a whole batch of permutations go through one matrix product.
    """
    n = gower.shape[0]
    total = np.trace(gower)
    df_res = n - 1 - int(df.sum())
    inverse = np.argsort(perms, axis=1)
    out = np.empty((perms.shape[0], df.size))
    for start in range(0, perms.shape[0], PERM_CHUNK):
        inv = inverse[start : start + PERM_CHUNK]
        q = basis[inv]  # (chunk, n, rank)
        per_column = np.einsum("pij,pij->pj", q, gower @ q)
        ss = _sum_by_term(per_column, df)
        # Residual SS from the total: tr(G) is invariant to permutation.
        ss_res = total - ss.sum(axis=1, keepdims=True)
        out[start : start + PERM_CHUNK] = _pseudo_f(ss, df, ss_res, df_res)
    return out


def permanova_from_distance(
    dist: ArrayLike,
    design: Design,
    n_perm: int = 999,
    seed: int | np.random.Generator = 0,
    strata: ArrayLike | None = None,
    permutations: ArrayLike | None = None,
) -> pd.DataFrame:
    """Sequential PERMANOVA table from a square dissimilarity matrix.

    Rows are the terms in the given order, then ``Residual`` and ``Total``; columns are
    vegan's ``Df, SumOfSqs, R2, F, Pr(>F)``. ``p = (#{F_perm >= F_obs} + 1) / (n_perm + 1)``.
    ``n_perm = 0`` skips the test (p is NaN). ``permutations`` (an ``n_perm x n`` matrix of
    0-based indices, e.g. vegan's ``shuffleSet()`` minus 1) replaces the random ones and
    makes ``n_perm``, ``seed`` and ``strata`` irrelevant.
    """
    gower = gower_centre(dist)
    n = gower.shape[0]
    names = _term_names(design)
    basis, df = sequential_basis(design, n)
    df_res = n - 1 - int(df.sum())
    if df_res <= 0:
        raise InputError(
            f"the design uses {int(df.sum())} df for {n} samples, leaving no residual df: "
            "drop terms or merge factor levels"
        )
    if n_perm < 0:
        raise InputError(f"n_perm must be >= 0, got {n_perm}: use e.g. 999")
    total = float(np.trace(gower))
    ss = term_sums_of_squares(gower, basis, df)
    ss_res = total - ss.sum()
    f_obs = _pseudo_f(ss[None, :], df, np.array([[ss_res]]), df_res)[0]
    perms = None
    if permutations is not None:
        perms = _check_permutations(permutations, n)
        n_perm = perms.shape[0]
    elif n_perm:
        perms = strata_permutations(n, n_perm, strata, seed)
    if perms is not None and n_perm:
        f_perm = permutation_f(gower, basis, df, perms)
        p = (np.sum(f_perm >= f_obs - P_EPS, axis=0) + 1) / (n_perm + 1)
        p = np.where(df > 0, p, np.nan)
    else:
        p = np.full(df.size, np.nan)
    table = pd.DataFrame(
        {
            "Df": np.concatenate([df, [df_res, n - 1]]),
            "SumOfSqs": np.concatenate([ss, [ss_res, total]]),
            "R2": np.concatenate([ss, [ss_res, total]]) / total,
            "F": np.concatenate([f_obs, [np.nan, np.nan]]),
            "Pr(>F)": np.concatenate([p, [np.nan, np.nan]]),
        },
        index=pd.Index([*names, "Residual", "Total"], name="term"),
    )
    return table[TABLE_COLUMNS]


def permanova(
    counts: ArrayLike,
    design: Design,
    distance: str = "braycurtis",
    n_perm: int = 999,
    seed: int | np.random.Generator = 0,
    strata: ArrayLike | None = None,
    permutations: ArrayLike | None = None,
) -> pd.DataFrame:
    """PERMANOVA of a samples x taxa count matrix; see :func:`permanova_from_distance`.

    Terms are tested sequentially in the order given, so list treatment terms first and
    blocking factors after them, as in ``adonis2(d ~ treatment + block, by = "terms")``.
    """
    return permanova_from_distance(
        distance_matrix(counts, distance),
        design,
        n_perm=n_perm,
        seed=seed,
        strata=strata,
        permutations=permutations,
    )


def _as_count_matrix(counts: ArrayLike) -> np.ndarray:
    """Counts as a float 2-D array, refusing negative or non-finite entries."""
    x = np.asarray(counts, dtype=float)
    if x.ndim != 2:
        raise InputError(f"counts must be samples x taxa (2-D), got {x.ndim}-D: reshape the table")
    if not np.isfinite(x).all():
        raise InputError("counts contain NaN or infinite values: replace missing counts by 0")
    if (x < 0).any():
        raise InputError("counts contain negative values: pass raw, untransformed counts")
    return x


def _as_block(name: str, block: ArrayLike, n_samples: int) -> np.ndarray:
    """One term's model-matrix columns as an ``n x m`` float array (a vector becomes 1 column)."""
    x = np.asarray(block, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] != n_samples:
        raise InputError(
            f"design term {name!r} has shape {x.shape} but there are {n_samples} samples: give "
            "one row per sample, in the distance matrix's order"
        )
    if not np.isfinite(x).all():
        raise InputError(f"design term {name!r} has missing values: drop or impute those samples")
    return x


def _check_permutations(permutations: ArrayLike, n_samples: int) -> np.ndarray:
    """A user-supplied permutation matrix as 0-based indices, each row a permutation of 0..n-1."""
    perms = np.asarray(permutations)
    if perms.ndim != 2 or perms.shape[1] != n_samples:
        raise InputError(
            f"permutations has shape {perms.shape}, expected (n_perm, {n_samples}): one row per "
            "permutation, one column per sample"
        )
    if not np.issubdtype(perms.dtype, np.integer):
        raise InputError("permutations must hold integer indices: convert with astype(int)")
    if not (np.sort(perms, axis=1) == np.arange(n_samples)).all():
        raise InputError(
            f"some permutation rows are not permutations of 0..{n_samples - 1}: subtract 1 from "
            "R's 1-based shuffleSet() output"
        )
    return perms.astype(np.intp)


def _term_names(design: Design) -> list[str]:
    """Term names, which must be unique and not clash with the Residual/Total rows."""
    names = [str(name) for name, _ in design]
    if not names:
        raise InputError("the design has no terms: give at least one (name, columns) pair")
    clash = sorted({n for n in names if names.count(n) > 1 or n in ("Residual", "Total")})
    if clash:
        raise InputError(f"design term names {clash} are repeated or reserved: rename them")
    return names


def _sum_by_term(per_column: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Sum basis-column contributions (``batch x rank``) into per-term totals (``batch x terms``)."""
    membership = np.repeat(np.arange(df.size), df)
    out = np.zeros((per_column.shape[0], df.size))
    for k in range(df.size):
        out[:, k] = per_column[:, membership == k].sum(axis=1)
    return out


def _pseudo_f(ss: np.ndarray, df: np.ndarray, ss_res: np.ndarray, df_res: int) -> np.ndarray:
    """``(SS_k / df_k) / (SS_res / df_res)``; NaN for terms with 0 df."""
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (ss / df) / (ss_res / df_res)
    return np.where(df > 0, f, np.nan)


# vegan's column names -> the tidy names of the output table.
COLUMNS = {"Df": "df", "SumOfSqs": "sum_of_squares", "R2": "r2", "F": "F", "Pr(>F)": "p_value"}


def permanova_design(design: pd.DataFrame, terms: pd.DataFrame, blocks: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """Treatment terms in formula order (their columns of X), then each blocking factor, dummy coded.

    Blocking factors use treatment coding without intercept (one 0/1 column per level but the
    first in sorted order); sequential SS make the dropped level irrelevant, and a nested
    factor's columns aliased with its parent's are dropped by the PERMANOVA's QR.
    """
    blocks_per_term: dict[str, list[str]] = {}
    for term, column in terms[["term", "column"]].itertuples(index=False):
        blocks_per_term.setdefault(str(term), []).append(str(column))
    missing = [c for cols in blocks_per_term.values() for c in cols if c not in design.columns]
    if missing:
        raise InputError(f"terms.tsv names columns {missing} that design.tsv lacks: rerun the data stage")
    out = [(term, design[cols].to_numpy(dtype=float)) for term, cols in blocks_per_term.items()]
    for factor in blocks.columns:
        levels = blocks[factor].astype(str)
        dummies = pd.get_dummies(levels, drop_first=True, dtype=float)
        out.append((str(factor), dummies.to_numpy().reshape(len(levels), -1)))
    return out


def tidy_table(table: pd.DataFrame) -> pd.DataFrame:
    """vegan-style PERMANOVA table with the output's column names (term as the index)."""
    return table.rename(columns=COLUMNS)[list(COLUMNS.values())]
