"""Formula -> X with readable names and reference levels; nested blocking levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mimix.design import build_blocks, build_design, formula_variables


@pytest.fixture
def metadata() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "nutrient": ["no", "yes", "no", "yes", "no", "yes", "no", "yes"],
            "fence": ["in", "in", "out", "out", "mid", "mid", "in", "out"],
            "ph": ["5.1", "6.0", "7.2", "5.5", "6.1", "6.8", "5.9", "7.0"],
            "site": ["A", "A", "A", "A", "B", "B", "B", "B"],
            "block": ["1", "1", "2", "2", "1", "1", "2", "2"],
        },
        index=[f"s{i}" for i in range(8)],
    )


def test_formula_variables() -> None:
    assert formula_variables("nutrient * fence + np.log(ph) + C(year)") == ["nutrient", "fence", "ph", "year"]
    assert formula_variables("treatment + scale") == ["treatment", "scale"]


def test_interaction_names_terms_and_reference(metadata: pd.DataFrame) -> None:
    design = build_design(metadata, "nutrient * fence", reference_levels={"fence": "out"})
    assert list(design.X.columns) == [
        "nutrient[yes]",
        "fence[in]",
        "fence[mid]",
        "nutrient[yes]:fence[in]",
        "nutrient[yes]:fence[mid]",
    ]
    assert design.terms == {
        "nutrient": ["nutrient[yes]"],
        "fence": ["fence[in]", "fence[mid]"],
        "nutrient:fence": ["nutrient[yes]:fence[in]", "nutrient[yes]:fence[mid]"],
    }
    # Reference level 'out' has all fence columns 0.
    assert design.X.loc[["s2", "s3", "s7"], ["fence[in]", "fence[mid]"]].to_numpy().sum() == 0


def test_continuous_covariate_kept_numeric(metadata: pd.DataFrame) -> None:
    design = build_design(metadata, "nutrient + ph")
    assert list(design.X.columns) == ["nutrient[yes]", "ph"]
    assert design.X["ph"].tolist() == pytest.approx([5.1, 6.0, 7.2, 5.5, 6.1, 6.8, 5.9, 7.0])


def test_numeric_column_declared_categorical(metadata: pd.DataFrame) -> None:
    metadata["dose"] = ["0", "10", "20", "0", "10", "20", "0", "10"]
    design = build_design(metadata, "dose", categorical=["dose"])
    # Levels sort numerically, so '0' is the reference and '10' precedes '20'.
    assert list(design.X.columns) == ["dose[10]", "dose[20]"]


def test_nested_blocks_get_distinct_levels(metadata: pd.DataFrame) -> None:
    blocks = build_blocks(metadata, ["site", "block"], nested=True)
    assert blocks.levels == [
        ("site", "A"),
        ("site", "B"),
        ("block", "A/1"),
        ("block", "A/2"),
        ("block", "B/1"),
        ("block", "B/2"),
    ]
    assert blocks.parent == [0, 0, 1, 1, 2, 2]
    assert blocks.level_factor() == [1, 1, 2, 2, 2, 2]
    index = blocks.index_matrix()
    assert index.shape == (8, 2)
    assert index[0].tolist() == [1, 3] and index[4].tolist() == [2, 5]


def test_crossed_blocks_share_labels(metadata: pd.DataFrame) -> None:
    blocks = build_blocks(metadata, ["site", "block"], nested=False)
    assert [label for factor, label in blocks.levels if factor == "block"] == ["1", "2"]
    assert np.unique(blocks.index_matrix()[:, 1]).tolist() == [3, 4]
