"""Run one chain of one Stan model with CmdStan (cmdstanpy) or PyStan, same ``.stan`` files.

``engine: auto`` picks cmdstanpy when a CmdStan installation is found (what users with
conda-forge's ``cmdstan`` get), else PyStan (bundles Stan and compiles offline with g++).
Both return the same :class:`ChainResult`: the saved quantities only (never theta), the
sampler statistics, and timings; :func:`to_inference_data` turns it into ArviZ form.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mimix.errors import EngineError, InputError

ENGINES = ("auto", "cmdstanpy", "pystan")
# stanc's level-1 optimizations, for both engines: among them "struct of arrays" matrices (one autodiff
# node per matrix instead of one per cell) wherever a program allows it. The .stan files are written to
# allow it for the N x K layer (workflow/stan/include/functions.stan). Measured on NutNet-408 with
# bench/gradient.py: 4.2-5.0 ms per gradient for the three models, against 5.1-5.6 ms for the earlier
# cell-wise programs without --O1 and 7.7-10.8 ms for them with --O1 (mixing the two kinds of matrix
# costs a copy at every switch).
STANC_OPTIMIZATION = "--O1"
# The macros httpstan compiles models with (httpstan/models.py), for the services object below.
HTTPSTAN_MACROS = (
    "BOOST_DISABLE_ASSERTS",
    "BOOST_PHOENIX_NO_VARIADIC_EXPRESSION",
    "STAN_THREADS",
    "_REENTRANT",
    "_GLIBCXX_USE_CXX11_ABI=0",
)
BUILD_ATTEMPTS = 3
PYSTAN_PIN = "3.10.0"  # = pyproject.toml
MESSAGE_LINES = 40  # Stan message lines written to a chain's log (the rest are counted)
GQ_BATCH = 100  # approximate draws per fixed-parameter request, at most
GQ_BATCH_VALUES = 2_000_000  # and at most this many output values per request (PyStan holds them all)
# Sampler statistics, named as ArviZ names them, from Stan's names.
SAMPLE_STATS = {
    "lp__": "lp",
    "accept_stat__": "acceptance_rate",
    "stepsize__": "step_size",
    "treedepth__": "tree_depth",
    "n_leapfrog__": "n_steps",
    "divergent__": "diverging",
    "energy__": "energy",
}


@dataclass(frozen=True)
class ChainSettings:
    """Everything that defines one chain's run."""

    seed: int
    chain_id: int = 1
    warmup: int = 1000
    draws: int = 1000
    thin: int = 1
    adapt_delta: float = 0.9
    max_treedepth: int = 10
    init: dict[str, Any] | None = None  # None: Stan's uniform(-2, 2) on the unconstrained scale
    refresh: int = 50  # iterations between progress lines in the chain's log
    method: str = "nuts"  # or "pathfinder" (approximate: one path, ``draws`` draws)

    @classmethod
    def from_config(cls, sampling: dict, refresh: int, chain_id: int = 1) -> ChainSettings:
        """The config's ``sampling`` section as one chain's settings (seed 0: fitting derives each chain's seed)."""
        keys = ("warmup", "draws", "thin", "adapt_delta", "max_treedepth", "method")
        return cls(seed=0, chain_id=chain_id, refresh=refresh, **{key: sampling[key] for key in keys})


@dataclass
class ChainResult:
    draws: dict[str, np.ndarray]  # name -> (n_draws, *shape)
    stats: dict[str, np.ndarray]  # ArviZ sample-stat name -> (n_draws,)
    engine: str
    stan_version: str
    timings: dict[str, float] = field(default_factory=dict)


STAN_PHASES = {"Warm-up": "warmup_seconds_stan", "Sampling": "sampling_seconds_stan"}
_ELAPSED = re.compile(r"([0-9.eE+-]+) seconds \((Warm-up|Sampling|Total)\)")


def parse_stan_timing(lines: Iterable[str]) -> dict[str, float]:
    """Stan's own phase timings from its closing text ("Elapsed Time: 12.3 seconds (Warm-up)",
    "45.6 seconds (Sampling)"), as ``warmup_seconds_stan`` and ``sampling_seconds_stan``.

    Per-gradient cost must be the sampling phase's seconds over the sampling phase's leapfrog
    steps: only the kept draws report their steps, so dividing the whole run's seconds by them
    (warmup included) overstated it by about (warmup + sampling steps) / sampling steps, ~2x.
    """
    timing: dict[str, float] = {}
    for line in lines:
        for seconds, phase in _ELAPSED.findall(line):
            if phase in STAN_PHASES:
                timing[STAN_PHASES[phase]] = float(seconds)
    return timing


def seconds_per_gradient(timings: Mapping[str, float], kept_steps: float, thin: int = 1) -> float:
    """Sampling-phase seconds per leapfrog step (writing the draws included); NaN when unknown.

    With thinning only every ``thin``-th iteration reports its steps, so the phase's steps are
    estimated as ``thin`` times the kept draws' steps.
    """
    seconds = timings.get("sampling_seconds_stan", np.nan)
    steps = kept_steps * max(int(thin), 1)
    return float(seconds / steps) if steps > 0 else float("nan")


def cmdstan_available() -> bool:
    """True when cmdstanpy is importable and finds a CmdStan installation."""
    try:
        import cmdstanpy

        cmdstanpy.cmdstan_path()
    except Exception:  # ValueError when no installation; ImportError without cmdstanpy
        return False
    return True


