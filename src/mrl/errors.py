"""Exceptions raised at the library boundary.

Every error message names the fix, so a user can act on it without reading the source.
"""

from __future__ import annotations


class MRLError(ValueError):
    """Base class for all invalid-input errors raised by ``mrl``."""


class DataError(MRLError):
    """A dataset, embedding file or array is missing, malformed or corrupted."""


class CheckpointError(MRLError):
    """A checkpoint is missing, corrupted, or does not match the requested configuration."""


class OutputExistsError(MRLError):
    """An output location already holds results and overwriting was not requested."""


class OutputLockedError(MRLError):
    """Another process holds the writer lock of an output (one writer at a time)."""


class ForeignFileError(OutputExistsError):
    """An output location holds files mrl cannot prove it wrote; they are never replaced or deleted."""
