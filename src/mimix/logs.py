"""Logging for step scripts: every step says what it does and how long it took.

Messages go to the rule's log file and to stderr, so a user watching the terminal
sees a bad-input message without opening the log.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mimix.errors import EngineError, InputError

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def step_logger(name: str, log_path: str | Path | None = None) -> logging.Logger:
    """A logger writing to ``log_path`` (if given) and to stderr."""
    logger = logging.getLogger(f"mimix.{name}")
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    logger.propagate = False
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
        logger.addHandler(handler)
    return logger


@contextlib.contextmanager
def timed(logger: logging.Logger, what: str) -> Iterator[None]:
    """Log the start and the duration of a piece of work."""
    logger.info("%s ...", what)
    start = time.perf_counter()
    yield
    logger.info("%s done in %.1f s", what, time.perf_counter() - start)


def run_step(logger: logging.Logger, main: Callable[[], None]) -> None:
    """Run a step; on bad input or an engine failure log one line per problem and exit 1 (no traceback)."""
    start = time.perf_counter()
    try:
        main()
    except InputError as err:
        for problem in err.problems:
            logger.error(problem)
        logger.error("stopped: %d problem(s) with the input; nothing was written", len(err.problems))
        sys.exit(1)
    except EngineError as err:
        logger.error("%s", err)
        sys.exit(1)
    logger.info("step finished in %.1f s", time.perf_counter() - start)
