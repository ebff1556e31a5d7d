"""Parsers for every accepted input format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import write_table

from mimix import readers
from mimix.errors import InputError


def test_count_table_samples_as_rows_tsv(tmp_path: Path) -> None:
    path = write_table(tmp_path / "c.tsv", [["id", "a", "b"], ["s1", 1, 2], ["s2", 3, 0]])
    counts = readers.read_count_table(path)
    assert counts.index.tolist() == ["s1", "s2"]
    assert counts.columns.tolist() == ["a", "b"]
    assert counts.to_numpy().tolist() == [[1, 2], [3, 0]]
    assert counts.dtypes.unique().tolist() == [np.dtype("int64")]


def test_count_table_taxa_as_rows_csv_with_biom_header(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("# Constructed from biom file\n#OTU ID,s1,s2,s3\na,1,2,3\nb,4.0,5,6\n")
    counts = readers.read_count_table(path, orientation="taxa_as_rows")
    assert counts.index.tolist() == ["s1", "s2", "s3"]
    assert counts.loc["s2", "b"] == 5
    assert counts.loc["s1", "b"] == 4


def test_count_table_bad_orientation_option(tmp_path: Path) -> None:
    path = write_table(tmp_path / "c.tsv", [["id", "a"], ["s1", 1]])
    with pytest.raises(InputError, match="input.orientation"):
        readers.read_count_table(path, orientation="sideways")


def test_count_table_ragged_row_named(tmp_path: Path) -> None:
    path = write_table(tmp_path / "c.tsv", [["id", "a", "b"], ["s1", 1, 2], ["s2", 3]])
    with pytest.raises(InputError, match=r"c.tsv: line 3 has 2 cells but the header has 3"):
        readers.read_count_table(path)


def _biom_table():
    import biom

    data = np.array([[1, 0, 5], [2, 3, 0]])  # observations x samples
    metadata = [{"taxonomy": ["k__Bacteria", "g__Alpha"]}, {"taxonomy": ["k__Bacteria", "g__Beta"]}]
    return biom.Table(data, ["otu1", "otu2"], ["s1", "s2", "s3"], observation_metadata=metadata)


def test_biom_json(tmp_path: Path) -> None:
    path = tmp_path / "t.biom"
    path.write_text(_biom_table().to_json("test"))
    counts, taxonomy = readers.read_biom(path)
    assert counts.shape == (3, 2)
    assert counts.loc["s3", "otu1"] == 5
    assert taxonomy["otu2"] == "k__Bacteria; g__Beta"


def test_biom_hdf5(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "t.biom"
    with h5py.File(path, "w") as handle:
        _biom_table().to_hdf5(handle, "test")
    counts, taxonomy = readers.read_biom(path)
    assert counts.loc["s2", "otu2"] == 3
    assert taxonomy is not None and taxonomy["otu1"].endswith("g__Alpha")


def test_biom_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "t.biom"
    path.write_text("not a biom table")
    with pytest.raises(InputError, match="t.biom: not a readable BIOM table"):
        readers.read_biom(path)


def test_metadata_qiime2_types_and_comments(tmp_path: Path) -> None:
    path = write_table(
        tmp_path / "m.tsv",
        [
            ["sample-id", "dose", "site"],
            ["#q2:types", "numeric", "categorical"],
            ["# a comment line", "", ""],
            ["s1", "1.5", "A"],
            ["s2", "", "B"],
        ],
    )
    metadata, types = readers.read_metadata(path)
    assert metadata.index.tolist() == ["s1", "s2"]
    assert types == {"dose": "numeric", "site": "categorical"}
    assert pd.isna(metadata.loc["s2", "dose"])


def test_taxonomy_with_and_without_header(tmp_path: Path) -> None:
    with_header = write_table(tmp_path / "t.tsv", [["Feature ID", "Taxon", "Confidence"], ["a", "k__X; g__Y", "0.9"]])
    assert readers.read_taxonomy(with_header)["a"] == "k__X; g__Y"
    headerless = write_table(tmp_path / "t.csv", [["a", "k__X; g__Y"], ["b", "None"]], sep=",")
    taxonomy = readers.read_taxonomy(headerless, pd.Index(["a", "b"]))
    assert taxonomy.index.tolist() == ["a", "b"]


def test_mimix_folder(tmp_path: Path) -> None:
    write_table(tmp_path / "X.csv", [[0, 1, 0], [1, 0, 0], [1, 1, 1]], sep=",")
    write_table(tmp_path / "Y.csv", [[5, 0], [2, 7], [1, 1]], sep=",")
    write_table(tmp_path / "Z.csv", [[1, 3], [1, 4], [2, 5]], sep=",")
    write_table(tmp_path / "tax.csv", [["otuA", "k__Fungi; g__A"], ["otuB", "None"]], sep=",")
    raw = readers.read_mimix_folder(tmp_path, ["fence", "nutrient", "both"], ["site", "block"])
    assert raw.counts.columns.tolist() == ["otuA", "otuB"]
    assert raw.counts.loc["S2", "otuB"] == 7
    assert raw.metadata.loc["S3", "both"] == "1"
    assert raw.column_types == {
        "fence": "numeric",
        "nutrient": "numeric",
        "both": "numeric",
        "site": "categorical",
        "block": "categorical",
    }
    assert raw.default_formula == "fence + nutrient + both"
    assert raw.default_blocking == ["site", "block"]


def test_mimix_folder_missing_file(tmp_path: Path) -> None:
    write_table(tmp_path / "Y.csv", [[5, 0]], sep=",")
    with pytest.raises(InputError, match="X.csv: required MIMIX file missing"):
        readers.read_mimix_folder(tmp_path)


def test_mimix_folder_row_mismatch(tmp_path: Path) -> None:
    write_table(tmp_path / "X.csv", [[0], [1]], sep=",")
    write_table(tmp_path / "Y.csv", [[5, 0], [2, 7], [1, 1]], sep=",")
    write_table(tmp_path / "Z.csv", [[1], [1], [2]], sep=",")
    with pytest.raises(InputError, match="one row per sample"):
        readers.read_mimix_folder(tmp_path)


@pytest.mark.parametrize(
    ("taxon", "lineage", "label"),
    [
        ("denovo56", "k__Fungi; g__Epicoccum; s__Epicoccum_nigrum", "Epicoccum nigrum (denovo56)"),
        (
            "d1",
            "k__Fungi; o__Pleosporales; f__unidentified; g__unidentified; s__Pleosporales_sp",
            "Pleosporales sp (d1)",
        ),
        ("d2", "k__Fungi; p__Ascomycota; g__; s__", "Ascomycota (d2)"),
        ("d3", "None", "d3"),
        ("d4", None, "d4"),
    ],
)
def test_taxon_label(taxon: str, lineage: str | None, label: str) -> None:
    assert readers.taxon_label(taxon, lineage) == label
