"""The workflow on a real single-node SLURM (tests/slurm/cluster.sh) with profiles/slurm.

Checks that every chain went through sbatch as its own job, with the resources of the config, that
the cheap rules ran locally, and that the results equal a local run with the same seeds (the data
tables byte for byte, the chains' draws exactly).

Runs when SLURM can be installed and started here: as root with apt-get (Debian), unless
MIMIX_TEST_SLURM=0. With MIMIX_TEST_SLURM=1 a missing precondition is a failure, not a skip.
The daemons the fixture starts are stopped afterwards; a cluster that was already running is left
running.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SH = ROOT / "tests" / "slurm" / "cluster.sh"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
DATASET, MODEL = "demo", "mimix_nofactor"
CHAINS = 2
FIT_RESOURCES = {"mem_mb": 1000, "runtime": 30, "threads": 1}
# The data stage and the chains (the posterior summaries and figures have tests of their own).
TARGETS = [f"results/{DATASET}/{MODEL}/chains/{chain}.nc" for chain in range(1, CHAINS + 1)]
DATA_FILES = ("counts.tsv", "design.tsv", "terms.tsv", "blocks.tsv", "taxa.tsv", "samples.tsv", "summary.json")


def _why_not() -> str | None:
    """Why the SLURM test cannot run here (None: it can)."""
    if os.environ.get("MIMIX_TEST_SLURM") == "0":
        return "MIMIX_TEST_SLURM=0"
    if not sys.platform.startswith("linux"):
        return "needs Linux (a single-node SLURM started by tests/slurm/cluster.sh)"
    if os.geteuid() != 0:
        return "needs root to install and start SLURM with tests/slurm/cluster.sh"
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Runs a command with a time limit; on timeout SIGINT first (Snakemake then cancels its SLURM jobs)."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout:.0f} s: {' '.join(cmd)}\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running single-node SLURM; stops (only) the daemons it started."""
    reason = _why_not()
    if reason:
        if os.environ.get("MIMIX_TEST_SLURM") == "1":
            pytest.fail(f"MIMIX_TEST_SLURM=1 but: {reason}")
        pytest.skip(reason)
    t0 = time.monotonic()
    result = _run(["bash", str(CLUSTER_SH), "start"], ROOT, timeout=900)
    started = result.stdout.strip().splitlines()[-1].removeprefix("started:").split() if result.stdout.strip() else []
    try:
        assert result.returncode == 0, f"cluster.sh start failed:\n{result.stderr[-3000:]}"
        print(f"SLURM ready in {time.monotonic() - t0:.0f} s; started here: {started or 'nothing'}")
        yield started
    finally:
        if started:
            stop = _run(["bash", str(CLUSTER_SH), "stop", *started], ROOT, timeout=180)
            assert stop.returncode == 0, stop.stderr[-3000:]


def _workdir(path: Path) -> Path:
    """A working directory with the demo config, small settings (one quick model) and absolute input paths."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["dataset"] = DATASET
    for key in ("counts", "metadata", "taxonomy", "mimix_dir"):
        if config["input"].get(key):
            config["input"][key] = str(ROOT / config["input"][key])
    config["models"] = [MODEL]
    config["sampling"] = {**config.get("sampling", {}), "chains": CHAINS, "warmup": 50, "draws": 50}
    config["resources"] = {"fit": dict(FIT_RESOURCES)}
    path.mkdir(parents=True)
    (path / "study.yaml").write_text(yaml.safe_dump(config))
    return path


def _sacct(*args: str) -> list[list[str]]:
    out = subprocess.run(["sacct", "-n", "-P", *args], capture_output=True, text=True, timeout=60, check=True)
    return [line.split("|") for line in out.stdout.splitlines() if line.strip()]


def test_chains_run_as_slurm_jobs_and_match_a_local_run(slurm_cluster, tmp_path: Path) -> None:
    az = pytest.importorskip("arviz")
    local, cluster = _workdir(tmp_path / "local"), _workdir(tmp_path / "slurm")

    # Local first, one job at a time (the compile rule builds the model once; cached for the SLURM run).
    t0 = time.monotonic()
    result = _run([*SNAKEMAKE, "--configfile", "study.yaml", "--cores", "1", *TARGETS], local, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    local_seconds = time.monotonic() - t0

    t0, since = time.monotonic(), time.strftime("%Y-%m-%dT%H:%M:%S")
    result = _run(
        [
            *SNAKEMAKE,
            "--configfile",
            "study.yaml",
            "--profile",
            str(ROOT / "profiles" / "slurm"),
            "--jobs",
            str(CHAINS),
            "--slurm-init-seconds-before-status-checks",
            "5",
            "--slurm-keep-successful-logs",
            *TARGETS,
        ],
        cluster,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    print(f"local run {local_seconds:.0f} s, SLURM run {time.monotonic() - t0:.0f} s")

    # Every chain was its own sbatch job (the plugin's logs are named by SLURM job id) ...
    logs = sorted((cluster / ".snakemake" / "slurm_logs" / "rule_fit_chain").rglob("*.log"))
    assert len(logs) == CHAINS, [str(p) for p in logs]
    job_ids = [p.stem for p in logs]
    assert all(j.isdigit() for j in job_ids), job_ids
    # ... that SLURM accounted for as completed, with the config's resources ...
    rows = _sacct("-X", "-j", ",".join(job_ids), "--format=JobID,JobName,Comment,State,AllocCPUS,ReqMem,Timelimit")
    assert sorted(r[0] for r in rows) == sorted(job_ids), rows
    for _job_id, _name, comment, state, cpus, mem, limit in rows:
        assert comment.startswith("rule_fit_chain"), rows
        assert state == "COMPLETED", rows
        assert int(cpus) == FIT_RESOURCES["threads"], rows
        assert mem.rstrip("Mnc") == str(FIT_RESOURCES["mem_mb"]), rows
        assert limit == f"00:{FIT_RESOURCES['runtime']:02d}:00", rows
    assert len({r[1] for r in rows}) == 1, rows  # one Snakemake run (the job name is its run id)
    # ... while the cheap rules ran locally (localrules): no job of theirs in SLURM's accounting.
    run_jobs = _sacct("-X", "-a", "-S", since, f"--name={rows[0][1]}", "--format=JobID,Comment")
    submitted = {comment.split("_wildcards_")[0].removeprefix("rule_") for _, comment in run_jobs}
    assert "fit_chain" in submitted and submitted <= {"fit_chain", "compile_model"}, run_jobs
    assert "localrule filter_counts" in result.stderr

    # Same results as locally: the data stage byte for byte, the chains' draws exactly (same seeds).
    for name in DATA_FILES:
        a, b = (d / "results" / DATASET / "data" / name for d in (local, cluster))
        assert a.read_bytes() == b.read_bytes(), name
    for chain in range(1, CHAINS + 1):
        a, b = (az.from_netcdf(d / "results" / DATASET / MODEL / "chains" / f"{chain}.nc") for d in (local, cluster))
        assert set(a.posterior.data_vars) == set(b.posterior.data_vars) and a.posterior.data_vars
        for var in a.posterior.data_vars:
            assert np.array_equal(a.posterior[var].values, b.posterior[var].values, equal_nan=True), (chain, var)
        for var in ("lp", "diverging", "tree_depth", "n_steps", "step_size"):
            if var in a.sample_stats:
                assert np.array_equal(a.sample_stats[var].values, b.sample_stats[var].values), (chain, var)
