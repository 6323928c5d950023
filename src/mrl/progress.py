"""Progress bars that do not flood logs.

Every bar in ``mrl`` (and the ones inside sentence-transformers and the transformers Trainer) is a
``tqdm``; tqdm reads ``TQDM_*`` environment variables as default arguments. When stderr is not a
terminal (a log file, CI), :func:`throttle_progress` sets ``TQDM_MININTERVAL`` (seconds between
refreshes, default 30) so a redirected run writes a handful of lines, not one per step.
"""

from __future__ import annotations

import os
import sys


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def throttle_progress(seconds: float = 30.0) -> None:
    """Throttle every tqdm bar to one refresh per ``seconds`` when stderr is not a terminal.

    A ``TQDM_MININTERVAL`` already set by the user wins.
    """
    if not stderr_is_terminal():
        os.environ.setdefault("TQDM_MININTERVAL", str(seconds))
