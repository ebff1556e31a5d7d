"""Engine selection and the run-one-chain interface of both engines on a tiny Stan program."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mimix import engines
from mimix.engines import ChainSettings, EngineError, select_engine
from mimix.errors import InputError

# A model small enough to compile quickly: y ~ N(m, s), with a 3-vector 'big' that stands in for
# theta (sampled but never saved), a random generated quantity and a matrix whose entries say
# where they are (grid[i, j] = 10 i + j + m), to check the column-major reading of Stan's output.
TOY = """
data { int<lower=1> N; vector[N] y; }
parameters { real m; real<lower=0> s; vector[3] big; }
model { m ~ normal(0, 10); s ~ exponential(1); big ~ std_normal(); y ~ normal(m, s); }
generated quantities {
  real m2 = square(m);
  real noise = normal_rng(0, 1);
  matrix[2, 3] grid;
  for (i in 1:2) for (j in 1:3) grid[i, j] = 10 * i + j + m;
}
"""
DATA = {"N": 20, "y": np.linspace(-1, 3, 20)}
LOGGER = logging.getLogger("test")


def test_auto_prefers_cmdstanpy_when_found() -> None:
    assert select_engine("auto", cmdstan_found=True) == "cmdstanpy"
    assert select_engine("auto", cmdstan_found=False) == "pystan"
    assert select_engine("pystan", cmdstan_found=True) == "pystan"


def test_cmdstanpy_missing_gives_install_hint() -> None:
    with pytest.raises(EngineError, match="conda install -c conda-forge cmdstan"):
        select_engine("cmdstanpy", cmdstan_found=False)


def test_unknown_engine() -> None:
    with pytest.raises(InputError, match="sampling.engine: 'jags'"):
        select_engine("jags")


@pytest.fixture(scope="module")
def pystan_chain() -> engines.ChainResult:
    settings = ChainSettings(seed=7, warmup=200, draws=150, init={"m": 1.0, "s": 1.0})
    return engines.run_chain_pystan(TOY, DATA, settings, ["m", "s", "m2", "noise", "grid"], LOGGER)


@pytest.mark.slow
def test_pystan_chain_shapes_and_stats(pystan_chain: engines.ChainResult) -> None:
    assert set(pystan_chain.draws) == {"m", "s", "m2", "noise", "grid"}  # 'big' is sampled but not kept
    assert pystan_chain.draws["m"].shape == (150,)
    np.testing.assert_allclose(pystan_chain.draws["m2"], pystan_chain.draws["m"] ** 2)
    expected_grid = 10 * np.arange(1, 3)[:, None] + np.arange(1, 4)[None, :] + pystan_chain.draws["m"][:, None, None]
    np.testing.assert_allclose(pystan_chain.draws["grid"], expected_grid)
    assert set(pystan_chain.stats) == set(engines.SAMPLE_STATS.values())
    assert pystan_chain.stats["n_steps"].min() >= 1
    # The posterior mean of m is near the sample mean 1.0 (sd of the mean ~ 1.3/sqrt(20) = 0.3).
    assert abs(pystan_chain.draws["m"].mean() - 1.0) < 0.5
    assert pystan_chain.stan_version.startswith("2.")


@pytest.mark.slow
def test_pystan_same_seed_same_draws(pystan_chain: engines.ChainResult) -> None:
    again = engines.run_chain_pystan(
        TOY, DATA, ChainSettings(seed=7, warmup=200, draws=150, init={"m": 1.0, "s": 1.0}), ["m"], LOGGER
    )
    np.testing.assert_array_equal(again.draws["m"], pystan_chain.draws["m"])


@pytest.mark.slow
def test_streamed_draws_equal_pystans_own_sample(pystan_chain: engines.ChainResult) -> None:
    """Our reader of httpstan's output socket (which drops unkept quantities as they arrive) gives
    exactly the draws and sampler statistics of PyStan's own ``sample`` with the same arguments."""
    model, _ = engines.build_pystan_model(TOY, DATA, 7, LOGGER)
    fit = model.sample(
        num_chains=1, num_warmup=200, num_samples=150, num_thin=1, delta=0.9, max_depth=10, refresh=50,
        init=[{"m": 1.0, "s": 1.0}],
    )  # fmt: skip
    np.testing.assert_array_equal(pystan_chain.draws["m"], np.asarray(fit["m"]).ravel())
    np.testing.assert_array_equal(pystan_chain.draws["noise"], np.asarray(fit["noise"]).ravel())
    np.testing.assert_array_equal(pystan_chain.draws["grid"], np.moveaxis(np.asarray(fit["grid"]), -1, 0))
    np.testing.assert_array_equal(pystan_chain.stats["n_steps"], np.asarray(fit["n_leapfrog__"]).ravel())
    np.testing.assert_array_equal(pystan_chain.stats["lp"], np.asarray(fit["lp__"]).ravel())


