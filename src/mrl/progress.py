"""Progress bars for every long loop in mrl: one helper, so all bars behave the same.

On a terminal a bar is a normal ``tqdm`` bar. When stderr is not a terminal (a log file, CI, a
pipe) a bar from :func:`progress` prints a plain line (no carriage returns, no ANSI codes) at most
once every ``MRL_PROGRESS_INTERVAL`` seconds (default 10), so long jobs do not flood their logs.
mrl's own text encoding passes ``show_progress_bar=False`` to sentence-transformers and drives a
bar from here; the sentence-transformers Trainer's tqdm bar is replaced by a callback that drives
one from here (:mod:`mrl.train.text_trainer`), as do the two-tower trainer, corpus encoding (local
and Ray), serving's index build and the Milvus push. :func:`throttle_progress` also exports ``TQDM_MININTERVAL``, which
tqdm reads when it is first imported: it throttles the bars of processes started afterwards (Ray
workers, torchrun ranks), not of this one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from functools import partialmethod
from typing import IO, Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
DEFAULT_LOG_INTERVAL = 10.0


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def log_interval() -> float:
    """Seconds between bar updates when stderr is not a terminal (``$MRL_PROGRESS_INTERVAL``)."""
    try:
        return max(float(os.environ.get("MRL_PROGRESS_INTERVAL", DEFAULT_LOG_INTERVAL)), 0.0)
    except ValueError:
        return DEFAULT_LOG_INTERVAL


def throttle_progress(seconds: float | None = None) -> None:
    """When stderr is not a terminal, throttle every tqdm bar to one refresh per ``seconds`` (default
    :func:`log_interval`): export ``TQDM_MININTERVAL`` for child processes (tqdm reads it when first
    imported) and give this process's tqdm the same default ``mininterval`` the way that variable
    would have (tqdm's own ``envwrap``: a ``partialmethod`` of ``__init__``; torch imports tqdm before
    any of our code runs, so the variable alone comes too late here). A value set by the user wins;
    a bar that passes its own ``mininterval`` keeps it."""
    if stderr_is_terminal():
        return
    os.environ.setdefault("TQDM_MININTERVAL", str(log_interval() if seconds is None else seconds))
    import tqdm.std

    cls = tqdm.std.tqdm
    if not getattr(cls, "_mrl_throttled", False):
        try:
            every = float(os.environ["TQDM_MININTERVAL"])
        except ValueError:
            every = log_interval()
        cls.__init__ = partialmethod(cls.__init__, mininterval=every)  # type: ignore[method-assign]
        cls._mrl_throttled = True  # type: ignore[attr-defined]


class _LineWriter:
    """File-like wrapper that turns tqdm's ``\\r`` redraws into whole lines (for logs)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        for part in text.replace("\r", "\n").split("\n"):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class _LogBar(tqdm):
    """A tqdm bar for logs: its closing line is skipped when the last line printed already showed the
    final count (else a bar whose last update printed would end with the same line twice)."""

    def display(self, msg: str | None = None, pos: int | None = None) -> Any:
        if msg is None:  # a real redraw, not the clearing of a bar that does not stay
            self._logged_n = self.n
        return super().display(msg, pos)

    def close(self) -> None:
        if not self.disable and getattr(self, "_logged_n", None) == self.n:
            self.leave = False  # the final count is already in the log; closing then writes nothing
        super().close()


def progress(iterable: Iterable[T] | None = None, *, desc: str, total: int | None = None, unit: str = "it", disable: bool = False, leave: bool = True, **kwargs: Any) -> Any:
    """A ``tqdm`` bar over ``iterable`` (or a manual one with ``total``), throttled for logs.

    Example:
        >>> for batch in progress(batches, desc="encoding", unit="batch"):
        ...     ...
    """
    if stderr_is_terminal():
        return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, leave=leave, dynamic_ncols=True, **kwargs)
    every = log_interval()
    return _LogBar(iterable, desc=desc, total=total, unit=unit, disable=disable, leave=leave, file=_LineWriter(sys.stderr or sys.__stderr__), mininterval=every, maxinterval=max(every, 10.0), ascii=True, ncols=100, **kwargs)


def note(message: str) -> None:
    """Print a line without breaking an active bar (``tqdm.write``)."""
    tqdm.write(message, file=sys.stderr)
