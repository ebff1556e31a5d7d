"""The report's opening page: data, models, convergence, the answers of the tests, responding taxa, run time."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the package, when not pip-installed

import json  # noqa: E402

from mimix.datastage import atomic_write, read_table  # noqa: E402
from mimix.logs import run_step, step_logger  # noqa: E402
from mimix.plots import ModelReport, step_times, summary_page  # noqa: E402

snakemake = globals()["snakemake"]
logger = step_logger("summary", snakemake.log[0])


def per_model(name: str) -> list[str]:
    paths = snakemake.input[name] if name in snakemake.input.keys() else []
    return [paths] if isinstance(paths, str) else list(paths)


def main() -> None:
    models = list(snakemake.params.models)
    tables = {name: per_model(name) for name in ("verdicts", "global_tests", "local_tests", "chains")}
    reports = {}
    for i, model in enumerate(models):
        read = {name: read_table(paths[i], index=False) if i < len(paths) else None for name, paths in tables.items()}
        reports[model] = ModelReport(read["verdicts"], read["global_tests"], read["local_tests"], read["chains"])
    data_summary = json.loads(Path(snakemake.input.data_summary).read_text())
    permanova = read_table(snakemake.input.permanova, index=False) if "permanova" in snakemake.input.keys() else None
    logs = Path(snakemake.params.logs)
    own_log = Path(snakemake.log[0]).resolve()
    texts = {
        str(path.relative_to(logs)): path.read_text(errors="replace")
        for path in sorted(logs.rglob("*.log"))
        if path.resolve() != own_log
    }
    page = summary_page(snakemake.params.dataset, data_summary, reports, permanova, step_times(texts))
    atomic_write(snakemake.output[0], lambda tmp: tmp.write_text(page))
    logger.info("opening page written: %d lines", page.count("\n"))


run_step(logger, main)
