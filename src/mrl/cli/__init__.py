"""The ``mrl`` command line (Typer). Nothing in the library imports this package."""

from mrl.cli.app import app, main

__all__ = ["app", "main"]
