"""Output ownership: mrl deletes or replaces only files it can prove it wrote.

Every output mrl writes is described by a **manifest** (JSON, sealed with its own checksum):

* an output *folder* (a training run, an adaptor, a text model, a report, an index) holds
  ``manifest.json``: ``{"format": kind, "files": {name: {"bytes", "sha256"}}, "state", "checksum"}``;
* an output *file* and its siblings (``x.npy`` + ``x.labels.npy`` from ``mrl embed``) are described
  by the JSON sidecar ``x.json``, with the same keys plus the sidecar's own fields.

Rules, checked under the output's writer lock (:mod:`mrl.io.lock`) before anything is written:

* a new or empty folder is fine; a folder holding a previous output of the same ``kind`` needs
  ``overwrite``; anything else (a folder of a user's files without a manifest, another kind of
  output) is refused, even with ``overwrite``. Files a folder holds that its manifest does not list
  are never deleted or replaced (a folder replaced as a whole, ``staged``, must hold none);
* with ``overwrite`` the old outputs are removed just before the first new file is written, so a
  folder never mixes old and new results (e.g. an old model beside a new checkpoint);
* an input of the running command is never replaced or deleted;
* every file is listed in the manifest *before* it is created (write-ahead: ``out.file(name)``),
  so a crash never leaves a file mrl wrote but cannot prove it wrote; a command that fails before
  its first write leaves the disk untouched.

Example:
    >>> with open_output("runs/a", "mrl.run", overwrite=True, inputs=[config_path]) as out:
    ...     with out.file("metrics.csv") as p:
    ...         write_csv(p, rows)
    >>> with open_files("emb.npy", "mrl.embeddings", ["emb.labels.npy"], overwrite=False) as out:
    ...     with out.file("emb.npy") as p:
    ...         save_npy(p, x)
    ...     out.meta.update(dim=512)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from mrl.errors import DataError, ForeignFileError, MRLError, OutputExistsError
from mrl.io.atomic import dumps, folder_files, fsync_dir, make_temp_dir, sha256_file, unlisted_sibling, write_json
from mrl.io.lock import writer_lock

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
        names.update(str(k) for k, v in files.items() if v is None or (isinstance(v, dict) and "sha256" in v and "file" not in v))

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
    return {n for n in names if _safe_name(n)}


def _safe_name(name: str) -> bool:
    """A relative path that stays inside its folder (a tampered manifest cannot point elsewhere)."""
    p = Path(name)
    return bool(name) and name not in ("/", "./") and not p.is_absolute() and ".." not in p.parts


def file_entry(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"bytes", "sha256"}`` of a written file."""
    return {"bytes": Path(path).stat().st_size, "sha256": sha256_file(path)}


def _same_or_inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
        return True
    except ValueError:
        return False


# Lock files older mrl versions left inside index folders: not user data.
LEGACY_LOCK_FILES = frozenset({".mrl-writer.lock"})


def _folder_files(folder: Path) -> list[str]:
    """Relative names of every file under ``folder`` (see :func:`mrl.io.atomic.folder_files`), legacy lock files excluded."""
    return folder_files(folder, LEGACY_LOCK_FILES)


def _owned(name: str, mine: set[str]) -> bool:
    """Whether ``name`` is listed, or lies in a listed folder (an entry ending in ``/``)."""
    return name in mine or any(name.startswith(d) for d in mine if d.endswith("/"))


