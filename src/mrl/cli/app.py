"""The ``mrl`` command: every command group is its own Typer app (one file each), composed here.

Errors in any command, usage errors included, print one line (``error: ...`` naming the fix) and
exit with code 2; see :mod:`mrl.cli.console`.
"""

from __future__ import annotations

import typer

from mrl.cli import adapt_cmd, cascade_cmd, demo_cmd, embed_cmd, encode_cmd, eval_cmd, index_cmd, multimodal_cmd, serve_cmd, train_cmd
from mrl.cli.console import Group, flag

app = typer.Typer(
    cls=Group,
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Matryoshka Representation Learning: train, evaluate and use nested embeddings.",
)


def _version(value: bool) -> None:
    if value:
        from mrl import __version__

        typer.echo(f"mrl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = flag(False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    """Matryoshka Representation Learning: train, evaluate and use nested embeddings."""


# Top-level commands (groups without a name merge their commands into `mrl`).
for group in (train_cmd.app, eval_cmd.app, embed_cmd.app, encode_cmd.app, demo_cmd.app, adapt_cmd.app, index_cmd.tune_app, serve_cmd.app, multimodal_cmd.app):
    app.add_typer(group)
# Command groups: `mrl cascade ...`, `mrl index ...`.
app.add_typer(cascade_cmd.app, name="cascade", cls=Group)
app.add_typer(index_cmd.app, name="index", cls=Group)


def main() -> None:
    app()
