"""Simulation study: all replicates' metrics, rejection rates and the paper's Table 1 (TSV, Markdown, LaTeX)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed


from mimix.datastage import atomic_write, read_rows, write_tsv  # noqa: E402
from mimix.logs import run_step, step_logger, timed  # noqa: E402
from mimix.simstudy import aggregate, table1_latex, table1_markdown  # noqa: E402

snakemake = globals()["snakemake"]
logger = step_logger("simulation_tables", snakemake.log[0])


def main() -> None:
    with timed(logger, f"reading {len(snakemake.input)} replicate rows"):
        rows = read_rows(snakemake.input)
    rejection, table1 = aggregate(rows)
    for method, part in rejection.groupby("method"):
        null = part[part["dense"] == 0]["rejection_rate"].mean()
        logger.info("%s: rejection rate %.2f under the null, %.2f with effects", method, null,
                    part[part["dense"] > 0]["rejection_rate"].mean())  # fmt: skip
    out = snakemake.output
    write_tsv(rows.set_index("setting"), out.metrics)
    write_tsv(rejection.set_index("dense"), out.rejection)
    write_tsv(table1.set_index("dense"), out.table1)
    atomic_write(out.table1_md, lambda tmp: Path(tmp).write_text(table1_markdown(table1)))
    atomic_write(out.table1_tex, lambda tmp: Path(tmp).write_text(table1_latex(table1)))


run_step(logger, main)