@pytest.mark.slow
def test_lean_services_sample_the_same_draws(pystan_chain: engines.ChainResult) -> None:
    """Linking the stan_services object without Stan's diagnostic writer (the default build) changes
    what is written, not what is sampled: the same draws as a model linked with httpstan's own."""
    assert engines.lean_services_object(LOGGER) is not None, "the lean services object could not be built here"
    model, _ = engines.build_pystan_model(TOY, DATA, 7, LOGGER, lean=False)
    assert "diagnostic writer off" not in model.program_code
    arguments = {"init": {"m": 1.0, "s": 1.0}, "num_warmup": 200, "num_samples": 150, "delta": 0.9, "max_depth": 10}
    draws, stats, _ = engines._stream_nuts(model, arguments, ["m"], LOGGER)
    np.testing.assert_array_equal(draws["m"], pystan_chain.draws["m"])
    np.testing.assert_array_equal(stats["n_steps"], pystan_chain.stats["n_steps"])


def test_stan_timing_lines_are_parsed() -> None:
    """Stan's closing lines (as httpstan sends them, leading spaces included) give both phases."""
    lines = [" Elapsed Time: 1.5e+03 seconds (Warm-up)", "        12.25 seconds (Sampling)", "  13.4 seconds (Total)"]
    assert engines.parse_stan_timing(lines) == {"warmup_seconds_stan": 1500.0, "sampling_seconds_stan": 12.25}
    assert engines.parse_stan_timing(["Adaptation terminated", "Step size = 0.07"]) == {}


def test_seconds_per_gradient_uses_the_sampling_phase_only() -> None:
    """The kept draws' leapfrog steps are divided into the sampling phase's seconds, not the whole
    run's (warmup steps are not reported); thinning scales the steps; no timing gives NaN."""
    timings = {"sampling_seconds": 100.0, "warmup_seconds_stan": 60.0, "sampling_seconds_stan": 40.0}
    assert engines.seconds_per_gradient(timings, 8000) == pytest.approx(0.005)
    assert engines.seconds_per_gradient(timings, 2000, thin=4) == pytest.approx(0.005)
    assert np.isnan(engines.seconds_per_gradient({"sampling_seconds": 100.0}, 8000))


@pytest.mark.slow
def test_pystan_chain_reports_stan_phase_timings(pystan_chain: engines.ChainResult) -> None:
    """httpstan's "Elapsed Time" text reaches the timings: both phases, within the job's wall time."""
    t = pystan_chain.timings
    assert t["warmup_seconds_stan"] > 0 and t["sampling_seconds_stan"] > 0
    assert t["warmup_seconds_stan"] + t["sampling_seconds_stan"] <= t["sampling_seconds"]


