"""One writer at a time per output: an exclusive, non-blocking lock (the ``filelock`` package).

The lock of an output ``path`` (a file or a folder) is a file named after the SHA-256 of the
output's real path, in a private per-user lock folder (:func:`lock_dir`: ``$MRL_LOCK_DIR``, default
``<tmp>/mrl-locks-<uid>``, checked to be this user's and not writable by others), so no lock file ever appears in a user's folders and the lock stays
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
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from mrl.errors import MRLError, OutputLockedError


def _problem(folder: Path) -> str | None:
    """Create ``folder`` (mode 0700) if needed; ``None`` when it is a real folder of this user that
    no other user can write, else what is wrong with it (another user could take or swap our locks)."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.lstat()
    except OSError as exc:
        return f"cannot be created ({exc.strerror or exc})"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return "is not a plain folder (a symbolic link or a file)"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"can be written by other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def lock_dir() -> Path:
    """The folder holding mrl's lock files, created if needed and checked to be private.

    ``$MRL_LOCK_DIR`` when set (refused if it is not yours or others can write it), else
    ``<tmp>/mrl-locks-<uid>``; when another user created that one first (or made it writable by
    others), every process of this user falls back to ``~/.cache/mrl/locks`` instead.

    Raises:
        MRLError: no private lock folder can be had; the message names the folder to fix.
    """
    configured = os.environ.get("MRL_LOCK_DIR")
    if configured:
        folder = Path(configured)
        problem = _problem(folder)
        if problem:
            raise MRLError(f"lock folder {folder} (MRL_LOCK_DIR) {problem}; point MRL_LOCK_DIR to a folder only you can write.")
        return folder
    uid = os.getuid() if hasattr(os, "getuid") else 0
    default = Path(tempfile.gettempdir()) / f"mrl-locks-{uid}"
    problem = _problem(default)
    if problem is None:
        return default
    fallback = Path.home() / ".cache" / "mrl" / "locks"
    if _problem(fallback) is None:
        return fallback
    raise MRLError(f"lock folder {default} {problem} and {fallback} is not usable either; remove {default} or set MRL_LOCK_DIR to a folder only you can write.")


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
    lock = FileLock(str(lp), timeout=0, thread_local=False, is_singleton=True)
    try:
        lock.acquire()
    except Timeout:
        raise OutputLockedError(f"{path} is being written by another mrl process; wait for it to finish or choose another output.") from None
    try:
        yield lp
    finally:
        lock.release()
