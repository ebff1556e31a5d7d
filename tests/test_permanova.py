"""Tests for mimix.permanova against R vegan::adonis2(by = "terms") and hand-checked values.

Reference tables come from tests/fixtures/permanova/make_reference.R (see the README there
for the R/vegan versions and how to regenerate them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skbio import DistanceMatrix
from skbio.stats.distance import permanova as skbio_permanova

from mimix.errors import InputError
from mimix.permanova import (
    distance_matrix,
    gower_centre,
    permanova,
    permanova_from_distance,
    permutation_f,
    sequential_basis,
    strata_permutations,
)

FIXTURES = Path(__file__).parent / "fixtures" / "permanova"
N_PERM_REFERENCE = 9999  # same as N_PERM in make_reference.R
# Both vegan and we use 9999 permutations, with independent random streams. Each p-value
# estimate has sd <= sqrt(0.25 / 9999) = 0.005, so their difference has sd <= 0.0071;
# 0.03 is > 4.2 sd, a false alarm rate below 3e-5 per p-value (about 5e-4 over all 16).
P_TOLERANCE = 0.03
RTOL = 1e-8


def dummies(values: pd.Series, levels: list[str]) -> np.ndarray:
    """0/1 indicator columns for the given levels (treatment coding: omit the reference)."""
    return np.column_stack([(values == level).to_numpy(dtype=float) for level in levels])


def load_case(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counts and metadata of one fixture dataset, rows in the same sample order."""
    counts = pd.read_csv(FIXTURES / f"counts_{name}.csv", index_col="sample_id")
    meta = pd.read_csv(FIXTURES / f"metadata_{name}.csv", index_col="sample_id")
    assert counts.index.equals(meta.index)
    return counts, meta


def load_reference(case: str) -> pd.DataFrame:
    """vegan's table for one case, indexed by term."""
    return pd.read_csv(FIXTURES / f"reference_{case}.csv", index_col="term")