def pystan_available() -> bool:
    """True when PyStan 3 (the ``stan`` package, with httpstan) is importable."""
    return importlib.util.find_spec("stan") is not None and importlib.util.find_spec("httpstan") is not None


def select_engine(requested: str, cmdstan_found: bool | None = None, pystan_found: bool | None = None) -> str:
    """Resolve ``auto`` and check that the requested engine can run here."""
    if requested not in ENGINES:
        raise InputError(f"sampling.engine: {requested!r} is not one of {ENGINES}; fix the config")
    found = cmdstan_available() if cmdstan_found is None else cmdstan_found
    if requested == "auto" and found:
        return "cmdstanpy"
    if requested in ("auto", "pystan"):
        if not (pystan_available() if pystan_found is None else pystan_found):
            raise EngineError(
                f"engine {requested}: no Stan engine found (PyStan is not installed"
                f"{'' if requested == 'pystan' else ' and no CmdStan installation was found'}); install PyStan "
                f"with `pip install pystan=={PYSTAN_PIN}` (offline-capable, needs g++) or CmdStan with "
                "`conda install -c conda-forge cmdstan` and use sampling.engine: cmdstanpy"
            )
        return "pystan"
    if requested == "cmdstanpy" and not found:
        raise EngineError(
            "engine cmdstanpy: no CmdStan installation found; install it with `conda install -c conda-forge "
            "cmdstan` (or cmdstanpy.install_cmdstan()), set CMDSTAN to its folder, or use sampling.engine: pystan"
        )
    return requested


def cache_root() -> Path:
    return Path(os.environ.get("MIMIX_CACHE", Path.home() / ".cache" / "mimix"))


def _pystan_draws(fit, name: str) -> np.ndarray:
    """PyStan returns (*shape, draws), with shape (1,) for scalars; give (draws, *shape)."""
    shape = tuple(fit.dims[fit.param_names.index(name)]) if name in fit.param_names else ()
    values = np.asarray(fit[name])
    return np.moveaxis(values.reshape(*shape, values.shape[-1]), -1, 0)


# ---------------------------------------------------------------- PyStan


@contextlib.contextmanager
def _patient_http_client():
    """PyStan's HTTP client gives up after aiohttp's default 300 s; a build on a busy machine takes longer."""
    import functools

    import aiohttp

    original = aiohttp.ClientSession
    aiohttp.ClientSession = functools.partial(original, timeout=aiohttp.ClientTimeout(total=None))
    try:
        yield
    finally:
        aiohttp.ClientSession = original


def _canonical_interpreter(executable: str) -> str:
    """``.../bin/python`` for any alias of it in the same folder (``python3``, ``python3.11``)."""
    path = Path(executable)
    plain = path.parent / "python"
    if path.name != "python" and plain.exists() and os.path.realpath(plain) == os.path.realpath(path):
        return str(plain)
    return executable


def _stable_httpstan_model_names() -> None:
    """Make httpstan's model cache key independent of how the interpreter was named.

    httpstan hashes ``sys.executable`` into a model's name (to separate virtual environments), so
    ``.venv/bin/python3`` (the ``snakemake`` command's interpreter) and ``.venv/bin/python``
    (``python -m snakemake``) compiled the same program twice, minutes each. The aliases of one
    environment now share one name; different environments still get different names.
    """
    import httpstan.models

    original = httpstan.models.calculate_model_name
    if getattr(original, "mimix_stable", False):
        return

    def calculate_model_name(program_code: str) -> str:
        saved = sys.executable
        sys.executable = _canonical_interpreter(saved)
        try:
            return original(program_code)
        finally:
            sys.executable = saved

    calculate_model_name.mimix_stable = True  # type: ignore[attr-defined]
    httpstan.models.calculate_model_name = calculate_model_name


@contextlib.contextmanager
def _deleting_httpstan_fits():
    """Delete the fits httpstan caches on disk during the block: our outputs are written elsewhere, and
    the cached copies (every draw of theta included) would fill the disk over many runs."""
    import httpstan.cache

    written: list[str] = []
    original_dump = httpstan.cache.dump_fit

    def recording_dump(fit_bytes: bytes, name: str) -> None:
        written.append(name)
        original_dump(fit_bytes, name)

    httpstan.cache.dump_fit = recording_dump
    try:
        yield
    finally:
        httpstan.cache.dump_fit = original_dump
        for name in written:
            with contextlib.suppress(Exception):
                httpstan.cache.delete_fit(name)


# A unix socket's path holds at most 107 bytes; cluster jobs often get long TMPDIRs.
SOCKET_PATH_ROOM = 60


def _socket_parent() -> str:
    """The temporary folder if its path leaves room for a socket name below it, else /tmp."""
    folder = tempfile.gettempdir()
    return folder if len(folder) <= SOCKET_PATH_ROOM else "/tmp"


@contextlib.contextmanager
def _private_socket_folder():
    """Point ``tempfile`` at a private folder during the block and delete it afterwards.

    httpstan binds one unix socket per chain it runs (``/tmp/httpstan_*.sock``) and never removes it:
    Pathfinder's generated quantities run one fixed-parameter chain per draw, and a day of runs
    here left 15,303 socket files in /tmp.
    """
    saved = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="mimix-httpstan-", dir=_socket_parent()) as folder:
        tempfile.tempdir = folder
        try:
            yield
        finally:
            tempfile.tempdir = saved


