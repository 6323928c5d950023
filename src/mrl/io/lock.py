"""One writer at a time per output: an exclusive, non-blocking lock (the ``filelock`` package).

The lock of an output ``path`` (a file or a folder) is a file named after the SHA-256 of the
output's real path, in a per-user lock folder (``$MRL_LOCK_DIR``, default
``<tmp>/mrl-locks-<uid>``), so no lock file ever appears in a user's folders and the lock stays
valid while a folder is swapped as a whole. Locks are per machine (``flock``); they do not
coordinate writers on different hosts sharing a network file system.

A second writer fails at once with :class:`mrl.errors.OutputLockedError`; the same process may take
the lock again (re-entrant), so a command can hold it while library calls inside take it too.
Readers take no lock: writers only ever replace files atomically, so a reader sees the old or the
new state, never a half-written one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from mrl.errors import OutputLockedError


def lock_dir() -> Path:
    """The folder holding mrl's lock files (``$MRL_LOCK_DIR`` or ``<tmp>/mrl-locks-<uid>``)."""
    configured = os.environ.get("MRL_LOCK_DIR")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(configured) if configured else Path(tempfile.gettempdir()) / f"mrl-locks-{uid}"


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file of output ``path`` (symlinks and relative paths resolved first)."""
    real = os.path.realpath(path)
    return lock_dir() / (hashlib.sha256(real.encode()).hexdigest()[:32] + ".lock")


@contextlib.contextmanager
def writer_lock(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the exclusive writer lock of output ``path`` for the ``with`` block; yields the lock file.

    Raises:
        OutputLockedError: another process is writing ``path``.
    """
    lp = lock_path(path)
    lp.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = FileLock(str(lp), timeout=0, thread_local=False, is_singleton=True)
    try:
        lock.acquire()
    except Timeout:
        raise OutputLockedError(f"{path} is being written by another mrl process; wait for it to finish or choose another output.") from None
    try:
        yield lp
    finally:
        lock.release()
