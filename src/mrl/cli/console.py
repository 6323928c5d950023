"""Shared CLI plumbing: the stderr console, one-line errors, and small input helpers.

Every command module imports from here and nothing here imports a command, so the command groups
stay independent (Typer's one-file-per-group layout). The console never parses rich markup:
messages often hold user paths such as ``runs/[exp]``, so styling is passed explicitly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import typer
from rich.console import Console
from rich.text import Text

from mrl.errors import MRLError

console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` (no markup parsing) and exit with code 2."""
    console.print(Text.assemble(("error: ", "bold red"), message))
    raise typer.Exit(2)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report library errors as one clear line and exit 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MRLError as exc:
            fail(str(exc))

    return wrapper


def flag(default: bool, *names: str, **kwargs: Any) -> Any:
    """A boolean option (``--overwrite``), shown in ``--help`` without a value placeholder.

    typer renders every bool option with a ``<bool>`` type column although the flag takes no
    value; an empty ``metavar`` removes it. (The built-in ``--help``/``-h`` option still shows it:
    changing that needs a custom Typer command class, which we do not carry.)
    """
    return typer.Option(default, *names, metavar="", **kwargs)


def parse_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; ``None`` or ``""`` -> ``[]``."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def load_matrix(path: Path, name: str) -> np.ndarray:
    """A 2-D float ``.npy`` (memory-mapped), or an :class:`MRLError` naming the expected input.

    Shape: returns ``[N, D]``.
    """
    from mrl.io import load_npy

    arr = load_npy(path, mmap=True)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise MRLError(f"{name} {path} must be a 2-D float array [N, D] (e.g. from `mrl embed`), got {arr.dtype} {arr.shape}.")
    return arr
