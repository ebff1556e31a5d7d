"""Tidy tables written by the data stage, and reading them back for the model stage.

Tables (TSV, first column the id):

* ``counts.tsv``   analysed samples x taxa (incl. the ``other`` column when trimmed taxa are aggregated)
* ``design.tsv``   samples x treatment columns of X (no intercept)
* ``terms.tsv``    term, column: which formula term each column of X belongs to
* ``blocks.tsv``   samples x blocking factors, distinct level labels (``A/1``)
* ``taxa.tsv``     every input taxon: label, lineage, prevalence, total_count,
                   mean_relative_abundance, status (kept/aggregated/trimmed/dropped), reason
* ``samples.tsv``  every input sample: reads, reads_in_kept_taxa, status (kept/dropped), reason
* ``summary.json`` sizes before and after filtering, columns, terms, blocking factors
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mimix.design import Blocks, blocks_from_labels
from mimix.validation import PreparedData

TABLES = ("counts", "design", "terms", "blocks", "taxa", "samples", "summary")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename it into place.

    A killed job never leaves a file that looks complete under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_tsv(frame: pd.DataFrame, path: str | Path) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, sep="\t"))


def write_json(payload: dict, path: str | Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n"))


def data_stage_tables(prepared: PreparedData) -> dict[str, pd.DataFrame | dict]:
    """The data stage's output tables, keyed as in :data:`TABLES`."""
    terms = pd.DataFrame(
        [(term, column) for term, columns in prepared.design.terms.items() for column in columns],
        columns=["term", "column"],
    ).set_index("term")
    return {
        "counts": prepared.counts,
        "design": prepared.design.X,
        "terms": terms,
        "blocks": prepared.blocks.labels,
        "taxa": prepared.taxa_table(),
        "samples": prepared.filtered.samples,
        "summary": prepared.summary(),
    }


def write_data_stage(prepared: PreparedData, paths: dict[str, str | Path]) -> None:
    """Write every data stage table to its path (keys as in :data:`TABLES`)."""
    for key, table in data_stage_tables(prepared).items():
        if isinstance(table, dict):
            write_json(table, paths[key])
        else:
            write_tsv(table, paths[key])


def read_table(path: str | Path, index: bool = True, **kwargs) -> pd.DataFrame:
    """Read a TSV written by the workflow; ids such as "NA" or "null" stay text (only empty is missing)."""
    dtype = {0: str} if index else None
    return pd.read_csv(
        path,
        sep="\t",
        index_col=0 if index else None,
        dtype=kwargs.pop("dtype", dtype),
        keep_default_na=False,
        na_values=[""],
        **kwargs,
    )


def read_rows(paths) -> pd.DataFrame:
    """Concatenate one-row (or few-row) tables written per job, e.g. simulation replicates."""
    return pd.concat([read_table(path, index=False) for path in paths], ignore_index=True)


def read_terms(path: str | Path) -> dict[str, list[str]]:
    """terms.tsv as {term: [columns]} in formula order."""
    terms: dict[str, list[str]] = {}
    for term, column in read_table(path, index=False, dtype=str).itertuples(index=False):
        terms.setdefault(term, []).append(column)
    return terms


@dataclass
class ModelInput:
    """The analysed data as the model stage reads it back from the data stage tables."""

    counts: pd.DataFrame
    X: pd.DataFrame
    terms: dict[str, list[str]]
    blocks: Blocks
    taxa: pd.DataFrame  # kept taxa only (plus 'other'), in the column order of counts


def read_data_stage(paths: dict[str, str | Path], nested_blocking: bool = True) -> ModelInput:
    """Read the tables written by :func:`write_data_stage`."""
    counts = read_table(paths["counts"])
    counts.columns = counts.columns.astype(str)
    X = read_table(paths["design"])
    terms = read_terms(paths["terms"])
    labels = read_table(paths["blocks"], dtype=str)
    taxa = read_table(paths["taxa"])
    taxa = taxa.reindex(counts.columns)
    return ModelInput(counts=counts, X=X, terms=terms, blocks=blocks_from_labels(labels, nested_blocking), taxa=taxa)
