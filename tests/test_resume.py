"""Fault tolerance and reruns: a chain job killed mid-sampling leaves no output and a rerun redoes only
that chain, reproducing an uninterrupted run exactly; a changed option or a new dataset reruns what
depends on it and nothing else."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import TARGETS, make_workdir, snakemake

pytestmark = pytest.mark.slow


def iterations_done(log: Path) -> int:
    """The last 'Iteration: i / n' progress count in a chain log (Stan's own progress lines)."""
    counts = re.findall(r"Iteration:\s+(\d+)\s*/\s*\d+", log.read_text()) if log.exists() else []
    return int(counts[-1]) if counts else 0


def chain_job_pids(workdir: Path) -> list[int]:
    """Processes running this workdir's fit_chain script (the job and httpstan's forked sampler)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if "fit_chain" in cmdline and cwd == str(workdir):
            pids.append(int(proc.name))
    return pids


def planned_jobs(workdir: Path, *extra: str, targets: list[str] = TARGETS) -> dict[str, int]:
    """Jobs a dry run would execute, by rule name ({} when nothing is to be done)."""
    result = snakemake(workdir, extra=("--dry-run", *extra), targets=targets)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = result.stdout + result.stderr
    if "Job stats:" not in text:
        assert "Nothing to be done" in text, text[-3000:]
        return {}
    table = text.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = [line.split() for line in table.splitlines()[3:]]
    return {name: int(count) for name, count in rows if name != "total"}


def test_killed_chain_is_rerun_alone_and_results_match(tmp_path: Path, fitted_study: Path) -> None:
    work = make_workdir(tmp_path / "killed")
    process = snakemake(work, wait=False)
    chains = work / "results" / "kill" / "mimix_nofactor" / "chains"
    logs = work / "logs" / "kill" / "mimix_nofactor"
    deadline = time.time() + 900
    # With one core the chains run one after the other (in either order): wait until one is done
    # and the other is sampling.
    while time.time() < deadline:
        done = [c for c in (1, 2) if (chains / f"{c}.nc").exists()]
        sampling = [c for c in (1, 2) if c not in done and iterations_done(logs / f"chain{c}.log") >= 50]
        if len(done) == 1 and sampling:
            break
        assert process.poll() is None, process.stdout.read()[-4000:]
        time.sleep(0.5)
    else:
        pytest.fail("never saw one chain finished and the other sampling")
    finished, killed = done[0], sampling[0]
    victims = chain_job_pids(work)
    assert victims, "no running chain job found"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    output = process.communicate(timeout=300)[0]
    assert process.returncode != 0, output[-3000:]
    # Nothing under the final name, and no temporary file that could pass for one.
    assert not (chains / f"{killed}.nc").exists()
    assert [p.name for p in chains.iterdir() if p.suffix == ".nc"] == [f"{finished}.nc"]
    finished_mtime = (chains / f"{finished}.nc").stat().st_mtime_ns

    rerun = snakemake(work)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    # Only the killed chain was recomputed.
    assert f"chain{killed}.log" in rerun.stderr and f"chain{finished}.log" not in rerun.stderr
    assert (chains / f"{finished}.nc").stat().st_mtime_ns == finished_mtime
    for target in TARGETS:
        rerun_table, uninterrupted = (pd.read_csv(folder / target, sep="\t") for folder in (work, fitted_study))
        pd.testing.assert_frame_equal(rerun_table, uninterrupted)


DATA_RULES = {"validate_inputs", "filter_counts"}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # The log's progress interval does not change any draw: nothing reruns.
        ("sampling={refresh: 7}", {}),
        # An inference option reruns that table only; chains and data stay.
        ("inference={local_tests: {interval_level: 0.9}}", {"local_tests": 1}),
        # More draws: both chains and what is built on them (the tables carry the diagnostics
        # verdict), not the data stage or the compile.
        ("sampling={draws: 310}", {"fit_chain": 2, "diagnostics": 1, "global_tests": 1, "local_tests": 1}),
    ],
)
def test_changed_option_reruns_only_its_dependents(fitted_study: Path, override: str, expected: dict) -> None:
    assert planned_jobs(fitted_study) == {}
    assert planned_jobs(fitted_study, "--config", override) == expected


def test_changed_filtering_reruns_everything_downstream(fitted_study: Path) -> None:
    plan = planned_jobs(fitted_study, "--config", "filtering={min_prevalence: 0.2}")
    assert DATA_RULES <= plan.keys()
    assert plan.get("fit_chain") == 2 and {"global_tests", "local_tests"} <= plan.keys()


def test_new_dataset_runs_in_its_own_namespace(fitted_study: Path) -> None:
    """Pointing the config at another dataset plans all of its jobs and leaves the finished one alone."""
    before = {p: p.stat().st_mtime_ns for p in (fitted_study / "results" / "kill").rglob("*") if p.is_file()}
    targets = [t.replace("results/kill/", "results/other/") for t in TARGETS]
    plan = planned_jobs(fitted_study, "--config", "dataset=other", targets=targets)
    assert DATA_RULES <= plan.keys() and plan.get("fit_chain") == 2 and plan.get("compile_model") == 1
    result = snakemake(fitted_study, extra=("--config", "dataset=other"), targets=["data"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (fitted_study / "results" / "other" / "data" / "counts.tsv").exists()
    after = {p: p.stat().st_mtime_ns for p in (fitted_study / "results" / "kill").rglob("*") if p.is_file()}
    assert after == before
    assert planned_jobs(fitted_study) == {}
