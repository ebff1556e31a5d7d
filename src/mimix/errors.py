"""Errors for bad input: one line per problem, naming the file, the place and the fix."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class InputError(ValueError):
    """One or more problems with the user's input, each a self-contained line.

    The workflow collects every problem it can find before stopping, so a user fixes
    their files in one round instead of one error per run.
    """

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        if not self.problems:
            raise ValueError("InputError needs at least one problem")
        super().__init__("\n".join(self.problems))


class EngineError(RuntimeError):
    """A Stan engine is missing, cannot compile, or a chain failed: one clear message."""


def truncated_list(items: Iterable[object], limit: int = 5) -> str:
    """Format ids as ``'a', 'b', 'c' (and 12 more)`` so long lists stay one readable line."""
    items = [str(i) for i in items]
    shown = ", ".join(repr(i) for i in items[:limit])
    if len(items) > limit:
        shown += f" (and {len(items) - limit} more)"
    return shown


def raise_if_any(problems: Sequence[str]) -> None:
    """Raise an :class:`InputError` holding ``problems`` when there is at least one."""
    if problems:
        raise InputError(problems)
