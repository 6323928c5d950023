"""Proof of ownership: which files under an output folder its manifest proves mrl wrote, and their removal.

The rules (size and SHA-256 of recorded files, folder listings, write-ahead ``null`` entries,
unfinished runs) are set out in :mod:`mrl.io.ownership`; :class:`Proof` applies them and
:func:`remove_owned` deletes only what a proof covers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mrl.io.atomic import folder_files, fsync_dir, sha256_file
from mrl.io.manifest import is_file_entry, listed_files


def same_or_inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
        return True
    except ValueError:
        return False


# Lock files older mrl versions left inside index folders: not user data.
LEGACY_LOCK_FILES = frozenset({".mrl-writer.lock"})


def output_files(folder: Path) -> list[str]:
    """Relative names of every file under ``folder`` (see :func:`mrl.io.atomic.folder_files`), legacy lock files excluded."""
    return folder_files(folder, LEGACY_LOCK_FILES)


def in_listing(name: str, mine: set[str]) -> bool:
    """Whether ``name`` is listed, or lies in a listed folder (an entry ending in ``/``)."""
    return name in mine or any(name.startswith(d) for d in mine if d.endswith("/"))


_Signature = tuple[int, int, int]


def _signature(p: Path) -> _Signature | None:
    """(size, mtime in ns, inode) of a file, ``None`` if it is gone."""
    try:
        st = p.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def _finished_stamp(manifest_path: Path, manifest: dict[str, Any] | None) -> int | None:
    """The mtime (ns) of a manifest whose output was finished (``state`` not ``"writing"``), else ``None``."""
    if not manifest or manifest.get("state") == "writing":
        return None
    try:
        return manifest_path.stat().st_mtime_ns
    except OSError:
        return None


def matches_entry(path: Path, entry: dict[str, Any]) -> bool:
    """Whether the file ``path`` has the size and SHA-256 a manifest recorded (``{"bytes", "sha256"}``);
    the size is compared first, so a file of another size is never hashed."""
    try:
        size = path.stat().st_size
    except OSError:
        return False
    return path.is_file() and size == entry.get("bytes") and sha256_file(path) == entry.get("sha256")


class Proof:
    """What one manifest proves about the files under ``root`` (see the module docstring).

    Args:
        root: the folder the manifest's names are relative to.
        files: its ``files`` mapping; ``names`` the names it lists (:func:`listed_files`, or the
            keys of ``files`` for an output being written).
        stamp: :func:`_finished_stamp` of the manifest (for folders listed without their files).
        trusted: names that are the output's whatever they hold (a file output's primary file,
            which the user named to be replaced; the manifest itself).
        rewriting: the manifest's ``rewriting`` names (ours by write-ahead, whatever they hold).
        seen: signatures of files already proven by hash (shared by the proofs of one replacement,
            so no file is hashed twice while it is unchanged).
    """

    def __init__(self, root: Path, files: dict[str, Any], names: set[str], *, stamp: int | None = None, trusted: Iterable[str] = (), rewriting: Iterable[str] = (), seen: dict[str, tuple[_Signature, Any]] | None = None) -> None:
        self.root, self.files, self.names, self.stamp = root, files, names, stamp
        self.trusted = set(trusted)
        self.rewriting = set(rewriting) & names  # recorded files being written again: ours whatever they hold
        self.seen: dict[str, tuple[_Signature, Any]] = {} if seen is None else seen
        self._folders = sorted((n for n in names if n.endswith("/")), key=len, reverse=True)

    @classmethod
    def of(cls, root: Path, manifest: dict[str, Any] | None, manifest_path: Path, *, trusted: Iterable[str] = ()) -> Proof:
        files = manifest.get("files") if manifest and isinstance(manifest.get("files"), dict) else {}
        rewriting = [n for n in (manifest or {}).get("rewriting") or [] if isinstance(n, str)]
        return cls(root, files, listed_files(manifest), stamp=_finished_stamp(manifest_path, manifest), trusted=trusted, rewriting=rewriting)

    def moved(self, root: Path) -> Proof:
        """The same proof for the folder moved to ``root`` (a rename keeps sizes, mtimes and inodes)."""
        return Proof(root, self.files, self.names, stamp=self.stamp, trusted=self.trusted, rewriting=self.rewriting, seen=self.seen)

    def matches(self, name: str, entry: dict[str, Any]) -> bool:
        """Whether the file ``name`` has the size and SHA-256 of ``entry`` (size first; hash only then)."""
        p = self.root / name
        before = _signature(p)
        if before is None or not p.is_file():
            return False
        if self.seen.get(name) == (before, entry.get("sha256")):
            return True
        if not matches_entry(p, entry):
            return False
        if _signature(p) == before:  # unchanged while it was read
            self.seen[name] = (before, entry.get("sha256"))
        return True

    def changed(self) -> list[str]:
        """Listed files that exist but no longer match their recorded size or SHA-256."""
        return [n for n, e in sorted(self.files.items()) if n in self.names and n not in self.trusted | self.rewriting and is_file_entry(e) and (self.root / n).is_file() and not self.matches(n, e)]

    def owns(self, name: str) -> bool:
        """Whether the file ``name`` (relative to ``root``) is provably the output's."""
        if name in self.trusted or name in self.rewriting:
            return True
        if name in self.names:
            entry = self.files.get(name)
            return self.matches(name, entry) if is_file_entry(entry) else True  # null: ours by write-ahead
        key = next((d for d in self._folders if name.startswith(d)), None)
        if key is None or (self.root / name).is_symlink():
            return False  # not listed; a link in a listed folder was never written by mrl
        rel, entry = name[len(key) :], self.files.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("files"), dict):
            listed = entry["files"].get(rel)
            return is_file_entry(listed) and self.matches(name, listed)
        if isinstance(entry, dict) and rel in (entry.get("kept") or []):
            return False
        if self.stamp is not None:  # a finished output without a listing (older mrl): not newer than its manifest
            return (self.root / name).lstat().st_mtime_ns <= self.stamp
        return True  # a folder of a run that never finished (see the module docstring)


def remove_owned(proof: Proof, keys: Iterable[str]) -> list[str]:
    """Delete the listed files and the files of listed folders (names ending in ``/``) among ``keys``
    that ``proof`` proves are the output's; then remove sub-folders left empty (a listed folder too,
    when empty). Returns the files left in place (relative to ``proof.root``), sorted."""
    root, kept, dirs = proof.root, [], set()
    for key in keys:
        p = root / key
        if key.endswith("/"):
            if not p.is_dir() or p.is_symlink():
                continue
            names = [key + n for n in output_files(p)]
            dirs.update(Path(d) for d, _, _ in os.walk(p))
        elif p.is_symlink() or p.is_file():
            names = [key]
        else:
            continue  # missing (or a folder where a file was listed: not ours to touch)
        for n in names:
            if not proof.owns(n):
                kept.append(n)
                continue
            with contextlib.suppress(FileNotFoundError):
                (root / n).unlink()
            dirs.update(parent for parent in (root / n).parents if same_or_inside(parent, root) and parent != root)
    for d in sorted(dirs, key=lambda x: len(x.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()  # only succeeds when empty
    fsync_dir(root)
    return sorted(kept)
