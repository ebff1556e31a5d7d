"""Readers for the accepted input formats.

Every reader returns tidy pandas objects (samples as rows, taxa as columns, string ids)
and reports bad cells as :class:`~mimix.errors.InputError` lines that name the file,
the line/column and the fix. Nothing here writes files.

Formats:

* count table (TSV/CSV), samples x taxa or taxa x samples (``orientation``);
* BIOM table (JSON 1.0 or HDF5 2.1), via ``biom-format``;
* sample metadata (TSV/CSV, QIIME 2 conventions: first column the sample id,
  an optional ``#q2:types`` row, ``#`` comment lines);
* the original MIMIX folder (headerless ``X.csv``, ``Y.csv``, ``Z.csv``, optional ``tax.csv``);
* a taxonomy table (taxon id -> lineage string).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mimix.errors import InputError, truncated_list

ORIENTATIONS = ("samples_as_rows", "taxa_as_rows")
# How many bad cells one file may report before the rest are summarized in a count.
MAX_CELL_PROBLEMS = 10


@dataclass
class RawDataset:
    """Inputs as read, before validation of their mutual consistency and filtering."""

    counts: pd.DataFrame  # samples x taxa, int64, index = sample ids, columns = taxon ids
    metadata: pd.DataFrame  # index = sample ids, one column per variable
    taxonomy: pd.Series | None = None  # taxon id -> lineage string
    column_types: dict[str, str] = field(default_factory=dict)  # from a #q2:types row
    sources: dict[str, str] = field(default_factory=dict)  # role -> file name, for messages
    # Used when the config leaves design.formula / design.blocking empty (MIMIX folder input).
    default_formula: str | None = None
    default_blocking: list[str] | None = None


def _check_readable(path: str | Path, role: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"{path}: {role} file not found; check the path in the config (relative to the working directory)"
        )
    if path.is_dir():
        raise InputError(f"{path}: {role} path is a directory, expected a file; point the config at the file")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as err:
        raise InputError(f"{path}: {role} file cannot be read ({err.strerror}); fix its permissions") from err
    return path


def _delimiter(path: Path) -> str:
    """Comma for .csv files, otherwise tab (QIIME and biom-format write TSV)."""
    return "," if path.suffix.lower() == ".csv" else "\t"


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """All non-empty rows with their 1-based line numbers, cells stripped of whitespace."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start}); save it as UTF-8 text"
        ) from err
    rows = []
    reader = csv.reader(text.splitlines(), delimiter=_delimiter(path))
    for line_number, row in enumerate(reader, start=1):
        cells = [cell.strip() for cell in row]
        if any(cells):
            rows.append((line_number, cells))
    if not rows:
        raise InputError(f"{path}: file is empty; export the table again")
    return rows


def parse_count_cells(cells: pd.DataFrame, path: Path, cell_location: callable) -> tuple[pd.DataFrame, list[str]]:
    """Convert string cells to int64 counts, collecting one problem line per bad cell.

    ``cell_location(sample, taxon)`` tells where a cell sits in the file, for messages.
    Accepted: non-negative integers, also written as ``12.0`` (BIOM and R often do).
    """
    numeric = cells.apply(pd.to_numeric, errors="coerce").astype(float)
    problems: list[str] = []
    bad_cells = 0

    def report(sample: str, taxon: str, what: str) -> None:
        nonlocal bad_cells
        bad_cells += 1
        if bad_cells <= MAX_CELL_PROBLEMS:
            problems.append(f"{path}: {cell_location(sample, taxon)}: {what}")

    raw = cells.to_numpy(dtype=object)
    values = numeric.to_numpy()
    for r, c in zip(*np.nonzero(~np.isfinite(values)), strict=True):
        text = raw[r, c]
        sample, taxon = cells.index[r], cells.columns[c]
        if (
            text is None
            or (isinstance(text, float) and math.isnan(text))
            or str(text).strip() in ("", "NA", "NaN", "nan")
        ):
            report(sample, taxon, "count is missing (empty or NaN); write 0 for an absent taxon")
        else:
            report(sample, taxon, f"count {str(text)!r} is not a number; counts must be non-negative integers")
    finite = np.isfinite(values)
    for r, c in zip(*np.nonzero(finite & (values < 0)), strict=True):
        report(cells.index[r], cells.columns[c], f"count {raw[r, c]} is negative; counts must be non-negative integers")
    fractional = finite & (values >= 0) & (np.abs(values - np.round(values)) > 0)
    for r, c in zip(*np.nonzero(fractional), strict=True):
        report(
            cells.index[r],
            cells.columns[c],
            f"count {raw[r, c]} is not an integer; give raw read counts, not relative abundances or rarefied averages",
        )
    if bad_cells > MAX_CELL_PROBLEMS:
        problems.append(
            f"{path}: {bad_cells - MAX_CELL_PROBLEMS} more bad count cells not listed; fix the ones above and rerun"
        )
    if problems:
        return pd.DataFrame(), problems
    counts = pd.DataFrame(np.round(values).astype(np.int64), index=cells.index, columns=cells.columns)
    return counts, problems


