"""Filtering and rarity trimming: exact survivors on hand-made tables."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import counts_frame

from mimix.errors import InputError
from mimix.filtering import FilterSettings, filter_counts, taxon_statistics

TAXA = ["common", "half", "rare", "empty", "big_rare"]


@pytest.fixture
def counts() -> pd.DataFrame:
    # 10 samples; 'shallow' has 60 reads and is dropped at min_depth 100.
    rows = {f"s{i}": [100, 20 if i < 5 else 0, 1 if i == 0 else 0, 0, 0] for i in range(9)}
    rows["shallow"] = [40, 0, 0, 0, 20]
    return counts_frame(rows, TAXA)


def test_statistics(counts: pd.DataFrame) -> None:
    stats = taxon_statistics(counts)
    assert stats.loc["half", "prevalence"] == pytest.approx(0.5)
    assert stats.loc["big_rare", "total_count"] == 20
    # s0 has 121 reads, s1-s4 120, s5-s8 100 (all 'common'), 'shallow' 60.
    expected = (100 / 121 + 4 * 100 / 120 + 4 * 1.0 + 40 / 60) / 10
    assert stats.loc["common", "mean_relative_abundance"] == pytest.approx(expected)


def test_depth_prevalence_and_other(counts: pd.DataFrame) -> None:
    result = filter_counts(counts, FilterSettings(min_depth=100, min_prevalence=0.2, max_sample_drop_fraction=0.5))
    assert result.counts.index.tolist() == [f"s{i}" for i in range(9)]
    # 'rare' is in 1 of 9 kept samples (< 0.2): aggregated into 'other'; 'empty' and 'big_rare'
    # have no reads once 'shallow' is gone: dropped, not aggregated.
    assert result.counts.columns.tolist() == ["common", "half", "other"]
    assert result.counts["other"].tolist() == [1] + [0] * 8
    assert result.taxa["status"].to_dict() == {
        "common": "kept",
        "half": "kept",
        "rare": "aggregated",
        "empty": "dropped",
        "big_rare": "dropped",
    }
    assert result.samples.loc["shallow", "status"] == "dropped"
    assert result.samples.loc["shallow", "reason"] == "depth 60 < min_depth 100"
    # Totals of the kept samples are intact.
    assert (result.counts.sum(axis=1) == counts.loc[result.counts.index].sum(axis=1)).all()


def test_no_other_column(counts: pd.DataFrame) -> None:
    settings = FilterSettings(min_depth=0, min_prevalence=0.2, aggregate_other=False)
    result = filter_counts(counts, settings)
    assert result.counts.columns.tolist() == ["common", "half"]
    assert result.taxa.loc["rare", "status"] == "trimmed"
    assert result.taxa.loc["big_rare", "reason"] == "prevalence < 0.2"


def test_min_total_count_and_abundance(counts: pd.DataFrame) -> None:
    by_total = filter_counts(counts, FilterSettings(min_depth=0, min_prevalence=0.0, min_total_count=21))
    assert by_total.counts.columns.tolist() == ["common", "half", "other"]
    by_abundance = filter_counts(
        counts, FilterSettings(min_depth=0, min_prevalence=0.0, min_mean_relative_abundance=0.05)
    )
    assert by_abundance.counts.columns.tolist() == ["common", "half", "other"]


def test_max_taxa_by_prevalence_and_abundance() -> None:
    counts = counts_frame({"a": [10, 1, 5, 0], "b": [10, 1, 0, 50], "c": [10, 0, 0, 50]}, ["w", "x", "y", "z"])
    by_prevalence = filter_counts(counts, FilterSettings(min_depth=0, min_prevalence=0, max_taxa=2))
    # w (3/3) and z (2/3, 100 reads) beat x (2/3, 2 reads) and y (1/3).
    assert by_prevalence.counts.columns.tolist() == ["w", "z", "other"]
    by_abundance = filter_counts(
        counts, FilterSettings(min_depth=0, min_prevalence=0, max_taxa=1, rank_taxa_by="abundance")
    )
    assert by_abundance.counts.columns.tolist() == ["z", "other"]


def test_other_label_clash() -> None:
    counts = counts_frame({"a": [10, 1], "b": [10, 0], "c": [10, 0]}, ["other", "x"])
    with pytest.raises(InputError, match="'other' is already a taxon id"):
        filter_counts(counts, FilterSettings(min_depth=0, min_prevalence=0.5))


def test_single_taxon_left_is_refused() -> None:
    counts = counts_frame({"a": [10, 1], "b": [10, 0], "c": [10, 0]}, ["x", "y"])
    with pytest.raises(InputError, match="only 1 taxon left"):
        filter_counts(counts, FilterSettings(min_depth=0, min_prevalence=0.5, aggregate_other=False))
