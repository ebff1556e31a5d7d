"""Every bad-input case stops with a one-line message naming the file/place and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import write_table

from mimix.errors import InputError
from mimix.validation import prepare_dataset


def problems_of(input_cfg: dict, design: dict, filtering: dict) -> list[str]:
    with pytest.raises(InputError) as caught:
        prepare_dataset(input_cfg, design, filtering)
    problems = caught.value.problems
    assert all("\n" not in p for p in problems), "each problem must be one line"
    return problems


def rewrite(path: str, old: str, new: str, count: int = 1) -> None:
    text = Path(path).read_text()
    assert old in text
    Path(path).write_text(text.replace(old, new, count))


def test_valid_tiny_dataset(tiny_input, tiny_design, lenient_filtering) -> None:
    prepared = prepare_dataset(tiny_input, tiny_design, lenient_filtering)
    assert prepared.counts.shape == (32, 6)
    assert list(prepared.design.X.columns) == ["nutrient[yes]", "fence[open]", "nutrient[yes]:fence[open]"]


def test_missing_counts_file(tiny_input, tiny_design, lenient_filtering) -> None:
    tiny_input["counts"] = tiny_input["counts"] + ".gone"
    (problem,) = problems_of(tiny_input, tiny_design, lenient_filtering)
    assert "counts.tsv.gone: count table file not found" in problem


def test_unreadable_path_is_a_directory(tiny_input, tiny_design, lenient_filtering) -> None:
    tiny_input["metadata"] = str(Path(tiny_input["metadata"]).parent)
    (problem,) = problems_of(tiny_input, tiny_design, lenient_filtering)
    assert "metadata path is a directory" in problem


def test_sample_ids_missing_on_both_sides(tiny_input, tiny_design, lenient_filtering) -> None:
    rewrite(tiny_input["counts"], "s01\t", "x01\t")
    rewrite(tiny_input["metadata"], "s02\t", "y02\t")
    problems = problems_of(tiny_input, tiny_design, lenient_filtering)
    assert len(problems) == 2
    assert "counts.tsv: 2 sample id(s) not in the metadata: 'x01', 's02'" in problems[0]
    assert "metadata.tsv: 2 sample id(s) not in the count table: 's01', 'y02'" in problems[1]


def test_long_id_lists_are_truncated(tiny_input, tiny_design, lenient_filtering) -> None:
    text = Path(tiny_input["counts"]).read_text().replace("\ns", "\nq")
    Path(tiny_input["counts"]).write_text(text)
    problems = problems_of(tiny_input, tiny_design, lenient_filtering)
    assert "(and 27 more)" in problems[0]


def test_duplicate_sample_id(tiny_input, tiny_design, lenient_filtering) -> None:
    rewrite(tiny_input["counts"], "s02\t", "s01\t")
    problems = problems_of(tiny_input, tiny_design, lenient_filtering)
    assert "counts.tsv: duplicate sample ids in the first column: 's01'" in problems[0]


def test_duplicate_taxon_id(tiny_input, tiny_design, lenient_filtering) -> None:
    rewrite(tiny_input["counts"], "\tt2\t", "\tt1\t")
    problems = problems_of(tiny_input, tiny_design, lenient_filtering)
    assert "duplicate taxon ids in the header line 1: 't1'" in problems[0]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("2.5", "count 2.5 is not an integer"),
        ("-3", "count -3 is negative"),
        ("NaN", "count is missing"),
        ("abc", "count 'abc' is not a number"),
    ],
)
def test_bad_count_cells(tiny_input, tiny_design, lenient_filtering, bad: str, message: str) -> None:
    rewrite(tiny_input["counts"], "s03\t502\t300", f"s03\t502\t{bad}")
    (problem,) = problems_of(tiny_input, tiny_design, lenient_filtering)
    assert "counts.tsv: line 4, column 't2' (row id 's03')" in problem
    assert message in problem


def test_zero_total_sample(tiny_input, tiny_design, lenient_filtering) -> None:
    lines = Path(tiny_input["counts"]).read_text().splitlines()
    lines[5] = "s05\t0\t0\t0\t0\t0\t0"
    Path(tiny_input["counts"]).write_text("\n".join(lines) + "\n")
    (problem,) = problems_of(tiny_input, tiny_design, lenient_filtering)
    assert "1 sample(s) with zero total count: 's05'" in problem


def test_formula_unknown_column(tiny_input, tiny_design, lenient_filtering) -> None:
    tiny_design["formula"] = "nutrient * herbivory"
    (problem,) = problems_of(tiny_input, tiny_design, lenient_filtering)
    assert "design.formula: 'herbivory' not a metadata column" in problem
    assert "available columns: 'nutrient', 'fence', 'site', 'block'" in problem


def test_single_level_treatment(tiny_input, tiny_design, lenient_filtering) -> None:
    text = Path(tiny_input["metadata"]).read_text().replace("\tclosed\t", "\topen\t")
    Path(tiny_input["metadata"]).write_text(text)
    (problem,) = problems_of(tiny_input, tiny_design, lenient_filtering)
    assert "metadata column 'fence': treatment has a single level ('open')" in problem


def test_blocking_factor_with_missing_values(tiny_input, tiny_design, lenient_filtering) -> None:
    rewrite(tiny_input["metadata"], "s04\tno\tclosed\tA\t1", "s04\tno\tclosed\tA\t")
    (problem,) = problems_of(tiny_input, tiny_design, lenient_filtering)
    assert "metadata column 'block': blocking factor has missing values for sample(s) 's04'" in problem


def test_rank_deficient_design(tiny_input, tiny_design, lenient_filtering) -> None:
    # A copy of the nutrient column under another name is perfectly aliased.
    lines = Path(tiny_input["metadata"]).read_text().splitlines()
    lines = [line + "\t" + (line.split("\t")[1] if i else "nutrient_copy") for i, line in enumerate(lines)]
    Path(tiny_input["metadata"]).write_text("\n".join(lines) + "\n")
    tiny_design["formula"] = "nutrient + nutrient_copy"
    (problem,) = problems_of(tiny_input, tiny_design, lenient_filtering)
    assert "rank-deficient design matrix" in problem
    assert "'nutrient_copy[yes]' is a combination of earlier ones" in problem


def test_too_many_design_columns(tmp_path: Path, tiny_input, lenient_filtering) -> None:
    lines = Path(tiny_input["metadata"]).read_text().splitlines()
    header = lines[0] + "\t" + "\t".join(f"c{j}" for j in range(7))
    covariates = np.random.default_rng(1).normal(size=(len(lines) - 1, 7)).round(3)  # full rank
    rows = [line + "\t" + "\t".join(str(v) for v in covariates[i]) for i, line in enumerate(lines[1:])]
    Path(tiny_input["metadata"]).write_text("\n".join([header, *rows]) + "\n")
    design = {"formula": " + ".join(f"c{j}" for j in range(7)), "blocking": ["site"]}
    (problem,) = problems_of(tiny_input, design, lenient_filtering)
    assert "gives 7 columns" in problem and "allows at most 6" in problem


def test_empty_table_after_filtering(tiny_input, tiny_design) -> None:
    problems = problems_of(tiny_input, tiny_design, {"min_depth": 10**6, "max_sample_drop_fraction": 1.0})
    assert any("empty table after filtering (0 samples" in p for p in problems)


def test_too_many_samples_dropped(tiny_input, tiny_design) -> None:
    # Depths are 1151..1244 (+ the rare taxon): a 1200-read cut drops about half of them.
    problems = problems_of(tiny_input, tiny_design, {"min_depth": 1200, "max_sample_drop_fraction": 0.25})
    assert any(
        "samples have fewer than min_depth = 1200 reads" in p and "max_sample_drop_fraction = 0.25" in p
        for p in problems
    )


def test_unknown_reference_level(tiny_input, tiny_design, lenient_filtering) -> None:
    tiny_design["reference_levels"] = {"fence": "half"}
    (problem,) = problems_of(tiny_input, tiny_design, lenient_filtering)
    assert "design.reference_levels: 'half' is not a level of 'fence'" in problem


def test_several_problems_reported_together(tiny_input, tiny_design, lenient_filtering) -> None:
    tiny_design["formula"] = "nutrient + unknown"
    tiny_design["blocking"] = ["site", "plot"]
    problems = problems_of(tiny_input, tiny_design, lenient_filtering)
    assert len(problems) == 2
    assert "'unknown' not a metadata column" in problems[0]
    assert "design.blocking: 'plot' is not a metadata column" in problems[1]


def test_intersect_keeps_shared_samples(tiny_input, tiny_design, lenient_filtering) -> None:
    rewrite(tiny_input["counts"], "s01\t", "x01\t")
    tiny_input["sample_matching"] = "intersect"
    prepared = prepare_dataset(tiny_input, tiny_design, lenient_filtering)
    assert "s01" not in prepared.counts.index and len(prepared.counts) == 31


def test_mimix_folder_uses_default_formula(tmp_path: Path, lenient_filtering) -> None:
    rows_x = [[(i >> 1) & 1, i & 1, ((i >> 1) & 1) * (i & 1)] for i in range(16)]
    write_table(tmp_path / "X.csv", rows_x, sep=",")
    write_table(tmp_path / "Y.csv", [[200 + i, 300, 150 + 2 * i] for i in range(16)], sep=",")
    write_table(tmp_path / "Z.csv", [[1 + i // 8, 3 + i // 4] for i in range(16)], sep=",")
    prepared = prepare_dataset(
        {"format": "mimix", "mimix_dir": str(tmp_path), "mimix_x_names": ["fence", "nutrient", "fxn"]},
        {"formula": None, "blocking": None},
        lenient_filtering,
    )
    assert list(prepared.design.X.columns) == ["fence", "nutrient", "fxn"]
    assert list(prepared.blocks.labels.columns) == ["Z1", "Z2"]