@pytest.mark.slow
def test_pystan_initialization_failure_is_an_engine_error() -> None:
    """An impossible init (s must be positive) fails in Stan's worker: one EngineError naming the
    sampling failure with Stan's reason (fit_chain then retries with new inits)."""
    with pytest.raises(EngineError, match="engine pystan: sampling failed: .*") as caught:
        engines.run_chain_pystan(TOY, DATA, ChainSettings(seed=7, warmup=20, draws=10, init={"s": -1.0}), ["m"], LOGGER)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_inference_data_has_named_dims(pystan_chain: engines.ChainResult, tmp_path) -> None:
    import arviz as az

    idata = engines.to_inference_data(pystan_chain, {"m": (), "s": (), "m2": ()}, {}, {"model": "toy", "chain": 1})
    path = tmp_path / "chain.nc"
    idata.to_netcdf(str(path), engine="h5netcdf")
    back = az.from_netcdf(str(path))
    assert back.posterior["m"].shape == (1, 150)
    assert back.posterior.attrs["engine"] == "pystan" and back.posterior.attrs["model"] == "toy"
    steps = float(pystan_chain.stats["n_steps"].sum())
    per_gradient = pystan_chain.timings["sampling_seconds_stan"] / steps
    assert back.posterior.attrs["seconds_per_gradient"] == pytest.approx(per_gradient)
    assert back.sample_stats["diverging"].dtype == bool


@pytest.mark.cmdstan
@pytest.mark.skipif(not engines.cmdstan_available(), reason="no CmdStan installation found (conda-forge cmdstan)")
def test_cmdstanpy_chain(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MIMIX_CACHE", str(tmp_path))
    stan_file = tmp_path / "toy.stan"
    stan_file.write_text(TOY)
    result = engines.run_chain_cmdstanpy(stan_file, DATA, ChainSettings(seed=7, warmup=200, draws=150), ["m"], LOGGER)
    assert result.draws["m"].shape == (150,)
    assert result.engine == "cmdstanpy"
    assert abs(result.draws["m"].mean() - 1.0) < 0.5
    assert result.timings["warmup_seconds_stan"] > 0 and result.timings["sampling_seconds_stan"] > 0


def test_no_engine_at_all_names_both_installs() -> None:
    with pytest.raises(EngineError, match=r"pip install pystan==3\.10\.0.*conda install -c conda-forge cmdstan"):
        select_engine("auto", cmdstan_found=False, pystan_found=False)
    with pytest.raises(EngineError, match="^engine pystan: no Stan engine found"):
        select_engine("pystan", cmdstan_found=True, pystan_found=False)


def test_install_hint_pin_matches_pyproject() -> None:
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert f'"pystan=={engines.PYSTAN_PIN}"' in pyproject


def test_pystan_syntax_error_quotes_stanc() -> None:
    """A broken program fails at once (no retries) with stanc's explanation in the one-line message."""
    broken = "parameters { real m } model { m ~ normal(0, 1); }"
    with pytest.raises(EngineError) as caught:
        engines.build_pystan_model(broken, {}, 1, LOGGER)
    message = str(caught.value)
    assert message.startswith("engine pystan: the Stan program does not compile (Syntax error)")
    assert '";" expected after variable declaration' in message and "\n" not in message


def test_cmdstanpy_compile_failure_is_one_clear_line(tmp_path, monkeypatch) -> None:
    cmdstanpy = pytest.importorskip("cmdstanpy")

    def failing_compile(*args, **kwargs):
        raise RuntimeError("Command ['make', 'x'] error during processing\nmake: g++: No such file or directory")

    monkeypatch.setenv("MIMIX_CACHE", str(tmp_path))
    monkeypatch.setattr(cmdstanpy, "CmdStanModel", failing_compile)
    stan_file = tmp_path / "toy.stan"
    stan_file.write_text(TOY)
    with pytest.raises(EngineError) as caught:
        engines._cmdstan_model(stan_file, LOGGER)
    message = str(caught.value)
    assert message.startswith("engine cmdstanpy: compiling toy.stan failed (RuntimeError)")
    assert "g++: No such file or directory" in message and "\n" not in message


def test_interpreter_aliases_share_one_httpstan_model(tmp_path, monkeypatch) -> None:
    """`snakemake` runs under .venv/bin/python3, `python -m snakemake` under .venv/bin/python: one build."""
    import sys

    import httpstan.models

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "python3").symlink_to("python")
    other = tmp_path / "other"
    other.mkdir()
    (other / "python3").symlink_to(sys.executable)
    assert engines._canonical_interpreter(str(bin_dir / "python3")) == str(bin_dir / "python")
    assert engines._canonical_interpreter(str(other / "python3")) == str(other / "python3")  # no alias there

    engines._stable_httpstan_model_names()
    names = {}
    for executable in (bin_dir / "python", bin_dir / "python3", other / "python3"):
        monkeypatch.setattr(sys, "executable", str(executable))
        names[executable.name + executable.parent.name] = httpstan.models.calculate_model_name(TOY)
    assert names["pythonbin"] == names["python3bin"]
    assert names["python3other"] != names["pythonbin"]  # another environment keeps its own build