def _compile_optimized(program_code: str, stan_model_name: str) -> tuple[str, str]:
    """httpstan.compile.compile with STANC_OPTIMIZATION (httpstan runs stanc without optimization
    flags, and with a 1 s limit that an optimizing stanc can exceed on a busy machine)."""
    import subprocess

    import httpstan

    stanc_binary = Path(httpstan.__file__).parent / "stanc"
    with tempfile.TemporaryDirectory(prefix="httpstan_") as folder:
        path = Path(folder) / f"{stan_model_name}.stan"
        path.write_text(program_code)
        done = subprocess.run(
            [stanc_binary, STANC_OPTIMIZATION, "--name", stan_model_name, "--warn-pedantic", "--print-cpp", path],
            capture_output=True,
            timeout=120,
        )
    stderr = done.stderr.decode().strip()
    if done.returncode != 0:
        raise ValueError(stderr)
    return done.stdout.decode().strip(), stderr


@contextlib.contextmanager
def _optimizing_stanc():
    """Let httpstan (whose server runs in this process during ``stan.build``) call stanc with
    STANC_OPTIMIZATION during the block."""
    import httpstan.compile

    original = httpstan.compile.compile
    httpstan.compile.compile = _compile_optimized
    try:
        yield
    finally:
        httpstan.compile.compile = original


# Stan's diagnostic writer: for every saved draw, httpstan's stan_services sends the unconstrained
# parameters, their momenta and their gradients (3 x 74,600 named values at NutNet-408) through a
# socket that PyStan and this engine never read; a written draw cost 0.30-0.36 s with it and 0.042 s
# without (NutNet-408, mimix_gaussian; bench/README.md). A copy of httpstan's stan_services.cpp with
# that writer replaced by Stan's no-op writer is compiled once per httpstan installation (about 40 s)
# and linked into every model instead of httpstan's own object.
_DIAGNOSTIC_WRITER = 'new stan::callbacks::socket_writer(socket_filename, "diagnostic_writer:")'
_NO_OP_WRITER = "new stan::callbacks::writer()"


def lean_services_object(logger: logging.Logger) -> Path | None:
    """httpstan's stan_services object without the diagnostic writer, compiled and cached; None (with a
    warning in the log) when it cannot be made, and then httpstan's own object is used."""
    import subprocess
    import sysconfig

    import httpstan

    package = Path(httpstan.__file__).parent
    source = (package / "stan_services.cpp").read_text()
    if source.count(_DIAGNOSTIC_WRITER) != 2:  # hmc_nuts_diag_e_adapt and fixed_param
        logger.warning("httpstan %s: stan_services.cpp is not as expected; its diagnostic writer stays on",
                       httpstan.__version__)  # fmt: skip
        return None
    lean = source.replace(_DIAGNOSTIC_WRITER, _NO_OP_WRITER)
    key = hashlib.sha256((lean + str(package) + sys.version).encode()).hexdigest()[:16]
    folder = cache_root() / "httpstan" / f"{httpstan.__version__}-{key}"
    target = folder / "stan_services_lean.o"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=folder) as work:
        (Path(work) / "stan_services_lean.cpp").write_text(lean)
        command = [
            os.environ.get("CXX", "g++"), "-c", "-O3", "-std=c++14", "-fPIC", "-w",
            *[f"-D{macro}" for macro in HTTPSTAN_MACROS],
            f"-I{package}", f"-I{package / 'include'}", f"-I{sysconfig.get_paths()['include']}",
            str(Path(work) / "stan_services_lean.cpp"), "-o", str(Path(work) / "stan_services_lean.o"),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            detail = done.stderr.strip().splitlines()[-1:] or done.returncode
            logger.warning("compiling httpstan's stan_services without its diagnostic writer failed (%s); "
                           "using httpstan's own", detail)  # fmt: skip
            return None
        os.replace(Path(work) / "stan_services_lean.o", target)  # atomic: parallel builders agree
    logger.info("compiled httpstan's stan_services without its diagnostic writer in %.0f s (cached in %s)",
                time.perf_counter() - start, folder)  # fmt: skip
    return target


@contextlib.contextmanager
def _linking(services_object: Path | None):
    """Let httpstan link ``services_object`` into the model instead of its own stan_services.o."""
    import httpstan.build_ext

    if services_object is None:
        yield
        return
    original = httpstan.build_ext.run_build_ext

    def run_build_ext(extensions, build_lib):
        for extension in extensions:
            extension.extra_objects = [
                str(services_object) if Path(obj).name == "stan_services.o" else obj for obj in extension.extra_objects
            ]
        return original(extensions, build_lib)

    httpstan.build_ext.run_build_ext = run_build_ext
    try:
        yield
    finally:
        httpstan.build_ext.run_build_ext = original


def optimized_program(program_code: str, lean: bool = True) -> str:
    """The program as PyStan builds it: with a closing comment naming how it is built (stanc
    optimization; diagnostic writer off when ``lean``), so that httpstan's cache (keyed by the
    program text) never mixes these builds with each other or with a plain ``stan.build``."""
    how = f"stanc {STANC_OPTIMIZATION}" + (", Stan's diagnostic writer off" if lean else "")
    return f"{program_code.rstrip()}\n// built with {how} (mimix.engines)\n"


def build_pystan_model(program_code: str, data: dict, seed: int, logger: logging.Logger, lean: bool = True):
    """Build (or load from httpstan's cache) a PyStan model of the program with stanc's
    STANC_OPTIMIZATION, linked with the lean services object (no diagnostic writer) when ``lean``
    and it can be made; returns the model and the seconds it took."""
    try:
        import stan
    except ImportError as err:
        raise EngineError(
            f"engine pystan: PyStan is not installed ({err}); `pip install pystan=={PYSTAN_PIN}` "
            "or install CmdStan (`conda install -c conda-forge cmdstan`) and use sampling.engine: cmdstanpy"
        ) from err

    _stable_httpstan_model_names()

    start = time.perf_counter()
    services_object = lean_services_object(logger) if lean else None
    # httpstan's cache is not safe against two processes building the same program at once (one
    # may read the other's half-written model folder); a short wait and a second try finds it whole.
    for attempt in range(1, BUILD_ATTEMPTS + 1):
        out, err_out = _LogWriter(logger), _LogWriter(logger)
        try:
            with (
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err_out),
                _patient_http_client(),
                _optimizing_stanc(),
                _linking(services_object),
            ):
                program = optimized_program(program_code, lean=services_object is not None)
                model = stan.build(program, data=_json_ready(data), random_seed=seed)
            return model, time.perf_counter() - start
        except Exception as err:  # build failures arrive as many types; the message is what matters
            message = str(err).strip().splitlines()
            tail = " | ".join(message[-6:]) if message else type(err).__name__
            stan_code_error = isinstance(err, ValueError) and str(err) in ("Syntax error", "Semantic error")
            if stan_code_error:
                # PyStan prints stanc's explanation (line, column, what was expected) before raising.
                printed = [line.removeprefix("Building: ") for line in out.lines + err_out.lines]
                explanation = [line for line in printed if not set(line) <= set("-^ ")][-3:]
                raise EngineError(
                    f"engine pystan: the Stan program does not compile ({err}): {' | '.join(explanation)}; "
                    "fix the .stan file (stanc's full message is in this log)"
                ) from err
            if attempt < BUILD_ATTEMPTS:
                logger.warning("pystan build attempt %d failed (%s); retrying in 15 s", attempt, tail[:200])
                time.sleep(15)
                continue
            raise EngineError(
                f"engine pystan: compiling the model failed ({type(err).__name__}): {tail}; "
                "check that g++ is installed (apt-get install g++) and that the .stan file compiles"
            ) from err
    raise AssertionError("unreachable")


