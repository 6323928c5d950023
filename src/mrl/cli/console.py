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
from typer.core import TyperGroup

from mrl.errors import MRLError

console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` (no markup parsing) on one line and exit with code 2."""
    console.print(Text.assemble(("error: ", "bold red"), one_line(message)))
    raise typer.Exit(2)


def one_line(message: str) -> str:
    """A message on one line: a library's multi-line text inside it (e.g. torch's list of every
    mismatched tensor of a state_dict, 37 lines) keeps its first two lines and its last one (which
    names the fix), with a count of the lines left out."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    if len(lines) <= 3:
        return " ".join(lines)
    return f"{lines[0]} {lines[1]} [... {len(lines) - 3} more line(s) ...] {lines[-1]}"


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report library errors as one clear line and exit 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MRLError as exc:
            fail(str(exc))
        except PermissionError as exc:  # an unreadable input, an unwritable output folder: the user's fix, not a bug
            fail(permission_message(exc))

    return wrapper


def permission_message(exc: PermissionError) -> str:
    """One line for a :class:`PermissionError`: the file, or the folder a temporary file was to be made in."""
    name = Path(exc.filename) if exc.filename else None
    if name is not None and name.name.startswith(".") and name.name.endswith(".tmp"):  # an atomic write's temp file: the folder is the problem
        return f"permission denied: cannot write in {name.parent}; make it writable for this user, or choose another output path."
    where = f" {name}" if name is not None else ""
    return f"permission denied:{where} ({exc.strerror or exc}); give this user access to it (chmod/chown), or choose another path."


def flag(default: bool, *names: str, **kwargs: Any) -> Any:
    """A boolean option (``--overwrite``), shown in ``--help`` without a value placeholder.

    typer renders every bool option with a ``<bool>`` type column although the flag takes no
    value; an empty ``metavar`` removes it (:class:`Group` does the same for ``--help``/``-h``).
    """
    return typer.Option(default, *names, metavar="", **kwargs)


# The click that Typer runs on (a vendored copy in recent Typer, the click package in older ones).
_ClickException: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _one_line(exc: Exception, ctx: Any = None, prog: str | None = None) -> NoReturn:
    """Print a click usage error (missing argument, bad option value, unknown option or command)
    as one ``error:`` line with the command's usage, instead of click's boxed block; exit 2.
    ``ctx`` stands in for the failing command's context when click did not attach one."""
    ctx = getattr(exc, "ctx", None) or ctx
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    end = "" if message.endswith((".", "?")) else "."
    if ctx is not None:
        message = f"{message}{end} {' '.join(ctx.get_usage().split())} (see '{ctx.command_path} -h')."
    elif prog:
        message = f"{message}{end} See '{prog} -h'."
    fail(message)


def _no_placeholder(option: Any) -> Any:
    """Drop the ``<bool>`` value placeholder of a help option (it takes no value)."""
    if option is not None:
        option.metavar = ""
    return option


class Group(TyperGroup):
    """The class of ``mrl`` and its command groups (``Typer(cls=Group)``).

    Usage errors of any command below it print one ``error:`` line naming the usage and exit
    with code 2, like :func:`fail`; ``--help``/``-h`` show no value placeholder.
    """

    def get_help_option(self, ctx: Any) -> Any:
        return _no_placeholder(super().get_help_option(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:  # a command's help option is made once and cached: fix it here
            _no_placeholder(cmd.get_help_option(ctx))
        return cmd

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `mrl` alone prints the help
                raise
            _one_line(exc, prog=info_name)

    def invoke(self, ctx: Any) -> Any:
        name = next(iter(ctx._protected_args or ctx.args), None)  # the subcommand about to run
        try:
            return super().invoke(ctx)
        except _ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `mrl index` alone prints its help
                raise
            cmd = self.get_command(ctx, name) if name else None
            _one_line(exc, type(ctx)(cmd, info_name=name, parent=ctx) if cmd is not None else None)


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