def factorial_design(meta: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """The R formula ``A + B + AB + block`` with R's default treatment contrasts."""
    return [
        ("A", dummies(meta["A"], ["trt"])),
        ("B", dummies(meta["B"], ["hi"])),
        ("AB", meta["AB"].to_numpy(dtype=float)),
        ("block", dummies(meta["block"], ["cage2", "cage3"])),
    ]


def nested_design(meta: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """The R formula ``A + cage`` with cage = A x block nested in A, given as all 6 indicators.

    Intercept and A already span two of the six cage directions, so cage keeps 4 df.
    """
    cage = meta["A"] + "_" + meta["block"]
    return [("A", dummies(meta["A"], ["trt"])), ("cage", dummies(cage, sorted(cage.unique())))]


def interaction_design(meta: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """The R formula ``age + diet * sex`` (R puts ``diet:sex`` last)."""
    diet = dummies(meta["diet"], ["fat", "fibre"])
    male = dummies(meta["sex"], ["M"])
    return [
        ("age", meta["age"].to_numpy(dtype=float)),
        ("diet", diet),
        ("sex", male),
        ("diet:sex", diet * male),
    ]


def strata_design(meta: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """The R formula ``phase + site``."""
    return [("phase", dummies(meta["phase"], ["post"])), ("site", dummies(meta["site"], ["skin"]))]


# case -> (dataset, design builder, distance, uses subject strata)
CASES = {
    "factorial_bray": ("factorial", factorial_design, "braycurtis", False),
    "factorial_jaccard": ("factorial", factorial_design, "jaccard", False),
    "nested_bray": ("factorial", nested_design, "braycurtis", False),
    "interaction_bray": ("interaction", interaction_design, "braycurtis", False),
    "strata_bray": ("strata", strata_design, "braycurtis", True),
}


def run_case(case: str, **kwargs: object) -> pd.DataFrame:
    """Our table for a reference case, with the case's data, design, distance and strata."""
    dataset, build, distance, stratified = CASES[case]
    counts, meta = load_case(dataset)
    strata = meta["subject"].to_numpy() if stratified else None
    kwargs.setdefault("strata", strata)
    return permanova(counts, build(meta), distance=distance, **kwargs)


def assert_matches_vegan_statistics(ours: pd.DataFrame, ref: pd.DataFrame) -> None:
    """Same rows, Df exactly, SS / R2 / F to RTOL (NaN where vegan has NA)."""
    assert list(ours.index) == list(ref.index)
    np.testing.assert_array_equal(ours["Df"].to_numpy(), ref["Df"].to_numpy())
    for column in ("SumOfSqs", "R2", "F"):
        np.testing.assert_allclose(ours[column].to_numpy(), ref[column].to_numpy(), rtol=RTOL, atol=0, err_msg=column)


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_vegan_adonis2(case: str) -> None:
    ours = run_case(case, n_perm=N_PERM_REFERENCE, seed=20240601)
    ref = load_reference(case)
    assert_matches_vegan_statistics(ours, ref)
    terms = ref.index[:-2]
    difference = (ours.loc[terms, "Pr(>F)"] - ref.loc[terms, "p_value"]).abs()
    assert (difference < P_TOLERANCE).all(), difference
    assert ours.loc[["Residual", "Total"], "Pr(>F)"].isna().all()


@pytest.mark.parametrize("case", ["interaction", "strata"])
def test_same_permutations_as_vegan_give_same_f_and_p(case: str) -> None:
    """Fed vegan's own permutation matrix, F_perm and p must equal vegan's, not only roughly."""
    perms = pd.read_csv(FIXTURES / f"perms_{case}_fixed.csv").to_numpy() - 1  # R is 1-based
    vegan_f = pd.read_csv(FIXTURES / f"fperm_{case}_fixed.csv")
    ref = load_reference(f"{case}_fixed")
    reference_case = f"{case}_bray"
    ours = run_case(reference_case, permutations=perms)
    assert_matches_vegan_statistics(ours, ref)
    np.testing.assert_array_equal(ours["Pr(>F)"].to_numpy(), ref["p_value"].to_numpy())

    dataset, build, distance, _ = CASES[reference_case]
    counts, meta = load_case(dataset)
    gower = gower_centre(distance_matrix(counts, distance))
    basis, df = sequential_basis(build(meta), len(meta))
    f_perm = permutation_f(gower, basis, df, perms)
    np.testing.assert_allclose(f_perm, vegan_f.to_numpy(), rtol=RTOL, atol=1e-12)


def test_vegan_strata_permutations_stay_within_subject() -> None:
    """Sanity check on the fixture: how(blocks = subject) never mixes subjects."""
    _, meta = load_case("strata")
    perms = pd.read_csv(FIXTURES / "perms_strata_fixed.csv").to_numpy() - 1
    subject = meta["subject"].to_numpy()
    assert (subject[perms] == subject).all()


def test_bray_curtis_by_hand() -> None:
    # Relative abundances (0.1, 0.2, 0.7) and (0.3, 0.3, 0.4):
    # BC = sum|x - y| / sum(x + y) = (0.2 + 0.1 + 0.3) / 2 = 0.3.
    d = distance_matrix(np.array([[1, 2, 7], [3, 3, 4]]), "braycurtis")
    assert d[0, 1] == pytest.approx(0.3, rel=1e-12)
    assert d[1, 0] == d[0, 1]
    assert d[0, 0] == 0.0


def test_jaccard_by_hand_uses_presence_absence() -> None:
    # Present taxa {1, 3} and {1, 2}: one shared out of three, so 1 - 1/3.
    d = distance_matrix(np.array([[1, 0, 30], [2, 2, 0]]), "jaccard")
    assert d[0, 1] == pytest.approx(2 / 3, rel=1e-12)


def test_single_factor_by_hand_and_against_scikit_bio() -> None:
    # Euclidean distances between four points on a line: groups {0, 1} and {4, 5}.
    # SS_total = sum_{i<j} d_ij^2 / n = (1 + 16 + 25 + 9 + 16 + 1) / 4 = 17,
    # SS_within = 1/2 + 1/2 = 1, so SS_between = 16 and F = (16 / 1) / (1 / 2) = 32.
    x = np.array([0.0, 1.0, 4.0, 5.0])
    dist = np.abs(x[:, None] - x[None, :])
    group = np.array([0, 0, 1, 1])
    table = permanova_from_distance(dist, [("group", group)], n_perm=0)
    assert table.loc["Total", "SumOfSqs"] == pytest.approx(17.0, rel=1e-12)
    assert table.loc["group", "SumOfSqs"] == pytest.approx(16.0, rel=1e-12)
    assert table.loc["Residual", "SumOfSqs"] == pytest.approx(1.0, rel=1e-12)
    assert table.loc["group", "F"] == pytest.approx(32.0, rel=1e-12)
    assert list(table["Df"]) == [1, 2, 3]

    # One-factor case on real data: scikit-bio's pseudo-F is the same statistic.
    counts, meta = load_case("interaction")
    d = distance_matrix(counts, "braycurtis")
    sk = skbio_permanova(DistanceMatrix(d), meta["diet"].to_numpy(), permutations=0)
    ours = permanova_from_distance(d, [("diet", dummies(meta["diet"], ["fat", "fibre"]))], n_perm=0)
    assert ours.loc["diet", "F"] == pytest.approx(sk["test statistic"], rel=1e-10)


def test_strata_permutations_never_cross_strata() -> None:
    # Treatment is confounded with strata (constant within each stratum), so a
    # within-strata shuffle must leave both the stratum and the treatment of every
    # position unchanged, while still shuffling samples inside each stratum.
    strata = np.repeat(["s3", "s1", "s2", "s4"], [5, 6, 4, 5])
    treatment = np.isin(strata, ["s1", "s4"])
    perms = strata_permutations(strata.size, 500, strata, seed=11)
    assert perms.shape == (500, strata.size)
    assert (np.sort(perms, axis=1) == np.arange(strata.size)).all()
    assert (strata[perms] == strata).all()
    assert (treatment[perms] == treatment).all()
    for label in np.unique(strata):
        members = np.flatnonzero(strata == label)
        # every member of a stratum reaches every position of that stratum
        for position in members:
            assert set(perms[:, position]) == set(members)


def test_confounded_treatment_has_p_one_under_strata() -> None:
    # With treatment constant within strata no restricted permutation changes F,
    # so every F_perm ties F_obs and p = (n_perm + 1) / (n_perm + 1).
    counts, _ = load_case("factorial")
    strata = np.repeat(["a", "b", "c", "d"], 6)
    treatment = np.isin(strata, ["b", "c"]).astype(float)
    table = permanova(counts, [("treatment", treatment)], n_perm=199, seed=3, strata=strata)
    assert table.loc["treatment", "Pr(>F)"] == 1.0
    unrestricted = permanova(counts, [("treatment", treatment)], n_perm=199, seed=3)
    assert unrestricted.loc["treatment", "Pr(>F)"] < 1.0


def test_unrestricted_permutations_are_full_shuffles() -> None:
    perms = strata_permutations(10, 300, None, seed=5)
    assert (np.sort(perms, axis=1) == np.arange(10)).all()
    assert (perms[:, 0] != 0).any()


def test_seeded_run_is_reproducible() -> None:
    first = run_case("strata_bray", n_perm=199, seed=42)
    again = run_case("strata_bray", n_perm=199, seed=42)
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    other = run_case("factorial_bray", n_perm=199, seed=43)
    base = run_case("factorial_bray", n_perm=199, seed=42)
    assert not base["Pr(>F)"].equals(other["Pr(>F)"])


def test_aliased_term_gets_zero_df_and_others_unchanged() -> None:
    counts, meta = load_case("factorial")
    design = factorial_design(meta)
    # "A_again" repeats A and "constant" is aliased with the intercept: both add nothing.
    aliased = [design[0], ("A_again", dummies(meta["A"], ["trt"])), *design[1:]]
    aliased.append(("constant", np.ones(len(meta))))
    table = permanova(counts, aliased, n_perm=0)
    for term in ("A_again", "constant"):
        assert table.loc[term, "Df"] == 0
        assert table.loc[term, "SumOfSqs"] == 0.0
        assert np.isnan(table.loc[term, "F"])
        assert np.isnan(table.loc[term, "Pr(>F)"])
    ref = load_reference("factorial_bray")
    assert_matches_vegan_statistics(table.drop(index=["A_again", "constant"]), ref)


def test_full_dummy_coding_equals_treatment_coding() -> None:
    # All three block indicators span the intercept too; one column is aliased, leaving
    # the same 2 df and the same sums of squares as treatment coding.
    counts, meta = load_case("factorial")
    design = factorial_design(meta)
    design[3] = ("block", dummies(meta["block"], ["cage1", "cage2", "cage3"]))
    table = permanova(counts, design, n_perm=0)
    assert_matches_vegan_statistics(table, load_reference("factorial_bray"))


def test_sample_order_does_not_matter() -> None:
    counts, meta = load_case("interaction")
    order = np.random.default_rng(7).permutation(len(meta))
    straight = permanova(counts, interaction_design(meta), n_perm=0)
    shuffled = permanova(counts.iloc[order], interaction_design(meta.iloc[order]), n_perm=0)
    pd.testing.assert_frame_equal(straight, shuffled, check_exact=False, rtol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"counts": np.array([[1, 2], [0, 0], [3, 1]])}, "zero total count"),
        ({"design": [("x", np.array([0.0, 1.0]))]}, "one row per sample"),
        ({"design": [("x", np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))]}, "no residual df"),
        ({"distance": "unifrac"}, "unknown distance"),
        ({"strata": ["a", "b"]}, "one label per sample"),
        ({"permutations": np.array([[0, 0, 1]])}, "not permutations"),
        ({"design": [("Total", np.array([0.0, 1.0, 1.0]))]}, "reserved"),
    ],
)
def test_bad_input_says_what_to_fix(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "counts": np.array([[1, 2], [3, 1], [2, 2]]),
        "design": [("x", np.array([0.0, 1.0, 0.0]))],
        "n_perm": 9,
    }
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        permanova(**args)