def test_pystan_pathfinder_approximates_the_toy_posterior(tmp_path, monkeypatch) -> None:
    """y ~ N(m, s) with 20 points: the posterior mean of m is near the sample mean 1.0 (posterior sd
    ~0.28; the approximation may be wider, so 0.3 is a loose but failing-when-broken bound)."""
    socket_home = tempfile.mkdtemp(prefix="t", dir="/tmp")  # short: unix socket paths are limited
    monkeypatch.setattr(tempfile, "tempdir", socket_home)  # where httpstan would leave its sockets
    settings = ChainSettings(seed=3, draws=400, method="pathfinder", init={"m": 1.0})
    result = engines.run_pathfinder_pystan(TOY, DATA, settings, ["m", "s", "m2", "big", "noise"], LOGGER)
    leftovers = list(Path(socket_home).iterdir())
    shutil.rmtree(socket_home)
    assert not leftovers  # one httpstan_*.sock per draw was left behind before the fix
    assert tempfile.tempdir == socket_home
    assert result.draws["m"].shape == (400,) and result.draws["big"].shape == (400, 3)
    assert abs(result.draws["m"].mean() - 1.0) < 0.3 and result.draws["s"].min() > 0
    np.testing.assert_allclose(result.draws["m2"], result.draws["m"] ** 2)  # generated quantities follow
    # Random generated quantities get a fresh random stream per draw (400 N(0, 1) draws: sd 0.8-1.2).
    assert len(np.unique(result.draws["noise"])) == 400 and 0.8 < result.draws["noise"].std() < 1.2
    assert set(result.stats) == {"lp", "log_q"} and 0 < result.timings["pareto_khat"] < 0.7
    idata = engines.to_inference_data(result, {"big": ("k",)}, {"k": [0, 1, 2]}, {"method": "pathfinder"})
    assert idata.posterior.attrs["method"] == "pathfinder" and "pareto_khat" in idata.posterior.attrs


@pytest.mark.slow
def test_stan_worker_dies_with_a_killed_chain_job(tmp_path) -> None:
    """SIGKILL of a chain job (OOM killer, SLURM time limit) must not leave Stan sampling on as an
    orphan: before this, a killed NutNet-408 chain's worker kept a core busy for 50 minutes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    script = tmp_path / "long_chain.py"
    script.write_text(
        "import logging, sys\n"
        f"sys.path.insert(0, {str(Path(engines.__file__).parents[1])!r})\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_engines import TOY, DATA\n"
        "from mimix import engines\n"
        "engines.run_chain_pystan(TOY, DATA, engines.ChainSettings(seed=3, warmup=10**6, draws=10**6), ['m'],\n"
        "                         logging.getLogger('long'))\n"
    )
    job = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.time() + 120
        workers: list[psutil.Process] = []
        while time.time() < deadline and not workers:  # wait for the forked Stan worker to be sampling
            time.sleep(0.5)
            workers = [c for c in psutil.Process(job.pid).children(recursive=True) if c.cpu_percent(0.2) > 10]
        assert workers, "the Stan worker process never started"
        os.kill(job.pid, signal.SIGKILL)
        job.wait()
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"Stan worker(s) {[p.pid for p in alive]} still running after the job was killed"
    finally:
        if job.poll() is None:
            job.kill()