def _duplicates(ids: pd.Index) -> list[str]:
    return sorted({str(i) for i in ids[ids.duplicated()]})


def read_count_table(path: str | Path, orientation: str = "samples_as_rows") -> pd.DataFrame:
    """Read a TSV/CSV count table into a samples x taxa int64 DataFrame.

    The first column holds the row ids and the header row the column ids. A leading
    ``# Constructed from biom file`` line (``biom convert --to-tsv``) is skipped.
    """
    if orientation not in ORIENTATIONS:
        raise InputError(f"input.orientation: {orientation!r} is not one of {ORIENTATIONS}; fix the config")
    path = _check_readable(path, "count table")
    rows = _read_rows(path)
    if rows[0][1][0].startswith("# Constructed from biom"):
        rows = rows[1:]
    if len(rows) < 2:
        raise InputError(f"{path}: needs a header row and at least one data row; check the file and its delimiter")
    header_line, header = rows[0]
    width = len(header)
    if width < 2:
        sep = "comma" if _delimiter(path) == "," else "tab"
        raise InputError(
            f"{path}: line {header_line} has a single column with the {sep} delimiter; "
            "use .csv for comma-separated and .tsv/.txt for tab-separated files"
        )
    problems = []
    for line_number, cells in rows[1:]:
        if len(cells) != width:
            problems.append(
                f"{path}: line {line_number} has {len(cells)} cells but the header has {width}; "
                "fix the row or the delimiter"
            )
    if problems:
        raise InputError(problems[:MAX_CELL_PROBLEMS])
    row_ids = pd.Index([cells[0] for _, cells in rows[1:]], dtype=object)
    col_ids = pd.Index(header[1:], dtype=object)
    body = pd.DataFrame([cells[1:] for _, cells in rows[1:]], index=row_ids, columns=col_ids, dtype=object)
    line_of_row = {i: line for i, (line, _) in enumerate(rows[1:])}
    row_kind, col_kind = ("sample", "taxon") if orientation == "samples_as_rows" else ("taxon", "sample")
    for ids, kind, where in ((row_ids, row_kind, "first column"), (col_ids, col_kind, f"header line {header_line}")):
        duplicated = _duplicates(ids)
        if duplicated:
            problems.append(
                f"{path}: duplicate {kind} ids in the {where}: {truncated_list(duplicated)}; make every id unique"
            )
        if (ids == "").any():
            problems.append(f"{path}: an empty {kind} id in the {where}; give every {kind} an id")
    if problems:
        raise InputError(problems)

    def locate(row_id: str, col_id: str) -> str:
        line = line_of_row[row_ids.get_loc(row_id)]
        return f"line {line}, column {col_id!r} (row id {row_id!r})"

    if orientation == "samples_as_rows":
        counts, problems = parse_count_cells(body, path, locate)
    else:
        counts, problems = parse_count_cells(body.T, path, lambda s, t: locate(t, s))
    if problems:
        raise InputError(problems)
    counts.index.name, counts.columns.name = "sample_id", "taxon_id"
    return counts


def read_biom(path: str | Path) -> tuple[pd.DataFrame, pd.Series | None]:
    """Read a BIOM table (JSON 1.0 or HDF5 2.1) as samples x taxa counts plus its taxonomy, if any."""
    path = _check_readable(path, "BIOM table")
    import biom  # imported here: biom-format is slow to import and only this format needs it

    try:
        table = biom.load_table(str(path))
    except Exception as err:  # biom raises many types for corrupt files; all mean the same to the user
        raise InputError(
            f"{path}: not a readable BIOM table ({type(err).__name__}: {err}); export it again (JSON 1.0 or HDF5 2.1)"
        ) from err
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise InputError(
            f"{path}: not a readable BIOM table (no observations or no samples found); "
            "export it again (JSON 1.0 or HDF5 2.1)"
        )
    sample_ids = pd.Index([str(s) for s in table.ids(axis="sample")], dtype=object)
    taxon_ids = pd.Index([str(t) for t in table.ids(axis="observation")], dtype=object)
    dense = np.asarray(table.matrix_data.todense(), dtype=float).T
    cells = pd.DataFrame(dense, index=sample_ids, columns=taxon_ids)
    counts, problems = parse_count_cells(cells, path, lambda s, t: f"sample {s!r}, observation {t!r}")
    if problems:
        raise InputError(problems)
    counts.index.name, counts.columns.name = "sample_id", "taxon_id"
    taxonomy = None
    metadata = table.metadata(axis="observation")
    if metadata is not None and all(m is not None and "taxonomy" in m for m in metadata):
        lineages = ["; ".join(m["taxonomy"]) if not isinstance(m["taxonomy"], str) else m["taxonomy"] for m in metadata]
        taxonomy = pd.Series(lineages, index=taxon_ids, name="lineage")
    return counts, taxonomy


