"""Small hand-made inputs shared by the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from mimix.simulate import SimulationSettings, simulate, write_dataset


def write_table(path: Path, rows: list[list[object]], sep: str = "\t") -> Path:
    """Write rows (the first is the header) as a delimited text file."""
    path.write_text("\n".join(sep.join(str(c) for c in row) for row in rows) + "\n")
    return path


def tiny_dataset(folder: Path, n_per_cell: int = 2) -> dict[str, str]:
    """A 2x2 factorial in 2 sites x 2 blocks (block labels repeat across sites), 6 taxa.

    Returns the config ``input`` section pointing at the written files.
    """
    samples, meta = [], []
    i = 0
    for site in ("A", "B"):
        for block in ("1", "2"):
            for nutrient in ("no", "yes"):
                for fence in ("open", "closed"):
                    for _ in range(n_per_cell):
                        i += 1
                        sid = f"s{i:02d}"
                        samples.append(sid)
                        meta.append([sid, nutrient, fence, site, block])
    counts = [["sample_id", "t1", "t2", "t3", "t4", "t5", "t6"]]
    for k, sid in enumerate(samples):
        counts.append([sid, 500 + k, 300, 200 + 3 * k, 100, 50 + (k % 3), 1 if k % 4 == 0 else 0])
    write_table(folder / "counts.tsv", counts)
    write_table(folder / "metadata.tsv", [["sample-id", "nutrient", "fence", "site", "block"], *meta])
    write_table(
        folder / "taxonomy.tsv",
        [["Feature ID", "Taxon"]] + [[f"t{k}", f"k__Bacteria; g__Genus{k}; s__"] for k in range(1, 7)],
    )
    return {
        "format": "table",
        "counts": str(folder / "counts.tsv"),
        "metadata": str(folder / "metadata.tsv"),
        "taxonomy": str(folder / "taxonomy.tsv"),
    }


def counts_frame(rows: dict[str, list[int]], taxa: list[str]) -> pd.DataFrame:
    return pd.DataFrame.from_dict(rows, orient="index", columns=taxa)


# A small fitted study (no-factor model, 2 chains), shared by the rerun, resume and power tests.
ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["results/kill/mimix_nofactor/global_tests.tsv", "results/kill/mimix_nofactor/local_tests.tsv"]


def make_workdir(folder: Path) -> Path:
    folder.mkdir()
    data = simulate(SimulationSettings(n_samples=24, n_taxa=8, n_blocks=3, dense=0.6, seed=4))
    paths = write_dataset(data, folder / "input")
    config = {
        "dataset": "kill",
        "input": {"format": "table", "counts": str(paths["counts"]), "metadata": str(paths["metadata"])},
        "design": {"formula": "treatment", "blocking": ["block"]},
        "filtering": {"min_depth": 100, "min_prevalence": 0.0},
        "models": ["mimix_nofactor"],
        "sampling": {"engine": "pystan", "chains": 2, "warmup": 300, "draws": 300, "refresh": 10, "seed": 3},
    }
    (folder / "study.yaml").write_text(yaml.safe_dump(config))
    return folder


def snakemake(
    workdir: Path, wait: bool = True, extra: tuple[str, ...] = (), targets: list[str] = TARGETS
) -> subprocess.Popen | subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--cores",
        "1",
        *targets,
        "--configfile",
        "study.yaml",
        *extra,
    ]
    if wait:
        return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=1500)
    return subprocess.Popen(
        command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