def _remove_listed(folder: Path, names: Iterable[str]) -> None:
    """Delete the named files of ``folder`` (missing ones are skipped) and listed folders (names
    ending in ``/``, with everything in them), then sub-folders left empty."""
    dirs = set()
    for name in names:
        p = folder / name
        if name.endswith("/"):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            continue
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            p.unlink()
        dirs.update(parent for parent in p.parents if _same_or_inside(parent, folder) and parent != folder)
    for d in sorted(dirs, key=lambda x: len(x.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()  # only succeeds when empty
    fsync_dir(folder)


def _short(names: Sequence[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _check_inputs(inputs: Iterable[str | os.PathLike[str] | None], targets: Iterable[Path], folder: Path | None, what: str) -> None:
    """Refuse when an input is one of ``targets`` or lies inside ``folder`` (to be replaced)."""
    targets = [Path(os.path.realpath(t)) for t in targets]
    for inp in inputs:
        if inp is None:
            continue
        real = Path(os.path.realpath(inp))
        if real in targets or (folder is not None and _same_or_inside(real, folder)):
            raise OutputExistsError(f"input {inp} is part of the {what} this command would replace; copy it elsewhere first or choose another output.")


# ---------------------------------------------------------------------------- the output object
class Output:
    """Files being written under one manifest. Build with :func:`open_output` or :func:`open_files`.

    Attributes:
        path: where files go (the output folder, the staging folder of a ``staged`` output, or the
            folder of a file group).
        meta: extra fields written into the manifest (e.g. a sidecar's ``model``, ``dim``).
    """

    def __init__(self, root: Path, manifest_path: Path, kind: str, *, old: dict[str, Any] | None, reset: bool, inputs: Sequence[Any], replaceable: Iterable[str] = ()) -> None:
        self.path = root
        self.kind = kind
        self.meta: dict[str, Any] = {}
        self._manifest_path = manifest_path
        self._old = old
        self._needs_reset = reset and old is not None
        self._inputs = list(inputs)
        self._replaceable = set(replaceable)
        self._files: dict[str, Any] = {} if reset or old is None else dict(old.get("files") or {})
        self._touched = False  # nothing is written (not even the manifest) until the first claim

    # -- write-ahead bookkeeping
    def _save(self, state: str) -> None:
        doc = {**self.meta, "format": self.kind, "files": dict(sorted(self._files.items())), "state": state}
        write_manifest(self._manifest_path, doc)

    def _begin(self) -> None:
        if self._needs_reset:  # invalidate the previous output before the first new file exists
            self._needs_reset = False
            old_names = listed_files(self._old) - {self._manifest_path.name}
            _remove_listed(self.path, sorted(old_names))  # a crash here leaves them listed: still provably ours
            self._save("writing")

    def claim(self, name: str) -> Path:
        """List ``name`` in the manifest before it is written; returns its path.

        Raises:
            ForeignFileError: a file of that name exists and the manifest does not list it.
        """
        if not _safe_name(name):
            raise MRLError(f"internal error: output file name {name!r} must be relative.")
        self._touched = True
        self._manifest_path.parent.mkdir(parents=True, exist_ok=True)
        self._begin()
        target = self.path / name
        _check_inputs(self._inputs, [target], target if name.endswith("/") else None, "output")
        if name not in self._files:
            if target.exists() and not _owned(name, listed_files(self._old)) and name not in self._replaceable:
                raise ForeignFileError(f"{target} exists and was not written by mrl; move it away or choose another output.")
            self._files[name] = None
            self._save("writing")
        return target

    def record(self, name: str) -> None:
        """Store the size and SHA-256 of the written file ``name``."""
        self._files[name] = file_entry(self.path / name)
        self._save("writing")

    def claim_dir(self, name: str) -> Path:
        """List a whole sub-folder (e.g. a trainer's checkpoints) before it is written; returns its path.

        Everything under it is the output's own (removed with the output; sizes are not recorded).
        """
        return self.claim(name.rstrip("/") + "/")

    def remove(self, name: str) -> None:
        """Delete a listed file or folder (``name/``) of this output and drop it from the manifest."""
        key = name if name in self._files else name.rstrip("/") + "/"
        if key not in self._files:
            raise MRLError(f"internal error: {name!r} is not a file of this output.")
        _remove_listed(self.path, [key])
        del self._files[key]
        self._save("writing")

    def clear_folder(self, name: str) -> None:
        """Empty and remove the sub-folder ``name`` when every file in it is provably ours (listed by
        this write or by the previous output); otherwise raise and delete nothing.

        Raises:
            ForeignFileError: the folder holds a file neither manifest lists.
        """
        root = self.path / name
        if not root.is_dir() or root.is_symlink():
            return
        names = sorted(str(p.relative_to(self.path)) for p in root.rglob("*") if not p.is_dir() or p.is_symlink())
        old = listed_files(self._old)
        foreign = [n for n in names if n not in self._files and not _owned(n, old)]
        if foreign:
            raise ForeignFileError(f"{self.path / foreign[0]} was not written by mrl; move it away (it is never deleted), then rerun.")
        _remove_listed(self.path, names)
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [root]:
            with contextlib.suppress(OSError):
                d.rmdir()  # folders left empty (only succeeds when empty)

    @contextlib.contextmanager
    def file(self, name: str) -> Iterator[Path]:
        """``with out.file("model.safetensors") as p: save(p)``: claim, write, record."""
        p = self.claim(name)
        yield p
        self.record(name)

    def finish(self) -> None:
        """Record every claimed file that exists and mark the manifest complete (a no-op when
        nothing was written: a command that wrote nothing leaves the disk as it was)."""
        if not self._touched:
            return
        self._begin()
        for name in list(self._files):
            if name.endswith("/"):
                if not (self.path / name).is_dir():
                    del self._files[name]
            elif (self.path / name).is_file():
                self._files[name] = file_entry(self.path / name)
            else:
                del self._files[name]
        self._save("complete")


def _inspect_folder(p: Path, kind: str) -> dict[str, Any] | None:
    """The manifest of an existing output folder of ``kind`` (``None`` if absent/empty), or raise."""
    if p.exists() and not p.is_dir():
        raise OutputExistsError(f"{p} is a file; the output must be a folder (a new or empty one, or a previous mrl output).")
    if not p.is_dir():
        return None
    present = _folder_files(p)
    if not present:
        return None
    man = read_manifest(p / MANIFEST) if (p / MANIFEST).is_file() else None
    if man is None:
        raise ForeignFileError(f"{p} holds files mrl did not write ({_short(present)}); choose a new or empty folder, nothing there is replaced.")
    if man.get("format") != kind:
        raise ForeignFileError(f"{p} holds an mrl {man.get('format')!r} output, not {kind!r}; choose another folder (nothing there is replaced).")
    return man


def check_output(path: str | os.PathLike[str], kind: str, *, overwrite: bool = False, append: bool = False, staged: bool = False, inputs: Iterable[Any] = (), owned: Any = None) -> dict[str, Any] | None:
    """Check, without writing anything, that folder ``path`` may receive a ``kind`` output.

    Returns the manifest of the previous output there (``None`` for a new or empty folder). Used
    by :func:`open_output`, and on its own to fail early (before a long computation) or for
    writers that manage their own files (the index). See :func:`open_output` for the rules.
    ``owned(folder, manifest) -> set[str]`` replaces :func:`listed_files` for writers whose
    manifests prove ownership in their own way (an index's pending generation).
    """
    p = Path(path)
    old = _inspect_folder(p, kind)
    if append:
        if old is None:
            raise OutputExistsError(f"{p} holds no {kind!r} output to continue; drop --resume to start a new one.")
        return old
    if old is not None and not overwrite:
        raise OutputExistsError(f"{p} already holds an mrl {kind!r} output; pass --overwrite (overwrite=True) to replace it, or choose another output.")
    if old is not None:
        mine = owned(p, old) if owned is not None else listed_files(old)
        if staged:  # the folder is replaced as a whole: it may hold nothing but what mrl listed
            unlisted = [f for f in _folder_files(p) if not _owned(f, mine) and f != MANIFEST]
            if unlisted:
                raise ForeignFileError(f"{p} holds files mrl did not write ({_short(unlisted)}); move them out before --overwrite, nothing there is deleted.")
            _check_inputs(inputs, [], p, f"folder {p}")
        else:  # listed files are removed, others stay: no input may be a listed one
            _check_inputs(inputs, [p / n for n in mine if not n.endswith("/")], None, f"folder {p}")
            for d in (n for n in mine if n.endswith("/")):
                _check_inputs(inputs, [], p / d, f"folder {p}")
    return old


@contextlib.contextmanager
def open_output(path: str | os.PathLike[str], kind: str, *, overwrite: bool = False, append: bool = False, staged: bool = False, inputs: Iterable[Any] = ()) -> Iterator[Output]:
    """Lock and check an output folder, then yield an :class:`Output` to write into it.

    Args:
        path: the output folder.
        kind: what the folder holds, e.g. ``"mrl.run"``; recorded as the manifest's ``format``.
        overwrite: allow replacing a previous output of the same ``kind``. Its listed files are
            removed just before the first new file is written (never files it does not list).
        append: continue a previous output of ``kind`` (e.g. resume training): nothing is removed.
        staged: write everything into a hidden sibling folder and swap it in as a whole when the
            block ends (a reader sees the old folder or the new one); the folder must then hold
            only files mrl listed.
        inputs: paths the command reads; refused if the output would replace or delete them.

    Raises:
        OutputExistsError: the folder holds a previous output and ``overwrite`` is False, or an
            input would be replaced.
        ForeignFileError: the folder holds files mrl did not write (or another kind of output).
        OutputLockedError: another process is writing the folder.
    """
    p = Path(path)
    inputs = [i for i in inputs if i is not None]
    with writer_lock(p):
        old = check_output(p, kind, overwrite=overwrite, append=append, staged=staged, inputs=inputs)
        if not staged:
            out = Output(p, p / MANIFEST, kind, old=old, reset=not append, inputs=inputs)
            yield out
            out.finish()
            return
        tmp = make_temp_dir(p.parent, f".{p.name}.")
        try:
            out = Output(tmp, tmp / MANIFEST, kind, old=None, reset=True, inputs=inputs)
            yield out
            out._files.update({f: None for f in _folder_files(tmp) if f != MANIFEST})
            out._touched = True
            out.finish()
            _swap_in(tmp, p, old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _swap_in(tmp: Path, target: Path, old: dict[str, Any] | None) -> None:
    """Replace ``target`` by ``tmp`` in one rename; delete only the old folder's listed files."""
    aside = None
    if target.exists():
        aside = make_temp_dir(target.parent, f".{target.name}.old-")
        os.replace(target, aside / "x")
        aside_folder = aside / "x"
    os.replace(tmp, target)
    fsync_dir(target.parent)
    if aside is not None:
        _remove_listed(aside_folder, sorted(listed_files(old) | {MANIFEST}))
        leftovers = _folder_files(aside_folder)
        if leftovers:  # files appeared that mrl did not write: keep them where the user can see them
            os.replace(aside_folder, unlisted_sibling(target))
        shutil.rmtree(aside, ignore_errors=True)


def input_files(*paths: str | os.PathLike[str] | None) -> list[Path]:
    """The given paths plus every file under those that are folders: the ``inputs`` of a command
    that reads whole folders (a model, a data set), so that no file in them can be an output."""
    found: list[Path] = []
    for p in paths:
        if p is None:
            continue
        found.append(Path(p))
        if Path(p).is_dir():
            found += [Path(root) / f for root, _, files in os.walk(p) for f in files]
    return found


@contextlib.contextmanager
def open_files(primary: str | os.PathLike[str], kind: str, siblings: Sequence[str | os.PathLike[str]] = (), *, overwrite: bool = False, inputs: Iterable[Any] = (), sidecar: bool = True, owned: Callable[[Path], bool] | None = None) -> Iterator[Output]:
    """Lock and check a file output (``x.npy``) with its ``siblings``; its JSON sidecar ``x.json``
    is the manifest. Yields an :class:`Output` whose ``path`` is the file's folder.

    With ``overwrite``, the primary file may be replaced; a sibling or sidecar only if the existing
    sidecar (of the same ``kind``) lists it. Inputs of the command are never replaced.
    ``sidecar=False`` (a single self-describing file such as a results JSON, no siblings): only
    the lock, the overwrite and the input checks, and, when ``owned(path)`` is given, an existing
    file is replaced only if ``owned`` recognises it as a previous output of ``kind`` (the file is
    its own manifest). List the files of input folders in ``inputs`` (:func:`input_files`).

    Raises:
        OutputExistsError: a file exists and ``overwrite`` is False, or an input would be replaced.
        ForeignFileError: an existing sibling or sidecar was not written by mrl, or ``owned``
            does not recognise the existing file.
    """
    prim = Path(primary)
    if prim.exists() and prim.is_dir():
        raise OutputExistsError(f"{prim} is a folder; give a file name for the output.")
    if not sidecar:
        if siblings:
            raise MRLError("internal error: an output with siblings needs a sidecar to list them.")
        with writer_lock(prim):
            _check_inputs([i for i in inputs if i is not None], [prim], None, f"output {prim}")
            if prim.exists() and not overwrite:
                raise OutputExistsError(f"{prim} already exists; pass --overwrite to replace it, or choose another output.")
            if prim.exists() and owned is not None and not owned(prim):
                raise ForeignFileError(f"{prim} exists and is not an mrl {kind!r} output; move it away or choose another --out (nothing is replaced).")
            yield Output(prim.parent, prim, kind, old=None, reset=False, inputs=[], replaceable=[prim.name])
        return
    side_path = prim.with_suffix(".json")
    if prim.suffix == ".json":
        raise MRLError(f"{prim}: the output must not be a .json file (that name is its sidecar).")
    names = [prim.name, *(Path(s).name for s in siblings)]
    inputs = [i for i in inputs if i is not None]
    with writer_lock(prim):
        _check_inputs(inputs, [prim.parent / n for n in names] + [side_path], None, f"output {prim}")
        old: dict[str, Any] | None = None
        if side_path.exists():
            try:
                old = read_manifest(side_path)
            except DataError:
                old = None
            if old is None or old.get("format") != kind:
                raise ForeignFileError(f"{side_path} exists and is not an mrl {kind!r} sidecar; move it away or choose another --out (nothing is replaced).")
        existing = [n for n in [*names, side_path.name] if (prim.parent / n).exists()]
        if existing and not overwrite:
            raise OutputExistsError(f"{prim.parent / existing[0]} already exists; pass --overwrite to replace {_short(existing)}, or choose another output.")
        mine = listed_files(old)
        foreign = [n for n in existing if n not in mine and n not in (prim.name, side_path.name)]
        if foreign:
            raise ForeignFileError(f"{prim.parent / foreign[0]} exists and was not written by mrl with {prim.name}; move it away or choose another --out (nothing is replaced).")
        _check_inputs(inputs, [prim.parent / n for n in mine], None, f"output {prim}")
        out = Output(prim.parent, side_path, kind, old=old, reset=True, inputs=inputs, replaceable=[prim.name])
        yield out
        out.finish()