def read_metadata(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a QIIME 2 style sample metadata table.

    Returns the table (index = sample ids, string cells, missing cells as ``pd.NA``) and the
    column types declared by a ``#q2:types`` row (``categorical`` or ``numeric``), if present.
    Columns are not converted here: :mod:`mimix.design` decides numeric vs categorical.
    """
    path = _check_readable(path, "metadata")
    rows = _read_rows(path)
    header_line, header = rows[0]
    types_row = None
    body = []
    for line_number, cells in rows[1:]:
        if cells[0].lower() == "#q2:types":
            types_row = cells
        elif cells[0].startswith("#"):
            continue  # QIIME 2 comment line
        else:
            body.append((line_number, cells))
    problems = []
    if len(header) < 2:
        problems.append(
            f"{path}: line {header_line} has a single column; the metadata needs a sample id column and variables"
        )
    for line_number, cells in body:
        if len(cells) > len(header):
            problems.append(
                f"{path}: line {line_number} has {len(cells)} cells but the header has {len(header)}; fix the row"
            )
    if problems:
        raise InputError(problems)
    padded = [cells + [""] * (len(header) - len(cells)) for _, cells in body]
    table = pd.DataFrame(padded, columns=header, dtype=object)
    table = table.set_index(header[0])
    table.index = pd.Index(table.index.astype(str), dtype=object, name="sample_id")
    duplicated = _duplicates(table.index)
    if duplicated:
        raise InputError(
            f"{path}: duplicate sample ids in the first column: {truncated_list(duplicated)}; make every id unique"
        )
    table = table.replace({"": pd.NA})
    column_types = {}
    if types_row is not None:
        for name, kind in zip(header[1:], types_row[1:], strict=False):
            if kind.lower() in ("categorical", "numeric"):
                column_types[name] = kind.lower()
    return table, column_types


def read_taxonomy(path: str | Path, taxon_ids: pd.Index | None = None) -> pd.Series:
    """Read a taxonomy table (taxon id, lineage[, confidence]).

    A header row is recognized when its first cell is not a known taxon id, as in QIIME 2's
    ``Feature ID<TAB>Taxon<TAB>Confidence`` or the original MIMIX's headerless ``tax.csv``.
    """
    path = _check_readable(path, "taxonomy")
    rows = _read_rows(path)
    header_names = {"feature id", "featureid", "otu id", "otu", "taxon", "taxon_id", "taxon id", "id"}
    first = rows[0][1][0]
    known_ids = set(taxon_ids) if taxon_ids is not None else set()
    if first.lower().lstrip("#").strip() in header_names or (known_ids and first not in known_ids):
        rows = rows[1:]
    problems = [
        f"{path}: line {line} has no lineage column; write 'taxon id, lineage'"
        for line, cells in rows
        if len(cells) < 2
    ]
    if problems:
        raise InputError(problems[:MAX_CELL_PROBLEMS])
    ids = pd.Index([cells[0] for _, cells in rows], dtype=object)
    duplicated = _duplicates(ids)
    if duplicated:
        raise InputError(f"{path}: duplicate taxon ids: {truncated_list(duplicated)}; give each taxon one lineage")
    return pd.Series([cells[1] for _, cells in rows], index=ids, name="lineage")


def read_mimix_folder(
    folder: str | Path, x_names: list[str] | None = None, z_names: list[str] | None = None
) -> RawDataset:
    """Read the original MIMIX input folder: headerless ``X.csv``, ``Y.csv``, ``Z.csv`` (+ ``tax.csv``).

    Samples get ids ``S1..SN`` (row order), treatments the names ``x_names`` (default ``X1..Xp``)
    and blocking factors ``z_names`` (default ``Z1..Zq``); both become metadata columns, so the
    formula and blocking options work as for any other input.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(
            f"{folder}: MIMIX input folder not found; set input.mimix_dir to the folder holding X.csv, Y.csv, Z.csv"
        )
    problems = [
        f"{folder / name}: required MIMIX file missing; the folder needs X.csv, Y.csv and Z.csv"
        for name in ("X.csv", "Y.csv", "Z.csv")
        if not (folder / name).exists()
    ]
    if problems:
        raise InputError(problems)
    tables = {}
    for name in ("X", "Y", "Z"):
        path = folder / f"{name}.csv"
        rows = _read_rows(path)
        widths = {len(cells) for _, cells in rows}
        if len(widths) != 1:
            raise InputError(
                f"{path}: rows have different numbers of cells ({sorted(widths)}); every row needs the same columns"
            )
        tables[name] = (path, rows)
    n_rows = {name: len(rows) for name, (_, rows) in tables.items()}
    if len(set(n_rows.values())) != 1:
        raise InputError(
            f"{folder}: X.csv, Y.csv and Z.csv must have one row per sample but have {n_rows} rows; fix the files"
        )
    y_path, y_rows = tables["Y"]
    n_samples, n_taxa = len(y_rows), len(y_rows[0][1])
    sample_ids = pd.Index([f"S{i + 1}" for i in range(n_samples)], dtype=object, name="sample_id")
    taxonomy = None
    if (folder / "tax.csv").exists():
        taxonomy = read_taxonomy(folder / "tax.csv")
        if len(taxonomy) != n_taxa:
            raise InputError(
                f"{folder / 'tax.csv'}: has {len(taxonomy)} rows but Y.csv has {n_taxa} columns; "
                "one row per taxon, in Y's column order"
            )
        taxon_ids = pd.Index(taxonomy.index, dtype=object)
    else:
        taxon_ids = pd.Index([f"taxon{k + 1}" for k in range(n_taxa)], dtype=object)
    cells = pd.DataFrame([cells for _, cells in y_rows], index=sample_ids, columns=taxon_ids, dtype=object)
    line_of = {s: line for s, (line, _) in zip(sample_ids, y_rows, strict=True)}
    column_of = {t: k + 1 for k, t in enumerate(taxon_ids)}
    counts, problems = parse_count_cells(cells, y_path, lambda s, t: f"line {line_of[s]}, column {column_of[t]}")
    if problems:
        raise InputError(problems)
    counts.index.name, counts.columns.name = "sample_id", "taxon_id"
    metadata = pd.DataFrame(index=sample_ids)
    column_types = {}
    names_of = {}
    for name, names, prefix, kind in (("X", x_names, "X", "numeric"), ("Z", z_names, "Z", "categorical")):
        path, rows = tables[name]
        width = len(rows[0][1])
        names = list(names) if names else [f"{prefix}{j + 1}" for j in range(width)]
        if len(names) != width:
            raise InputError(
                f"{path}: has {width} columns but {len(names)} names were given in the config; give one name per column"
            )
        for j, col in enumerate(names):
            metadata[col] = [cells[j] if cells[j] != "" else pd.NA for _, cells in rows]
            column_types[col] = kind
        names_of[name] = names
    return RawDataset(
        counts=counts,
        metadata=metadata.astype(object),
        taxonomy=taxonomy,
        column_types=column_types,
        sources={"counts": str(y_path), "metadata": f"{folder}/X.csv+Z.csv", "taxonomy": str(folder / "tax.csv")},
        default_formula=" + ".join(names_of["X"]),
        default_blocking=names_of["Z"],
    )


def taxon_label(taxon_id: str, lineage: str | None) -> str:
    """A short readable label: the most specific informative rank, then the id.

    ``k__Fungi; ...; g__Epicoccum; s__Epicoccum_nigrum`` -> ``Epicoccum nigrum (denovo56)``;
    unassigned or ``unidentified`` ranks are skipped.
    """
    if lineage is None or (isinstance(lineage, float) and math.isnan(lineage)):
        return str(taxon_id)
    uninformative = {"", "none", "unidentified", "unassigned", "uncultured", "unknown", "na"}
    for rank in reversed([part.strip() for part in str(lineage).split(";")]):
        name = rank.split("__", 1)[-1].strip().replace("_", " ")
        # "Pleosporales sp" is informative through its stem; a bare "sp" or "unidentified sp" is not.
        stem = name[:-3].strip() if name.lower().endswith(" sp") else name
        if stem.lower() not in uninformative | {"sp", "spp"}:
            return f"{name} ({taxon_id})"
    return str(taxon_id)