def run_chain_pystan(
    program_code: str, data: dict, settings: ChainSettings, keep: list[str], logger: logging.Logger
) -> ChainResult:
    """One chain with PyStan 3's compiled model and httpstan's NUTS, keeping only the ``keep`` quantities."""
    import httpstan

    model, build_seconds = build_pystan_model(program_code, data, settings.seed, logger)
    logger.info("pystan model ready in %.1f s (compiled models are cached by httpstan)", build_seconds)
    arguments: dict[str, Any] = {  # stan::services argument names, as CmdStan's
        "init": _json_ready(settings.init) if settings.init is not None else {},
        "num_warmup": settings.warmup,
        "num_samples": settings.draws,
        "num_thin": settings.thin,
        "delta": settings.adapt_delta,
        "max_depth": settings.max_treedepth,
        "refresh": settings.refresh,
    }
    start = time.perf_counter()
    draws, stats, stan_timing = _stream_nuts(model, arguments, keep, logger)
    sampling_seconds = time.perf_counter() - start
    return ChainResult(
        draws=draws,
        stats=stats,
        engine="pystan",
        stan_version=f"{pystan_stan_version()} (httpstan {httpstan.__version__})",
        timings={"compile_seconds": build_seconds, "sampling_seconds": sampling_seconds, **stan_timing},
    )


def _quantity_shapes(module, model_data: dict) -> dict[str, tuple[int, ...]]:
    """Shape of every quantity the compiled model writes (parameters, transformed, generated)."""
    names, dims = module.get_param_names(model_data), module.get_dims(model_data)
    return {name: tuple(int(x) for x in d) for name, d in zip(names, dims, strict=True)}


