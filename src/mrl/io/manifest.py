"""Sealed output manifests: the record of which files an mrl output holds (see :mod:`mrl.io.ownership`).

A manifest is JSON with ``format`` (the output kind), ``files`` (name -> entry; the entry shapes are
listed in :mod:`mrl.io.ownership`), ``state`` and ``checksum``: the SHA-256 of its own canonical JSON
without that field, so a torn or edited manifest is refused instead of trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mrl.errors import DataError
from mrl.io.atomic import dumps, sha256_file, write_json

MANIFEST = "manifest.json"
CHECKSUM_KEY = "checksum"


# ---------------------------------------------------------------------------- sealed manifests
def manifest_checksum(manifest: dict[str, Any]) -> str:
    """``sha256:<hex>`` of the manifest's canonical JSON without its own ``checksum`` field."""
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    return "sha256:" + hashlib.sha256(dumps(body).encode()).hexdigest()


def seal(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``manifest`` carrying its own checksum (verified by :func:`check_seal`)."""
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    return {**body, CHECKSUM_KEY: manifest_checksum(body)}


def check_seal(manifest: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return ``manifest`` if it is a mapping whose checksum matches, else raise :class:`DataError`.

    Index manifests of format version 1 (written before manifests were sealed) pass unchecked.
    """
    if isinstance(manifest, dict) and CHECKSUM_KEY not in manifest and manifest.get("format_version") == 1:
        return manifest
    if not isinstance(manifest, dict) or not isinstance(manifest.get(CHECKSUM_KEY), str):
        raise DataError(f"{path} has no checksum; it was not written by this mrl or it is corrupted: regenerate it.")
    if manifest[CHECKSUM_KEY] != manifest_checksum(manifest):
        raise DataError(f"{path} fails its checksum: it was edited by hand or corrupted; regenerate it (or restore it from a copy).")
    return manifest


def write_manifest(path: str | os.PathLike[str], manifest: dict[str, Any]) -> dict[str, Any]:
    """Seal and atomically write a manifest; returns the sealed dict."""
    sealed = seal(manifest)
    write_json(path, sealed)
    return sealed


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The sealed manifest at ``path`` (``None`` if there is none); raises if it is corrupted."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{p} is not valid JSON ({exc}); the manifest is corrupted: regenerate the output.") from exc
    return check_seal(doc, p)


def verify_output(folder: str | os.PathLike[str], names: Iterable[str], *, kind: str | None = None) -> dict[str, Any] | None:
    """Verify an output folder on load: its manifest's seal (and ``kind``), and the size and SHA-256
    of each of ``names`` that the caller is about to read (a name neither present nor listed is left
    to the caller). Returns the manifest; ``None`` when the folder has none (an output copied
    without it is read on its own hashes, if any).

    Raises:
        DataError: the manifest fails its checksum, is of another kind, or a file is missing, not
            listed, unfinished, or differs from its entry (edited or corrupted).
    """
    root = Path(folder)
    man = read_manifest(root / MANIFEST)
    if man is None:
        return None
    where = root / MANIFEST
    if kind is not None and man.get("format") != kind:
        raise DataError(f"{where} describes a {man.get('format')!r} output, not {kind!r}; point to the folder mrl wrote for this command.")
    files = man.get("files") if isinstance(man.get("files"), dict) else {}
    for name in names:
        p, entry = root / name, files.get(name)
        if name in files and not isinstance(entry, dict):
            raise DataError(f"{p} was still being written when the command that wrote {where} stopped; rerun that command (--resume or --overwrite).")
        if not p.is_file():
            if name in files:
                raise DataError(f"{p} is missing although {where} lists it; the folder is incomplete: restore the file or regenerate the output.")
            continue  # neither written nor listed: the caller's own "does not exist" applies
        if entry is None:
            raise DataError(f"{p} is not listed in {where}, so mrl did not write it; restore the file mrl wrote or regenerate the output.")
        if p.stat().st_size != entry.get("bytes") or sha256_file(p) != entry.get("sha256"):
            raise DataError(f"{p} does not match its size or SHA-256 in {where}: it was edited or corrupted; restore it or regenerate the output.")
    return man


def listed_files(manifest: dict[str, Any] | None) -> set[str]:
    """Every file name a manifest proves mrl wrote: the keys of its ``files`` mapping whose value is
    a file entry (``{"bytes", "sha256"}``, or ``None`` while being written), every ``"file"`` field
    anywhere in it (an index manifest's segments, ids, first stages...), and ``pending`` names."""
    if not manifest:
        return set()
    names: set[str] = set()
    files = manifest.get("files")
    if isinstance(files, dict):
        names.update(str(k) for k, v in files.items() if v is None or is_file_entry(v) or is_folder_entry(str(k), v))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "file" and isinstance(v, str):
                    names.add(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk({k: v for k, v in manifest.items() if k != "pending"})
    names.update(n for n in manifest.get("pending") or [] if isinstance(n, str))
    return {n for n in names if safe_name(n)}


def is_file_entry(value: Any) -> bool:
    """``{"bytes", "sha256"}`` (an index manifest's ``{"file", ...}`` records are not entries of their own key)."""
    return isinstance(value, dict) and "sha256" in value and "file" not in value


def is_folder_entry(name: str, value: Any) -> bool:
    """A listed sub-folder: ``"dir/": null``, ``{"files": {...}}`` (finished) or ``{"kept": [...]}``."""
    return name.endswith("/") and (value is None or (isinstance(value, dict) and bool(value) and set(value) <= {"files", "kept"}))


def safe_name(name: str) -> bool:
    """A relative path that stays inside its folder (a tampered manifest cannot point elsewhere)."""
    p = Path(name)
    return bool(name) and name not in ("/", "./") and not p.is_absolute() and ".." not in p.parts


def file_entry(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"bytes", "sha256"}`` of a written file."""
    return {"bytes": Path(path).stat().st_size, "sha256": sha256_file(path)}