class _DrawCollector:
    """Receives Stan's output messages (one JSON object per line) as they arrive and keeps, from each
    draw, only the kept quantities and the sampler statistics.

    PyStan's own ``sample`` holds every message of the run and then parses all of them at once:
    with theta (N x K) in every draw that peaked at 8-13 GB per chain on NutNet-408 (166 x 409,
    1,000 iterations). Here memory grows only with the kept quantities.
    """

    def __init__(self, keep: list[str], logger: logging.Logger) -> None:
        self.keep, self.logger = keep, logger
        self.columns: dict[str, list[int]] | None = None  # quantity -> positions in a draw's values
        self.order = np.empty(0, dtype=int)  # those positions, concatenated
        self.rows: list[np.ndarray] = []
        self.buffers: dict[int, bytearray] = {}
        self.messages = 0
        self.timing: dict[str, float] = {}  # Stan's warmup and sampling seconds (parse_stan_timing)
        self.last_messages: collections.deque[str] = collections.deque(maxlen=4)

    def feed(self, connection: int, chunk: bytes) -> None:
        buffer = self.buffers.setdefault(connection, bytearray())
        buffer.extend(chunk)
        *lines, rest = buffer.split(b"\n")
        self.buffers[connection] = bytearray(rest)
        for line in lines:
            if line.strip():
                self._message(line)

    def _message(self, line: bytes) -> None:
        if b'"topic":"sample"' in line[:80] or b'"topic": "sample"' in line[:80]:
            values = json.loads(line)["values"]
            if isinstance(values, dict):  # other "sample" messages are text ("Adaptation terminated", ...)
                self._draw(values)
            else:  # among them Stan's closing "Elapsed Time" lines
                self.timing.update(parse_stan_timing(str(v) for v in values))
            return
        if b'"logger"' in line[:80]:
            for text in json.loads(line)["values"]:
                text = str(text).partition(":")[2].strip()
                if "Iteration:" in text:
                    self.logger.info("stan: %s", text)
                elif text:
                    # Stan's messages (numerical rejections during warmup, mostly) can number thousands:
                    # the first lines go to the log, the last few are kept for an error message.
                    self.messages += 1
                    if self.messages <= MESSAGE_LINES:
                        self.logger.info("stan: %s", text)
                    self.last_messages.append(text)

    def _draw(self, values: dict) -> None:
        if self.columns is None:  # the first draw fixes where each kept quantity sits in a draw
            wanted = [*self.keep, *SAMPLE_STATS]
            self.columns = {name: [] for name in wanted}
            for position, key in enumerate(values):
                base = key.split(".", 1)[0]
                if base in self.columns:
                    self.columns[base].append(position)
            self.columns = {name: cols for name, cols in self.columns.items() if cols}
            self.order = np.concatenate([np.asarray(cols) for cols in self.columns.values()])
        row = list(values.values())
        self.rows.append(np.asarray([row[i] for i in self.order], dtype=float))

    def result(self, shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        if not self.rows or self.columns is None:
            return {}, {}
        table = np.vstack(self.rows)
        draws, stats, position = {}, {}, 0
        for name, cols in self.columns.items():
            block = table[:, position : position + len(cols)]
            position += len(cols)
            if name in SAMPLE_STATS:
                stats[SAMPLE_STATS[name]] = block[:, 0]
            else:  # Stan writes each quantity in column-major order
                shape = shapes.get(name, ())
                draws[name] = block.reshape((len(table), *shape), order="F") if shape else block[:, 0]
        return draws, stats


def _die_with_parent() -> None:
    """In Stan's worker process: exit when the chain job's process dies (SIGKILL from an OOM killer,
    a SLURM time limit, ``kill``), instead of sampling on as an orphan that nobody reads.

    Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op. Otherwise httpstan's own worker setup.
    """
    import ctypes
    import signal

    import httpstan.services_stub

    httpstan.services_stub.init_worker()  # Ctrl-C is left to the parent
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


def _stream_nuts(
    model, arguments: dict[str, Any], keep: list[str], logger: logging.Logger
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    """Run httpstan's ``hmc_nuts_diag_e_adapt`` in its worker process and read its output socket
    ourselves, so that theta's draws are dropped as they arrive instead of held until the end.

    Same call as PyStan's ``sample(num_chains=1)`` (same function, arguments, seed and chain
    number, hence the same draws: checked by tests/test_engines.py), without PyStan's collection.
    ``arguments`` are stan::services arguments; the rest get httpstan's (CmdStan's) defaults.
    """
    import concurrent.futures
    import functools
    import multiprocessing
    import select
    import socket

    import httpstan.models
    import httpstan.services_stub as stub
    from httpstan.services import arguments as services_arguments

    basename = "hmc_nuts_diag_e_adapt"
    module = httpstan.models.import_services_extension_module(model.model_name)
    model_data = dict(model.data)
    call = {"data": model_data, "random_seed": model.random_seed, "chain": 1, **arguments}
    for argument in services_arguments.function_arguments(basename, module):
        if argument not in call:
            call[argument] = services_arguments.lookup_default(services_arguments.Method.SAMPLE, argument)
    collector = _DrawCollector(keep, logger)
    with (
        tempfile.TemporaryDirectory(prefix="mimix-stan-", dir=_socket_parent()) as folder,
        socket.socket(socket.AF_UNIX) as listener,
    ):
        address = str(Path(folder) / "messages.sock")
        listener.bind(address)
        listener.listen(4)  # Stan's three writers and its logger connect here
        wrapper = stub._make_lazy_function_wrapper(basename, model.model_name)
        # Stan runs in a forked worker (as in httpstan) that dies with this process: see _die_with_parent.
        executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("fork"), initializer=_die_with_parent
        )
        future = executor.submit(functools.partial(wrapper, address, **call))
        readers: list[socket.socket] = [listener]
        while True:
            readable, _, _ = select.select(readers, [], [], 0.05)
            for reader in readable:
                if reader is listener:
                    connection, _ = listener.accept()
                    readers.append(connection)
                    continue
                chunk = reader.recv(1 << 20)
                if chunk:
                    collector.feed(reader.fileno(), chunk)
                else:
                    collector.feed(reader.fileno(), b"\n")
                    readers.remove(reader)
                    reader.close()
            if not readable and readers == [listener] and future.done():
                break
    try:
        error_code = future.result()
    except Exception as err:  # initialization failures and C++ exceptions arrive here
        raise EngineError(f"engine pystan: sampling failed: {err}") from err
    finally:
        executor.shutdown(wait=True)
    if error_code != 0:
        detail = " ".join(collector.last_messages) or f"error code {error_code}"
        raise EngineError(f"engine pystan: sampling failed: {detail}")
    if collector.messages > MESSAGE_LINES:
        logger.info("stan: %d more message lines not shown (rejections early in warmup are normal)",
                    collector.messages - MESSAGE_LINES)  # fmt: skip
    draws, stats = collector.result(_quantity_shapes(module, model_data))
    return draws, stats, collector.timing


def _stan_parameters(program_code: str) -> list[str]:
    """Names of the program's parameters (not transformed parameters or generated quantities), by stanc --info."""
    import subprocess

    import httpstan

    stanc = Path(httpstan.__file__).parent / "stanc"
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "model.stan"
        source.write_text(program_code)
        info = json.loads(subprocess.run([str(stanc), "--info", str(source)], capture_output=True, text=True,
                                         check=True).stdout)  # fmt: skip
    return list(info["parameters"])


def run_pathfinder_pystan(
    program_code: str, data: dict, settings: ChainSettings, keep: list[str], logger: logging.Logger
) -> ChainResult:
    """Approximate draws by single-path Pathfinder (:mod:`mimix.pathfinder`) on PyStan's compiled model.

    PyStan exposes no optimizer or variational method, but its compiled model computes the log
    density and its gradient on the unconstrained scale, and maps unconstrained draws to every
    saved quantity (generated quantities included, with their random draws, through Stan's
    fixed-parameter sampler).
    """
    import httpstan
    import httpstan.models

    from mimix.pathfinder import PathfinderSettings, pathfinder

    model, build_seconds = build_pystan_model(program_code, data, settings.seed, logger)
    module = httpstan.models.import_services_extension_module(model.model_name)
    model_data = dict(model.data)
    shapes = _quantity_shapes(module, model_data)
    parameters = _stan_parameters(program_code)
    size = int(sum(np.prod(shapes[name], dtype=int) for name in parameters))
    rng = np.random.default_rng(settings.seed)
    x0 = rng.uniform(-2, 2, size)
    if settings.init:  # the given values, the rest of the parameters from Stan's uniform(-2, 2)
        flat = module.write_array(model_data, list(x0), False, False)
        constrained = _unflatten(flat, parameters, shapes)
        constrained.update({k: np.asarray(v, dtype=float) for k, v in settings.init.items() if k in constrained})
        x0 = np.asarray(module.transform_inits(model_data, _json_ready(constrained)))
    evaluations = 0

    def log_density_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal evaluations
        evaluations += 1
        if evaluations % max(settings.refresh, 1) == 0:
            logger.info("pathfinder: %d log-density evaluations", evaluations)
        try:
            values = list(map(float, x))
            return module.log_prob(model_data, values, True), np.asarray(module.log_prob_grad(model_data, values, True))
        except Exception:  # outside the support or numerically impossible: -inf, as Stan does
            return -np.inf, np.zeros_like(x)

    def log_density(x: np.ndarray) -> float:
        try:
            return module.log_prob(model_data, list(map(float, x)), True)
        except Exception:
            return -np.inf

    start = time.perf_counter()
    try:
        result = pathfinder(log_density_gradient, x0, rng, PathfinderSettings(draws=settings.draws), log_density)
    except RuntimeError as err:
        raise EngineError(f"engine pystan: {err}") from err
    fit_seconds = time.perf_counter() - start
    logger.info(
        "pathfinder: L-BFGS path of %d points, approximation at point %d (ELBO %.1f), "
        "%d log-density evaluations (%d with gradient), %.1f s",
        result.path_length, result.iteration, result.elbo[result.iteration], result.evaluations, evaluations,
        fit_seconds,
    )  # fmt: skip
    draws = _pystan_quantities_at(model, module, result.draws, parameters, shapes, keep, settings.seed)
    khat = _pareto_khat(result.log_p - result.log_q)
    logger.info("pathfinder: Pareto k of the importance weights %.2f (above 0.7: the approximation is poor)", khat)
    return ChainResult(
        draws=draws,
        stats={"lp": result.log_p, "log_q": result.log_q},
        engine="pystan",
        stan_version=f"{pystan_stan_version()} (httpstan {httpstan.__version__})",
        timings={
            "compile_seconds": build_seconds,
            "sampling_seconds": time.perf_counter() - start,
            "pareto_khat": khat,
            "path_length": float(result.path_length),
            "log_density_evaluations": float(result.evaluations),
        },  # fmt: skip
    )


def _pystan_quantities_at(
    model, module, unconstrained: np.ndarray, parameters: list[str], shapes: dict, keep: list[str], seed: int
) -> dict[str, np.ndarray]:
    """Every kept quantity at each unconstrained draw.

    httpstan's write_array seeds the generated quantities' random numbers with 0 on every call, so
    random generated quantities (omega, hence beta) would repeat one random stream across draws.
    Stan's fixed-parameter sampler instead runs each draw as its own one-iteration chain with its
    own random stream (seed + chain number); batches keep the request size bounded.
    """
    model_data = dict(model.data)
    inits = []
    for x in unconstrained:
        flat = module.write_array(model_data, list(map(float, x)), False, False)
        inits.append(_json_ready(_unflatten(flat, parameters, shapes)))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in keep if name in shapes}
    # PyStan's fixed_param returns every quantity of every draw (theta included): bound the request
    # by its number of values (NutNet-408: 27 draws per request, all 2,662 taxa: 4).
    values_per_draw = sum(int(np.prod(shape, dtype=int)) for shape in shapes.values())
    batch_size = max(1, min(GQ_BATCH, GQ_BATCH_VALUES // max(values_per_draw, 1)))
    with _deleting_httpstan_fits(), _private_socket_folder():
        for start in range(0, len(inits), batch_size):
            batch = inits[start : start + batch_size]
            # Streams are seeded by (seed, chain number): each batch gets its own seed so that its
            # chains 1..n do not repeat the previous batch's random numbers.
            batch_model = dataclasses.replace(model, random_seed=(seed + 104_729 * start) % 2**31)
            with _patient_http_client(), contextlib.redirect_stderr(io.StringIO()):
                fit = batch_model.fixed_param(num_chains=len(batch), num_samples=1, init=batch)
            for name in parts:
                parts[name].append(_pystan_draws(fit, name))
    return {name: np.concatenate(values) for name, values in parts.items()}


def _unflatten(flat: list[float], names: list[str], shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Stan's flat output (each variable in column-major order, variables in ``names`` order) by name."""
    out, position = {}, 0
    for name in names:
        shape = shapes[name]
        n = int(np.prod(shape, dtype=int))
        out[name] = np.asarray(flat[position : position + n], dtype=float).reshape(shape, order="F")
        position += n
    return out


def _pareto_khat(log_weights: np.ndarray) -> float:
    """Pareto-smoothed importance sampling shape k of the weights p/q (Vehtari et al. 2024)."""
    import arviz as az

    finite = np.where(np.isfinite(log_weights), log_weights, -np.inf)
    _, khat = az.psislw(finite - finite.max())
    return float(khat)


def run_pathfinder_cmdstanpy(
    stan_file: Path, data: dict, settings: ChainSettings, keep: list[str], logger: logging.Logger
) -> ChainResult:
    """Approximate draws by CmdStan's own single-path Pathfinder (generated quantities included)."""
    import cmdstanpy

    model, compile_seconds = _cmdstan_model(stan_file, logger)
    start = time.perf_counter()
    try:
        fit = model.pathfinder(
            data=_json_ready(data), seed=settings.seed, num_paths=1, draws=settings.draws,
            inits=_json_ready(settings.init) if settings.init else None, psis_resample=False,
            show_console=False,
        )  # fmt: skip
    except Exception as err:
        raise EngineError(f"engine cmdstanpy: pathfinder failed: {err}") from err
    draws = {name: np.asarray(fit.stan_variable(name)) for name in keep if name in fit.stan_variables()}
    frame = fit.draws_pd()
    stats = {"lp": frame["lp__"].to_numpy(), "log_q": frame["lp_approx__"].to_numpy()}
    return ChainResult(
        draws=draws,
        stats=stats,
        engine="cmdstanpy",
        stan_version=".".join(map(str, cmdstanpy.cmdstan_version() or ("?",))),
        timings={
            "compile_seconds": compile_seconds,
            "sampling_seconds": time.perf_counter() - start,
            "pareto_khat": _pareto_khat(stats["lp"] - stats["log_q"]),
        },  # fmt: skip
    )


def pystan_stan_version() -> str:
    """The Stan version bundled with httpstan (read from its stan/version.hpp)."""
    import httpstan

    header = Path(httpstan.__file__).parent / "include" / "stan" / "version.hpp"
    parts = dict(re.findall(r"#define STAN_(MAJOR|MINOR|PATCH) (\d+)", header.read_text()))
    return f"{parts.get('MAJOR', '?')}.{parts.get('MINOR', '?')}.{parts.get('PATCH', '?')}"


# ---------------------------------------------------------------- CmdStan


def _cmdstan_model(stan_file: Path, logger: logging.Logger):
    """Compile once per program content; the executable is cached under ~/.cache/mimix/cmdstan."""
    import cmdstanpy

    from mimix.models import expand_includes

    code = expand_includes(stan_file)
    digest = hashlib.sha256(code.encode()).hexdigest()[:16]
    folder = cache_root() / "cmdstan" / f"{stan_file.stem}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{stan_file.stem}.stan"
    if not source.exists():
        source.write_text(code)
    start = time.perf_counter()
    try:
        model = cmdstanpy.CmdStanModel(stan_file=str(source), stanc_options={STANC_OPTIMIZATION.lstrip("-"): True})
    except Exception as err:
        raise EngineError(
            f"engine cmdstanpy: compiling {stan_file.name} failed ({type(err).__name__}): "
            f"{' | '.join(str(err).strip().splitlines()[-6:])}; check the C++ toolchain of your CmdStan installation"
        ) from err
    return model, time.perf_counter() - start


def run_chain_cmdstanpy(
    stan_file: Path, data: dict, settings: ChainSettings, keep: list[str], logger: logging.Logger
) -> ChainResult:
    """One chain with CmdStan; its CSV output is read, reduced to ``keep`` and deleted."""
    import cmdstanpy

    model, build_seconds = _cmdstan_model(stan_file, logger)
    logger.info("cmdstan model ready in %.1f s", build_seconds)
    output_dir = tempfile.mkdtemp(prefix="mimix-cmdstan-")
    start = time.perf_counter()
    try:
        fit = model.sample(
            data=_json_ready(data),
            chains=1,
            chain_ids=settings.chain_id,
            seed=settings.seed,
            inits=_json_ready(settings.init) if settings.init is not None else None,
            iter_warmup=settings.warmup,
            iter_sampling=settings.draws,
            thin=settings.thin,
            adapt_delta=settings.adapt_delta,
            max_treedepth=settings.max_treedepth,
            output_dir=output_dir,
            show_progress=False,
            show_console=True,
            refresh=settings.refresh,
        )
        sampling_seconds = time.perf_counter() - start
        available = set(fit.stan_variables())
        draws = {name: np.asarray(fit.stan_variable(name)) for name in keep if name in available}
        frame = fit.draws_pd(vars=list(SAMPLE_STATS))
        stats = {arviz: frame[stan].to_numpy() for stan, arviz in SAMPLE_STATS.items() if stan in frame}
        phases = fit.time[0] if fit.time else {}  # cmdstanpy's "warmup" / "sampling" seconds from the CSV
        stan_timing = {
            f"{phase}_seconds_stan": float(phases[phase]) for phase in ("warmup", "sampling") if phase in phases
        }
    except RuntimeError as err:
        raise EngineError(f"engine cmdstanpy: sampling failed: {err}") from err
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)
    return ChainResult(
        draws=draws,
        stats=stats,
        engine="cmdstanpy",
        stan_version=f"CmdStan {'.'.join(map(str, cmdstanpy.cmdstan_version() or ('?',)))}",
        timings={"compile_seconds": build_seconds, "sampling_seconds": sampling_seconds, **stan_timing},
    )


# ---------------------------------------------------------------- common


def compile_model(engine: str, model: str, data: dict, logger: logging.Logger) -> dict[str, Any]:
    """Compile (or find in the cache) one model with the resolved engine; return what happened."""
    from mimix.models import program_code, program_hash, stan_file

    start = time.perf_counter()
    if engine == "pystan":
        build_pystan_model(program_code(model), data, 1, logger)
        version = pystan_stan_version()
    elif engine == "cmdstanpy":
        import cmdstanpy

        _cmdstan_model(stan_file(model), logger)
        version = ".".join(map(str, cmdstanpy.cmdstan_version() or ("?",)))
    else:
        raise ValueError(f"engine must be resolved first, got {engine!r}")
    return {
        "model": model,
        "engine": engine,
        "stan_version": version,
        "program_hash": program_hash(model),
        "seconds": round(time.perf_counter() - start, 1),
    }


def run_chain(
    engine: str, model: str, data: dict, settings: ChainSettings, keep: list[str], logger: logging.Logger
) -> ChainResult:
    """Run one chain of ``model`` with the resolved ``engine`` ('cmdstanpy' or 'pystan')."""
    from mimix.models import program_code, stan_file

    if settings.method == "pathfinder":
        if engine == "pystan":
            return run_pathfinder_pystan(program_code(model), data, settings, keep, logger)
        return run_pathfinder_cmdstanpy(stan_file(model), data, settings, keep, logger)
    if settings.method != "nuts":
        raise InputError(f"sampling.method: {settings.method!r} is not one of nuts, pathfinder; fix the config")
    if engine == "pystan":
        return run_chain_pystan(program_code(model), data, settings, keep, logger)
    if engine == "cmdstanpy":
        return run_chain_cmdstanpy(stan_file(model), data, settings, keep, logger)
    raise ValueError(f"engine must be resolved first, got {engine!r}")


def to_inference_data(
    result: ChainResult,
    dims: dict[str, tuple[str, ...]],
    coords: dict[str, list],
    attrs: dict[str, Any],
):
    """The chain as ArviZ InferenceData (chain dim of size 1, coordinates named after the data)."""
    import arviz as az

    posterior = {name: values[None, ...] for name, values in result.draws.items()}
    sample_stats = {name: values[None, ...] for name, values in result.stats.items()}
    if "diverging" in sample_stats:
        sample_stats["diverging"] = sample_stats["diverging"].astype(bool)
    used_dims = {name: list(dims[name]) for name in posterior if name in dims}
    used_coords = {d: coords[d] for name in used_dims for d in used_dims[name]}
    idata = az.from_dict(posterior=posterior, sample_stats=sample_stats, coords=used_coords, dims=used_dims)
    n_steps = float(np.sum(result.stats.get("n_steps", np.nan)))
    all_attrs = {
        "engine": result.engine,
        "stan_version": result.stan_version,
        **{k: float(v) for k, v in result.timings.items()},
        "total_leapfrog_steps": n_steps,
        "seconds_per_gradient": seconds_per_gradient(result.timings, n_steps, int(attrs.get("thin", 1))),
        **attrs,
    }
    for group in ("posterior", "sample_stats"):
        getattr(idata, group).attrs.update({k: _attr_value(v) for k, v in all_attrs.items()})
    return idata


def _attr_value(value: Any) -> Any:
    """netCDF attributes take numbers and strings only."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | str | np.integer | np.floating):
        return value
    return str(value)


def _json_ready(obj: Any) -> Any:
    """Numpy arrays and numbers to plain Python lists/numbers (PyStan and CmdStan take JSON)."""
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


class _LogWriter(io.TextIOBase):
    """A file-like object that sends complete lines to a logger (progress lines of the sampler)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.buffer = ""
        self.lines: list[str] = []  # kept so that a build error can quote stanc's message

    def write(self, text: str) -> int:
        self.buffer += text.replace("\r", "\n")
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            self._emit(line)
        return len(text)

    def _emit(self, line: str) -> None:
        if line.strip():
            self.logger.info("stan: %s", line.strip())
            self.lines.append(line.strip())

    def flush(self) -> None:
        self._emit(self.buffer)
        self.buffer = ""

    def isatty(self) -> bool:
        return False
